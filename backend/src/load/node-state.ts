/**
 * Node state of the backend (issue 13, docs/LOAD.md "Node state"): every replica samples itself
 * (NodeStateCollector, common/src/node-state.ts) every PU_NODE_STATE_INTERVAL seconds into
 * ClickHouse `node_state` (migration 007, kept 30 days) and Prometheus gauges; the replica that
 * runs the load sampler also reads the broker's nodes (`GET /api/v5/nodes` + `/api/v5/metrics`,
 * the same on EMQX and on the embedded broker) and writes a row per broker node (role `broker`).
 * Channels counted here: `rest` (HTTP responses), `mqtt` (messages on the backend's own MQTT
 * connection); other components add theirs with `app.nodeState.count('telegram')`.
 * The ingest writes its own rows (ingest-go-compatible/src/service.ts).
 */
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge } from 'prom-client';
import { NodeStateCollector, startNodeStateReporter, type NodeStateReporter, type NodeStateRow } from '@pepeunit/common/node-state';
import { projectInfo } from '../version.js';

export interface NodeState {
  readonly collector: NodeStateCollector;
  count(channel: string, n?: number): void;
  readonly latest: NodeStateRow | null;
  /** Samples now and writes (tests, shutdown). */
  sampleNow(): Promise<void>;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** This process's node state (backend/src/load/node-state.ts). */
    readonly nodeState: NodeState;
  }
}

export async function insertNodeState(app: FastifyInstance, rows: NodeStateRow[]): Promise<void> {
  if (rows.length === 0) return;
  await app.clickhouse.insert({ table: 'node_state', values: rows, format: 'JSONEachRow' });
}

/** One row per broker node from the management API (cpu_percent -1 when the broker does not report it). */
export async function brokerNodeRows(app: FastifyInstance, lastReceived: Map<string, number>): Promise<NodeStateRow[]> {
  const client = app.load.client();
  if (!client) return [];
  const [nodes, metrics] = await Promise.all([client.listNodes(), client.getNodeMetrics().catch(() => [])]);
  const received = new Map(metrics.map((m) => [m.node, Number(m['messages.received'] ?? 0)]));
  const ts = Math.floor(Date.now() / 1000);
  return nodes.map((node) => {
    const total = received.get(node.node);
    const last = lastReceived.get(node.node);
    const messages: Record<string, number> = {};
    if (total !== undefined) {
      if (last !== undefined) messages.mqtt = total >= last ? total - last : total;
      lastReceived.set(node.node, total);
    }
    const used = Number(node.memory_used ?? 0);
    return {
      process: `broker@${node.node}`,
      role: 'broker',
      host: node.node.includes('@') ? (node.node.split('@')[1] as string) : node.node,
      pid: 0,
      version: String(node.version ?? ''),
      ts,
      uptime_seconds: Number(node.uptime ?? 0) / 1000,
      cpu_percent: typeof node.process_cpu_percent === 'number' ? node.process_cpu_percent : -1,
      rss_bytes: Number.isFinite(used) ? used : 0,
      heap_used_bytes: 0,
      heap_total_bytes: 0,
      event_loop_delay_mean_ms: 0,
      event_loop_delay_p99_ms: 0,
      messages,
      disk_free_bytes: {},
    };
  });
}

export function registerNodeState(app: FastifyInstance): void {
  const collector = new NodeStateCollector({ role: 'backend', version: projectInfo.version, dataDirs: [app.config.saveRepoPath] });
  const registers = [app.metrics];
  const gauges = {
    cpu: new Gauge({ name: 'pepeunit_node_cpu_percent', help: 'Process CPU over the last node-state interval (percent of one core)', labelNames: ['process', 'role'] as const, registers }),
    loop: new Gauge({ name: 'pepeunit_node_event_loop_delay_p99_seconds', help: 'Event-loop delay p99 over the last interval', labelNames: ['process', 'role'] as const, registers }),
    disk: new Gauge({ name: 'pepeunit_node_disk_free_bytes', help: 'Free bytes of the file system of a data folder', labelNames: ['process', 'dir'] as const, registers }),
    messages: new Counter({ name: 'pepeunit_node_messages_total', help: 'Messages handled by this process per channel', labelNames: ['process', 'channel'] as const, registers }),
    brokerMemory: new Gauge({ name: 'pepeunit_broker_node_memory_used_bytes', help: 'Memory used by a broker node (management API)', labelNames: ['node'] as const, registers }),
    brokerUptime: new Gauge({ name: 'pepeunit_broker_node_uptime_seconds', help: 'Uptime of a broker node (management API)', labelNames: ['node'] as const, registers }),
  };
  const publish = (row: NodeStateRow): void => {
    if (row.role === 'broker') {
      const node = row.process.slice('broker@'.length);
      gauges.brokerMemory.set({ node }, row.rss_bytes);
      gauges.brokerUptime.set({ node }, row.uptime_seconds);
      return;
    }
    gauges.cpu.set({ process: row.process, role: row.role }, row.cpu_percent);
    gauges.loop.set({ process: row.process, role: row.role }, row.event_loop_delay_p99_ms / 1000);
    for (const [dir, free] of Object.entries(row.disk_free_bytes)) gauges.disk.set({ process: row.process, dir }, free);
    for (const [channel, n] of Object.entries(row.messages)) gauges.messages.inc({ process: row.process, channel }, n);
  };
  const lastReceived = new Map<string, number>();
  const write = async (rows: NodeStateRow[]): Promise<void> => {
    let all = rows;
    if (app.load.sampler.isLeader) {
      try {
        const broker = await brokerNodeRows(app, lastReceived);
        broker.forEach(publish);
        all = rows.concat(broker);
      } catch (error) {
        app.log.warn({ err: (error as Error).message }, 'node state: broker nodes not readable');
      }
    }
    await insertNodeState(app, all);
  };
  const intervalMs = app.config.load.nodeStateIntervalSeconds * 1000;
  let reporter: NodeStateReporter | undefined;
  // Callback style: runs on every answer, so no promise per request.
  app.addHook('onResponse', (_request, _reply, done) => {
    collector.count('rest');
    done();
  });
  const onMessage = (): void => collector.count('mqtt');
  app.mqtt.on('message', onMessage);
  app.decorate('nodeState', {
    collector,
    count: (channel: string, n = 1) => collector.count(channel, n),
    get latest() {
      return reporter?.latest ?? null;
    },
    async sampleNow() {
      const row = await collector.sample();
      publish(row);
      await write([row]);
    },
  } satisfies NodeState);
  app.addHook('onReady', async () => {
    if (intervalMs <= 0) return;
    reporter = startNodeStateReporter(collector, {
      intervalMs,
      write,
      onSample: publish,
      onError: (error) => app.log.warn({ err: (error as Error).message }, 'node state sample not written'),
    });
  });
  app.addHook('onClose', async () => {
    app.mqtt.removeListener('message', onMessage);
    if (reporter) await reporter.stop();
    else collector.close();
  });
}
