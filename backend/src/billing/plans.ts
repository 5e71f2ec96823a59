/**
 * The instance's plan, set by the admin: free MPS per user and the price of each MPS above it,
 * free aggregation topics and the price of each one above them, the billing period (days from an
 * anchor), the currency and the grace period. One row (`billing_plan`); defaults until set.
 */
import type { Pool, PoolClient } from 'pg';
import { fromNano, toNano } from './money.js';

export interface Plan {
  currency: string;
  period_anchor: string;
  billing_period_days: number;
  grace_period_days: number;
  free_mps: string;
  mps_price: string;
  free_aggregation_topics: string;
  aggregation_topic_price: string;
  stars_per_unit: string;
  update_datetime: string | null;
}

/** Until the admin sets a plan everything is free: prices 0, so nobody is ever charged. */
export const DEFAULT_PLAN: Plan = {
  currency: 'XTR',
  period_anchor: '2026-01-01T00:00:00.000Z',
  billing_period_days: 30,
  grace_period_days: 7,
  free_mps: '1',
  mps_price: '0',
  free_aggregation_topics: '5',
  aggregation_topic_price: '0',
  stars_per_unit: '1',
  update_datetime: null,
};

type Db = Pool | PoolClient;

const norm = (value: unknown): string => fromNano(toNano(String(value)));
const iso = (value: unknown): string => (value instanceof Date ? value : new Date(`${String(value)}Z`)).toISOString();

export async function readPlan(db: Db): Promise<Plan> {
  const { rows } = await db.query(
    `SELECT currency, period_anchor AT TIME ZONE 'utc' AS period_anchor, billing_period_days, grace_period_days, free_mps::text, mps_price::text,
            free_aggregation_topics::text, aggregation_topic_price::text, stars_per_unit::text, update_datetime AT TIME ZONE 'utc' AS update_datetime
       FROM billing_plan WHERE id = 1`,
  );
  const row = rows[0];
  if (!row) return DEFAULT_PLAN;
  return {
    currency: row.currency,
    period_anchor: iso(row.period_anchor),
    billing_period_days: row.billing_period_days,
    grace_period_days: row.grace_period_days,
    free_mps: norm(row.free_mps),
    mps_price: norm(row.mps_price),
    free_aggregation_topics: norm(row.free_aggregation_topics),
    aggregation_topic_price: norm(row.aggregation_topic_price),
    stars_per_unit: norm(row.stars_per_unit),
    update_datetime: row.update_datetime ? iso(row.update_datetime) : null,
  };
}

/** Stores the whole plan (fields not given keep their current value) and audits the change. */
export async function writePlan(client: PoolClient, changes: Partial<Omit<Plan, 'update_datetime'>>, adminUuid: string): Promise<Plan> {
  const current = await readPlan(client);
  const next = { ...current, ...changes };
  await client.query(
    `INSERT INTO billing_plan (id, currency, period_anchor, billing_period_days, grace_period_days, free_mps, mps_price,
                               free_aggregation_topics, aggregation_topic_price, stars_per_unit, update_datetime, updater_uuid)
     VALUES (1, $1, $2::timestamptz AT TIME ZONE 'utc', $3, $4, $5, $6, $7, $8, $9, now() AT TIME ZONE 'utc', $10)
     ON CONFLICT (id) DO UPDATE SET currency = EXCLUDED.currency, period_anchor = EXCLUDED.period_anchor,
       billing_period_days = EXCLUDED.billing_period_days, grace_period_days = EXCLUDED.grace_period_days,
       free_mps = EXCLUDED.free_mps, mps_price = EXCLUDED.mps_price, free_aggregation_topics = EXCLUDED.free_aggregation_topics,
       aggregation_topic_price = EXCLUDED.aggregation_topic_price, stars_per_unit = EXCLUDED.stars_per_unit,
       update_datetime = EXCLUDED.update_datetime, updater_uuid = EXCLUDED.updater_uuid`,
    [next.currency, next.period_anchor, next.billing_period_days, next.grace_period_days, next.free_mps, next.mps_price, next.free_aggregation_topics, next.aggregation_topic_price, next.stars_per_unit, adminUuid],
  );
  await client.query(`INSERT INTO billing_audit (actor, action, detail) VALUES ($1, 'plan.update', $2)`, [`admin:${adminUuid}`, JSON.stringify({ before: current, after: next })]);
  return readPlan(client);
}

/** The billing period containing `at`: [start, end). */
export function periodAt(plan: Plan, at: Date): { start: Date; end: Date } {
  const anchor = Date.parse(plan.period_anchor);
  const length = plan.billing_period_days * 86_400_000;
  const k = Math.floor((at.getTime() - anchor) / length);
  return { start: new Date(anchor + k * length), end: new Date(anchor + (k + 1) * length) };
}
