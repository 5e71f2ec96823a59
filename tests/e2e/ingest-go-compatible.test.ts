/**
 * The ingest as a drop-in replacement of the Go DataPipe: `ingest-go-compatible/src/main.ts`
 * started as its own process with ONLY `PU_DP_*` variables, devices publishing through the
 * (embedded) broker to `<domain>/<node>/pepeunit`, the four reference tables written; then a
 * SIGTERM under load: every accepted message ends up in a table or, for open Aggregation
 * windows, in the persisted snapshot (rows == accepted, compared with the process's own
 * counters).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import type { EmbeddedBroker } from '@pepeunit/emqx-rules';
import {
  chCount,
  chRows,
  connectDevice,
  createEnv,
  eventLine,
  ingestEnv,
  insertNodes,
  nodeTopic,
  stages,
  startBroker,
  type Env,
} from '../../ingest-go-compatible/test/helpers.js';
import { waitFor } from '../src/wait.ts';

const root = join(import.meta.dirname, '../..');
let env: Env;
let broker: EmbeddedBroker;
const devices: MqttClient[] = [];
let child: ChildProcess | undefined;

before(async () => {
  env = await createEnv('ing_e2e_go');
  broker = await startBroker();
  for (let i = 0; i < 4; i++) devices.push(await connectDevice(broker.mqttPort));
});

after(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  for (const d of devices) d.end(true);
  await broker?.close();
  await env?.close();
});

interface Running {
  child: ChildProcess;
  metricsUrl: string;
  stdout: () => string;
  exited: Promise<number | null>;
}

/** Starts main.ts with exactly the given environment (no inherited variables). */
async function startChild(vars: Record<string, string>): Promise<Running> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(root, 'ingest-go-compatible/src/main.ts')], {
    cwd: root,
    env: vars,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child = proc;
  let out = '';
  let err = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const ready = await waitFor(() => eventLine(out, 'ready') ?? (proc.exitCode !== null ? { failed: true } : undefined), { what: 'the ingest ready line', timeoutMs: 60_000, intervalMs: 50 });
  if ((ready as { failed?: boolean }).failed) throw new Error(`ingest exited before ready:\n${err.slice(-3000)}`);
  return { child: proc, metricsUrl: String(ready.metricsUrl), stdout: () => out, exited };
}

