/**
 * The load check behind instance grades: simulated units (one MQTT connection each, publishing
 * QoS 0 on their own node topic at a fixed rate) are added step by step against this instance's
 * broker, and one subscriber receives everything back. Each iteration measures, over a fixed
 * time, the offered and achieved messages per second, loss, delivery latency (publish to
 * receipt, one clock: both ends live here) and errors (failed connections and publishes), plus
 * the machine's resources. The ramp stops by itself at the first iteration that breaks the
 * service level, at the ramp's maximum, or at its time budget. The grade is the highest achieved
 * MPS of an iteration that held.
 *
 * Simulated units connect with the backend's token (they need no rows in the database) and keep
 * below the listener's per-connection message rate and connection rate, like real devices.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import os from 'node:os';
import mqtt, { type MqttClient } from 'mqtt';
import type { IterationBody, ServiceLevel } from './report.js';

export interface LoadCheckParameters {
  /** Simulated units of the first iteration. */
  units_start: number;
  /** Units of the next iteration = ceil(units × factor). */
  units_step_factor: number;
  units_max: number;
  /** Messages per second each simulated unit publishes. */
  rate_per_unit: number;
  iteration_seconds: number;
  max_iterations: number;
  /** Time budget of the whole check; it stops after the iteration that passes it. */
  max_seconds: number;
  /** New connections per second (keep it under the broker's max_conn_rate). */
  connect_rate: number;
  payload_bytes: number;
  service_level: ServiceLevel;
}

export const DEFAULT_LOAD_CHECK: LoadCheckParameters = {
  units_start: 10,
  units_step_factor: 2,
  units_max: 1280,
  rate_per_unit: 10,
  iteration_seconds: 10,
  max_iterations: 10,
  max_seconds: 600,
  connect_rate: 15,
  payload_bytes: 64,
  service_level: { max_loss: 0.001, max_latency_p99_ms: 250, max_error_rate: 0.001 },
};

export interface LoadCheckTarget {
  mqttUrl: string;
  username: string;
  domain: string;
}

export interface LoadCheckHooks {
  onIteration(body: IterationBody): Promise<void>;
  signal?: AbortSignal;
  log?: { info(obj: object, msg: string): void };
}

export interface LoadCheckOutcome {
  gradeMps: number | null;
  stopReason: string;
  iterations: IterationBody[];
}

/** Latencies kept per iteration (a uniform reservoir sample beyond this). */
const MAX_LATENCY_SAMPLES = 50_000;
const TICK_MS = 10;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const round = (value: number, digits: number) => Number(value.toFixed(digits));

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] as number;
}

interface SimulatedUnit {
  client: MqttClient;
  topic: string;
}

function connect(url: string, username: string, clientId: string): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { username, password: '', clientId, clean: true, reconnectPeriod: 0, connectTimeout: 10_000, keepalive: 60, protocolVersion: 4, queueQoSZero: false });
    const fail = (err: Error) => {
      client.end(true);
      reject(err);
    };
    client.once('connect', () => {
      client.off('error', fail);
      client.on('error', () => {}); // counted through failed publishes
      resolve(client);
    });
    client.once('error', fail);
    client.once('close', () => fail(new Error('connection closed before CONNACK')));
  });
}

