/**
 * Lifecycle of EMQX's counting rules (`cnt-unit-<unit>`, `cnt-node-<node>`; emqx-rules
 * rules/counting.ts): created with their unit or node, deleted with it, never updated.
 *
 * - Per unit, fast: Postgres triggers (migration 020) NOTIFY `pepeunit_load_owners` on every
 *   insert/delete of a unit or node, whoever wrote it. Notifications are batched (`batchMs`),
 *   grouped per unit and applied with `reconcileUnitCountingRules` (only that unit's rules are
 *   read and changed). Calls for one unit are serialised.
 * - Bulk: `reconcileAll()` makes the whole `cnt-` family equal to Postgres (start-up, after a
 *   broker reconnect, every `intervalMs`), elected among replicas with an advisory lock.
 *
 * Failures are logged and retried (per unit with backoff, bulk at the next period); nothing here
 * throws into a request.
 */
import { ADVISORY_LOCKS, LOAD_OWNERS_NOTIFY_CHANNEL, serialRunner } from '@pepeunit/common';
import pg from 'pg';
import type { Pool, PoolClient, Notification } from 'pg';
import { isUuid } from '@pepeunit/common/topics';
import { silentLogger, type Logger } from '@pepeunit/common';
import { StableReconcileError, checkDomain, reconcileCountingRules, reconcileUnitCountingRules } from '@pepeunit/emqx-rules';
import type { CountedUnit, EmqxManagementClient, StableReconcileResult } from '@pepeunit/emqx-rules';

export const LOAD_OWNERS_CHANNEL = LOAD_OWNERS_NOTIFY_CHANNEL;
/** Advisory lock of the bulk reconcile: "PEPE" + 13 (issue 13), like PIPE_RULES_LOCK_KEY. */
export const COUNTING_RULES_LOCK_KEY = ADVISORY_LOCKS.countingRulesReconcile;

export const COUNTED_UNITS_SQL = `
  SELECT u.uuid::text AS unit_uuid, coalesce(array_agg(n.uuid::text) FILTER (WHERE n.uuid IS NOT NULL), '{}') AS node_uuids
    FROM units u LEFT JOIN units_nodes n ON n.unit_uuid = u.uuid
   GROUP BY u.uuid`;

export interface CountingRulesOptions {
  readonly pg: Pool;
  readonly client: () => EmqxManagementClient | null;
  readonly domain: string;
  readonly logger?: Logger;
  /** Bulk reconcile period (default 10 min; 0 = only on demand). */
  readonly intervalMs?: number;
  /** Delay of the first bulk reconcile (default 1 s; negative = none). */
  readonly initialDelayMs?: number;
  /** Notifications collected before applying them (default 50 ms). */
  readonly batchMs?: number;
  /** LISTEN for owner changes (default true). */
  readonly listen?: boolean;
  /** Called after a unit was found deleted (the cut-off lifts its ban). */
  readonly onUnitDeleted?: (unitUuid: string) => Promise<void> | void;
}

export type BulkOutcome = { status: 'done'; result: StableReconcileResult } | { status: 'skipped'; reason: string } | { status: 'failed'; error: string };

