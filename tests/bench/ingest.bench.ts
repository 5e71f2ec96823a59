/**
 * `npm run bench -- ingest`: the DataPipe ingest under load, 1 000 unit nodes with mixed
 * policies (250 each of LastValue, NRecords, TimeWindow, Aggregation Avg/Min/Max/Sum), configs
 * in Postgres, rows landing in ClickHouse (embedded chdb server in its own process).
 *
 *   A. End to end: devices (50 MQTT connections with pre-encoded QoS 0 PUBLISH packets, a child
 *      process) offer PU_BENCH_RATE messages/s (default 150 000: above the 100 000 target,
 *      so the measured rate is what the system sustains, not the offer) to
 *      `<domain>/<node>/pepeunit` through the embedded broker (its own process). First a plain
 *      mqtt.js subscriber (a child process) receives the stream, then the ingest (main.ts, a
 *      child process, PU_DP_* only); messages/s accepted and landed vs the subscriber's rate.
 *   B. Intake without a broker: a replay server streams pre-encoded MQTT PUBLISH packets as fast
 *      as the client reads them (what a broker that is not the bottleneck would do); the plain
 *      subscriber and the ingest each consume 2 000 000 messages. This isolates the ingest's
 *      capacity from the broker's. A and B run two rounds each, alternating, best of each (the
 *      machine is shared; one busy neighbour can halve a round).
 *   C. The pipeline alone, in process (no MQTT): messages/s through `injectMessage`.
 *   D. Memory per open Aggregation window as the messages per window grow (10 vs 1 000).
 *
 * Runs in about two minutes and stops by itself; appends rows to docs/BENCHMARKS.md.
 * PU_BENCH_SECONDS (default 8) sets the publishing time of A, PU_BENCH_RATE its offered load.
 *
 * The file is also its own helper process: `ingest.bench.ts publisher|subscriber|replay ...`.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import mqtt from 'mqtt';
import pg from 'pg';
import { checkDataPipeYaml } from '@pepeunit/common/datapipe/index';
import { freePort, loadIngestConfig, silentLogger, startService, type RunningService } from '@pepeunit/common';
import { createDatabase, dropDatabase, databaseUrl } from '@pepeunit/common/postgres';
import { resolvePostgres } from '@pepeunit/common/postgres-provision';
import { createClickHouse, migrateClickHouse } from '@pepeunit/clickhouse-schemas';
import { migratePostgres } from '@pepeunit/backend/db/migrate';
import { startIngest, type IngestStats } from '@pepeunit/ingest-go-compatible';
import { encodeQos0Publish, readFixedHeader } from '@pepeunit/emqx-rules/embedded/mqtt-frames';
import { connectDevice } from './mqtt-devices.ts';
import { recordResult, root, spawnBenchChild, type BenchChild } from './support.ts';

const DOMAIN = 'bench.pepeunit.local';
const SECRET = 'bench-ingest-secret-0123456789abcdefghij';
const FILTER = `${DOMAIN}/+/pepeunit`;
const REPLAY_MESSAGES = 2_000_000;

// ---- helper processes ---------------------------------------------------------------------

function line(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/**
 * Devices: `publisher <port> <seconds> <connections> <rate> <topicsFile>`; publishes <rate>
 * messages/s in total (paced every 5 ms, round-robin over connections and topics). Each device
 * is a real MQTT 3.1.1 connection (CONNECT/CONNACK, then QoS 0 PUBLISH packets, DISCONNECT),
 * but its packets are encoded once up front and written in one buffer per tick, as load
 * generators such as emqtt-bench do: an mqtt.js client spends several microseconds of the same
 * two cores per publish, which would be charged to the broker and the ingest under test.
 * Pacing is needed: unpaced QoS 0 publishers fill megabytes of kernel socket buffers per
 * connection that the broker then drains for minutes, so "as fast as possible" would measure the
 * buffers.
 */
