/**
 * `npm run bench -- alerts [--rate <msg/s>] [--lines <entries per message>] [--seconds <s>] [--units <n>] [--no-record]`:
 * alerting log lines per second through the whole alert path, against the same log stream with
 * no alert rules, in one run.
 *
 * Set-up: the embedded EMQX-compatible broker in its own process; the real backend in this
 * process (`startBackend`: Postgres, ClickHouse in its own process, the system-topic consumer,
 * the alerts module with the Telegram sender, the bot polling the stand-in); the Bot API
 * stand-in; `--units` units (default 100) with alert level Error owned by 10 users with bound
 * chats; the connector `http:pu-backend` and action `http:pu-alerts` exactly as the controller
 * creates them (PU_ALERT_WEBHOOK_CONNECTIONS = 32 connections, 4 × 100 requests in flight). Devices are a child process
 * writing pre-encoded QoS 0 packets: `--rate` log messages/s (default 2 000) of `--lines` entries
 * each (default 10, all `Error`), round-robin over the units' log topics, for `--seconds` (5):
 * the same burst in both rounds, offered faster than either path handles it, so each rate is
 * the system's (lines handled / time from the first publish to the last line handled). A 1 s
 * burst measures mostly the warm-up of freshly started processes (the JIT: about 80 + 96 µs of
 * CPU per alerting line in the first second against 50 + 63 µs later); 5 s measure the
 * sustained rate.
 * Profiling: PU_BENCH_PROFILE=<file> profiles the backend (this process) during round B,
 * PU_BENCH_BROKER_PROF=<dir> writes the broker process's CPU profile there when it exits.
 *
 *   A. no alert rules: the lines/s a subscriber of the log topics receives (the stream the
 *      broker and the backend's log consumer handle anyway);
 *   B. the `alert-log-error-<unit>` rules (FOREACH over the entries, one HTTP request each) plus
 *      the two instance rules: the alerting lines/s stored in the outbox, then the time until the
 *      throttled sender delivered all of them.
 * The burst must be handled within the action's request_ttl (30 s) or EMQX drops the rest
 * (`dropped.expired`): lower --rate/--seconds on a slow or busy machine.
 * Nothing lost: alerts stored = lines sent, the action's `failed`/`dropped` = 0, and the counts in
 * the Telegram messages add up to the lines sent. Target: B >= 10 000 alerting lines/s.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import inspector from 'node:inspector';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadBackendConfig, silentLogger, startService, type RunningService } from '@pepeunit/common';
import { EmqxManagementClient, buildAlertAction, buildAlertConnector, reconcileAlertRules } from '@pepeunit/emqx-rules';
import { startBackend } from '@pepeunit/backend';
import { countAlertsInMessage } from '@pepeunit/backend/alerts/format';
import { countingSubscriber, publishPaced } from './mqtt-devices.ts';
import { benchServices, recordResult, root, spawnBenchChild, type BenchChild } from './support.ts';
import { startTelegramBotApi } from '../src/telegram-bot-api.ts';

const DOMAIN = 'bench.pepeunit.local';
const API_KEY = 'bench';
const API_SECRET = 'bench-secret-alerts';
const WEBHOOK_SECRET = 'bench-webhook-secret-0123456789';
/** A fixed AES key (32 distinct-enough bytes), as the tests use. */
const TEST_ENCRYPT_KEY = Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 37 + 11) % 256)).toString('base64');
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** CPU seconds (user + system) a process has used, from /proc (Linux). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function arg(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? Number(process.argv[index + 1]) : fallback;
}

