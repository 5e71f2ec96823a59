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
 * Phase 3: the consumer's own ceiling, the same mix handed to `handleMessage` directly (no broker,
 * no mqtt.js), batched writes to Postgres/ClickHouse included. CPU per message of this process
 * and of the broker (from /proc) shows which side limits the end-to-end figure.
 * Afterwards every log line the consumer accepted must be a row in ClickHouse (no loss), and
 * states must have been written at most once per unit (throttle).
 *
 * Knobs: PU_BENCH_SECONDS (10), PU_BENCH_UNITS (500), PU_BENCH_RATE (total offered msg/s, 30000),
 * PU_BENCH_BROKER_PROFILE (directory for a V8 CPU profile of the broker process).
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import mqtt, { type MqttClient } from 'mqtt';
import { backendToken, loadBackendConfig, silentLogger, systemTopicsFilter, unitToken } from '@pepeunit/common';
import { root } from './support.ts';

const domain = 'bench.pepeunit.local';
const secret = 'bench-secret-key-0123456789abcdefghij';
const seconds = Number(process.env.PU_BENCH_SECONDS ?? 10);
const unitCount = Number(process.env.PU_BENCH_UNITS ?? 500);
const offeredRate = Number(process.env.PU_BENCH_RATE ?? 30_000);

const STATE_PAYLOAD = JSON.stringify({ ifconfig: ['10.0.0.2', '255.255.255.0', '10.0.0.1', '10.0.0.1'], millis: 595925249, mem_free: 12368, mem_alloc: 25648, freq: 80000000, statvfs: [4096, 4096, 763, 716, 716, 0, 0, 0, 0, 255], pu_commit_version: '7f1b2c3d4e5f60718293a4b5c6d7e8f901234567' });
const SINGLE_LOG_PAYLOAD = JSON.stringify({ level: 'Info', text: 'sensor read ok: temperature 21.5 C, humidity 40 %' });
const PAIR_LOG_PAYLOAD = JSON.stringify([{ level: 'Debug', text: 'wifi rssi -61 dBm' }, { level: 'Warning', text: 'heap below 16 KiB' }]);

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
            const client = mqtt.connect({ host: '127.0.0.1', port: Number(port), protocolVersion: 4, clientId: `${unit}-bench`, username: unitToken(unit, secret), password: '', reconnectPeriod: 0, keepalive: 120 });
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
    const unit = (c.options.clientId as string).slice(0, -'-bench'.length);
    return { state: `${domain}/output_base_topic/${unit}/state/pepeunit`, log: `${domain}/output_base_topic/${unit}/log/pepeunit` };
  });
  const state = STATE_PAYLOAD;
  const single = SINGLE_LOG_PAYLOAD;
  const pair = PAIR_LOG_PAYLOAD;
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
  let loadDoneAt = 0;
  void during.then((r) => {
    loadDone = r;
    loadDoneAt = Date.now();
  });
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
    // Done when everything arrived, nothing moved for 2 s, or (a very slow machine) 3 minutes after the load ended.
    if (loadDone && (now - base >= Math.min(expected, loadDone.states + loadDone.logMessages) || Date.now() - quietSince > 2_000 || Date.now() - loadDoneAt > 180_000)) break;
  }
  const load = await during;
  const total = previous - base;
  return { total, rate: total / Math.max(0.001, (last - first) / 1000), load };
}

function cpuMicros(usage: NodeJS.CpuUsage): number {
  return usage.user + usage.system;
}

/** CPU time (user + system) of another process in microseconds, from /proc (Linux); null elsewhere. */
function procCpuMicros(pid: number): number | null {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    // After "pid (comm) ": state is field 3, utime 14 and stime 15 (1-based) → indexes 11 and 12 here.
    return ((Number(fields[11]) + Number(fields[12])) * 1_000_000) / 100;
  } catch {
    return null;
  }
}

function perMessage(before: number | null, after: number | null, messages: number): string {
  return before === null || after === null ? 'n/a' : `${((after - before) / Math.max(1, messages)).toFixed(1)} us`;
}

