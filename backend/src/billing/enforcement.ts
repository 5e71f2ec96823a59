/**
 * The billing cycle and enforcement:
 *  1. statements: for the last closed period, every user who owns units gets an itemised
 *     statement (frozen in `billing_statements`) and, when it is not zero, one charge
 *     (idempotent per user and period, so a cycle run twice or by two replicas charges once);
 *  2. enforcement: a user whose balance is negative is "in arrears" from the first cycle that
 *     sees it, warned through the alert path (at most once a day), and after the plan's grace
 *     period limited to the free tier: the billing limit source then gives each of their units
 *     an equal share of the free MPS, and the load component's cut-off does the rest. A balance
 *     back at zero or above lifts the limit at once (the payment path re-checks the payer).
 */
import { ADVISORY_LOCKS, inTransaction } from '@pepeunit/common';
import type { Pool } from 'pg';
import type { AlertSink } from '../domain/alert-sink.js';
import type { UnitLimitSource } from '../domain/load-ports.js';
import { audit, balanceOf, post } from './ledger.js';
import { fromNano, toNano } from './money.js';
import { periodAt, readPlan, type Plan } from './plans.js';
import { computeStatement, type MeteringSources, type Statement } from './metering.js';

const DAY_MS = 86_400_000;
/** Advisory lock key of the cycle: one replica runs it at a time. */
const CYCLE_LOCK = ADVISORY_LOCKS.billingCycle;

export interface CycleResult {
  period: { start: string; end: string } | null;
  statements: number;
  charged: number;
  warned: number;
  limited: number;
  restored: number;
}

export class BillingEnforcer {
  /** Limited users' free-tier MPS per unit, refreshed by each cycle and by payments (bounded by the number of users). */
  private limits = new Map<string, number>();

