/**
 * The system-topic consumer (reference pepeunit-backend.md §2.2–2.3): the backend's subscription
 * to `<domain>/+/+/+/pepeunit`, handling `output_base_topic/<unit>/state` and `.../log`.
 *
 * Hot path: `handleMessage` is synchronous. A throttled state costs a Map lookup (no decoding,
 * no database); accepted states and log rows are only queued, and the writers flush them in
 * batches (one Postgres UPDATE per state flush, one ClickHouse insert per log flush). Bad input
 * (too large, invalid UTF-8, malformed JSON, unknown level or purpose, non-uuid unit) is dropped
 * and counted per reason; nothing here throws into the MQTT client.
 *
 * Several replicas: with `shareGroup` (PU_BACKEND_SHARE_GROUP) the subscription is
 * `$share/<group>/<filter>`, so the broker (EMQX or the embedded one) splits messages between
 * replicas; without it, the plain filter (every subscriber gets every message).
 */
import type { MqttClient } from 'mqtt';
import type { Pool } from 'pg';
import type { ClickHouseClient } from '@clickhouse/client';
import { Counter, Gauge, type Registry } from 'prom-client';
import { BACKEND_SUFFIX, Destination, isUuid, sharedFilter, systemTopicsFilter, type BackendConfig } from '@pepeunit/common';
import { normalizeState, serializeState } from './state-payload.js';
import { buildLogRows, type LogEntryDropReason } from './log-payload.js';
import { UnitLogWriter, type UnitLogWriterOptions } from './unit-log-writer.js';
import { UnitStateWriter, hasStateGuardColumn, type TargetVersionResolver, type UnitStateWriterOptions } from './unit-state-writer.js';
import { silent, type MinimalLogger } from './logger.js';

export type { TargetVersionResolver } from './unit-state-writer.js';
export { manualUnitTargetVersion } from './unit-state-writer.js';

/** Why a message (or one log entry / row) was dropped. */
export type DropReason =
  | 'payload_too_large'
  | 'invalid_utf8'
  | 'malformed_json'
  | 'invalid_state'
  | 'invalid_log_payload'
  | LogEntryDropReason
  | 'log_buffer_full'
  | 'unknown_purpose'
  | 'invalid_unit_uuid'
  | 'invalid_topic';

export const DROP_REASONS: readonly DropReason[] = [
  'payload_too_large',
  'invalid_utf8',
  'malformed_json',
  'invalid_state',
  'invalid_log_payload',
  'unknown_level',
  'invalid_log_entry',
  'log_buffer_full',
  'unknown_purpose',
  'invalid_unit_uuid',
  'invalid_topic',
];

export interface SystemTopicsStats {
  /** Messages on system topics received (all destinations). */
  received: number;
  /** Messages by purpose on output_base_topic. */
  state: number;
  log: number;
  /** input_base_topic messages (the backend's own commands coming back through the wildcard). */
  ignored: number;
  statesAccepted: number;
  statesThrottled: number;
  /** Log messages with at least one accepted row. */
  logMessagesAccepted: number;
  /** Log rows accepted into the writer (all of them are written, or reported as lost at shutdown). */
  logRowsAccepted: number;
  dropped: Record<DropReason, number>;
  stateWriter: UnitStateWriter['stats'];
  logWriter: UnitLogWriter['stats'];
}

type ConsumerConfig = Pick<BackendConfig, 'domain' | 'stateSendInterval' | 'unitLogExpiration'> & { readonly mqtt: Pick<BackendConfig['mqtt'], 'maxPayloadSizeKb'> };