export async function runLoadCheck(target: LoadCheckTarget, params: LoadCheckParameters, hooks: LoadCheckHooks): Promise<LoadCheckOutcome> {
  const started = Date.now();
  const tag = randomBytes(6).toString('hex');
  const units: SimulatedUnit[] = [];
  const topics = new Set<string>();
  const iterations: IterationBody[] = [];
  let current = -1;
  let received = 0;
  let latencies: number[] = [];
  let seen = 0;
  const padding = 'x'.repeat(Math.max(0, params.payload_bytes - 40));

  const subscriber = await connect(target.mqttUrl, target.username, `pu-grade-sub-${tag}`);
  subscriber.on('message', (topic, payload) => {
    if (!topics.has(topic)) return;
    const text = payload.toString('latin1');
    const [runTag, iteration, sentNs] = text.split(':');
    if (runTag !== tag || Number(iteration) !== current) return; // late messages of an earlier step are not counted
    received++;
    const ms = Number(process.hrtime.bigint() - BigInt(sentNs as string)) / 1e6;
    seen++;
    if (latencies.length < MAX_LATENCY_SAMPLES) latencies.push(ms);
    else {
      const slot = Math.floor(Math.random() * seen);
      if (slot < MAX_LATENCY_SAMPLES) latencies[slot] = ms;
    }
  });
  await subscriber.subscribeAsync(`${target.domain}/+`, { qos: 0 });

  let stopReason = '';
  let connectErrors = 0;
  try {
    let wanted = params.units_start;
    for (let index = 0; ; index++) {
      if (hooks.signal?.aborted) {
        stopReason = 'cancelled';
        break;
      }
      // Add units up to `wanted`, paced under the connection rate (not measured).
      connectErrors = 0;
      const gap = 1000 / params.connect_rate;
      while (units.length < wanted && !hooks.signal?.aborted) {
        const t0 = Date.now();
        const topic = `${target.domain}/${randomUUID()}`;
        try {
          units.push({ client: await connect(target.mqttUrl, target.username, `pu-grade-${tag}-${units.length}`), topic });
          topics.add(topic);
        } catch {
          connectErrors++;
          if (connectErrors > Math.max(3, wanted * params.service_level.max_error_rate)) break;
        }
        const wait = gap - (Date.now() - t0);
        if (wait > 0) await sleep(wait);
      }
      current = index;
      received = 0;
      seen = 0;
      latencies = [];
      const offered = units.length * params.rate_per_unit;
      const total = Math.round(offered * params.iteration_seconds);
      let sent = 0;
      let publishErrors = 0;
      let turn = 0;
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      while (sent < total && !hooks.signal?.aborted) {
        const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * offered));
        while (sent < due && units.length > 0) {
          const unit = units[turn++ % units.length] as SimulatedUnit;
          sent++;
          unit.client.publish(unit.topic, `${tag}:${index}:${process.hrtime.bigint()}:${padding}`, { qos: 0 }, (err) => {
            if (err) publishErrors++;
          });
        }
        if (units.length === 0) break;
        await sleep(TICK_MS);
      }
      const publishSeconds = (performance.now() - t0) / 1000;
      // Deliveries still in flight: wait until everything arrived or twice the latency bound passed.
      const drainDeadline = performance.now() + 2 * params.service_level.max_latency_p99_ms + 500;
      while (received < sent - publishErrors && performance.now() < drainDeadline) await sleep(TICK_MS);
      const cpu = process.cpuUsage(cpu0);
      const wall = (performance.now() - t0) / 1000;
      latencies.sort((a, b) => a - b);
      const errors = publishErrors + connectErrors;
      const attempts = sent + wanted;
      const loss = sent === 0 ? 1 : Math.max(0, (sent - received) / sent);
      const p99 = percentile(latencies, 0.99);
      const errorRate = attempts === 0 ? 0 : errors / attempts;
      const violations: string[] = [];
      if (loss > params.service_level.max_loss) violations.push(`loss ${round(loss * 100, 3)} % > ${params.service_level.max_loss * 100} %`);
      if (p99 > params.service_level.max_latency_p99_ms) violations.push(`latency p99 ${round(p99, 1)} ms > ${params.service_level.max_latency_p99_ms} ms`);
      if (errorRate > params.service_level.max_error_rate) violations.push(`error rate ${round(errorRate * 100, 3)} % > ${params.service_level.max_error_rate * 100} %`);
      if (received === 0) violations.push('nothing was delivered');
      const body: IterationBody = {
        index,
        units: units.length,
        seconds: round(publishSeconds, 3),
        offered_mps: round(offered, 3),
        achieved_mps: round(received / Math.max(publishSeconds, 0.001), 3),
        sent,
        received,
        loss: round(loss, 6),
        errors,
        error_rate: round(errorRate, 6),
        latency_ms: { p50: round(percentile(latencies, 0.5), 3), p99: round(p99, 3), max: round(latencies.at(-1) ?? 0, 3) },
        resources: {
          load_average_1m: round(os.loadavg()[0] ?? 0, 2),
          cpus: os.cpus().length,
          process_cpu_percent: round(((cpu.user + cpu.system) / 1e6 / Math.max(wall, 0.001)) * 100, 1),
          rss_mb: round(process.memoryUsage().rss / 1048576, 1),
          free_memory_mb: round(os.freemem() / 1048576, 1),
        },
        held: violations.length === 0,
        violations,
      };
      iterations.push(body);
      await hooks.onIteration(body);
      hooks.log?.info({ index, units: body.units, offered: body.offered_mps, achieved: body.achieved_mps, p99: body.latency_ms.p99, loss: body.loss, held: body.held }, 'load check iteration');
      if (!body.held) {
        stopReason = `service level broke at ${body.units} units: ${violations.join('; ')}`;
        break;
      }
      if (units.length >= params.units_max) {
        stopReason = `reached the ramp's maximum of ${params.units_max} units`;
        break;
      }
      if (index + 1 >= params.max_iterations) {
        stopReason = `reached ${params.max_iterations} iterations`;
        break;
      }
      if ((Date.now() - started) / 1000 >= params.max_seconds) {
        stopReason = `reached the time budget of ${params.max_seconds} s`;
        break;
      }
      wanted = Math.min(params.units_max, Math.max(units.length + 1, Math.ceil(units.length * params.units_step_factor)));
    }
  } finally {
    await Promise.all([subscriber, ...units.map((u) => u.client)].map((client) => client.endAsync(true).catch(() => {})));
  }
  const held = iterations.filter((it) => it.held).map((it) => Math.floor(it.achieved_mps));
  return { gradeMps: held.length > 0 ? Math.max(...held) : null, stopReason, iterations };
}