test('with only PU_DP_* set, main.ts consumes <domain>/+/pepeunit and survives SIGTERM under load without losing rows', async () => {
  const kinds = {
    LastValue: stages({ policy: '{policy_type: LastValue}' }),
    NRecords: stages({ policy: '{policy_type: NRecords, n_records_count: 1024}' }),
    TimeWindow: stages({ policy: '{policy_type: TimeWindow, time_window_size: 3600}' }),
    Aggregation: stages({ filters: '{type_input_value: Number, max_rate: 0, max_size: 0}', policy: '{policy_type: Aggregation, time_window_size: 86400, aggregation_functions: Sum}' }),
  };
  const nodes: { uuid: string; policy: keyof typeof kinds }[] = [];
  for (const policy of Object.keys(kinds) as (keyof typeof kinds)[]) {
    for (let i = 0; i < 10; i++) nodes.push({ uuid: crypto.randomUUID(), policy });
  }
  await insertNodes(env.pool, nodes.map((n) => ({ uuid: n.uuid, config: kinds[n.policy] })));

  // Exactly the Go service's variables (PU_DP_*), nothing inherited.
  const vars = ingestEnv(env, broker.mqttPort, { PU_DP_BUFFER_FLUSH_INTERVAL: '1', PU_DP_BUFFER_MAX_SIZE: '500' });
  assert.ok(Object.keys(vars).every((k) => k.startsWith('PU_DP_')));
  const ingest = await startChild(vars);
  const ready = eventLine(ingest.stdout(), 'ready');
  assert.equal(ready?.subscription, 'ingest.test.local/+/pepeunit');
  assert.equal(ready?.mode, 'go-compatible');

  // Phase 1: one message per node, every table written.
  const device = devices[0] as MqttClient;
  for (const n of nodes) device.publish(nodeTopic(n.uuid), n.policy === 'Aggregation' ? '1' : `hello-${n.uuid.slice(0, 4)}`, { qos: 0 });
  await waitFor(
    async () => {
      const [nr, tw, lv] = await Promise.all([
        chCount(env, 'n_last_entry'),
        chCount(env, 'window_entry'),
        env.pool.query(`SELECT count(*)::int AS n FROM units_nodes WHERE state LIKE 'hello-%'`).then((r) => r.rows[0].n as number),
      ]);
      return nr === 10 && tw === 10 && lv === 10;
    },
    { what: 'one row per node in every table', intervalMs: 100 },
  );
  const health = (await (await fetch(`${ingest.metricsUrl}/health/ready`)).json()) as { status: string };
  assert.equal(health.status, 'ready');

  // Phase 2: load from 4 devices (~4 000 msg/s), SIGTERM in the middle of it.
  let sent = 0;
  let loading = true;
  const loaders = devices.map((d, k) => {
    const mine = nodes.filter((_, i) => i % devices.length === k);
    const timer = setInterval(() => {
      if (!loading) return;
      for (let burst = 0; burst < 4; burst++) {
        for (const n of mine) {
          d.publish(nodeTopic(n.uuid), n.policy === 'Aggregation' ? '1' : String(sent), { qos: 0 });
          sent++;
        }
      }
    }, 10);
    return timer;
  });
  try {
    await waitFor(
      async () => {
        const s = (await (await fetch(`${ingest.metricsUrl}/debug/stats`)).json()) as { acceptedTotal: number };
        return s.acceptedTotal > 3000;
      },
      { what: 'the ingest to accept load', timeoutMs: 20_000, intervalMs: 100 },
    );
    ingest.child.kill('SIGTERM');
    const code = await ingest.exited;
    assert.equal(code, 0);
  } finally {
    loading = false;
    for (const t of loaders) clearInterval(t);
  }
  const stopped = eventLine(ingest.stdout(), 'stopped') as {
    stats: { accepted: Record<string, number>; dropped: Record<string, number>; rowsWritten: Record<string, number> };
    spilledRows: number;
    spilledWindows: number;
    lost: number;
  };
  assert.ok(stopped, 'the stopped line with the final counters');
  assert.equal(stopped.lost, 0);
  assert.equal(stopped.stats.dropped.shutdown_unwritten, 0);
  assert.equal(stopped.stats.dropped.retry_buffer_full, 0);
  const accepted = stopped.stats.accepted;
  assert.ok((accepted.NRecords ?? 0) > 500, 'load was accepted before the stop');

  // rows == accepted, per table.
  assert.equal(await chCount(env, 'n_last_entry'), accepted.NRecords);
  assert.equal(await chCount(env, 'window_entry'), accepted.TimeWindow);
  // Aggregation (Sum of ones): windows written plus the open windows persisted for the next start.
  const written = await chRows<{ total: number }>(env, 'SELECT sum(state) AS total FROM aggregation_entry');
  const spill = await env.pool.query<{ payload: { windows: { sum: number; count: number }[] } }>(`SELECT payload FROM pepeunit_ingest_spill WHERE kind = 'aggregation_snapshot'`);
  const persisted = spill.rows.flatMap((r) => r.payload.windows).reduce((s, w) => s + w.count, 0);
  assert.equal(Number(written[0]?.total ?? 0) + persisted, accepted.Aggregation);
  assert.equal(stopped.spilledWindows, spill.rows.flatMap((r) => r.payload.windows).length);
  // LastValue: every node updated, at most once per flush per node.
  const lv = await env.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM units_nodes WHERE state IS NOT NULL`);
  assert.equal(lv.rows[0]?.n, 10, 'the 10 LastValue nodes (and only they) hold a value');
  assert.ok((stopped.stats.rowsWritten.units_nodes ?? 0) >= 10);
});