async function publisherRole(args: string[]): Promise<void> {
  const [port, seconds, connections, rate] = args.slice(0, 4).map(Number) as [number, number, number, number];
  const topics = JSON.parse(readFileSync(args[4] as string, 'utf8')) as string[];
  const payloads = Array.from({ length: 50 }, (_, i) => String(20 + i));
  const devices = await Promise.all(
    Array.from({ length: connections }, async (_, c) => {
      const socket = await connectDevice(port, `bench-dev-${c}-${process.pid}`);
      const own = topics.filter((_, i) => i % connections === c);
      // Device c's k-th message: topic k mod |own|, payload k mod 50 (every pair over a cycle).
      const cycle = own.length * payloads.length;
      const packets = Array.from({ length: cycle }, (_, k) => encodeQos0Publish(own[k % own.length] as string, payloads[Math.floor(k / own.length) % payloads.length] as string));
      return { socket, packets, next: 0, batch: [] as Buffer[] };
    }),
  );
  let sent = 0;
  let turn = 0;
  const started = Date.now();
  const deadline = started + seconds * 1000;
  while (Date.now() < deadline) {
    const due = Math.min(rate * seconds, Math.floor(((Date.now() - started) / 1000) * rate));
    while (sent < due) {
      const device = devices[turn++ % devices.length] as (typeof devices)[number];
      device.batch.push(device.packets[device.next++ % device.packets.length] as Buffer);
      sent++;
    }
    for (const device of devices) {
      if (device.batch.length === 0) continue;
      device.socket.write(device.batch.length === 1 ? (device.batch[0] as Buffer) : Buffer.concat(device.batch));
      device.batch = [];
    }
    await sleep(5);
  }
  const publishedIn = (Date.now() - started) / 1000;
  await Promise.all(
    devices.map(
      (d) =>
        new Promise<void>((resolve) => {
          d.socket.once('close', () => resolve());
          d.socket.end(Buffer.from([0xe0, 0])); // DISCONNECT
        }),
    ),
  );
  line({ event: 'done', sent, seconds: publishedIn, flushedAfter: (Date.now() - started) / 1000 });
}

/** A plain mqtt.js subscriber: `subscriber <port> <filter>`; reports its count every 100 ms. */
async function subscriberRole(args: string[]): Promise<void> {
  const [port, filter] = [Number(args[0]), args[1] as string];
  const client = mqtt.connect({ host: '127.0.0.1', port, protocolVersion: 4, clientId: `bench-plain-${process.pid}`, reconnectPeriod: 0 });
  let count = 0;
  let first = 0;
  let last = 0;
  client.on('message', () => {
    count++;
    last = Date.now();
    if (first === 0) first = last;
  });
  await new Promise((resolve) => client.once('connect', resolve));
  await client.subscribeAsync(filter, { qos: 0 });
  line({ event: 'ready' });
  setInterval(() => line({ event: 'count', count, first, last }), 100);
  process.once('SIGTERM', () => process.exit(0));
}

/**
 * `replay <topicsFile> <messages>`: a minimal MQTT 3.1.1 server (CONNACK, SUBACK, PINGRESP) that,
 * after a SUBSCRIBE, streams <messages> pre-encoded QoS 0 PUBLISH packets round-robin over the
 * topics, as fast as the client's socket drains.
 */
