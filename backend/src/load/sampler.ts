/**
 * The load sampler (docs/LOAD.md "Backend"): once per interval it reads every counting rule's
 * counter in ONE request (`GET /api/v5/prometheus/data_integration?mode=all_nodes_unaggregated`,
 * JSON), turns the counters into per-unit deltas with Prometheus' reset rule (emqx-rules
 * counter-sampling.ts: a counter that went down restarted, so its value is the delta; per-node
 * series keep a restarted EMQX node apart from the others), and
 *
 *  - writes (in the background, one write at a time, never holding up the cut-off) per-unit rows
 *    into `unit_load_minute` (a cycle's messages are spread over the
 *    minutes it covers, in proportion to time), and each closed minute into the hourly and daily
 *    rollups (with the minute's count as peak candidate);
 *  - keeps the latest per-unit MPS in memory and hands every sample to listeners (the cut-off).
 *
 * One replica samples: the one holding the advisory lock `SAMPLER_LOCK_KEY` on a dedicated
 * connection (the others try again every interval). A new sampler's first reading is a baseline
 * (messages between the previous sampler's last reading and it are not counted).
 *
 * Writes that fail are kept (at most `maxPendingRows` rows; beyond that the oldest are dropped
 * and counted) and retried with the next cycle; `stop()` flushes open minutes and pending rows.
 */
import { ADVISORY_LOCKS } from '@pepeunit/common';
import type { ClickHouseClient } from '@clickhouse/client';
import pg from 'pg';
import type { Pool } from 'pg';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { silentLogger, type Logger } from '@pepeunit/common';
import { COUNT_RULE_PREFIX, counterDeltas, counterReading, parseDataIntegration, unitLoads } from '@pepeunit/emqx-rules';
import type { CounterReading, EmqxManagementClient } from '@pepeunit/emqx-rules';
import { NO_CREATOR, insertMinuteRows, insertRollupRows, type MinuteRow, type PeriodRow } from './load-store.js';

export const SAMPLER_LOCK_KEY = ADVISORY_LOCKS.loadSampler;

export interface UnitInfo {
  unitUuid: string;
  creatorUuid: string;
  repoUuid: string | null;
  nodeUuids: string[];
}

export interface UnitSample {
  messages: number;
  mps: number;
}

export interface LoadSample {
  /** When the counters were read (ms). */
  takenAt: number;
  elapsedMs: number;
  /** Every known unit's load during the interval (zero when nothing was counted). */
  loads: ReadonlyMap<string, UnitSample>;
  units: ReadonlyMap<string, UnitInfo>;
  /** Series whose counter went down (restart, recreated rule). */
  resets: number;
  /** Where the cycle's time went (ms): the broker's answer, the unit map (read meanwhile; 0 = not read), processing, the listeners (cut-off). */
  timings: { fetchMs: number; unitsMs: number; processMs: number; listenersMs: number };
}

export type SampleListener = (sample: LoadSample) => Promise<void> | void;

export interface SamplerOptions {
  readonly pg: Pool;
  readonly clickhouse: ClickHouseClient;
  readonly client: () => EmqxManagementClient | null;
  readonly intervalMs: number;
  readonly logger?: Logger;
  readonly registry?: Registry;
  /** Unit map refresh even without change notifications (default 60 s). */
  readonly unitsRefreshMs?: number;
  readonly maxPendingRows?: number;
  /** Take part in the election (default true); false = never sample (tests of other parts). */
  readonly elect?: boolean;
}

export interface Sampler {
  start(): void;
  /** Stops the timer, flushes open minutes and pending rows, releases the lock. */
  stop(): Promise<void>;
  /** One cycle now (also used by tests and the benchmark); resolves with the sample or null (baseline, not leader, no API). */
  cycle(): Promise<LoadSample | null>;
  /** Resolves when the rows of every finished cycle are written (or kept for retry). */
  flushed(): Promise<void>;
  /** Marks the unit map stale (units or nodes changed). */
  unitsChanged(): void;
  onSample(listener: SampleListener): void;
  /** The latest sample taken by this process (null before the second reading or when not the sampler). */
  readonly latest: LoadSample | null;
  readonly isLeader: boolean;
}

