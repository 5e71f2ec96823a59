/**
 * Counters of the ingest. The hot path (one call per MQTT message) increments plain numbers in
 * fixed-key records; prom-client reads them only when /metrics is scraped (`collect`), so a
 * message costs a few property increments instead of prom-client label hashing.
 */
import { DATAPIPE_TABLES } from '@pepeunit/clickhouse-schemas';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { DROP_REASONS, type DropReason } from './pipeline/index.js';

/** Drop reasons of the service, beyond the pipeline's own (`DROP_REASONS`). */
export const SERVICE_DROP_REASONS = [
  'bad_topic',
  'unknown_node',
  'payload_too_large',
  'bad_envelope',
  'late_window',
  'retry_buffer_full',
  'poison_row',
  'shutdown_unwritten',
] as const;
export type ServiceDropReason = (typeof SERVICE_DROP_REASONS)[number];
export type IngestDropReason = DropReason | ServiceDropReason;

export const POLICIES = ['LastValue', 'NRecords', 'TimeWindow', 'Aggregation'] as const;
export type PolicyName = (typeof POLICIES)[number];

/** Destination tables; `units_nodes` is the LastValue target in Postgres. */
export const TABLES = ['units_nodes', ...DATAPIPE_TABLES] as const;
export type TableName = (typeof TABLES)[number];

export type ReloadKind = 'full' | 'node';
export type ReloadTrigger = 'startup' | 'periodic' | 'notify' | 'redis' | 'manual' | 'retry';

function zeroes<K extends string>(keys: readonly K[]): Record<K, number> {
  const out = {} as Record<K, number>;
  for (const k of keys) out[k] = 0;
  return out;
}

/** Per-node intake counts are kept for at most this many distinct nodes; the rest are summed. */
export const NODE_COUNTER_CAPACITY = 100_000;

export interface IngestStats {
  received: number;
  accepted: Record<PolicyName, number>;
  acceptedTotal: number;
  dropped: Record<IngestDropReason, number>;
  rowsWritten: Record<TableName, number>;
  writeErrors: Record<TableName, number>;
  /** Rows spilled to Postgres on shutdown (unwritten rows and open aggregation windows' rows). */
  spilledRows: number;
  /** Open aggregation windows persisted on shutdown. */
  spilledWindows: number;
  bufferedRows: number;
  retryBufferRows: number;
  configReloads: number;
  configReloadErrors: number;
  /** Messages of nodes beyond the per-node counter capacity (counted together). */
  nodeCounterOverflow: number;
}

export class IngestMetrics {
  readonly registry: Registry;
  received = 0;
  readonly accepted = zeroes(POLICIES);
  readonly dropped = zeroes<IngestDropReason>([...DROP_REASONS, ...SERVICE_DROP_REASONS]);
  readonly rowsWritten = zeroes(TABLES);
  readonly writeErrors = zeroes(TABLES);
  readonly reloads = new Map<string, number>();
  configReloadErrors = 0;
  spilledRows = 0;
  spilledWindows = 0;
  /** Messages per node uuid (parsed topic), including nodes the ingest does not know. */
  private readonly nodeCounts = new Map<string, { n: number }>();
  private nodeCountsOverflow = 0;
  /** @internal read by the collectors */
  gauges: { buffered: () => number; retry: () => number; nodes: () => Record<string, number> } = {
    buffered: () => 0,
    retry: () => 0,
    nodes: () => ({}),
  };

  constructor(readonly mode: string) {
    const registry = new Registry();
    this.registry = registry;
    registry.setDefaultLabels({ service: 'ingest' });
    collectDefaultMetrics({ register: registry });
    registerCollectors(registry, this);
  }

  /** Wires the gauges to live sources. */
  setGaugeSources(sources: { buffered: () => number; retry: () => number; nodes: () => Record<string, number> }): void {
    this.gauges = sources;
  }

  countReload(kind: ReloadKind, trigger: ReloadTrigger): void {
    const key = `${kind}|${trigger}`;
    this.reloads.set(key, (this.reloads.get(key) ?? 0) + 1);
  }

  /** Counts one message for a node (hot path). */
  countNode(uuid: string): void {
    const counter = this.nodeCounts.get(uuid);
    if (counter !== undefined) counter.n += 1;
    else if (this.nodeCounts.size < NODE_COUNTER_CAPACITY) this.nodeCounts.set(uuid, { n: 1 });
    else this.nodeCountsOverflow += 1;
  }