async function replayRole(args: string[]): Promise<void> {
  const topics = JSON.parse(readFileSync(args[0] as string, 'utf8')) as string[];
  const total = Number(args[1]);
  const perChunk = 10_000;
  const chunk = Buffer.concat(Array.from({ length: perChunk }, (_, i) => encodeQos0Publish(topics[i % topics.length] as string, String(20 + (i % 50)))));
  const server = net.createServer((socket) => {
    let sent = 0;
    let pending = Buffer.alloc(0);
    const pump = (): void => {
      while (sent < total) {
        sent += perChunk;
        if (!socket.write(chunk)) {
          socket.once('drain', pump);
          return;
        }
      }
    };
    socket.on('data', (data: Buffer) => {
      pending = Buffer.concat([pending, data]);
      for (;;) {
        const header = readFixedHeader(pending, 0);
        if (header === 'partial') return;
        if (header === 'malformed') {
          socket.destroy();
          return;
        }
        const type = header.first >> 4;
        const i = header.bodyStart;
        if (type === 1) socket.write(Buffer.from([0x20, 2, 0, 0]));
        else if (type === 8) {
          socket.write(Buffer.from([0x90, 3, pending[i] as number, pending[i + 1] as number, 0]));
          pump();
        } else if (type === 10) socket.write(Buffer.from([0xb0, 2, pending[i] as number, pending[i + 1] as number]));
        else if (type === 12) socket.write(Buffer.from([0xd0, 0]));
        pending = pending.subarray(header.end);
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  line({ event: 'ready', port: (server.address() as net.AddressInfo).port });
  process.once('SIGTERM', () => process.exit(0));
}

// ---- orchestration helpers ----------------------------------------------------------------

type Child = BenchChild;
const spawnChild = (args: string[], env?: NodeJS.ProcessEnv, script = import.meta.filename): Child => spawnBenchChild(script, args, { env, stopGraceMs: 30_000 });

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function configJson(yaml: string): string {
  const checked = checkDataPipeYaml(yaml, { maxPayloadSizeKb: 256 });
  if (!checked.ok) throw new Error(JSON.stringify(checked.errors));
  return checked.json;
}

const POLICY_CONFIGS = {
  LastValue: configJson('active_period: {type: Permanent}\nfilters: {type_input_value: Text, max_rate: 0, max_size: 0}\nprocessing_policy: {policy_type: LastValue}\n'),
  NRecords: configJson('active_period: {type: Permanent}\nfilters: {type_input_value: Number, max_rate: 0, max_size: 64}\nprocessing_policy: {policy_type: NRecords, n_records_count: 1024}\n'),
  TimeWindow: configJson('active_period: {type: Permanent}\nfilters: {type_input_value: Text, max_rate: 0, max_size: 0}\nprocessing_policy: {policy_type: TimeWindow, time_window_size: 3600}\n'),
  Aggregation: (fn: string) =>
    configJson(
      `active_period: {type: Permanent}\nfilters: {type_input_value: Number, max_rate: 0, max_size: 0}\ntransformations: {round_decimal_point: 2}\nprocessing_policy: {policy_type: Aggregation, time_window_size: 86400, aggregation_functions: ${fn}}\n`,
    ),
};

interface Measured {
  count: number;
  seconds: number;
  rate: number;
}

// ---- the benchmark ------------------------------------------------------------------------

async function main(): Promise<void> {
  const seconds = Number(process.env.PU_BENCH_SECONDS ?? 8);
  const offered = Number(process.env.PU_BENCH_RATE ?? 150_000);
  const work = mkdtempSync(join(tmpdir(), 'pepeunit-bench-ingest-'));
  const cleanups: (() => Promise<unknown>)[] = [];
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => {});
    rmSync(work, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    // Services: Postgres (local or private cluster), ClickHouse and the broker in their own processes.
    const postgres = await resolvePostgres({ dataDir: join(root, '.data', 'bench'), allowInstall: true });
    cleanups.push(() => postgres.stop());
    const dbName = `pu_bench_ingest_${randomBytes(3).toString('hex')}`;
    await createDatabase(postgres.adminUrl, dbName);
    cleanups.push(() => dropDatabase(postgres.adminUrl, dbName));
    const pgUrl = databaseUrl(postgres.adminUrl, dbName);
    await migratePostgres(pgUrl);
    const chPort = await freePort();
    const chPassword = randomBytes(18).toString('base64url');
    const clickhouseServer: RunningService = await startService({
      name: 'clickhouse',
      command: process.execPath,
      args: ['--import', 'tsx', join(root, 'clickhouse-schemas/src/server-cli.ts'), '--port', String(chPort), '--data', join(work, 'clickhouse')],
      env: { PU_EMBEDDED_CLICKHOUSE_PASSWORD: chPassword },
      logFile: join(work, 'clickhouse.log'),
      readyLine: true,
    });
    cleanups.push(() => clickhouseServer.stop());
    const chUrl = String(clickhouseServer.ready.url).replace('http://', `http://default:${chPassword}@`);
    const clickhouse = createClickHouse(chUrl, dbName);
    cleanups.push(() => clickhouse.close());
    await migrateClickHouse(clickhouse, { database: dbName });
    const brokerService: RunningService = await startService({
      name: 'broker',
      command: process.execPath,
      args: ['--import', 'tsx', join(root, 'emqx-rules/src/embedded/cli.ts'), '--mqtt-port', '0', '--api-port', '0', '--log-level', 'warn'],
      env: { EMQX_API_KEY: 'bench', EMQX_API_SECRET: 'bench-secret' },
      logFile: join(work, 'broker.log'),
      readyLine: true,
    });
    cleanups.push(() => brokerService.stop());
    const brokerPort = Number(new URL(String(brokerService.ready.mqttUrl)).port);

    // 1 000 nodes, 250 per policy.
    const pool = new pg.Pool({ connectionString: pgUrl, max: 2 });
    cleanups.push(() => pool.end());
    const nodes: { uuid: string; policy: string; config: string }[] = [];
    const functions = ['Avg', 'Min', 'Max', 'Sum'];
    for (let i = 0; i < 1000; i++) {
      const kind = i % 4;
      const policy = ['LastValue', 'NRecords', 'TimeWindow', 'Aggregation'][kind] as string;
      const config = kind === 0 ? POLICY_CONFIGS.LastValue : kind === 1 ? POLICY_CONFIGS.NRecords : kind === 2 ? POLICY_CONFIGS.TimeWindow : POLICY_CONFIGS.Aggregation(functions[(i >> 2) % 4] as string);
      nodes.push({ uuid: randomUUID(), policy, config });
    }
    await pool.query(
      `INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, topic_name, create_datetime, is_data_pipe_active, data_pipe_yml)
       SELECT u, 'Output', 'Public', false, 'value/pepeunit', now() AT TIME ZONE 'utc', true, c FROM unnest($1::uuid[], $2::varchar[]) AS t(u, c)`,
      [nodes.map((n) => n.uuid), nodes.map((n) => n.config)],
    );
    const topics = nodes.map((n) => `${DOMAIN}/${n.uuid}/pepeunit`);
    const topicsFile = join(work, 'topics.json');
    writeFileSync(topicsFile, JSON.stringify(topics));

    const ingestVars = (port: number): NodeJS.ProcessEnv => ({
      PU_DP_DOMAIN: DOMAIN,
      PU_DP_SECRET_KEY: SECRET,
      PU_DP_SQLALCHEMY_DATABASE_URL: pgUrl,
      PU_DP_CLICKHOUSE_DATABASE_URL: `${chUrl}/${dbName}`,
      PU_DP_MQTT_HOST: '127.0.0.1',
      PU_DP_MQTT_PORT: String(port),
      PU_DP_BUFFER_FLUSH_INTERVAL: '1',
      PU_DP_BUFFER_MAX_SIZE: '20000',
      PU_DP_NRECORDS_CLEANUP_INTERVAL: '3600',
      PU_DP_LOG_LEVEL: 'warn',
    });
    const resetTables = async () => {
      for (const t of ['n_last_entry', 'window_entry', 'aggregation_entry']) await clickhouse.command({ query: `TRUNCATE TABLE ${t}` });
      await pool.query('DELETE FROM pepeunit_ingest_spill');
      await pool.query('UPDATE units_nodes SET state = NULL');
    };
    const chCount = async (table: string) => Number(((await (await clickhouse.query({ query: `SELECT count() AS n FROM ${table}`, format: 'JSONEachRow' })).json()) as { n: string }[])[0]?.n ?? 0);

    /** A plain subscriber on `port` while `drive` runs; its receive rate over first..last message. */
    const plainSubscriber = async (port: number, filter: string, expected: () => number | null, drive: () => Promise<void>): Promise<Measured> => {
      const sub = spawnChild(['subscriber', String(port), filter]);
      try {
        await sub.waitFor('ready');
        await drive();
        let stableSince = Date.now();
        let lastCount = -1;
        for (;;) {
          await sleep(100);
          const c = Number(sub.last('count')?.count ?? 0);
          const target = expected();
          if (target !== null && c >= target) break;
          if (c !== lastCount) {
            lastCount = c;
            stableSince = Date.now();
          } else if (Date.now() - stableSince > 2000) break;
        }
        const final = sub.last('count') as { count: number; first: number; last: number };
        const secs = (final.last - final.first) / 1000;
        return { count: final.count, seconds: secs, rate: final.count / secs };
      } finally {
        await sub.stop();
      }
    };

    interface IngestRun {
      accepted: Measured;
      landedSeconds: number;
      landedRate: number;
      stats: IngestStats;
      stopped: { lost: number; spilledWindows: number; stats: IngestStats };
      aggregationCountsPersisted: number;
    }

    /** The ingest process on `port` while `drive` runs: accepted rate, then time until every row landed, then SIGTERM. */
    const ingestRun = async (port: number, expected: () => number | null, drive: () => Promise<void>): Promise<IngestRun> => {
      await resetTables();
      const ingest = spawnChild([], ingestVars(port), join(root, 'ingest-go-compatible/src/main.ts'));
      try {
        const ready = await ingest.waitFor('ready');
        const statsUrl = `${String(ready.metricsUrl)}/debug/stats`;
        const stats = async () => (await (await fetch(statsUrl)).json()) as IngestStats;
        let first = 0;
        let last = 0;
        let lastAccepted = 0;
        let stableSince = Date.now();
        const poll = setInterval(() => {
          void stats().then((s) => {
            if (s.received > 0 && first === 0) first = Date.now();
            if (s.acceptedTotal !== lastAccepted) {
              lastAccepted = s.acceptedTotal;
              last = Date.now();
            }
          }, () => {});
        }, 100);
        await drive();
        let seen = -1;
        for (;;) {
          await sleep(100);
          const target = expected();
          const s = await stats();
          if (target !== null && s.received >= target) break;
          if (s.received !== seen) {
            seen = s.received;
            stableSince = Date.now();
          } else if (Date.now() - stableSince > 3000) break;
        }
        clearInterval(poll);
        const s = await stats();
        const acceptedSeconds = Math.max(0.001, (last - first) / 1000);
        // Landed: every NRecords/TimeWindow row in ClickHouse (Aggregation windows stay open: one day).
        const wanted = s.accepted.NRecords + s.accepted.TimeWindow;
        for (;;) {
          const have = (await chCount('n_last_entry')) + (await chCount('window_entry'));
          if (have >= wanted) break;
          await sleep(50);
        }
        const landedSeconds = (Date.now() - first) / 1000;
        ingest.proc.kill('SIGTERM');
        const stopped = (await ingest.waitFor('stopped', 60_000)) as unknown as IngestRun['stopped'];
        const spill = await pool.query<{ payload: { windows: { count: number }[] } }>(`SELECT payload FROM pepeunit_ingest_spill WHERE kind = 'aggregation_snapshot'`);
        const persisted = spill.rows.flatMap((r) => r.payload.windows).reduce((sum, w) => sum + w.count, 0);
        const written = ((await (await clickhouse.query({ query: `SELECT count() AS n FROM aggregation_entry`, format: 'JSONEachRow' })).json()) as { n: string }[])[0]?.n;
        if (Number(written) > 0) process.stdout.write(`  (${written} aggregation rows closed during the run)\n`);
        return {
          accepted: { count: s.acceptedTotal, seconds: acceptedSeconds, rate: s.acceptedTotal / acceptedSeconds },
          landedSeconds,
          landedRate: s.acceptedTotal / landedSeconds,
          stats: s,
          stopped,
          aggregationCountsPersisted: persisted,
        };
      } finally {
        await ingest.stop();
      }
    };

    const checkNoLoss = async (run: IngestRun, label: string) => {
      const acc = run.stopped.stats.accepted;
      const nr = await chCount('n_last_entry');
      const tw = await chCount('window_entry');
      const ok = nr === acc.NRecords && tw === acc.TimeWindow && run.aggregationCountsPersisted === acc.Aggregation && run.stopped.lost === 0;
      process.stdout.write(
        `  ${label}: rows == accepted? ${ok ? 'yes' : 'NO'} (n_last_entry ${nr}/${acc.NRecords}, window_entry ${tw}/${acc.TimeWindow}, aggregation values in persisted windows ${run.aggregationCountsPersisted}/${acc.Aggregation}, lost ${run.stopped.lost})\n`,
      );
      if (!ok) throw new Error(`${label}: rows != accepted`);
    };

    const publish = async (): Promise<number> => {
      const pub = spawnChild(['publisher', String(brokerPort), String(seconds), '50', String(offered), topicsFile]);
      const done = await pub.waitFor('done', seconds * 1000 + 180_000);
      await pub.exited;
      return Number(done.sent);
    };

    // ---- A: end to end through the broker ----
    // Two rounds, alternating the plain subscriber and the ingest, best of each: the machine is
    // shared, and a broker that falls behind once (GC, a busy neighbour) drags a whole round.
    process.stdout.write(`A. end to end through the embedded broker: 1 000 nodes, 50 device connections offering ${offered} msg/s for ${seconds} s (2 rounds)\n`);
    let plainA: Measured | undefined;
    let runA: IngestRun | undefined;
    for (let round = 1; round <= 2; round++) {
      let sentPlain = 0;
      const plain = await plainSubscriber(brokerPort, FILTER, () => (sentPlain ? sentPlain : null), async () => {
        sentPlain = await publish();
      });
      process.stdout.write(`  round ${round} plain mqtt.js subscriber: ${plain.count} messages in ${plain.seconds.toFixed(1)} s = ${Math.round(plain.rate)} msg/s (devices sent ${sentPlain})\n`);
      let sentIngest = 0;
      const run = await ingestRun(brokerPort, () => (sentIngest ? sentIngest : null), async () => {
        sentIngest = await publish();
      });
      process.stdout.write(
        `  round ${round} ingest: ${run.accepted.count} accepted in ${run.accepted.seconds.toFixed(1)} s = ${Math.round(run.accepted.rate)} msg/s; all rows landed after ${run.landedSeconds.toFixed(1)} s = ${Math.round(run.landedRate)} msg/s end to end (devices sent ${sentIngest})\n`,
      );
      await checkNoLoss(run, `A round ${round}`);
      if (!plainA || plain.rate > plainA.rate) plainA = plain;
      if (!runA || run.accepted.rate > runA.accepted.rate) runA = run;
    }
    if (!plainA || !runA) throw new Error('no measurement');

    // ---- B: intake capacity, no broker ----
    process.stdout.write(`B. intake without a broker: a replay server streams ${REPLAY_MESSAGES} pre-encoded PUBLISH packets at socket speed\n`);
    const replay = spawnChild(['replay', topicsFile, String(REPLAY_MESSAGES)]);
    cleanups.push(() => replay.stop());
    const replayPort = Number((await replay.waitFor('ready')).port);
    let plainB: Measured | undefined;
    let runB: IngestRun | undefined;
    for (let round = 1; round <= 2; round++) {
      const plain = await plainSubscriber(replayPort, FILTER, () => REPLAY_MESSAGES, async () => {});
      process.stdout.write(`  round ${round} plain mqtt.js subscriber: ${plain.count} messages in ${plain.seconds.toFixed(2)} s = ${Math.round(plain.rate)} msg/s\n`);
      const run = await ingestRun(replayPort, () => REPLAY_MESSAGES, async () => {});
      process.stdout.write(
        `  round ${round} ingest: ${run.accepted.count} accepted in ${run.accepted.seconds.toFixed(2)} s = ${Math.round(run.accepted.rate)} msg/s; all rows landed after ${run.landedSeconds.toFixed(1)} s = ${Math.round(run.landedRate)} msg/s end to end\n`,
      );
      await checkNoLoss(run, `B round ${round}`);
      if (!plainB || plain.rate > plainB.rate) plainB = plain;
      if (!runB || run.accepted.rate > runB.accepted.rate) runB = run;
    }
    if (!plainB || !runB) throw new Error('no measurement');
    await replay.stop();

    // ---- C and D: in process ----
    await resetTables();
    setFlagsFromString('--expose_gc');
    const gc = runInNewContext('gc') as () => void;
    const config = loadIngestConfig({ ...ingestVars(1), PU_DP_METRICS_PORT: '0' } as NodeJS.ProcessEnv);
    const inproc = await startIngest(config, silentLogger, { connectBroker: false });
    const payloads = Array.from({ length: 50 }, (_, i) => Buffer.from(String(20 + i)));
    const total = 2_000_000;
    const t0 = performance.now();
    for (let i = 0; i < total; i++) inproc.injectMessage(topics[i % 1000] as string, payloads[i % 50] as Buffer);
    const pipelineSeconds = (performance.now() - t0) / 1000;
    const landedOk = await inproc.flush(120_000);
    const landedSeconds = (performance.now() - t0) / 1000;
    const cStats = inproc.stats();
    process.stdout.write(
      `C. pipeline in process (no MQTT): ${total} messages in ${pipelineSeconds.toFixed(2)} s = ${Math.round(total / pipelineSeconds)} msg/s accepted (${cStats.acceptedTotal} accepted); rows landed ${landedOk ? 'all' : 'NOT all'} after ${landedSeconds.toFixed(1)} s = ${Math.round(total / landedSeconds)} msg/s\n`,
    );
    await inproc.close();
    await resetTables();

    // D: heap per open Aggregation window at 10 and 1 000 messages per window: 2 000 more
    // Aggregation nodes (one-day windows), heap after GC before and after the messages.
    const memoryNodes = Array.from({ length: 2000 }, () => randomUUID());
    await pool.query(
      `INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, topic_name, create_datetime, is_data_pipe_active, data_pipe_yml)
       SELECT u, 'Output', 'Public', false, 'value/pepeunit', now() AT TIME ZONE 'utc', true, $2 FROM unnest($1::uuid[]) AS t(u)`,
      [memoryNodes, POLICY_CONFIGS.Aggregation('Avg')],
    );
    const memoryTopics = memoryNodes.map((u) => `${DOMAIN}/${u}/pepeunit`);
    const memoryAt = async (messagesPerWindow: number): Promise<number> => {
      const ingest = await startIngest(config, silentLogger, { connectBroker: false });
      gc();
      gc();
      const before = process.memoryUsage().heapUsed;
      for (let m = 0; m < messagesPerWindow; m++) for (const topic of memoryTopics) ingest.injectMessage(topic, payloads[m % 50] as Buffer);
      gc();
      gc();
      const after = process.memoryUsage().heapUsed;
      const open = ingest.writers.aggregation.openWindowCount;
      const accepted = ingest.stats().accepted.Aggregation;
      if (open !== memoryTopics.length || accepted !== messagesPerWindow * memoryTopics.length) throw new Error(`D: ${open} windows, ${accepted} accepted`);
      await ingest.close();
      await pool.query('DELETE FROM pepeunit_ingest_spill');
      return (after - before) / memoryTopics.length;
    };
    const mem10 = await memoryAt(10);
    const mem1000 = await memoryAt(1000);
    process.stdout.write(
      `D. heap per Aggregation node (open window, node state, intake counter): ${Math.round(mem10)} B at 10 msg/window, ${Math.round(mem1000)} B at 1 000 msg/window (keeping every value, as the reference did, would add 8 B per message: +${8 * 990} B)\n`,
    );

    // ---- results ----
    const command = 'npm run bench -- ingest';
    recordResult({
      benchmark: `ingest end to end: 1 000 nodes (4 policies), 50 devices offering ${offered} msg/s -> embedded broker -> ingest (go-compatible, own process) -> ClickHouse/Postgres; best of 2 rounds`,
      command,
      result: `${Math.round(runA.accepted.rate)} msg/s accepted, ${Math.round(runA.landedRate)} msg/s landed; rows == accepted after SIGTERM`,
      baseline: `plain mqtt.js subscriber ${Math.round(plainA.rate)} msg/s (same broker, same devices)`,
      ratio: (runA.accepted.rate / plainA.rate).toFixed(2),
    });
    recordResult({
      benchmark: `ingest intake without broker: ${REPLAY_MESSAGES / 1e6} M replayed PUBLISH packets, 1 000 nodes (broker excluded, ClickHouse on the same 2 cores); pipeline alone in process ${Math.round(total / pipelineSeconds)} msg/s; best of 2 rounds`,
      command,
      result: `${Math.round(runB.accepted.rate)} msg/s accepted, ${Math.round(runB.landedRate)} msg/s landed; rows == accepted after SIGTERM`,
      baseline: `plain mqtt.js subscriber ${Math.round(plainB.rate)} msg/s on the same stream`,
      ratio: (runB.accepted.rate / plainB.rate).toFixed(2),
    });
    recordResult({
      benchmark: 'ingest memory per Aggregation node with an open window (2 000 nodes, heap after GC)',
      command,
      result: `${Math.round(mem1000)} B/node at 1 000 msg/window`,
      baseline: `${Math.round(mem10)} B/node at 10 msg/window`,
      ratio: (mem1000 / mem10).toFixed(2),
    });
  } finally {
    await cleanup();
  }
}

const role = process.argv[2];
if (role === 'publisher') await publisherRole(process.argv.slice(3));
else if (role === 'subscriber') await subscriberRole(process.argv.slice(3));
else if (role === 'replay') await replayRole(process.argv.slice(3));
else {
  await main();
  process.exit(0);
}