export interface SystemTopicsOptions {
  /** The backend's MQTT connection (username = Backend JWT). */
  readonly mqtt: MqttClient;
  readonly pg: Pool;
  readonly clickhouse: ClickHouseClient;
  readonly config: ConsumerConfig;
  /** Registry for the counters (the app's `app.metrics`); omitted: no Prometheus metrics. */
  readonly registry?: Registry;
  readonly logger?: MinimalLogger;
  /**
   * Shared-subscription group (`$share/<group>/...`), e.g. `pepeunit-backend`, so several
   * replicas split the messages. null/empty (the default of this function): plain filter.
   */
  readonly shareGroup?: string | null;
  /** Target commit of a unit for the firmware status; default: `repo_commit` of manual units. */
  readonly resolveTargetVersion?: TargetVersionResolver;
  /**
   * Cross-replica guard on `units.last_state_update_datetime`: 'auto' (default) uses it when the
   * column exists.
   */
  readonly stateGuard?: boolean | 'auto';
  /** Don't subscribe (tests drive `handleMessage` directly). */
  readonly subscribe?: boolean;
  readonly logWriter?: Partial<Omit<UnitLogWriterOptions, 'clickhouse' | 'pg' | 'logger'>>;
  readonly stateWriter?: Partial<Omit<UnitStateWriterOptions, 'pg' | 'stateSendInterval' | 'resolveTargetVersion' | 'guard' | 'logger'>>;
}

export interface SystemTopicsConsumer {
  /** The filter actually subscribed (with `$share/...` when shared). */
  readonly subscription: string;
  /** Whether the state writes are guarded across replicas. */
  readonly guarded: boolean;
  /** Live counters (also exported to Prometheus). */
  readonly stats: SystemTopicsStats;
  /** Processes one MQTT message (what the subscription calls). Never throws. */
  handleMessage(topic: string, payload: Buffer): void;
  /** Resolves once the broker granted the subscription. */
  ready(): Promise<void>;
  /** Writes everything accepted so far (states, log rows, unit bumps). */
  flush(): Promise<void>;
  /** Unsubscribes, then flushes everything accepted; idempotent. */
  close(): Promise<void>;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** Starts the consumer: checks the guard column, registers metrics, subscribes. */
export async function startSystemTopicsConsumer(opts: SystemTopicsOptions): Promise<SystemTopicsConsumer> {
  const logger = opts.logger ?? silent;
  const { config } = opts;
  const guard = opts.stateGuard === undefined || opts.stateGuard === 'auto' ? await hasStateGuardColumn(opts.pg) : opts.stateGuard;
  if (!guard && opts.shareGroup) {
    logger.warn(
      { column: 'units.last_state_update_datetime' },
      'state writes are not guarded across replicas (column missing): two replicas may each save a state of one unit within the interval',
    );
  }
  const stateWriter = new UnitStateWriter({
    ...opts.stateWriter,
    pg: opts.pg,
    stateSendInterval: config.stateSendInterval,
    resolveTargetVersion: opts.resolveTargetVersion,
    guard,
    logger,
  });
  const logWriter = new UnitLogWriter({ ...opts.logWriter, clickhouse: opts.clickhouse, pg: opts.pg, logger });

  const dropped = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
  const stats: SystemTopicsStats = {
    received: 0,
    state: 0,
    log: 0,
    ignored: 0,
    statesAccepted: 0,
    statesThrottled: 0,
    logMessagesAccepted: 0,
    logRowsAccepted: 0,
    dropped,
    stateWriter: stateWriter.stats,
    logWriter: logWriter.stats,
  };

  const prefix = `${config.domain}/`;
  const suffix = `/${BACKEND_SUFFIX}`;
  const maxPayloadBytes = config.mqtt.maxPayloadSizeKb * 1024;
  const throttleMs = Math.max(0, config.stateSendInterval - 1) * 1000;
  const expirationSeconds = config.unitLogExpiration;
  // unit uuid → time its last state was accepted (per process; the SQL guard covers replicas).
  const lastStateAt = new Map<string, number>();
  const sweep = setInterval(
    () => {
      const cutoff = Date.now() - throttleMs;
      for (const [unit, at] of lastStateAt) if (at <= cutoff) lastStateAt.delete(unit);
    },
    Math.max(10_000, throttleMs),
  );
  sweep.unref();
  const onLogDrop = (reason: LogEntryDropReason): void => {
    dropped[reason] += 1;
  };

  function decodeJson(payload: Buffer): { ok: true; value: unknown } | { ok: false } {
    let text: string;
    try {
      text = decoder.decode(payload);
    } catch {
      dropped.invalid_utf8 += 1;
      return { ok: false };
    }
    try {
      return { ok: true, value: JSON.parse(text) };
    } catch {
      dropped.malformed_json += 1;
      return { ok: false };
    }
  }

  function handleState(unitUuid: string, payload: Buffer): void {
    const now = Date.now();
    const last = lastStateAt.get(unitUuid);
    if (last !== undefined && now - last < throttleMs) {
      stats.statesThrottled += 1;
      return;
    }
    const parsed = decodeJson(payload);
    if (!parsed.ok) return;
    const value = parsed.value;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      dropped.invalid_state += 1;
      return;
    }
    const state = normalizeState(value as Record<string, unknown>);
    lastStateAt.set(unitUuid, now);
    stats.statesAccepted += 1;
    stateWriter.submit(unitUuid, serializeState(state), state.pu_commit_version, now);
  }

