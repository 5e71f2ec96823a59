/**
 * Keeps EMQX's `alert-` rules (alerts.ts of @pepeunit/emqx-rules) equal to Postgres:
 *
 * - `reconcileUnit(uuid)` — after a unit's alert level changed or the unit was deleted: reads
 *   the level (NULL when off or the unit is gone) and creates/deletes that unit's
 *   `alert-log-<level>-<unit>` rule (a level change deletes one rule and creates another; stable
 *   rules are never edited in place). Calls for one unit are serialised, the last state wins.
 * - `reconcileAll()` — the full diff (every unit with a level, plus `alert-authz-deny` and
 *   `alert-disconnect`), periodic (default 60 s) and after a broker reconnect; elected among
 *   replicas with `pg_try_advisory_lock`.
 *
 * Failures are logged and healed by the next full reconcile; nothing here throws into a request.
 */
import { ADVISORY_LOCKS, serialRunner } from '@pepeunit/common';
import type { Pool } from 'pg';
import type { Logger } from '@pepeunit/common';
import { checkDomain, reconcileAlertRules, reconcileUnitAlertRules, type AlertLevel, type EmqxManagementClient, type StableReconcileResult } from '@pepeunit/emqx-rules';
import { isUuid } from '@pepeunit/common/topics';
import { normaliseLevel } from './model.js';

/** Advisory lock of the full reconcile: 0x50455045 ("PEPE") with 3 (pipe rules use 2). */
export const ALERT_RULES_LOCK_KEY = ADVISORY_LOCKS.alertRulesReconcile;

export interface AlertRulesOptions {
  readonly pg: Pool;
  readonly client: EmqxManagementClient | null | (() => EmqxManagementClient | null);
  readonly domain: string;
  readonly logger: Logger;
  /** Full reconcile period (default 60 000 ms; 0 = only on demand). */
  readonly intervalMs?: number;
  /** First full reconcile after start (default 1000 ms; negative = none). */
  readonly initialDelayMs?: number;
}

export type UnitRuleOutcome = 'done' | 'skipped' | 'failed';

export interface AlertRules {
  reconcileUnit(unitUuid: string): Promise<UnitRuleOutcome>;
  reconcileAll(): Promise<{ status: 'done'; result: StableReconcileResult } | { status: 'skipped' | 'failed'; reason: string }>;
  close(): Promise<void>;
}

const LEVELS_SQL = 'SELECT unit_uuid::text AS unit_uuid, min_level FROM alert_unit_settings WHERE min_level IS NOT NULL';

export function createAlertRules(opts: AlertRulesOptions): AlertRules {
  const getClient = typeof opts.client === 'function' ? opts.client : () => opts.client as EmqxManagementClient | null;
  let domainOk = true;
  try {
    checkDomain(opts.domain);
  } catch (error) {
    domainOk = false;
    opts.logger.error({ err: error }, 'PU_DOMAIN cannot be used in EMQX rule topics: alert rules are not managed');
  }
  const chains = new Map<string, Promise<UnitRuleOutcome>>();
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let initial: NodeJS.Timeout | undefined;

  const unitLevel = async (unitUuid: string): Promise<AlertLevel | null> => {
    const { rows } = await opts.pg.query<{ min_level: string | null }>('SELECT min_level FROM alert_unit_settings WHERE unit_uuid = $1', [unitUuid]);
    return normaliseLevel(rows[0]?.min_level) ?? null;
  };

  const reconcileUnit = (raw: string): Promise<UnitRuleOutcome> => {
    const client = getClient();
    if (closed || !domainOk || !client || !isUuid(raw)) return Promise.resolve('skipped');
    const unitUuid = raw.toLowerCase();
    const previous = chains.get(unitUuid) ?? Promise.resolve<UnitRuleOutcome>('done');
    const next = previous.then(async (): Promise<UnitRuleOutcome> => {
      try {
        const level = await unitLevel(unitUuid);
        const result = await reconcileUnitAlertRules(client, { domain: opts.domain, unitUuid, level });
        if (result.failed.length > 0) {
          opts.logger.warn({ unitUuid, failed: result.failed }, 'alert rule of a unit not reconciled; the periodic reconcile retries');
          return 'failed';
        }
        return 'done';
      } catch (error) {
        opts.logger.warn({ err: error, unitUuid }, 'alert rule of a unit not reconciled; the periodic reconcile retries');
        return 'failed';
      }
    });
    chains.set(unitUuid, next);
    void next.finally(() => {
      if (chains.get(unitUuid) === next) chains.delete(unitUuid);
    });
    return next;
  };

  const allRuns = serialRunner(async (): ReturnType<AlertRules['reconcileAll']> => {
      const client = getClient();
      if (closed || !domainOk || !client) return { status: 'skipped' as const, reason: client ? 'closed or invalid domain' : 'no EMQX management API configured' };
      const conn = await opts.pg.connect();
      try {
        const lock = await conn.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [...ALERT_RULES_LOCK_KEY]);
        if (!lock.rows[0]?.ok) return { status: 'skipped' as const, reason: 'another replica holds the reconcile lock' };
        try {
          const result = await reconcileAlertRules(client, {
            domain: opts.domain,
            units: async () => {
              const { rows } = await opts.pg.query<{ unit_uuid: string; min_level: string }>(LEVELS_SQL);
              return rows.flatMap((r) => {
                const level = normaliseLevel(r.min_level);
                return level ? [{ unitUuid: r.unit_uuid, level }] : [];
              });
            },
          });
          if (result.created.length || result.deleted.length || result.recreated.length) {
            opts.logger.info({ created: result.created.length, deleted: result.deleted.length, recreated: result.recreated.length }, 'alert rules reconciled');
          }
          return { status: 'done' as const, result };
        } finally {
          await conn.query('SELECT pg_advisory_unlock($1, $2)', [...ALERT_RULES_LOCK_KEY]).catch(() => {});
        }
      } catch (error) {
        opts.logger.warn({ err: error }, 'alert rules reconcile failed; retrying at the next period');
        return { status: 'failed' as const, reason: error instanceof Error ? error.message : String(error) };
      } finally {
        conn.release();
      }
  });
  const reconcileAll: AlertRules['reconcileAll'] = () => allRuns.run();

  const intervalMs = opts.intervalMs ?? 60_000;
  if (intervalMs > 0) {
    timer = setInterval(() => void reconcileAll(), intervalMs);
    timer.unref();
  }
  const initialDelay = opts.initialDelayMs ?? 1000;
  if (initialDelay >= 0) {
    initial = setTimeout(() => void reconcileAll(), initialDelay);
    initial.unref();
  }

  return {
    reconcileUnit,
    reconcileAll,
    async close() {
      closed = true;
      if (timer) clearInterval(timer);
      if (initial) clearTimeout(initial);
      await allRuns.idle();
      await Promise.all([...chains.values()].map((p) => p.catch(() => {})));
    },
  };
}