async function main(): Promise<void> {
  const { benchServices, recordResult } = await import('./support.ts');
  const { startBackend } = await import('@pepeunit/backend');
  process.stdout.write(`system-topics benchmark: ${unitCount} units, ${offeredRate} msg/s offered, ${seconds} s per phase\n`);
  const services = await benchServices('systopics');
  // PU_BENCH_BROKER_PROFILE=<dir> writes a V8 CPU profile of the broker there (to see where its time goes).
  const profile = process.env.PU_BENCH_BROKER_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.PU_BENCH_BROKER_PROFILE}`] : [];
  const brokerProcess = spawn(process.execPath, [...profile, '--import', 'tsx', join(root, 'emqx-rules/src/embedded/cli.ts'), '--mqtt-port', '0', '--api-port', '0', '--log-level', 'error'], {
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
      PU_ENCRYPT_KEY: randomBytes(32).toString('base64'),
      PU_STATIC_SALT: 'bench-salt',
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

    const brokerPid = brokerProcess.pid ?? 0;
    const expected = Math.floor(offeredRate * seconds);

    // Phase 1: plain mqtt.js subscriber in this process.
    process.stdout.write('phase 1: plain mqtt.js subscriber (baseline)\n');
    const plain = await mqtt.connectAsync({ host: '127.0.0.1', port: mqttPort, protocolVersion: 4, username: backendToken(domain, secret), password: '', clientId: `bench-plain-${process.pid}`, reconnectPeriod: 0 });
    let plainReceived = 0;
    plain.on('message', () => {
      plainReceived += 1;
    });
    await plain.subscribeAsync(filter, { qos: 0 });
    let cpu = process.cpuUsage();
    let brokerCpu = procCpuMicros(brokerPid);
    const baseline = await measure(() => plainReceived, expected, runLoad(mqttPort, unitsFile));
    const baselineCpuUs = cpuMicros(process.cpuUsage(cpu)) / Math.max(1, baseline.total);
    const baselineBrokerUs = perMessage(brokerCpu, procCpuMicros(brokerPid), baseline.total);
    await plain.endAsync();
    process.stdout.write(
      `  received ${baseline.total} of ${baseline.load.states + baseline.load.logMessages} sent: ${Math.round(baseline.rate)} msg/s; CPU per message: this process ${baselineCpuUs.toFixed(1)} us, broker ${baselineBrokerUs}\n`,
    );

    // Phase 2: the backend's consumer (same instance, writers and metrics as in production).
    process.stdout.write('phase 2: backend system-topic consumer\n');
    const consumer = backend.systemTopics;
    const client = backend.deps.mqtt;
    const onMessage = (topic: string, payload: Buffer): void => consumer.handleMessage(topic, payload);
    client.on('message', onMessage);
    await client.subscribeAsync(filter, { qos: 0 });
    const stats = consumer.stats;
    cpu = process.cpuUsage();
    brokerCpu = procCpuMicros(brokerPid);
    const ours = await measure(() => stats.state + stats.log, expected, runLoad(mqttPort, unitsFile));
    const flushStart = Date.now();
    await consumer.flush();
    const flushMs = Date.now() - flushStart;
    const oursCpuUs = cpuMicros(process.cpuUsage(cpu)) / Math.max(1, ours.total);
    const oursBrokerUs = perMessage(brokerCpu, procCpuMicros(brokerPid), ours.total);
    await client.unsubscribeAsync(filter);
    client.off('message', onMessage);
    const sentMessages = ours.load.states + ours.load.logMessages;
    const ratio = ours.rate / baseline.rate;
    process.stdout.write(
      `  consumed ${ours.total} of ${sentMessages} sent: ${Math.round(ours.rate)} msg/s (states ${stats.state}: ${stats.statesAccepted} accepted, ${stats.statesThrottled} throttled, ${stats.stateWriter.written} written; logs ${stats.log} messages, ${stats.logRowsAccepted} lines accepted of ${ours.load.logLines} sent)\n` +
        `  CPU per message: this process ${oursCpuUs.toFixed(1)} us (mqtt.js + consumer + writers + Postgres client + embedded ClickHouse), broker ${oursBrokerUs}; final flush ${flushMs} ms\n`,
    );

    // Phase 3: the consumer's own ceiling, without broker and mqtt.js: the same mix handed to
    // handleMessage directly (slices of 2 000 per event-loop turn), until everything is written.
    process.stdout.write('phase 3: consumer alone (direct handleMessage, batched writes included)\n');
    const stateBody = Buffer.from(STATE_PAYLOAD);
    const singleBody = Buffer.from(SINGLE_LOG_PAYLOAD);
    const pairBody = Buffer.from(PAIR_LOG_PAYLOAD);
    const direct = Math.max(expected, 100_000);
    const stateTopics = units.map((u) => `${domain}/output_base_topic/${u}/state/pepeunit`);
    const logTopics = units.map((u) => `${domain}/output_base_topic/${u}/log/pepeunit`);
    cpu = process.cpuUsage();
    const directStart = performance.now();
    for (let sent = 0; sent < direct; ) {
      const end = Math.min(direct, sent + 2_000);
      for (; sent < end; sent++) {
        const i = sent % units.length;
        const n = Math.floor(sent / units.length);
        if ((n & 1) === 0) consumer.handleMessage(stateTopics[i]!, stateBody);
        else consumer.handleMessage(logTopics[i]!, (n & 2) === 0 ? singleBody : pairBody);
      }
      await new Promise((r) => setImmediate(r));
    }
    await consumer.flush();
    const directSeconds = (performance.now() - directStart) / 1000;
    const directRate = direct / directSeconds;
    const directCpuUs = cpuMicros(process.cpuUsage(cpu)) / direct;
    process.stdout.write(`  ${direct} messages in ${directSeconds.toFixed(2)} s: ${Math.round(directRate)} msg/s, ${directCpuUs.toFixed(1)} us CPU/msg\n`);

    // No loss: every accepted log line of phases 2 and 3 is a row.
    const countResult = await backend.deps.clickhouse.query({ query: 'SELECT count() AS n FROM unit_logs', format: 'JSONEachRow' });
    const rows = Number(((await countResult.json()) as Array<{ n: string | number }>)[0]?.n ?? 0);
    const dropped = Object.entries(stats.dropped).filter(([, n]) => n > 0);
    process.stdout.write(
      `ClickHouse unit_logs rows: ${rows}, accepted log lines: ${stats.logRowsAccepted}; insert failures ${stats.logWriter.insertFailures}; drops ${dropped.length ? JSON.stringify(Object.fromEntries(dropped)) : 'none'}; state writes ${stats.stateWriter.written} for ${unitCount} units\n` +
        `result: end to end ${Math.round(ours.rate)} msg/s consumed vs ${Math.round(baseline.rate)} msg/s plain mqtt.js subscriber (ratio ${ratio.toFixed(2)}); consumer alone ${Math.round(directRate)} msg/s (target >= 20000 msg/s)\n`,
    );
    if (rows !== stats.logRowsAccepted) throw new Error(`log lines lost: ${stats.logRowsAccepted} accepted but ${rows} rows in ClickHouse`);
    if (stats.stateWriter.written > unitCount) throw new Error(`states written ${stats.stateWriter.written} times for ${unitCount} units within one interval`);
    recordResult({
      benchmark: `system-topics (state+log consumer, ${unitCount} units, embedded broker + controller)`,
      command: 'npm run bench -- system-topics',
      result:
        `end to end ${Math.round(ours.rate)} msg/s (${ours.total}/${sentMessages} msgs, offered ${offeredRate}/s; backend ${oursCpuUs.toFixed(1)} us CPU/msg, broker ${oursBrokerUs}); ` +
        `consumer alone ${Math.round(directRate)} msg/s (${directCpuUs.toFixed(1)} us CPU/msg); ${rows} log rows = accepted; ${stats.stateWriter.written} state writes`,
      baseline: `plain mqtt.js subscriber: ${Math.round(baseline.rate)} msg/s (${baseline.total}/${baseline.load.states + baseline.load.logMessages}; ${baselineCpuUs.toFixed(1)} us CPU/msg, broker ${baselineBrokerUs})`,
      ratio: ratio.toFixed(2),
    });
    if (ours.rate < 20_000) process.stdout.write('NOTE: end to end below 20,000 msg/s on this machine; compare the CPU per message of the broker and of this process to see which side limits.\n');
  } finally {
    for (const step of cleanup) await step().catch((err: unknown) => process.stderr.write(`cleanup: ${String(err)}\n`));
    brokerProcess.kill('SIGTERM');
    await new Promise((r) => (brokerProcess.exitCode !== null ? r(null) : brokerProcess.once('exit', r)));
    await services.close();
  }
}
