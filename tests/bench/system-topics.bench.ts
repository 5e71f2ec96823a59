/**
 * `npm run bench -- system-topics`: state + log messages per second that ONE backend process
 * consumes from the system topics, next to what a plain mqtt.js subscriber in the same process
 * receives under the same load (baseline, same run). Target: >= 20,000 msg/s.
 *
 * Layout (as deployed on one machine): the embedded EMQX-compatible broker in its own process,
 * with the controller applied (real HTTP authn/authz callbacks into the backend; the broker caches
 * each client's decisions, so only the first publish per topic is a callback); 500 simulated units
 * in a separate load process, each publishing `state` and `log` (half single objects, half arrays
 * of two lines) at a fixed total rate for `PU_BENCH_SECONDS` (default 10); the backend with
 * PostgreSQL and the embedded ClickHouse in this process.
 *
 * Phase 1 (baseline): a plain mqtt.js client subscribed to `<domain>/+/+/+/pepeunit` counts
 * messages and does nothing else. Phase 2: the backend's consumer is subscribed instead.
 * Afterwards every log line the consumer accepted must be a row in ClickHouse (no loss), and
 * states must have been written at most once per unit (throttle).
 *
 * Knobs: PU_BENCH_SECONDS (10), PU_BENCH_UNITS (500), PU_BENCH_RATE (total offered msg/s, 30000).
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import mqtt, { type MqttClient } from 'mqtt';
import { backendToken, loadBackendConfig, silentLogger, systemTopicsFilter, unitToken } from '@pepeunit/common';
import { root } from './support.ts';

const domain = 'bench.pepeunit.local';
const secret = 'bench-secret-key';
const seconds = Number(process.env.PU_BENCH_SECONDS ?? 10);
const unitCount = Number(process.env.PU_BENCH_UNITS ?? 500);
const offeredRate = Number(process.env.PU_BENCH_RATE ?? 30_000);

interface LoadReport {
  connected: number;
  connectErrors: number;
  states: number;
  logMessages: number;
  logLines: number;
  seconds: number;
}

if (process.argv[2] === '--load') await loadChild();
else await main();

// ---- the load process ----------------------------------------------------------------------

async function loadChild(): Promise<void> {
  const [, , , port, unitsFile, rateText, secondsText] = process.argv;
  const units = JSON.parse(readFileSync(unitsFile as string, 'utf8')) as string[];
  const rate = Number(rateText);
  const duration = Number(secondsText) * 1000;
  const clients: MqttClient[] = [];
  let connectErrors = 0;
  // Connect in slices so the authn callbacks are not a thundering herd.
  for (let i = 0; i < units.length; i += 50) {
    await Promise.all(
      units.slice(i, i + 50).map(
        (unit) =>
          new Promise<void>((resolve) => {
            const client = mqtt.connect({ host: '127.0.0.1', port: Number(port), protocolVersion: 4, clientId: `bench-${unit}`, username: unitToken(unit, secret), password: '', reconnectPeriod: 0, keepalive: 120 });
            client.once('connect', () => {
              clients.push(client);
              resolve();
            });
            client.once('error', () => {
              connectErrors += 1;
              client.end(true);
              resolve();
            });
          }),
      ),
    );
  }
  const topics = clients.map((c) => {
    const unit = (c.options.clientId as string).slice('bench-'.length);
    return { state: `${domain}/output_base_topic/${unit}/state/pepeunit`, log: `${domain}/output_base_topic/${unit}/log/pepeunit` };
  });
  const state = JSON.stringify({ ifconfig: ['10.0.0.2', '255.255.255.0', '10.0.0.1', '10.0.0.1'], millis: 595925249, mem_free: 12368, mem_alloc: 25648, freq: 80000000, statvfs: [4096, 4096, 763, 716, 716, 0, 0, 0, 0, 255], pu_commit_version: '7f1b2c3d4e5f60718293a4b5c6d7e8f901234567' });
  const single = JSON.stringify({ level: 'Info', text: 'sensor read ok: temperature 21.5 C, humidity 40 %' });
  const pair = JSON.stringify([{ level: 'Debug', text: 'wifi rssi -61 dBm' }, { level: 'Warning', text: 'heap below 16 KiB' }]);
  const report: LoadReport = { connected: clients.length, connectErrors, states: 0, logMessages: 0, logLines: 0, seconds: 0 };
  process.stdout.write(`${JSON.stringify({ event: 'connected', connected: clients.length, connectErrors })}\n`);
  const start = Date.now();
  let sent = 0;
  let k = 0;
  // Per unit: state, single log, state, log pair, ... (half states, half logs for every unit).
  const turn = new Uint32Array(clients.length);
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const elapsed = Date.now() - start;
      const due = Math.min(Math.floor((rate * Math.min(elapsed, duration)) / 1000), Math.floor((rate * duration) / 1000));
      for (; sent < due; sent++) {
        const i = k++ % clients.length;
        const client = clients[i] as MqttClient;
        const t = topics[i]!;
        const n = turn[i]!;
        turn[i] = n + 1;
        if ((n & 1) === 0) {
          client.publish(t.state, state, { qos: 0 });
          report.states += 1;
        } else if ((n & 2) === 0) {
          client.publish(t.log, single, { qos: 0 });
          report.logMessages += 1;
          report.logLines += 1;
        } else {
          client.publish(t.log, pair, { qos: 0 });
          report.logMessages += 1;
          report.logLines += 2;
        }
      }
      if (elapsed >= duration) {
        clearInterval(tick);
        resolve();
      }
    }, 5);
  });
  report.seconds = (Date.now() - start) / 1000;
  await Promise.all(clients.map((c) => new Promise<void>((r) => c.end(false, {}, () => r()))));
  process.stdout.write(`${JSON.stringify({ event: 'done', ...report })}\n`);
  process.exit(0);
}

// ---- the benchmark ------------------------------------------------------------------------

async function runLoad(mqttPort: number, unitsFile: string): Promise<LoadReport> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'tests/bench/system-topics.bench.ts'), '--load', String(mqttPort), unitsFile, String(offeredRate), String(seconds)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    cwd: root,
  });
  let report: LoadReport | undefined;
  for await (const line of createInterface({ input: child.stdout })) {
    const event = JSON.parse(line) as { event: string } & LoadReport;
    if (event.event === 'connected') process.stdout.write(`  ${event.connected} units connected (${event.connectErrors} refused), publishing ${offeredRate} msg/s for ${seconds} s ...\n`);
    if (event.event === 'done') report = event;
  }
  const code = await new Promise<number | null>((r) => (child.exitCode !== null ? r(child.exitCode) : child.once('exit', r)));
  if (code !== 0 || !report) throw new Error(`load process exited with ${String(code)}`);
  return report;
}

/** Samples a counter until it stops moving; returns first/last change times and the total. */
async function measure(count: () => number, expected: number, during: Promise<LoadReport>): Promise<{ total: number; rate: number; load: LoadReport }> {
  let first = 0;
  let last = 0;
  let previous = count();
  const base = previous;
  let loadDone: LoadReport | undefined;
  void during.then((r) => (loadDone = r));
  let quietSince = Date.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, 20));
    const now = count();
    if (now !== previous) {
      if (first === 0) first = Date.now();
      last = Date.now();
      previous = now;
      quietSince = Date.now();
    }
    if (loadDone && (now - base >= Math.min(expected, loadDone.states + loadDone.logMessages) || Date.now() - quietSince > 2_000)) break;
  }
  const load = await during;
  const total = previous - base;
  return { total, rate: total / Math.max(0.001, (last - first) / 1000), load };
}

