/**
 * `npm run bench -- load-broker`: the EMQX side of load counting (issue 13) on the embedded
 * broker. 10 000 units, each with one unit node: 20 000 topics (a system topic per unit, a node
 * topic per node), one stable counting rule per topic (`cnt-unit-*`, `cnt-node-*`).
 *
 *   A. publish throughput of a broker without rules (the baseline);
 *   B. the same broker configuration with the 20 000 counting rules, created through the
 *      management API by the stable reconciler (its time is reported); target B >= 0.8 A;
 *   C. B plus the alert rules (the two instance rules, which run on every authorization check /
 *      disconnect, and one log rule per unit: 30 002 rules), for information.
 *   Each broker is its own process; 50 device connections (a child process, pre-encoded QoS 0
 *   PUBLISH packets, PU_BENCH_RATE msg/s offered, default 300 000: above what the broker
 *   routes, so the measured rate is the broker's) publish round-robin over the 20 000 topics
 *   for PU_BENCH_SECONDS (default 6); a subscriber on `<domain>/#` (a child process that only
 *   counts packets) receives everything. The rate is the subscriber's, first to last message.
 *   Three rounds (PU_BENCH_ROUNDS), A, B, C then C, B, A; the ratio is the median of the
 *   per-round ratios (a busy neighbour on the shared machine moves whole rounds), reported with
 *   the ratio of the best rates and of the broker's CPU time per message (median), which hardly
 *   depends on what else runs on the machine.
 *   The authorization cache of the brokers holds 512 decisions per client: each simulated
 *   connection stands for 200 units and publishes on 400 topics, where a real device uses a few.
 *   After the rounds, the sum of `emqx_rule_matched` over B's rules must equal what B received.
 *   D. the counter cycle of the backend's sampler for 10 000 units: fetch
 *      `/api/v5/prometheus/data_integration` (JSON and text), parse, deltas, per-unit loads;
 *      target well under 1 s.
 *
 * Appends rows to docs/BENCHMARKS.md. The file is also its own helper process
 * (`load-broker.bench.ts publisher|subscriber ...`).
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startService, type RunningService } from '@pepeunit/common';
import {
  COUNT_RULE_PREFIX,
  EmqxManagementClient,
  buildAlertAction,
  buildAlertConnector,
  counterDeltas,
  counterReading,
  parseDataIntegration,
  reconcileAlertRules,
  reconcileCountingRules,
  unitLoads,
} from '@pepeunit/emqx-rules';
import type { CountedUnit } from '@pepeunit/emqx-rules';
import { countingSubscriber, publishPaced } from './mqtt-devices.ts';
import { recordResult, root, spawnBenchChild, type BenchChild } from './support.ts';

const DOMAIN = 'bench.pepeunit.local';
const UNITS = 10_000;
const API_KEY = 'bench';
const API_SECRET = 'bench-secret-load-broker';
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function line(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// ---- helper processes ---------------------------------------------------------------------

async function publisherRole(args: string[]): Promise<void> {
  const [port, seconds, connections, rate] = args.slice(0, 4).map(Number) as [number, number, number, number];
  const topics = JSON.parse(readFileSync(args[4] as string, 'utf8')) as string[];
  const result = await publishPaced(port, topics, { seconds, connections, rate, clientPrefix: `bench-dev-${args[5] ?? 'x'}` });
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

// ---- the benchmark ------------------------------------------------------------------------

interface Broker {
  label: string;
  service: RunningService;
  port: number;
  client: EmqxManagementClient;
  received: number;
}

async function startBroker(label: string, work: string): Promise<Broker> {
  const service = await startService({
    name: `broker-${label}`,
    command: process.execPath,
    args: ['--import', 'tsx', join(root, 'emqx-rules/src/embedded/cli.ts'), '--mqtt-port', '0', '--api-port', '0', '--log-level', 'warn'],
    env: { EMQX_API_KEY: API_KEY, EMQX_API_SECRET: API_SECRET },
    logFile: join(work, `broker-${label}.log`),
    readyLine: true,
  });
  const client = new EmqxManagementClient({ baseUrl: String(service.ready.apiUrl), apiKey: API_KEY, apiSecret: API_SECRET, timeoutMs: 60_000 });
  await client.updateAuthorizationSettings({ no_match: 'allow', deny_action: 'ignore', cache: { enable: true, max_size: 512, ttl: '10m', excludes: [] } });
  return { label, service, port: Number(new URL(String(service.ready.mqttUrl)).port), client, received: 0 };
}

/** CPU seconds (user + system) a process has used, from /proc (Linux). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100 Hz)
}

/**
 * One measured run: the subscriber's receive rate while the devices publish, and the broker's
 * CPU time per message (far less sensitive to a busy neighbour on the machine than the rate).
 */