  constructor(
    private readonly pg: Pool,
    private readonly metering: MeteringSources,
    private readonly alerts: AlertSink,
    private readonly log: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void },
  ) {}

  /** Who is told when a user's limit changes (the load component drops its cached effective limit). */
  private readonly watchers: Array<(userUuid: string | null) => void> = [];

  readonly limitSource: UnitLimitSource = {
    name: 'billing',
    limitForUser: async (userUuid: string) => this.limits.get(userUuid) ?? null,
    watch: (changed) => {
      this.watchers.push(changed);
    },
  };

  private changed(userUuid: string): void {
    for (const watcher of this.watchers) watcher(userUuid);
  }

  /** Loads the limited users (at start and after each cycle, so every replica follows). */
  async refreshLimits(): Promise<void> {
    const plan = await readPlan(this.pg);
    const { rows } = await this.pg.query(
      `SELECT s.user_uuid, (SELECT count(*)::int FROM units u WHERE u.creator_uuid = s.user_uuid) AS units
         FROM billing_user_state s WHERE s.limited_since IS NOT NULL`,
    );
    const next = new Map<string, number>();
    for (const row of rows) next.set(row.user_uuid, freeShare(plan, row.units));
    const previous = this.limits;
    this.limits = next;
    for (const user of new Set([...previous.keys(), ...next.keys()])) if (previous.get(user) !== next.get(user)) this.changed(user);
  }

  /** Issues the statement of a closed period for one user (once) and posts its charge. */
  async issueStatement(plan: Plan, userUuid: string, period: { start: Date; end: Date }): Promise<{ statement: Statement; charged: boolean; issued: boolean }> {
    const existing = await this.pg.query('SELECT body FROM billing_statements WHERE user_uuid = $1 AND period_start = $2::timestamptz AT TIME ZONE \'utc\'', [userUuid, period.start.toISOString()]);
    if (existing.rows[0]) return { statement: JSON.parse(existing.rows[0].body), charged: false, issued: false };
    const statement = await computeStatement(this.metering, plan, userUuid, period);
    const total = toNano(statement.totals.total);
    return inTransaction(this.pg, async (client) => {
      const inserted = await client.query(
        `INSERT INTO billing_statements (user_uuid, period_start, period_end, body, total)
         VALUES ($1, $2::timestamptz AT TIME ZONE 'utc', $3::timestamptz AT TIME ZONE 'utc', $4, $5) ON CONFLICT DO NOTHING RETURNING user_uuid`,
        [userUuid, statement.period_start, statement.period_end, JSON.stringify(statement), statement.totals.total],
      );
      if (inserted.rowCount === 0) return { statement, charged: false, issued: false };
      let charged = false;
      if (total > 0n) {
        const { transactionUuid, created } = await post(client, {
          kind: 'charge',
          userUuid,
          idempotencyKey: `charge:${userUuid}:${statement.period_start}`,
          description: `Usage ${statement.period_start.slice(0, 10)} - ${statement.period_end.slice(0, 10)}: ${statement.totals.billable_mps} MPS and ${statement.totals.billable_aggregation_topics} aggregation topics above the free tier`,
          entries: [
            { account: 'customer', amount: total },
            { account: 'revenue', amount: -total },
          ],
        });
        await client.query(`UPDATE billing_statements SET transaction_uuid = $3 WHERE user_uuid = $1 AND period_start = $2::timestamptz AT TIME ZONE 'utc'`, [userUuid, statement.period_start, transactionUuid]);
        charged = created;
      }
      await audit(client, 'system', 'statement.issued', { user_uuid: userUuid, period_start: statement.period_start, total: statement.totals.total });
      return { statement, charged, issued: true };
    });
  }

  /** Arrears, warnings, limits and their lifting for one user at `now`. */
  async enforceUser(plan: Plan, userUuid: string, now: Date): Promise<'ok' | 'warned' | 'limited' | 'restored' | 'unchanged'> {
    const balance = toNano(await balanceOf(this.pg, userUuid));
    const state = (
      await this.pg.query(
        `SELECT arrears_since AT TIME ZONE 'utc' AS arrears_since, limited_since AT TIME ZONE 'utc' AS limited_since,
                last_warning_datetime AT TIME ZONE 'utc' AS last_warning_datetime FROM billing_user_state WHERE user_uuid = $1`,
        [userUuid],
      )
    ).rows[0] as
      | { arrears_since: Date | null; limited_since: Date | null; last_warning_datetime: Date | null }
      | undefined;
    const nowText = now.toISOString();
    if (balance >= 0n) {
      if (!state || (!state.arrears_since && !state.limited_since)) return 'ok';
      await this.pg.query('UPDATE billing_user_state SET arrears_since = NULL, limited_since = NULL WHERE user_uuid = $1', [userUuid]);
      await audit(this.pg, 'system', 'enforcement.restored', { user_uuid: userUuid, balance: fromNano(balance), was_limited: Boolean(state.limited_since) });
      if (this.limits.delete(userUuid)) this.changed(userUuid);
      if (state.limited_since) {
        await this.raise(userUuid, 'info', 'billing.restored', `Your balance is paid (${fromNano(balance)} ${plan.currency}): your units' limits are back to normal.`);
      }
      return 'restored';
    }
    const arrearsSince = state?.arrears_since ? state.arrears_since : now;
    if (!state?.arrears_since) {
      await this.pg.query(
        `INSERT INTO billing_user_state (user_uuid, arrears_since) VALUES ($1, $2::timestamptz AT TIME ZONE 'utc')
         ON CONFLICT (user_uuid) DO UPDATE SET arrears_since = EXCLUDED.arrears_since`,
        [userUuid, nowText],
      );
      await audit(this.pg, 'system', 'enforcement.arrears', { user_uuid: userUuid, balance: fromNano(balance) });
    }
    const graceEnd = new Date(arrearsSince.getTime() + plan.grace_period_days * DAY_MS);
    if (now.getTime() >= graceEnd.getTime()) {
      if (state?.limited_since) return 'unchanged';
      await this.pg.query(`UPDATE billing_user_state SET limited_since = $2::timestamptz AT TIME ZONE 'utc' WHERE user_uuid = $1`, [userUuid, nowText]);
      await audit(this.pg, 'system', 'enforcement.limited', { user_uuid: userUuid, balance: fromNano(balance), arrears_since: arrearsSince.toISOString() });
      const units = (await this.pg.query('SELECT count(*)::int AS n FROM units WHERE creator_uuid = $1', [userUuid])).rows[0].n as number;
      this.limits.set(userUuid, freeShare(plan, units));
      this.changed(userUuid);
      await this.raise(userUuid, 'error', 'billing.limited', `Your balance is ${fromNano(balance)} ${plan.currency} and the grace period is over: your units are limited to the free tier (${plan.free_mps} MPS in total) until you pay.`);
      return 'limited';
    }
    const lastWarning = state?.last_warning_datetime ? state.last_warning_datetime.getTime() : 0;
    if (now.getTime() - lastWarning < DAY_MS) return 'unchanged';
    await this.pg.query(`UPDATE billing_user_state SET last_warning_datetime = $2::timestamptz AT TIME ZONE 'utc' WHERE user_uuid = $1`, [userUuid, nowText]);
    await this.raise(userUuid, 'warning', 'billing.grace', `Your balance is ${fromNano(balance)} ${plan.currency}. Pay before ${graceEnd.toISOString().slice(0, 16).replace('T', ' ')} UTC, or your units will be limited to the free tier (${plan.free_mps} MPS in total).`);
    return 'warned';
  }

  /** One cycle at `now`: statements of the last closed period, then enforcement for everyone concerned. */
  async runCycle(now: Date = new Date()): Promise<CycleResult | null> {
    const lock = await this.pg.connect();
    try {
      const got = (await lock.query('SELECT pg_try_advisory_lock($1, $2) AS ok', [...CYCLE_LOCK])).rows[0].ok as boolean;
      if (!got) return null;
      try {
        return await this.cycle(now);
      } finally {
        await lock.query('SELECT pg_advisory_unlock($1, $2)', [...CYCLE_LOCK]);
      }
    } finally {
      lock.release();
    }
  }

  private async cycle(now: Date): Promise<CycleResult> {
    const plan = await readPlan(this.pg);
    const result: CycleResult = { period: null, statements: 0, charged: 0, warned: 0, limited: 0, restored: 0 };
    const current = periodAt(plan, now);
    const closed = periodAt(plan, new Date(current.start.getTime() - 1));
    const billable = toNano(plan.mps_price) > 0n || toNano(plan.aggregation_topic_price) > 0n;
    // A plan set after a period closed does not bill that period retroactively.
    if (billable && plan.update_datetime && Date.parse(plan.update_datetime) <= closed.start.getTime()) {
      result.period = { start: closed.start.toISOString(), end: closed.end.toISOString() };
      const owners = await this.pg.query<{ creator_uuid: string }>('SELECT DISTINCT creator_uuid FROM units WHERE creator_uuid IS NOT NULL ORDER BY creator_uuid');
      for (const { creator_uuid: user } of owners.rows) {
        try {
          const issued = await this.issueStatement(plan, user, closed);
          if (issued.issued) result.statements++;
          if (issued.charged) result.charged++;
        } catch (err) {
          this.log.warn({ err, user }, 'billing: statement not issued; retried next cycle');
        }
      }
    }
    const concerned = await this.pg.query<{ user_uuid: string }>(
      `SELECT user_uuid FROM billing_entries WHERE account = 'customer' GROUP BY user_uuid HAVING sum(amount) > 0
       UNION SELECT user_uuid FROM billing_user_state WHERE arrears_since IS NOT NULL OR limited_since IS NOT NULL`,
    );
    for (const { user_uuid: user } of concerned.rows) {
      const outcome = await this.enforceUser(plan, user, now);
      if (outcome === 'warned') result.warned++;
      else if (outcome === 'limited') result.limited++;
      else if (outcome === 'restored') result.restored++;
    }
    await this.refreshLimits();
    return result;
  }

  private async raise(userUuid: string, level: 'info' | 'warning' | 'error', source: string, text: string): Promise<void> {
    try {
      await this.alerts.raise({ recipient: { kind: 'user', userUuid }, source, level, text, key: source });
    } catch (err) {
      this.log.warn({ err, source }, 'billing: alert not raised');
    }
  }
}

/** Each unit of a limited user gets an equal share of the free MPS (the user's units together stay within it). */
function freeShare(plan: Plan, units: number): number {
  return Number(plan.free_mps) / Math.max(1, units);
}