function cpuMicros(usage: NodeJS.CpuUsage): number {
  return usage.user + usage.system;
}

async function main(): Promise<void> {
  const { benchServices, recordResult } = await import('./support.ts');
  const { startBackend } = await import('@pepeunit/backend');
  process.stdout.write(`system-topics benchmark: ${unitCount} units, ${offeredRate} msg/s offered, ${seconds} s per phase\n`);
  const services = await benchServices('systopics');
  const brokerProcess = spawn(process.execPath, ['--import', 'tsx', join(root, 'emqx-rules/src/embedded/cli.ts'), '--mqtt-port', '0', '--api-port', '0', '--log-level', 'error'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, EMQX_API_KEY: 'bench', EMQX_API_SECRET: 'bench-secret' },
  });
  const cleanup: Array<() => Promise<unknown>> = [];
  try {
    const ready = await new Promise<{ mqttUrl: string; apiUrl: string }>((resolve, reject) => {
      createInterface({ input: brokerProcess.stdout }).once('line', (line) => resolve(JSON.parse(line) as { mqttUrl: string; apiUrl: string }));
      brokerProcess.once('exit', (code) => reject(new Error(`broker exited with ${String(code)}`)));
    });
    const mqttPort = Number(new URL(ready.mqttUrl).port);
    const config = loadBackendConfig({
      PU_DOMAIN: domain,
      PU_SECURE: 'False',
      PU_MQTT_SECURE: 'False',
      PU_SECRET_KEY: secret,
      PU_ENCRYPT_KEY: Buffer.alloc(32, 3).toString('base64'),
      PU_STATIC_SALT: 'salt',
      PU_SQLALCHEMY_DATABASE_URL: services.pgUrl,
      PU_CLICKHOUSE_DATABASE_URL: services.clickhouseUrl,
      PU_MQTT_HOST: '127.0.0.1',
      PU_MQTT_PORT: String(mqttPort),
      PU_EMQX_API_URL: ready.apiUrl,
      PU_EMQX_API_KEY: 'bench',
      PU_EMQX_API_SECRET: 'bench-secret',
      PU_MQTT_CLIENT_MAX_MESSAGES_RATE: 'infinity',
      PU_MQTT_CLIENT_MAX_BYTES_RATE: 'infinity',
      PU_MQTT_MAX_CLIENT_CONNECTION_RATE: 'infinity',
      PU_BACKEND_HOST: '127.0.0.1',
      PU_BACKEND_PORT: '0',
      PU_MIN_LOG_LEVEL: 'ERROR',
      PU_FF_TELEGRAM_BOT_ENABLE: 'False',
      PU_FF_GRAFANA_INTEGRATION_ENABLE: 'False',
    });
    // The consumer is created inert and subscribed in phase 2 only, so phase 1 measures the baseline alone.
    const backend = await startBackend(config, silentLogger, { systemTopics: { subscribe: false } });
    cleanup.unshift(() => backend.close());
    const units = Array.from({ length: unitCount }, () => randomUUID());
    await backend.deps.pg.query(
      `INSERT INTO units (uuid, visibility_level, name, create_datetime, last_update_datetime, is_auto_update_from_repo_unit)
       SELECT u, 'Private', 'bench_' || u::text, now(), now(), true FROM unnest($1::uuid[]) AS u`,
      [units],
    );
    const filter = systemTopicsFilter(domain);
    const unitsDir = mkdtempSync(join(tmpdir(), 'pepeunit-bench-units-'));
    cleanup.push(async () => rmSync(unitsDir, { recursive: true, force: true }));
    const unitsFile = join(unitsDir, 'units.json');
    writeFileSync(unitsFile, JSON.stringify(units));

    // Phase 1: plain mqtt.js subscriber in this process.
    process.stdout.write('phase 1: plain mqtt.js subscriber (baseline)\n');
    const plain = await mqtt.connectAsync({ host: '127.0.0.1', port: mqttPort, protocolVersion: 4, username: backendToken(domain, secret), password: '', clientId: `bench-plain-${process.pid}`, reconnectPeriod: 0 });
    let plainReceived = 0;
    plain.on('message', () => {
      plainReceived += 1;
    });
    await plain.subscribeAsync(filter, { qos: 0 });
    const expected = Math.floor(offeredRate * seconds);
    let cpu = process.cpuUsage();
    const baseline = await measure(() => plainReceived, expected, runLoad(mqttPort, unitsFile));
    const baselineCpuUs = cpuMicros(process.cpuUsage(cpu)) / Math.max(1, baseline.total);
    await plain.endAsync();
    process.stdout.write(`  received ${baseline.total} of ${baseline.load.states + baseline.load.logMessages} sent: ${Math.round(baseline.rate)} msg/s; this process ${baselineCpuUs.toFixed(1)} us CPU/msg\n`);

    // Phase 2: the backend's consumer (same instance, writers and metrics as in production).
    process.stdout.write('phase 2: backend system-topic consumer\n');
    const consumer = backend.systemTopics;
    const client = backend.deps.mqtt;
    client.on('message', (topic, payload) => consumer.handleMessage(topic, payload));
    await client.subscribeAsync(filter, { qos: 0 });
    const stats = consumer.stats;
    cpu = process.cpuUsage();
    const ours = await measure(() => stats.state + stats.log, expected, runLoad(mqttPort, unitsFile));
    const flushStart = Date.now();
    await consumer.flush();
    const flushMs = Date.now() - flushStart;
    const oursCpuUs = cpuMicros(process.cpuUsage(cpu)) / Math.max(1, ours.total);
    const countResult = await backend.deps.clickhouse.query({ query: 'SELECT count() AS n FROM unit_logs', format: 'JSONEachRow' });
    const rows = Number(((await countResult.json()) as Array<{ n: string | number }>)[0]?.n ?? 0);
    const sentMessages = ours.load.states + ours.load.logMessages;
    const ratio = ours.rate / baseline.rate;
    const dropped = Object.entries(stats.dropped).filter(([, n]) => n > 0);
    process.stdout.write(
      `  consumed ${ours.total} of ${sentMessages} sent: ${Math.round(ours.rate)} msg/s (states ${stats.state}: ${stats.statesAccepted} accepted, ${stats.statesThrottled} throttled, ${stats.stateWriter.written} written; logs ${stats.log} messages, ${stats.logRowsAccepted} lines accepted of ${ours.load.logLines} sent)\n` +
        `  this process ${oursCpuUs.toFixed(1)} us CPU/msg (backend incl. mqtt.js, writers, Postgres client, embedded ClickHouse)\n` +
        `  ClickHouse unit_logs rows: ${rows} (accepted ${stats.logRowsAccepted}); final flush ${flushMs} ms; insert failures ${stats.logWriter.insertFailures}; drops ${dropped.length ? JSON.stringify(Object.fromEntries(dropped)) : 'none'}\n` +
        `result: ${Math.round(ours.rate)} msg/s consumed vs ${Math.round(baseline.rate)} msg/s plain subscriber, ratio ${ratio.toFixed(2)} (target >= 20000 msg/s)\n`,
    );
    if (rows !== stats.logRowsAccepted) throw new Error(`log lines lost: ${stats.logRowsAccepted} accepted but ${rows} rows in ClickHouse`);
    if (stats.stateWriter.written > unitCount) throw new Error(`states written ${stats.stateWriter.written} times for ${unitCount} units within one interval`);
    recordResult({
      benchmark: `system-topics (state+log consumer, ${unitCount} units, embedded broker + controller)`,
      command: 'npm run bench -- system-topics',
      result: `${Math.round(ours.rate)} msg/s consumed (${ours.total}/${sentMessages} msgs, ${rows} log rows = accepted, ${stats.stateWriter.written} state writes, ${oursCpuUs.toFixed(1)} us CPU/msg); offered ${offeredRate} msg/s`,
      baseline: `plain mqtt.js subscriber: ${Math.round(baseline.rate)} msg/s (${baseline.total}/${baseline.load.states + baseline.load.logMessages}, ${baselineCpuUs.toFixed(1)} us CPU/msg)`,
      ratio: ratio.toFixed(2),
    });
    if (ours.rate < 20_000) process.stdout.write(`WARNING: below the 20,000 msg/s target on this machine\n`);
  } finally {
    for (const step of cleanup) await step().catch((err: unknown) => process.stderr.write(`cleanup: ${String(err)}\n`));
    brokerProcess.kill('SIGTERM');
    await new Promise((r) => (brokerProcess.exitCode !== null ? r(null) : brokerProcess.once('exit', r)));
    await services.close();
  }
}