export interface CountingRules {
  reconcileAll(): Promise<BulkOutcome>;
  /** One unit now (reads Postgres); `removedNodeUuids` are nodes it no longer has. */
  reconcileUnit(unitUuid: string, removedNodeUuids?: readonly string[]): Promise<'done' | 'skipped' | 'failed'>;
  /** Listeners called with the units whose rules changed (the sampler refreshes its unit map). */
  onChange(listener: (unitUuids: readonly string[]) => void): void;
  close(): Promise<void>;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export async function readCountedUnits(pg: Pool): Promise<CountedUnit[]> {
  const { rows } = await pg.query<{ unit_uuid: string; node_uuids: string[] }>(COUNTED_UNITS_SQL);
  return rows.map((row) => ({ unitUuid: row.unit_uuid, nodeUuids: row.node_uuids }));
}

export function createCountingRules(opts: CountingRulesOptions): CountingRules {
  const logger = opts.logger ?? silentLogger;
  const intervalMs = opts.intervalMs ?? 600_000;
  const batchMs = opts.batchMs ?? 50;
  let domainProblem: string | undefined;
  try {
    checkDomain(opts.domain);
  } catch (error) {
    domainProblem = message(error);
    logger.error({ err: domainProblem }, 'PU_DOMAIN cannot be used in EMQX rule topics: counting rules are not managed');
  }
  let closed = false;
  const listeners: Array<(units: readonly string[]) => void> = [];
  const chains = new Map<string, Promise<'done' | 'skipped' | 'failed'>>();
  const retries = new Map<string, { attempt: number; removed: Set<string>; timer?: NodeJS.Timeout }>();
  const timers = new Set<NodeJS.Timeout>();
  let pending = new Map<string, Set<string>>();
  let batchTimer: NodeJS.Timeout | undefined;
  let listenClient: pg.Client | undefined;
  let listenRetry = 0;

  const notify = (units: readonly string[]): void => {
    for (const listener of listeners) {
      try {
        listener(units);
      } catch (error) {
        logger.warn({ err: message(error) }, 'counting-rules change listener failed');
      }
    }
  };

  function later(fn: () => void, ms: number): NodeJS.Timeout {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timer.unref();
    timers.add(timer);
    return timer;
  }

  const client = (): EmqxManagementClient | string => {
    if (domainProblem) return `invalid PU_DOMAIN: ${domainProblem}`;
    return opts.client() ?? 'no EMQX management API configured';
  };

  async function unitNow(unitUuid: string, removed: readonly string[]): Promise<'done' | 'skipped' | 'failed'> {
    const api = client();
    if (typeof api === 'string') return 'skipped';
    try {
      const { rows } = await opts.pg.query<{ node_uuids: string[] }>(
        `SELECT coalesce(array_agg(n.uuid::text) FILTER (WHERE n.uuid IS NOT NULL), '{}') AS node_uuids
           FROM units u LEFT JOIN units_nodes n ON n.unit_uuid = u.uuid WHERE u.uuid = $1 GROUP BY u.uuid`,
        [unitUuid],
      );
      const deleted = rows.length === 0;
      const nodeUuids = rows[0]?.node_uuids ?? [];
      const removedNodeUuids = removed.filter((node) => !nodeUuids.includes(node));
      await reconcileUnitCountingRules(api, { domain: opts.domain, unitUuid, nodeUuids, removedNodeUuids, deleted }, { logger });
      const retry = retries.get(unitUuid);
      if (retry?.timer) clearTimeout(retry.timer);
      retries.delete(unitUuid);
      if (deleted) await opts.onUnitDeleted?.(unitUuid);
      notify([unitUuid]);
      return 'done';
    } catch (error) {
      logger.warn({ err: message(error), unit: unitUuid }, 'counting rules of a unit could not be changed; retrying');
      const state = retries.get(unitUuid) ?? { attempt: 0, removed: new Set<string>() };
      for (const node of removed) state.removed.add(node);
      retries.set(unitUuid, state);
      if (!state.timer && !closed) {
        state.attempt += 1;
        state.timer = later(() => {
          state.timer = undefined;
          void reconcileUnit(unitUuid, [...state.removed]);
        }, Math.min(30_000, 1000 * 2 ** (state.attempt - 1)));
      }
      return 'failed';
    }
  }

  function reconcileUnit(unitUuid: string, removed: readonly string[] = []): Promise<'done' | 'skipped' | 'failed'> {
    if (closed || !isUuid(unitUuid) || removed.some((node) => !isUuid(node))) return Promise.resolve('skipped');
    const uuid = unitUuid.toLowerCase();
    const nodes = removed.map((node) => node.toLowerCase());
    const next = (chains.get(uuid) ?? Promise.resolve<'done' | 'skipped' | 'failed'>('done')).then(() => unitNow(uuid, nodes));
    chains.set(uuid, next);
    void next.finally(() => {
      if (chains.get(uuid) === next) chains.delete(uuid);
    });
    return next;
  }

  async function runAll(): Promise<BulkOutcome> {
    const api = client();
    if (typeof api === 'string') return { status: 'skipped', reason: api };
    let lock: PoolClient | undefined;
    let locked = false;
    try {
      lock = await opts.pg.connect();
      locked = (await lock.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS locked', [...COUNTING_RULES_LOCK_KEY])).rows[0]?.locked === true;
      if (!locked) return { status: 'skipped', reason: 'another replica holds the reconcile lock' };
      let lastLog = 0;
      const result = await reconcileCountingRules(api, { domain: opts.domain, units: () => readCountedUnits(opts.pg) }, {
        logger,
        onProgress: ({ done, total }) => {
          if (Date.now() - lastLog > 5000) {
            lastLog = Date.now();
            logger.info({ done, total }, 'counting rules: bulk reconcile progress');
          }
        },
      });
      notify([]);
      return { status: 'done', result };
    } catch (error) {
      const failed = error instanceof StableReconcileError ? error.result.failed.length : undefined;
      logger.warn({ err: message(error), failed }, 'counting rules bulk reconcile failed; retried at the next period');
      return { status: 'failed', error: message(error) };
    } finally {
      if (lock) {
        if (locked) await lock.query('SELECT pg_advisory_unlock($1, $2)', [...COUNTING_RULES_LOCK_KEY]).catch(() => undefined);
        lock.release();
      }
    }
  }

  const allRuns = serialRunner(runAll);
  function reconcileAll(): Promise<BulkOutcome> {
    if (closed) return Promise.resolve({ status: 'skipped', reason: 'closed' });
    return allRuns.run();
  }

  function flushBatch(): void {
    batchTimer = undefined;
    const batch = pending;
    pending = new Map();
    for (const [unit, removed] of batch) void reconcileUnit(unit, [...removed]);
  }

  function onNotification(note: Notification): void {
    if (note.channel !== LOAD_OWNERS_CHANNEL || !note.payload) return;
    const [kind, unit, node] = note.payload.split(':');
    if (!unit || !isUuid(unit) || (kind !== 'u' && kind !== 'n')) return;
    const removed = pending.get(unit) ?? new Set<string>();
    if (kind === 'n' && node && isUuid(node)) removed.add(node);
    pending.set(unit, removed);
    batchTimer ??= later(flushBatch, batchMs);
  }

  async function startListening(): Promise<void> {
    if (closed) return;
    // A connection of its own (not from the pool): it stays open for the process's lifetime.
    const connection = new pg.Client({ ...opts.pg.options });
    const lost = (error?: Error): void => {
      if (listenClient !== connection) return;
      listenClient = undefined;
      connection.removeListener('notification', onNotification);
      void connection.end().catch(() => undefined);
      if (closed) return;
      logger.warn({ err: error?.message }, 'counting rules: LISTEN connection lost; reconnecting (a bulk reconcile heals missed changes)');
      later(() => void startListening().then(() => reconcileAll()), 1000);
    };
    try {
      connection.on('error', lost);
      connection.on('notification', onNotification);
      await connection.connect();
      await connection.query(`LISTEN ${LOAD_OWNERS_CHANNEL}`);
      listenClient = connection;
      connection.once('end', () => lost());
      listenRetry = 0;
    } catch (error) {
      void connection.end().catch(() => undefined);
      listenRetry += 1;
      logger.warn({ err: message(error) }, 'counting rules: LISTEN failed; retrying');
      later(() => void startListening(), Math.min(30_000, 1000 * 2 ** listenRetry));
    }
  }

  let listening: Promise<void> | undefined;
  if (opts.listen !== false) listening = startListening();
  let periodic: NodeJS.Timeout | undefined;
  if (intervalMs > 0) {
    periodic = setInterval(() => void reconcileAll(), intervalMs);
    periodic.unref();
  }
  if ((opts.initialDelayMs ?? 1000) >= 0) later(() => void reconcileAll(), opts.initialDelayMs ?? 1000);

  return {
    reconcileAll,
    reconcileUnit,
    onChange(listener) {
      listeners.push(listener);
    },
    async close() {
      closed = true;
      if (periodic) clearInterval(periodic);
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await listening;
      const connection = listenClient;
      listenClient = undefined;
      if (connection) {
        connection.removeListener('notification', onNotification);
        await connection.end().catch(() => undefined);
      }
      await allRuns.idle();
      await Promise.allSettled([...chains.values()]);
    },
  };
}