  /** Messages received for one node (0 when never seen). */
  nodeCount(uuid: string): number {
    return this.nodeCounts.get(uuid.toLowerCase())?.n ?? 0;
  }

  stats(): IngestStats {
    let acceptedTotal = 0;
    for (const p of POLICIES) acceptedTotal += this.accepted[p];
    let reloads = 0;
    for (const n of this.reloads.values()) reloads += n;
    return {
      received: this.received,
      accepted: { ...this.accepted },
      acceptedTotal,
      dropped: { ...this.dropped },
      rowsWritten: { ...this.rowsWritten },
      writeErrors: { ...this.writeErrors },
      spilledRows: this.spilledRows,
      spilledWindows: this.spilledWindows,
      bufferedRows: this.gauges.buffered(),
      retryBufferRows: this.gauges.retry(),
      configReloads: reloads,
      configReloadErrors: this.configReloadErrors,
      nodeCounterOverflow: this.nodeCountsOverflow,
    };
  }
}

/** prom-client collectors that read the plain counters of `self` at scrape time. */
function registerCollectors(registry: Registry, self: IngestMetrics): void {
  new Counter({
    name: 'pepeunit_ingest_messages_received_total',
    help: 'MQTT messages received by the intake',
    labelNames: ['mode'],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ mode: self.mode }, self.received);
    },
  });
  new Counter({
    name: 'pepeunit_ingest_messages_accepted_total',
    help: 'Messages accepted by a node pipeline and handed to its policy buffer',
    labelNames: ['policy'],
    registers: [registry],
    collect() {
      this.reset();
      for (const p of POLICIES) this.inc({ policy: p }, self.accepted[p]);
    },
  });
  new Counter({
    name: 'pepeunit_ingest_dropped_total',
    help: 'Messages (or rows, for retry_buffer_full / poison_row / shutdown_unwritten) dropped, by reason',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(self.dropped)) this.inc({ reason }, n);
    },
  });
  new Counter({
    name: 'pepeunit_ingest_rows_written_total',
    help: 'Rows written (ClickHouse tables; units_nodes rows updated for LastValue)',
    labelNames: ['table'],
    registers: [registry],
    collect() {
      this.reset();
      for (const t of TABLES) this.inc({ table: t }, self.rowsWritten[t]);
    },
  });
  new Counter({
    name: 'pepeunit_ingest_write_errors_total',
    help: 'Failed write attempts (each retried or bisected)',
    labelNames: ['table'],
    registers: [registry],
    collect() {
      this.reset();
      for (const t of TABLES) this.inc({ table: t }, self.writeErrors[t]);
    },
  });
  new Counter({
    name: 'pepeunit_ingest_spilled_rows_total',
    help: 'Rows and open aggregation windows persisted to Postgres on shutdown, restored at the next start',
    labelNames: ['what'],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ what: 'rows' }, self.spilledRows);
      this.inc({ what: 'windows' }, self.spilledWindows);
    },
  });
  new Gauge({
    name: 'pepeunit_ingest_buffered_rows',
    help: 'Entries held by the policy buffers, not yet handed to a writer',
    registers: [registry],
    collect() {
      this.set(self.gauges.buffered());
    },
  });
  new Gauge({
    name: 'pepeunit_ingest_retry_buffer_rows',
    help: 'Rows queued in the writers (waiting or being retried); bounded by PU_DP_RETRY_BUFFER_MAX_ROWS',
    registers: [registry],
    collect() {
      this.set(self.gauges.retry());
    },
  });
  new Gauge({
    name: 'pepeunit_ingest_config_nodes',
    help: 'Configured nodes held by the ingest, by status',
    labelNames: ['status'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [status, n] of Object.entries(self.gauges.nodes())) this.set({ status }, n);
    },
  });
  new Counter({
    name: 'pepeunit_ingest_config_reloads_total',
    help: 'Config reloads from Postgres, by kind (full/node) and trigger',
    labelNames: ['kind', 'trigger'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [key, n] of self.reloads) {
        const [kind, trigger] = key.split('|') as [string, string];
        this.inc({ kind, trigger }, n);
      }
    },
  });
  new Counter({
    name: 'pepeunit_ingest_config_reload_errors_total',
    help: 'Config reloads that failed (retried)',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(self.configReloadErrors);
    },
  });
}