const UNITS_SQL = `
  SELECT u.uuid::text AS unit_uuid, u.creator_uuid::text AS creator_uuid, u.repo_uuid::text AS repo_uuid,
         coalesce(array_agg(n.uuid::text) FILTER (WHERE n.uuid IS NOT NULL), '{}') AS node_uuids
    FROM units u LEFT JOIN units_nodes n ON n.unit_uuid = u.uuid
   GROUP BY u.uuid`;

export async function readUnitInfos(pg: Pool): Promise<Map<string, UnitInfo>> {
  const { rows } = await pg.query<{ unit_uuid: string; creator_uuid: string | null; repo_uuid: string | null; node_uuids: string[] }>(UNITS_SQL);
  const units = new Map<string, UnitInfo>();
  for (const row of rows) units.set(row.unit_uuid, { unitUuid: row.unit_uuid, creatorUuid: row.creator_uuid ?? NO_CREATOR, repoUuid: row.repo_uuid, nodeUuids: row.node_uuids });
  return units;
}

/** Splits `messages` counted over (fromMs, toMs] across the minutes it covers, in proportion to time; integer parts summing to `messages`. */
export function spreadOverMinutes(messages: number, fromMs: number, toMs: number): Array<[minute: number, messages: number]> {
  const end = Math.floor((toMs - 1) / 60_000);
  const start = Math.min(end, Math.floor(fromMs / 60_000));
  if (start === end || toMs <= fromMs) return [[end * 60, messages]];
  const total = toMs - fromMs;
  const parts: Array<[number, number]> = [];
  let given = 0;
  let acc = 0;
  for (let m = start; m <= end; m += 1) {
    const a = Math.max(fromMs, m * 60_000);
    const b = Math.min(toMs, (m + 1) * 60_000);
    acc += b - a;
    const upTo = m === end ? messages : Math.round((messages * acc) / total);
    if (upTo > given) parts.push([m * 60, upTo - given]);
    given = upTo;
  }
  return parts;
}