async function measure(broker: Broker, topicsFile: string, seconds: number, rate: number, round: number): Promise<{ rate: number; count: number; sent: number; cpuUsPerMessage: number }> {
  const subscriber = spawnChild(['subscriber', String(broker.port), `${DOMAIN}/#`]);
  const pid = broker.service.child.pid as number;
  try {
    await subscriber.waitFor('ready');
    const cpuBefore = cpuSeconds(pid);
    const publisher = spawnChild(['publisher', String(broker.port), String(seconds), '50', String(rate), topicsFile, `${broker.label}${round}`]);
    const done = await publisher.waitFor('done', seconds * 1000 + 300_000);
    await publisher.exited;
    const sent = Number(done.sent);
    // Wait until everything sent arrived, or nothing arrived for 2 s.
    let lastCount = -1;
    let stableSince = Date.now();
    for (;;) {
      await sleep(100);
      const count = Number(subscriber.last('count')?.count ?? 0);
      if (count >= sent) break;
      if (count !== lastCount) {
        lastCount = count;
        stableSince = Date.now();
      } else if (Date.now() - stableSince > 2000) break;
    }
    await sleep(150);
    const cpu = cpuSeconds(pid) - cpuBefore;
    const final = subscriber.last('count') as { count: number; first: number; last: number };
    broker.received += sent;
    return { rate: final.count / ((final.last - final.first) / 1000), count: final.count, sent, cpuUsPerMessage: (cpu * 1e6) / sent };
  } finally {
    await subscriber.stop();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

async function main(): Promise<void> {
  const seconds = Number(process.env.PU_BENCH_SECONDS ?? 6);
  const offered = Number(process.env.PU_BENCH_RATE ?? 300_000);
  const work = mkdtempSync(join(tmpdir(), 'pepeunit-bench-load-broker-'));
  const brokers: Broker[] = [];
  try {
    const units: CountedUnit[] = Array.from({ length: UNITS }, () => ({ unitUuid: randomUUID(), nodeUuids: [randomUUID()] }));
    const topics: string[] = [];
    for (const unit of units) topics.push(`${DOMAIN}/output_base_topic/${unit.unitUuid}/state/pepeunit`, `${DOMAIN}/${unit.nodeUuids[0]}/pepeunit`);
    const topicsFile = join(work, 'topics.json');
    writeFileSync(topicsFile, JSON.stringify(topics));

    const plain = await startBroker('A', work);
    const counted = await startBroker('B', work);
    const alerted = await startBroker('C', work);
    brokers.push(plain, counted, alerted);

    const reconcileStarted = Date.now();
    const created = await reconcileCountingRules(counted.client, { domain: DOMAIN, units }, { concurrency: 16 });
    const reconcileSeconds = (Date.now() - reconcileStarted) / 1000;
    process.stdout.write(`bulk reconcile: ${created.created.length} counting rules created through the API in ${reconcileSeconds.toFixed(1)} s (${Math.round(created.created.length / reconcileSeconds)} rules/s)\n`);
    const again = await reconcileCountingRules(counted.client, { domain: DOMAIN, units });
    process.stdout.write(`second reconcile: ${again.present.length} present, ${again.created.length + again.deleted.length + again.recreated.length} writes, ${(again.durationMs / 1000).toFixed(1)} s\n`);
    await reconcileCountingRules(alerted.client, { domain: DOMAIN, units }, { concurrency: 16 });
    const webhook = { url: 'http://127.0.0.1:9/pepeunit/api/v1/emqx', secret: 'bench-secret-0123456789' };
    await alerted.client.createConnector(buildAlertConnector(webhook));
    await alerted.client.createAction(buildAlertAction(webhook));
    await reconcileAlertRules(alerted.client, { domain: DOMAIN, units: units.map((unit) => ({ unitUuid: unit.unitUuid, level: 'Error' as const })) }, { concurrency: 16 });

    const rounds = Number(process.env.PU_BENCH_ROUNDS ?? 3);
    process.stdout.write(`publish throughput: 50 connections offering ${offered} msg/s for ${seconds} s over ${topics.length} topics, ${rounds} rounds\n`);
    const best = new Map<string, number>();
    const cpu = new Map<string, number[]>();
    const perRound = new Map<string, number[]>();
    for (let round = 1; round <= rounds; round += 1) {
      // Alternate the order so no configuration always runs first (or last) in a round.
      const order = round % 2 === 1 ? brokers : [...brokers].reverse();
      const rates = new Map<string, number>();
      for (const broker of order) {
        const run = await measure(broker, topicsFile, seconds, offered, round);
        process.stdout.write(`  round ${round} ${broker.label}: ${run.count}/${run.sent} messages at ${Math.round(run.rate)} msg/s, broker ${run.cpuUsPerMessage.toFixed(2)} us CPU/msg\n`);
        best.set(broker.label, Math.max(best.get(broker.label) ?? 0, run.rate));
        cpu.set(broker.label, [...(cpu.get(broker.label) ?? []), run.cpuUsPerMessage]);
        rates.set(broker.label, run.rate);
      }
      for (const label of ['B', 'C']) perRound.set(label, [...(perRound.get(label) ?? []), (rates.get(label) as number) / (rates.get('A') as number)]);
    }
    const rateA = best.get('A') as number;
    const rateB = best.get('B') as number;
    const rateC = best.get('C') as number;
    const cpuA = median(cpu.get('A') ?? []);
    const cpuB = median(cpu.get('B') ?? []);
    const cpuC = median(cpu.get('C') ?? []);
    const roundRatioB = median(perRound.get('B') ?? []);
    const roundRatioC = median(perRound.get('C') ?? []);
    process.stdout.write(
      `B/A: best rates ${(rateB / rateA).toFixed(2)}, median of per-round ratios ${roundRatioB.toFixed(2)}, CPU per message ${(cpuA / cpuB).toFixed(2)}; C/A: ${(rateC / rateA).toFixed(2)}, ${roundRatioC.toFixed(2)}, ${(cpuA / cpuC).toFixed(2)}\n`,
    );

    // Every message of B matched exactly one counting rule.
    const snapshot = parseDataIntegration(await counted.client.getDataIntegrationMetrics());
    const matched = snapshot.rules.filter((series) => series.id.startsWith(COUNT_RULE_PREFIX)).reduce((sum, series) => sum + (series.values.emqx_rule_matched ?? 0), 0);
    process.stdout.write(`B counters: sum of emqx_rule_matched = ${matched}, messages sent to B = ${counted.received} (${matched === counted.received ? 'equal' : 'DIFFERENT'})\n`);
    if (matched !== counted.received) throw new Error('the counting rules did not count every message exactly once');

    // D: the sampler's cycle for 10 000 units.
    const cycles: Array<{ fetchJson: number; processJson: number; fetchText: number; processText: number; bytesJson: number; bytesText: number }> = [];
    let previous = counterReading(snapshot, Date.now(), { prefix: COUNT_RULE_PREFIX });
    for (let cycle = 0; cycle < 5; cycle += 1) {
      let started = performance.now();
      const json = await counted.client.request<unknown>('GET', '/prometheus/data_integration', { query: { mode: 'all_nodes_aggregated' } });
      const fetchJson = performance.now() - started;
      started = performance.now();
      const current = counterReading(parseDataIntegration(json.body, { metrics: ['emqx_rule_matched'] }), Date.now(), { prefix: COUNT_RULE_PREFIX });
      const loads = unitLoads(counterDeltas(previous, current), units);
      const processJson = performance.now() - started;
      if (loads.size !== UNITS) throw new Error('unit loads missing');
      previous = current;
      started = performance.now();
      const text = await counted.client.request<string>('GET', '/prometheus/data_integration', { accept: 'text/plain' });
      const fetchText = performance.now() - started;
      started = performance.now();
      const textReading = counterReading(parseDataIntegration(text.body, { metrics: ['emqx_rule_matched'] }), Date.now(), { prefix: COUNT_RULE_PREFIX });
      unitLoads(counterDeltas(previous, textReading), units);
      const processText = performance.now() - started;
      cycles.push({ fetchJson, processJson, fetchText, processText, bytesJson: JSON.stringify(json.body).length, bytesText: text.body.length });
    }
    const pick = (key: keyof (typeof cycles)[number]) => median(cycles.map((cycle) => cycle[key]));
    process.stdout.write(
      `counter cycle, 10 000 units / 20 000 rules (median of 5): JSON ${(pick('bytesJson') / 1e6).toFixed(1)} MB fetched in ${pick('fetchJson').toFixed(0)} ms, parsed + deltas + unit loads in ${pick('processJson').toFixed(0)} ms; text ${(pick('bytesText') / 1e6).toFixed(1)} MB fetched in ${pick('fetchText').toFixed(0)} ms, processed in ${pick('processText').toFixed(0)} ms\n`,
    );

    const command = 'npm run bench -- load-broker';
    recordResult({
      benchmark: `load-broker: embedded broker publish throughput with 20 000 counting rules (10 000 units x (cnt-unit + cnt-node)), 50 devices offering ${offered} msg/s over 20 000 topics, best of ${rounds} rounds`,
      command,
      result: `best ${Math.round(rateB)} msg/s, broker ${cpuB.toFixed(2)} us CPU/msg (median); every message counted once (sum of matched = ${matched}); ratios: best rates ${(rateB / rateA).toFixed(2)}, CPU per message ${(cpuA / cpuB).toFixed(2)}`,
      baseline: `same broker without rules: best ${Math.round(rateA)} msg/s, ${cpuA.toFixed(2)} us CPU/msg`,
      ratio: `${roundRatioB.toFixed(2)} (median of per-round ratios)`,
    });
    recordResult({
      benchmark: 'load-broker: as above plus the alert rules (alert-authz-deny and alert-disconnect run on every check/disconnect, one alert-log rule per unit: 30 002 rules)',
      command,
      result: `best ${Math.round(rateC)} msg/s, broker ${cpuC.toFixed(2)} us CPU/msg; ratios: best rates ${(rateC / rateA).toFixed(2)}, CPU per message ${(cpuA / cpuC).toFixed(2)}`,
      baseline: `same broker without rules: best ${Math.round(rateA)} msg/s, ${cpuA.toFixed(2)} us CPU/msg`,
      ratio: `${roundRatioC.toFixed(2)} (median of per-round ratios)`,
    });
    const cycleMs = pick('fetchJson') + pick('processJson');
    recordResult({
      benchmark: `load-broker: sampler cycle for 10 000 units (20 000 rules): data_integration fetch + parse + deltas + unit loads, median of 5 (bulk reconcile of the 20 000 rules: ${reconcileSeconds.toFixed(1)} s)`,
      command,
      result: `JSON: ${pick('fetchJson').toFixed(0)} ms fetch + ${pick('processJson').toFixed(0)} ms processing; text: ${pick('fetchText').toFixed(0)} ms + ${pick('processText').toFixed(0)} ms`,
      baseline: 'target: well under 1 000 ms per cycle',
      ratio: (cycleMs / 1000).toFixed(2),
    });
  } finally {
    for (const broker of brokers) {
      await broker.client.close().catch(() => {});
      await broker.service.stop().catch(() => {});
    }
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
  process.exit(0);
}