  function handleLog(unitUuid: string, payload: Buffer): void {
    const parsed = decodeJson(payload);
    if (!parsed.ok) return;
    const rows = buildLogRows(parsed.value, unitUuid, Date.now(), expirationSeconds, onLogDrop);
    if (rows === null) {
      dropped.invalid_log_payload += 1;
      return;
    }
    if (rows.length === 0) return;
    const accepted = logWriter.enqueue(rows);
    if (accepted < rows.length) dropped.log_buffer_full += rows.length - accepted;
    if (accepted > 0) {
      stats.logMessagesAccepted += 1;
      stats.logRowsAccepted += accepted;
    }
  }

  function handleMessage(topic: string, payload: Buffer): void {
    // Other subscriptions may share this MQTT client: only 5-level system topics are ours.
    if (!topic.startsWith(prefix) || !topic.endsWith(suffix)) return;
    const parts = topic.split('/');
    if (parts.length !== 5) return;
    stats.received += 1;
    try {
      const destination = parts[1];
      if (destination === Destination.InputBase) {
        stats.ignored += 1;
        return;
      }
      if (destination !== Destination.OutputBase) {
        dropped.invalid_topic += 1;
        return;
      }
      const unitRaw = parts[2] as string;
      if (!isUuid(unitRaw)) {
        dropped.invalid_unit_uuid += 1;
        return;
      }
      const unitUuid = unitRaw.toLowerCase();
      const purpose = parts[3];
      if (purpose === 'state') stats.state += 1;
      else if (purpose === 'log') stats.log += 1;
      else {
        dropped.unknown_purpose += 1;
        return;
      }
      if (payload.length > maxPayloadBytes) {
        dropped.payload_too_large += 1;
        return;
      }
      if (purpose === 'state') handleState(unitUuid, payload);
      else handleLog(unitUuid, payload);
    } catch (err) {
      // Defensive: nothing above should throw, but a bug must never take the MQTT client down.
      logger.error({ err: err instanceof Error ? err.message : String(err), topic }, 'system topic message failed');
    }
  }

  if (opts.registry) registerMetrics(opts.registry, stats);

  const filter = systemTopicsFilter(config.domain);
  const subscription = opts.shareGroup ? sharedFilter(opts.shareGroup, filter) : filter;
  const client = opts.mqtt;
  let closed = false;
  let resolveReady!: () => void;
  const readyPromise = new Promise<void>((resolve) => (resolveReady = resolve));
  let retryTimer: NodeJS.Timeout | null = null;

  const onMessage = (topic: string, payload: Buffer): void => handleMessage(topic, payload);
  const subscribeNow = (): void => {
    if (closed || !client.connected) return;
    client.subscribe(subscription, { qos: 0 }, (err, granted) => {
      if (closed) return;
      const denied = !err && granted?.some((g) => g.qos === 128);
      if (err || denied) {
        logger.error({ subscription, err: err?.message ?? 'refused by the broker (SUBACK 0x80)' }, 'system topics subscription failed; retrying in 5 s');
        retryTimer ??= setTimeout(() => {
          retryTimer = null;
          subscribeNow();
        }, 5_000);
        retryTimer.unref();
        return;
      }
      logger.info({ subscription, guarded: guard }, 'system topics subscribed');
      resolveReady();
    });
  };
  if (opts.subscribe !== false) {
    client.on('message', onMessage);
    // Clean sessions lose subscriptions on reconnect: subscribe again on every connect.
    client.on('connect', subscribeNow);
    subscribeNow();
  } else {
    resolveReady();
  }

