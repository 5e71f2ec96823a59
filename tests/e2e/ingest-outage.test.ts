/**
 * A ClickHouse outage under load, end to end: devices -> broker -> ingest (its own process,
 * PU_DP_* only) -> a TCP proxy -> ClickHouse. The proxy is cut for PU_TEST_OUTAGE_SECONDS
 * (default 5 s to keep the suite fast; `PU_TEST_OUTAGE_SECONDS=30` runs the full 30 s outage)
 * while the devices keep publishing; afterwards rows == accepted, with nothing dropped.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import type { EmbeddedBroker } from '@pepeunit/emqx-rules';
import type { IngestStats } from '@pepeunit/ingest-go-compatible';
import {
  chCount,
  connectDevice,
  createEnv,
  eventLine,
  ingestEnv,
  insertNodes,
  nodeTopic,
  stages,
  startBroker,
  startProxy,
  type CuttableProxy,
  type Env,
} from '../../ingest-go-compatible/test/helpers.js';
import { elapse, waitFor } from '../src/wait.ts';

const root = join(import.meta.dirname, '../..');
const outageSeconds = Number(process.env.PU_TEST_OUTAGE_SECONDS ?? '5');
let env: Env;
let broker: EmbeddedBroker;
let proxy: CuttableProxy;
let device: MqttClient;
let child: ChildProcess | undefined;

before(async () => {
  env = await createEnv('ing_e2e_outage');
  broker = await startBroker();
  proxy = await startProxy(env.db.clickhouseUrl);
  device = await connectDevice(broker.mqttPort);
});

after(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  device?.end(true);
  await proxy?.close();
  await broker?.close();
  await env?.close();
});

type Stats = IngestStats;

test(`a ${outageSeconds} s ClickHouse outage under load: rows == accepted afterwards`, { timeout: 120_000 + outageSeconds * 2000 }, async () => {
  // A response lost with a cut connection leaves an insert's fate unknown; the ingest retries
  // the same batch with the same insert_deduplication_token, which these tables then ignore.
  for (const table of ['n_last_entry', 'window_entry']) {
    await env.db.clickhouse.command({ query: `ALTER TABLE ${table} MODIFY SETTING non_replicated_deduplication_window = 1000` });
  }
  const nodes = [
    ...Array.from({ length: 10 }, () => ({ uuid: crypto.randomUUID(), config: stages({ policy: '{policy_type: NRecords, n_records_count: 1024}' }) })),
    ...Array.from({ length: 10 }, () => ({ uuid: crypto.randomUUID(), config: stages({ policy: '{policy_type: TimeWindow, time_window_size: 3600}' }) })),
  ];
  await insertNodes(env.pool, nodes);
  const vars = ingestEnv(env, broker.mqttPort, {
    PU_DP_CLICKHOUSE_DATABASE_URL: `${proxy.url}/${env.db.clickhouseDatabase}`,
    PU_DP_BUFFER_FLUSH_INTERVAL: '1',
    PU_DP_NRECORDS_CLEANUP_INTERVAL: '3600',
  });
  const proc = spawn(process.execPath, ['--import', 'tsx', join(root, 'ingest-go-compatible/src/main.ts')], { cwd: root, env: vars, stdio: ['ignore', 'pipe', 'pipe'] });
  child = proc;
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.resume();
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const ready = await waitFor(() => eventLine(out, 'ready'), { what: 'the ingest to be ready', timeoutMs: 60_000, intervalMs: 50 });
  const stats = async () => (await (await fetch(`${String(ready.metricsUrl)}/debug/stats`)).json()) as Stats;

  // ~2 000 msg/s over 20 nodes for the whole test.
  let seq = 0;
  const load = setInterval(() => {
    for (let k = 0; k < 2; k++) for (const n of nodes) device.publish(nodeTopic(n.uuid), String(seq++), { qos: 0 });
  }, 20);
  try {
    await waitFor(async () => (await stats()).rowsWritten.n_last_entry > 500, { what: 'rows landing before the outage', timeoutMs: 20_000, intervalMs: 100 });
    await proxy.cut();
    await elapse(outageSeconds * 1000, 'a ClickHouse outage of PU_TEST_OUTAGE_SECONDS under load');
    const during = await stats();
    assert.ok(during.writeErrors.n_last_entry > 0 && during.writeErrors.window_entry > 0, 'writes failed during the outage');
    assert.ok(during.retryBufferRows > 0, 'rows held for retry');
    const writtenAtRestore = during.rowsWritten.n_last_entry + during.rowsWritten.window_entry;
    proxy.restore();
    await waitFor(
      async () => {
        const s = await stats();
        return s.rowsWritten.n_last_entry + s.rowsWritten.window_entry > writtenAtRestore;
      },
      { what: 'writes to resume after the outage, under load', timeoutMs: 20_000, intervalMs: 100 },
    );
  } finally {
    clearInterval(load);
    proxy.restore();
  }
  const final = await waitFor(
    async () => {
      const s = await stats();
      return s.rowsWritten.n_last_entry + s.rowsWritten.window_entry === s.acceptedTotal && s.retryBufferRows === 0 ? s : false;
    },
    { what: 'every accepted row written', timeoutMs: 30_000, intervalMs: 200 },
  );
  assert.ok(final.acceptedTotal > 5000, `load accepted: ${final.acceptedTotal}`);
  assert.equal(final.dropped.retry_buffer_full, 0);
  assert.equal(await chCount(env, 'n_last_entry'), final.accepted.NRecords);
  assert.equal(await chCount(env, 'window_entry'), final.accepted.TimeWindow);

  proc.kill('SIGTERM');
  assert.equal(await exited, 0);
  const stopped = eventLine(out, 'stopped') as { lost: number; stats: Stats };
  assert.equal(stopped.lost, 0);
  assert.equal(await chCount(env, 'n_last_entry'), stopped.stats.accepted.NRecords);
  assert.equal(await chCount(env, 'window_entry'), stopped.stats.accepted.TimeWindow);
});