export function createSampler(opts: SamplerOptions): Sampler {
  const logger = opts.logger ?? silentLogger;
  const unitsRefreshMs = opts.unitsRefreshMs ?? 60_000;
  const maxPendingRows = opts.maxPendingRows ?? 200_000;
  const registers = opts.registry ? [opts.registry] : [];
  const cycleSeconds = new Histogram({ name: 'pepeunit_load_sample_duration_seconds', help: 'Duration of one load sampling cycle (read, deltas, writes)', buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5], registers });
  const rulesGauge = new Gauge({ name: 'pepeunit_load_counting_rules', help: 'Counting-rule series in the last reading', registers });
  const messagesCounter = new Counter({ name: 'pepeunit_load_messages_total', help: 'Messages counted on unit topics by the counting rules', registers });
  const resetsCounter = new Counter({ name: 'pepeunit_load_counter_resets_total', help: 'Counting-rule series that went down (broker restart, recreated rule)', registers });
  const failures = new Counter({ name: 'pepeunit_load_sample_failures_total', help: 'Sampling cycles that failed (broker API or ClickHouse)', labelNames: ['stage'] as const, registers });
  const dropped = new Counter({ name: 'pepeunit_load_rows_dropped_total', help: 'Load rows dropped because ClickHouse stayed unreachable and the pending buffer was full', registers });

  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let running: Promise<LoadSample | null> | undefined;
  let previous: CounterReading | undefined;
  let latest: LoadSample | null = null;
  let units = new Map<string, UnitInfo>();
  let unitsAt = 0;
  let unitsDirty = true;
  let lockClient: pg.Client | undefined;
  const listeners: SampleListener[] = [];
  /** unit -> minute (unix s) -> messages, for minutes not closed yet (rollups). */
  const open = new Map<string, Map<number, number>>();
  let pendingMinutes: MinuteRow[] = [];
  let pendingRollups: PeriodRow[] = [];
  /** The write in flight: ClickHouse writes never hold up a cycle's listeners (the cut-off). */
  let writing: Promise<void> = Promise.resolve();

  async function ensureLeader(): Promise<boolean> {
    if (opts.elect === false) return false;
    if (lockClient) return true;
    // A connection of its own holds the session lock as long as this replica samples.
    const connection = new pg.Client({ ...opts.pg.options });
    connection.on('error', (error) => {
      if (lockClient !== connection) return;
      logger.warn({ err: error.message }, 'load sampler: lost its lock connection; another replica may take over');
      lockClient = undefined;
      previous = undefined; // the next reading is a baseline
      void connection.end().catch(() => undefined);
    });
    try {
      await connection.connect();
      const locked = (await connection.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS locked', [...SAMPLER_LOCK_KEY])).rows[0]?.locked === true;
      if (!locked) {
        await connection.end();
        return false;
      }
      lockClient = connection;
      logger.info('load sampler: this replica samples the broker counters');
      return true;
    } catch (error) {
      void connection.end().catch(() => undefined);
      logger.warn({ err: (error as Error).message }, 'load sampler: election failed');
      return false;
    }
  }

  function addRow(info: UnitInfo, minute: number, messages: number): void {
    pendingMinutes.push({ creator_uuid: info.creatorUuid, unit_uuid: info.unitUuid, repo_uuid: info.repoUuid, minute, messages });
    let minutes = open.get(info.unitUuid);
    if (!minutes) open.set(info.unitUuid, (minutes = new Map()));
    minutes.set(minute, (minutes.get(minute) ?? 0) + messages);
  }

  /** Moves minutes before `beforeMinute` (all when undefined) into the rollup rows. */
  function closeMinutes(beforeMinute: number | undefined): void {
    for (const [unit, minutes] of open) {
      const info = units.get(unit);
      for (const [minute, messages] of minutes) {
        if (beforeMinute !== undefined && minute >= beforeMinute) continue;
        minutes.delete(minute);
        if (info) pendingRollups.push({ creator_uuid: info.creatorUuid, unit_uuid: unit, repo_uuid: info.repoUuid, start: minute, messages, peak_minute_messages: messages });
      }
      if (minutes.size === 0) open.delete(unit);
    }
  }

  function bound(): void {
    const over = pendingMinutes.length + pendingRollups.length - maxPendingRows;
    if (over <= 0) return;
    const fromMinutes = Math.min(over, pendingMinutes.length);
    pendingMinutes = pendingMinutes.slice(fromMinutes);
    pendingRollups = pendingRollups.slice(over - fromMinutes);
    dropped.inc(over);
    logger.error({ dropped: over }, 'load rows dropped: ClickHouse unreachable and the pending buffer is full');
  }

  async function write(): Promise<void> {
    const minutes = pendingMinutes;
    const rollups = pendingRollups;
    pendingMinutes = [];
    pendingRollups = [];
    try {
      await insertMinuteRows(opts.clickhouse, minutes);
    } catch (error) {
      pendingMinutes = minutes.concat(pendingMinutes);
      pendingRollups = rollups.concat(pendingRollups);
      failures.inc({ stage: 'write' });
      logger.warn({ err: (error as Error).message, rows: pendingMinutes.length }, 'load rows not written; retried with the next cycle');
      bound();
      return;
    }
    try {
      await insertRollupRows(opts.clickhouse, rollups);
    } catch (error) {
      pendingRollups = rollups.concat(pendingRollups);
      failures.inc({ stage: 'write' });
      logger.warn({ err: (error as Error).message, rows: pendingRollups.length }, 'load rollup rows not written; retried with the next cycle');
      bound();
    }
  }

  async function runCycle(): Promise<LoadSample | null> {
    const api = opts.client();
    if (!api) return null;
    if (!(await ensureLeader())) return null;
    const end = cycleSeconds.startTimer();
    try {
      // The unit map (when stale) is read from Postgres while the broker answers.
      const started = performance.now();
      let unitsMs = 0;
      const refresh = unitsDirty || Date.now() - unitsAt > unitsRefreshMs;
      const unitsRead = refresh
        ? (() => {
            unitsDirty = false;
            unitsAt = Date.now();
            return readUnitInfos(opts.pg).then((read) => {
              unitsMs = performance.now() - started;
              return read;
            });
          })()
        : undefined;
      let body: unknown;
      try {
        body = await api.getDataIntegrationMetrics({ mode: 'all_nodes_unaggregated', format: 'json' });
      } catch (error) {
        failures.inc({ stage: 'read' });
        logger.warn({ err: (error as Error).message }, 'load sampler: broker counters not readable; next cycle');
        if (unitsRead) units = await unitsRead;
        return null;
      }
      const fetchMs = performance.now() - started;
      if (unitsRead) {
        try {
          units = await unitsRead;
        } catch (error) {
          unitsDirty = true;
          throw error;
        }
      }
      const processStarted = performance.now();
      const takenAt = Date.now();
      const reading = counterReading(parseDataIntegration(body, { metrics: ['emqx_rule_matched'] }), takenAt, { prefix: COUNT_RULE_PREFIX });
      rulesGauge.set(reading.values.size);
      const last = previous;
      previous = reading;
      if (!last) return null;
      const deltas = counterDeltas(last, reading);
      if (deltas.resets.length > 0) {
        resetsCounter.inc(deltas.resets.length);
        logger.info({ series: deltas.resets.length }, 'load sampler: counters went down (broker restart or recreated rules): counted from zero');
      }
      const unitList = [...units.values()];
      const loads = unitLoads(deltas, unitList);
      let total = 0;
      for (const [unit, load] of loads) {
        if (load.messages <= 0) continue;
        total += load.messages;
        const info = units.get(unit);
        if (!info) continue;
        for (const [minute, messages] of spreadOverMinutes(load.messages, last.takenAt, takenAt)) addRow(info, minute, messages);
      }
      messagesCounter.inc(total);
      closeMinutes(Math.floor(takenAt / 60_000) * 60);
      writing = writing.then(write);
      const sample: LoadSample = { takenAt, elapsedMs: deltas.elapsedMs, loads, units, resets: deltas.resets.length, timings: { fetchMs, unitsMs, processMs: performance.now() - processStarted, listenersMs: 0 } };
      latest = sample;
      const listenersStarted = performance.now();
      for (const listener of listeners) {
        try {
          await listener(sample);
        } catch (error) {
          logger.warn({ err: (error as Error).message }, 'load sample listener failed');
        }
      }
      sample.timings.listenersMs = performance.now() - listenersStarted;
      return sample;
    } catch (error) {
      failures.inc({ stage: 'cycle' });
      logger.warn({ err: (error as Error).message }, 'load sampling cycle failed');
      return null;
    } finally {
      end();
    }
  }

  function cycle(): Promise<LoadSample | null> {
    if (stopped) return Promise.resolve(null);
    running ??= runCycle().finally(() => {
      running = undefined;
    });
    return running;
  }

  function schedule(): void {
    if (stopped) return;
    timer = setTimeout(() => {
      void cycle().finally(schedule);
    }, opts.intervalMs);
    timer.unref();
  }

  return {
    start() {
      if (timer || stopped) return;
      void cycle();
      schedule();
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running?.catch(() => undefined);
      await writing;
      closeMinutes(undefined);
      if (pendingMinutes.length + pendingRollups.length > 0) await write();
      if (pendingMinutes.length + pendingRollups.length > 0) logger.error({ rows: pendingMinutes.length + pendingRollups.length }, 'load rows lost at shutdown: ClickHouse unreachable');
      const held = lockClient;
      lockClient = undefined;
      if (held) {
        await held.end().catch(() => undefined); // ends the session: the lock is released
      }
    },
    cycle,
    flushed() {
      return writing;
    },
    unitsChanged() {
      unitsDirty = true;
    },
    onSample(listener) {
      listeners.push(listener);
    },
    get latest() {
      return latest;
    },
    get isLeader() {
      return lockClient !== undefined;
    },
  };
}