  let closing: Promise<void> | undefined;
  return {
    subscription,
    guarded: guard,
    stats,
    handleMessage,
    ready: () => readyPromise,
    async flush() {
      await Promise.all([stateWriter.flush(), logWriter.flush()]);
    },
    close() {
      closing ??= (async () => {
        closed = true;
        clearInterval(sweep);
        if (retryTimer) clearTimeout(retryTimer);
        if (opts.subscribe !== false) {
          client.off('message', onMessage);
          client.off('connect', subscribeNow);
          if (client.connected) {
            await Promise.race([
              client.unsubscribeAsync(subscription).catch(() => undefined),
              new Promise((r) => setTimeout(r, 2_000).unref()),
            ]);
          }
        }
        await Promise.all([stateWriter.close(), logWriter.close()]);
      })();
      return closing;
    },
  };
}

/** Prometheus view of the live counters (read at scrape time; the hot path only adds numbers). */
function registerMetrics(registry: Registry, stats: SystemTopicsStats): void {
  const metric = <T extends Counter | Gauge>(name: string, make: () => T): T => {
    if (registry.getSingleMetric(name)) registry.removeSingleMetric(name);
    return make();
  };
  metric('pepeunit_system_topic_messages_total', () => new Counter({
    name: 'pepeunit_system_topic_messages_total',
    help: 'Messages received on system topics by purpose (ignored = input_base_topic)',
    labelNames: ['purpose'] as const,
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ purpose: 'state' }, stats.state);
      this.inc({ purpose: 'log' }, stats.log);
      this.inc({ purpose: 'ignored' }, stats.ignored);
    },
  }));
  metric('pepeunit_system_topic_dropped_total', () => new Counter({
    name: 'pepeunit_system_topic_dropped_total',
    help: 'System-topic messages, log entries or log rows dropped, by reason',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const reason of DROP_REASONS) this.inc({ reason }, stats.dropped[reason]);
    },
  }));
  metric('pepeunit_unit_states_total', () => new Counter({
    name: 'pepeunit_unit_states_total',
    help: 'Unit state messages by outcome (accepted, throttled, written, guard_skipped)',
    labelNames: ['outcome'] as const,
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ outcome: 'accepted' }, stats.statesAccepted);
      this.inc({ outcome: 'throttled' }, stats.statesThrottled);
      this.inc({ outcome: 'written' }, stats.stateWriter.written);
      this.inc({ outcome: 'guard_skipped' }, stats.stateWriter.guardSkipped);
    },
  }));
  metric('pepeunit_unit_logs_total', () => new Counter({
    name: 'pepeunit_unit_logs_total',
    help: 'Unit log rows by outcome (accepted, written)',
    labelNames: ['outcome'] as const,
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ outcome: 'accepted' }, stats.logRowsAccepted);
      this.inc({ outcome: 'written' }, stats.logWriter.written);
    },
  }));
  metric('pepeunit_unit_logs_buffered', () => new Gauge({
    name: 'pepeunit_unit_logs_buffered',
    help: 'Unit log rows waiting for ClickHouse',
    registers: [registry],
    collect() {
      this.set(stats.logWriter.buffered);
    },
  }));
  metric('pepeunit_system_topic_write_failures_total', () => new Counter({
    name: 'pepeunit_system_topic_write_failures_total',
    help: 'Failed batched writes (each retried) by store',
    labelNames: ['store'] as const,
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ store: 'clickhouse' }, stats.logWriter.insertFailures);
      this.inc({ store: 'postgres' }, stats.stateWriter.flushFailures + stats.logWriter.bumpFailures);
    },
  }));
  metric('pepeunit_unit_firmware_updates_total', () => new Counter({
    name: 'pepeunit_unit_firmware_updates_total',
    help: 'Firmware update requests resolved from unit states, by status',
    labelNames: ['status'] as const,
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ status: 'Success' }, stats.stateWriter.firmwareSuccess);
      this.inc({ status: 'Error' }, stats.stateWriter.firmwareError);
    },
  }));
}