function line(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// ---- helper processes ---------------------------------------------------------------------

async function publisherRole(args: string[]): Promise<void> {
  const [port, seconds, connections, rate] = args.slice(0, 4).map(Number) as [number, number, number, number];
  const topics = JSON.parse(readFileSync(args[4] as string, 'utf8')) as string[];
  const payload = readFileSync(args[5] as string, 'utf8');
  line({ event: 'start', at: Date.now() });
  const result = await publishPaced(port, topics, { seconds, connections, rate, payload, clientPrefix: `bench-dev-${args[6] ?? 'x'}` });
  line({ event: 'done', ...result });
}

async function subscriberRole(args: string[]): Promise<void> {
  const subscriber = await countingSubscriber(Number(args[0]), `bench-sub-${process.pid}`, args[1] as string);
  line({ event: 'ready' });
  setInterval(() => line({ event: 'count', ...subscriber.count() }), 100);
  process.once('SIGTERM', () => process.exit(0));
}

type Child = BenchChild;
const spawnChild = (args: string[]): Child => spawnBenchChild(import.meta.filename, args);

// ---- main ---------------------------------------------------------------------------------

async function main(): Promise<void> {
  const rate = arg('rate', 2000);
  const perMessage = arg('lines', 10);
  const seconds = arg('seconds', 5);
  const unitCount = arg('units', 100);
  const command = `npm run bench -- alerts --rate ${rate} --lines ${perMessage} --seconds ${seconds} --units ${unitCount}`;
  const work = mkdtempSync(join(tmpdir(), 'pepeunit-bench-alerts-'));
  const services = await benchServices('alerts', { clickhouseProcess: true });
  const tg = await startTelegramBotApi();
  let broker: RunningService | undefined;
  let client: EmqxManagementClient | undefined;
  let backend: Awaited<ReturnType<typeof startBackend>> | undefined;
  try {
    broker = await startService({
      name: 'broker-alerts',
      command: process.execPath,
      args: [...(process.env.PU_BENCH_BROKER_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.PU_BENCH_BROKER_PROF] : []), '--import', 'tsx', join(root, 'emqx-rules/src/embedded/cli.ts'), '--mqtt-port', '0', '--api-port', '0', '--log-level', 'warn'],
      env: { EMQX_API_KEY: API_KEY, EMQX_API_SECRET: API_SECRET },
      logFile: join(work, 'broker.log'),
      readyLine: true,
    });
    const mqttPort = Number(new URL(String(broker.ready.mqttUrl)).port);
    client = new EmqxManagementClient({ baseUrl: String(broker.ready.apiUrl), apiKey: API_KEY, apiSecret: API_SECRET, timeoutMs: 60_000 });
    await client.updateAuthorizationSettings({ no_match: 'allow', deny_action: 'ignore', cache: { enable: true, max_size: 512, ttl: '10m', excludes: [] } });

    const config = loadBackendConfig({
      PU_DOMAIN: DOMAIN,
      PU_SECURE: 'False',
      PU_MQTT_SECURE: 'False',
      PU_SECRET_KEY: 'bench-secret-key-0123456789abcdefghij',
      PU_ENCRYPT_KEY: TEST_ENCRYPT_KEY,
      PU_STATIC_SALT: 'bench-static-salt',
      PU_SQLALCHEMY_DATABASE_URL: services.pgUrl,
      PU_CLICKHOUSE_DATABASE_URL: services.clickhouseUrl,
      PU_MQTT_HOST: '127.0.0.1',
      PU_MQTT_PORT: String(mqttPort),
      PU_BACKEND_HOST: '127.0.0.1',
      PU_BACKEND_PORT: '0',
      PU_FF_GRAFANA_INTEGRATION_ENABLE: 'False',
      PU_FF_TELEGRAM_BOT_ENABLE: 'True',
      PU_TELEGRAM_TOKEN: tg.token,
      PU_TELEGRAM_API_ROOT: tg.apiRoot,
      PU_TELEGRAM_BOT_MODE: 'pooling',
      PU_TELEGRAM_ALERT_INTERVAL: '1',
      PU_ALERT_WEBHOOK_SECRET: WEBHOOK_SECRET,
      PU_MIN_LOG_LEVEL: 'WARNING',
      PU_SAVE_REPO_PATH: join(work, 'repos'),
    });
    backend = await startBackend(config, silentLogger);
    const address = backend.app.server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    const pg = backend.deps.pg;

    // 10 users with chats, units with alert level Error.
    const users = Array.from({ length: 10 }, () => randomUUID());
    for (const [i, uuid] of users.entries()) {
      await pg.query(
        `INSERT INTO users (uuid, role, status, login, hashed_password, cipher_dynamic_salt, create_datetime, telegram_chat_id) VALUES ($1, 'User', 'Verified', $2, 'h', 's', now(), $3)`,
        [uuid, `bench_${i}`, String(900_000 + i)],
      );
    }
    const units = Array.from({ length: unitCount }, () => randomUUID());
    await pg.query(
      `INSERT INTO units (uuid, visibility_level, name, create_datetime, last_update_datetime, is_auto_update_from_repo_unit, creator_uuid)
       SELECT u, 'Private', 'unit_' || i, now(), now(), true, ($2::uuid[])[1 + (i % 10)] FROM unnest($1::uuid[]) WITH ORDINALITY AS t(u, i)`,
      [units, users],
    );
    await pg.query(`INSERT INTO alert_unit_settings (unit_uuid, min_level) SELECT u, 'Error' FROM unnest($1::uuid[]) AS u`, [units]);
    // As the controller creates them (emqx-control.ts), with PU_ALERT_WEBHOOK_CONNECTIONS connections.
    const webhook = { url: `http://127.0.0.1:${port}/pepeunit/api/v1/emqx`, secret: WEBHOOK_SECRET, poolSize: config.alerts.webhookConnections };
    await client.createConnector(buildAlertConnector(webhook));
    await client.createAction(buildAlertAction(webhook));

    const topics = units.map((u) => `${DOMAIN}/output_base_topic/${u}/log/pepeunit`);
    const topicsFile = join(work, 'topics.json');
    writeFileSync(topicsFile, JSON.stringify(topics));
    const payloadFile = join(work, 'payload.json');
    writeFileSync(payloadFile, JSON.stringify(Array.from({ length: perMessage }, (_, i) => ({ level: 'Error', text: `temperature sensor ${i} failed`, create_datetime: '2026-12-07T06:00:00.000' }))));

    // A. the stream without alert rules.
    const subscriber = spawnChild(['subscriber', String(mqttPort), `${DOMAIN}/output_base_topic/+/log/pepeunit`]);
    await subscriber.waitFor('ready');
    const brokerCpuA0 = cpuSeconds(broker.child.pid as number);
    const ownCpuA0 = process.cpuUsage();
    const pubA = spawnChild(['publisher', String(mqttPort), String(seconds), '20', String(rate), topicsFile, payloadFile, 'a']);
    const startA = Number((await pubA.waitFor('start')).at);
    const doneA = await pubA.waitFor('done');
    const sentA = Number(doneA.sent);
    for (let idle = 0; idle < 30; idle++) {
      const before = (subscriber.last('count') as { count: number } | undefined)?.count ?? 0;
      if (before >= sentA) break;
      await sleep(100);
      if (((subscriber.last('count') as { count: number } | undefined)?.count ?? 0) === before) continue;
      idle = 0;
    }
    const countA = subscriber.last('count') as { count: number; first: number; last: number };
    const brokerCpuA = cpuSeconds(broker.child.pid as number) - brokerCpuA0;
    // The backend's log consumer works through the burst after the subscriber got it.
    await backend.systemTopics.flush().catch(() => {});
    const ownCpuAFlushed = process.cpuUsage(ownCpuA0);
    await subscriber.stop();
    await pubA.stop();
    const linesA = countA.count * perMessage;
    const rateA = linesA / Math.max(0.001, (countA.last - startA) / 1000);
    const cpuA = { broker: brokerCpuA / Math.max(1, linesA), backend: (ownCpuAFlushed.user + ownCpuAFlushed.system) / 1e6 / Math.max(1, linesA) };
    console.log(`A: ${sentA} messages sent, ${countA.count} received: ${Math.round(rateA)} lines/s; CPU per line: broker ${(cpuA.broker * 1e6).toFixed(0)} µs, backend ${(cpuA.backend * 1e6).toFixed(0)} µs`);
    if (countA.count !== sentA) console.log(`A: the subscriber missed ${sentA - countA.count} messages`);

    // B. with the alert rules.
    const reconcile = await reconcileAlertRules(client, { domain: DOMAIN, units: units.map((unitUuid) => ({ unitUuid, level: 'Error' as const })) });
    console.log(`B: ${reconcile.created.length} alert rules created`);
    const before = Number((await pg.query('SELECT count(*)::int AS n FROM alert_events')).rows[0].n);
    // PU_BENCH_PROFILE=<file>: a CPU profile of this process (the backend) during round B.
    const profiler = process.env.PU_BENCH_PROFILE ? new inspector.Session() : undefined;
    if (profiler) {
      profiler.connect();
      await new Promise<void>((resolve) => profiler.post('Profiler.enable', () => profiler.post('Profiler.start', () => resolve())));
    }
    const brokerCpu0 = cpuSeconds(broker.child.pid as number);
    const ownCpu0 = process.cpuUsage();
    const pubB = spawnChild(['publisher', String(mqttPort), String(seconds), '20', String(rate), topicsFile, payloadFile, 'b']);
    const startB = Number((await pubB.waitFor('start')).at);
    const doneB = await pubB.waitFor('done');
    const sentLines = Number(doneB.sent) * perMessage;
    let stored = 0;
    let lastChange = Date.now();
    let lastStoredAt = Date.now();
    for (;;) {
      const n = Number((await pg.query('SELECT count(*)::int AS n FROM alert_events')).rows[0].n) - before;
      if (n !== stored) {
        stored = n;
        lastChange = Date.now();
        lastStoredAt = Date.now();
      }
      if (stored >= sentLines || Date.now() - lastChange > 40_000) break;
      await sleep(100);
    }
    await pubB.stop();
    const rateB = stored / ((lastStoredAt - startB) / 1000);
    const brokerCpu = cpuSeconds(broker.child.pid as number) - brokerCpu0;
    if (profiler) {
      const profile = await new Promise<unknown>((resolve) => profiler.post('Profiler.stop', (_err, result) => resolve(result.profile)));
      writeFileSync(process.env.PU_BENCH_PROFILE!, JSON.stringify(profile));
      profiler.disconnect();
    }
    const ownCpuUsage = process.cpuUsage(ownCpu0);
    const ownCpu = (ownCpuUsage.user + ownCpuUsage.system) / 1e6;
    const cpuB = { broker: brokerCpu / Math.max(1, stored), backend: ownCpu / Math.max(1, stored) };
    console.log(`B: CPU per alerting line: broker ${(cpuB.broker * 1e6).toFixed(0)} µs, backend ${(cpuB.backend * 1e6).toFixed(0)} µs`);
    const metrics = (await client.getActionMetrics('http:pu-alerts'))?.metrics ?? {};
    const batches = backend.app.alerts.intake.stats.batches;
    console.log(`B: ${sentLines} lines sent, ${stored} alerts stored in ${batches} outbox writes (${(stored / Math.max(1, batches)).toFixed(0)} per write): ${Math.round(rateB)} alerting lines/s; action metrics ${JSON.stringify(metrics)}`);

    // The throttled sender drains the outbox.
    const drainStart = Date.now();
    for (;;) {
      const pending = Number((await pg.query("SELECT count(*)::int AS n FROM alert_events WHERE state = 'pending'")).rows[0].n);
      if (pending === 0 || Date.now() - drainStart > 120_000) break;
      await sleep(100);
    }
    const drainSeconds = (Date.now() - drainStart) / 1000;
    await sleep(300);
    const delivered = tg.messages.reduce((sum, m) => sum + countAlertsInMessage(m.text), 0);
    const messageCount = tg.messages.length;
    const lost = sentLines - stored;
    console.log(`sender: ${messageCount} Telegram messages carrying ${delivered} alerts; outbox drained ${drainSeconds.toFixed(1)} s after the last alert was stored`);
    const ratio = rateB / rateA;
    const nothingLost = lost === 0 && delivered === sentLines && !metrics.failed && !metrics.dropped;
    const cpuRatio = (cpuA.broker + cpuA.backend) / (cpuB.broker + cpuB.backend);
    const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    console.log(`ratio B/A ${ratio.toFixed(2)} (by CPU per line ${cpuRatio.toFixed(2)}); nothing lost: ${nothingLost}; load average ${load}`);
    if (!process.argv.includes('--no-record')) recordResult({
      benchmark: `alerts: ${unitCount} units with alert level Error, ${rate} log msg/s x ${perMessage} Error entries for ${seconds} s; broker process + backend (webhook, outbox, throttled sender, 10 chats, interval 1 s) + Bot API stand-in`,
      command,
      result: `B ${Math.round(rateB)} alerting lines/s stored, CPU per line broker ${(cpuB.broker * 1e6).toFixed(0)} + backend ${(cpuB.backend * 1e6).toFixed(0)} µs (${stored}/${sentLines}; action failed ${metrics.failed ?? 0}, dropped ${metrics.dropped ?? 0}); ${messageCount} Telegram messages carrying ${delivered} alerts, outbox drained ${drainSeconds.toFixed(1)} s later${nothingLost ? '; nothing lost' : '; LOSS'}`,
      baseline: `A ${Math.round(rateA)} lines/s, same stream without alert rules (subscriber), CPU per line broker ${(cpuA.broker * 1e6).toFixed(0)} + backend ${(cpuA.backend * 1e6).toFixed(0)} µs (log consumer); target B >= 10 000 lines/s; load average ${load}`,
      ratio: `${ratio.toFixed(2)} (CPU ${cpuRatio.toFixed(2)})`,
    });
    if (!nothingLost) process.exitCode = 1;
  } finally {
    await backend?.close().catch(() => {});
    await client?.close().catch(() => {});
    await broker?.stop().catch(() => {});
    await tg.close();
    await services.close();
    rmSync(work, { recursive: true, force: true });
  }
}

const role = process.argv[2];
if (role === 'publisher') {
  await publisherRole(process.argv.slice(3));
  process.exit(0);
} else if (role === 'subscriber') await subscriberRole(process.argv.slice(3));
else {
  await main();
  process.exit(process.exitCode ?? 0);
}
