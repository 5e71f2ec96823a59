/**
 * Metering: the itemised statement of one user for one billing period, computed exactly from
 *  - message counts of the user's units (the load component's rollups, through
 *    `app.loadPorts.usage`), turned into the period's average MPS, and
 *  - the storage-weighted aggregation metric (aggregation-metric.ts).
 * Arithmetic is integer (money.ts, 10^-9 units); every division rounds towards zero, so a user
 * is never charged for a fraction they did not use.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import type { Pool } from 'pg';
import type { LoadUsageReader } from '../domain/load-ports.js';
import { fromNano, maxNano, mulNano, ratioNano, toNano } from './money.js';
import type { Plan } from './plans.js';
import { ROWS_PER_TOPIC_DAY, storedRowsByNode } from './aggregation-metric.js';

export interface Statement {
  user_uuid: string;
  period_start: string;
  period_end: string;
  currency: string;
  units: Array<{ unit_uuid: string; repo_uuid: string | null; messages: number; average_mps: string; peak_mps: number }>;
  aggregation_nodes: Array<{ unit_node_uuid: string; unit_uuid: string; rows: number; topic_equivalents: string }>;
  totals: {
    messages: number;
    period_seconds: number;
    average_mps: string;
    free_mps: string;
    billable_mps: string;
    mps_price: string;
    mps_charge: string;
    stored_rows: number;
    aggregation_topics: string;
    free_aggregation_topics: string;
    billable_aggregation_topics: string;
    aggregation_topic_price: string;
    aggregation_charge: string;
    total: string;
  };
}

export interface MeteringSources {
  pg: Pool;
  clickhouse: ClickHouseClient;
  usage: () => LoadUsageReader;
}

export async function computeStatement(sources: MeteringSources, plan: Plan, userUuid: string, period: { start: Date; end: Date }): Promise<Statement> {
  const seconds = BigInt(Math.round((period.end.getTime() - period.start.getTime()) / 1000));
  const days = BigInt(plan.billing_period_days);
  const [usage, rows] = await Promise.all([sources.usage().userUsage(userUuid, period.start, period.end), storedRowsByNode(sources.pg, sources.clickhouse, userUuid, period.start, period.end)]);
  const units = [...usage].sort((a, b) => (a.unitUuid < b.unitUuid ? -1 : 1));
  const messages = units.reduce((total, u) => total + BigInt(u.messages), 0n);
  const averageMps = ratioNano(messages, seconds);
  const billableMps = maxNano(0n, averageMps - toNano(plan.free_mps));
  const mpsCharge = mulNano(billableMps, toNano(plan.mps_price));
  const storedRows = rows.reduce((total, r) => total + BigInt(r.rows), 0n);
  const rowsPerTopicPeriod = BigInt(ROWS_PER_TOPIC_DAY) * days;
  const topics = ratioNano(storedRows, rowsPerTopicPeriod);
  const billableTopics = maxNano(0n, topics - toNano(plan.free_aggregation_topics));
  const aggregationCharge = mulNano(billableTopics, toNano(plan.aggregation_topic_price));
  return {
    user_uuid: userUuid,
    period_start: period.start.toISOString(),
    period_end: period.end.toISOString(),
    currency: plan.currency,
    units: units.map((u) => ({ unit_uuid: u.unitUuid, repo_uuid: u.repoUuid, messages: u.messages, average_mps: fromNano(ratioNano(BigInt(u.messages), seconds)), peak_mps: u.peakMps })),
    aggregation_nodes: rows.map((r) => ({ ...r, topic_equivalents: fromNano(ratioNano(BigInt(r.rows), rowsPerTopicPeriod)) })),
    totals: {
      messages: Number(messages),
      period_seconds: Number(seconds),
      average_mps: fromNano(averageMps),
      free_mps: plan.free_mps,
      billable_mps: fromNano(billableMps),
      mps_price: plan.mps_price,
      mps_charge: fromNano(mpsCharge),
      stored_rows: Number(storedRows),
      aggregation_topics: fromNano(topics),
      free_aggregation_topics: plan.free_aggregation_topics,
      billable_aggregation_topics: fromNano(billableTopics),
      aggregation_topic_price: plan.aggregation_topic_price,
      aggregation_charge: fromNano(aggregationCharge),
      total: fromNano(mpsCharge + aggregationCharge),
    },
  };
}
