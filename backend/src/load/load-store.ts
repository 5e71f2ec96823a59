/**
 * The ClickHouse side of load history (migration 006_unit_load.sql): writing the sampler's rows
 * and reading them back for REST and for billing (`LoadUsageReader`, domain/load-ports.ts).
 *
 * Tables (all merged by the engine, so every read aggregates with sum/max):
 *   unit_load_minute  (creator_uuid, unit_uuid, repo_uuid, minute, messages)          8 days
 *   unit_load_hourly  (..., hour, messages, peak_minute_messages)                    400 days
 *   unit_load_daily   (..., day,  messages, peak_minute_messages)                    5 years
 *
 * Range reads are exact to the minute: whole hours come from `unit_load_hourly`, the partial
 * hours at both ends from `unit_load_minute` (so a range older than 8 days is exact to the hour).
 */
import type { ClickHouseClient } from '@clickhouse/client';
import type { LoadUsageReader, UnitUsage } from '../domain/load-ports.js';

/** The all-zero uuid stands for "no creator" (units.creator_uuid is NULL only transiently). */
export const NO_CREATOR = '00000000-0000-0000-0000-000000000000';

export interface MinuteRow {
  creator_uuid: string;
  unit_uuid: string;
  repo_uuid: string | null;
  /** Unix seconds of the minute's start. */
  minute: number;
  messages: number;
}

export interface PeriodRow {
  creator_uuid: string;
  unit_uuid: string;
  repo_uuid: string | null;
  /** Unix seconds of the period's start. */
  start: number;
  messages: number;
  peak_minute_messages: number;
}

export async function insertMinuteRows(clickhouse: ClickHouseClient, rows: readonly MinuteRow[]): Promise<void> {
  if (rows.length === 0) return;
  await clickhouse.insert({ table: 'unit_load_minute', values: rows as MinuteRow[], format: 'JSONEachRow' });
}

/** Closed minutes, written into the hourly and daily rollups. */
export async function insertRollupRows(clickhouse: ClickHouseClient, rows: readonly PeriodRow[]): Promise<void> {
  if (rows.length === 0) return;
  const hourly = rows.map((r) => ({ creator_uuid: r.creator_uuid, unit_uuid: r.unit_uuid, repo_uuid: r.repo_uuid, hour: r.start - (r.start % 3600), messages: r.messages, peak_minute_messages: r.peak_minute_messages }));
  const daily = rows.map((r) => ({ creator_uuid: r.creator_uuid, unit_uuid: r.unit_uuid, repo_uuid: r.repo_uuid, day: new Date((r.start - (r.start % 86400)) * 1000).toISOString().slice(0, 10), messages: r.messages, peak_minute_messages: r.peak_minute_messages }));
  await Promise.all([
    clickhouse.insert({ table: 'unit_load_hourly', values: hourly, format: 'JSONEachRow' }),
    clickhouse.insert({ table: 'unit_load_daily', values: daily, format: 'JSONEachRow' }),
  ]);
}

/** Which rows a range read covers. Exactly one of the filters should be given (all are bound). */
export interface LoadFilter {
  creatorUuid?: string;
  unitUuids?: readonly string[];
  repoUuid?: string;
}

export interface UnitTotals {
  unit_uuid: string;
  creator_uuid: string;
  repo_uuid: string | null;
  messages: number;
  peak_minute_messages: number;
}

function whereOf(filter: LoadFilter, params: Record<string, unknown>): string {
  const parts: string[] = [];
  if (filter.creatorUuid !== undefined) {
    parts.push('creator_uuid = {creator:UUID}');
    params.creator = filter.creatorUuid;
  }
  if (filter.unitUuids !== undefined) {
    parts.push('unit_uuid IN {units:Array(UUID)}');
    params.units = filter.unitUuids;
  }
  if (filter.repoUuid !== undefined) {
    parts.push('repo_uuid = {repo:UUID}');
    params.repo = filter.repoUuid;
  }
  return parts.length === 0 ? '1' : parts.join(' AND ');
}

/**
 * Messages and busiest minute per unit over [from, to) (unix seconds; from floored and to raised to whole minutes).
 * Whole hours from the hourly rollup, the edges from the minute table.
 */
export async function unitTotals(clickhouse: ClickHouseClient, filter: LoadFilter, fromS: number, toS: number, limit?: number): Promise<UnitTotals[]> {
  // Minutes touched by the range: the current, partial minute is included.
  const from = fromS - (fromS % 60);
  const to = Math.ceil(toS / 60) * 60;
  if (to <= from) return [];
  const hourFrom = Math.ceil(from / 3600) * 3600;
  const hourTo = Math.floor(to / 3600) * 3600;
  const params: Record<string, unknown> = { from, to, hourFrom, hourTo };
  const where = whereOf(filter, params);
  const parts: string[] = [];
  if (hourTo > hourFrom) {
    parts.push(`SELECT unit_uuid, creator_uuid, repo_uuid, sum(messages) AS m, max(peak_minute_messages) AS p
                  FROM unit_load_hourly WHERE ${where} AND hour >= toDateTime({hourFrom:UInt32}) AND hour < toDateTime({hourTo:UInt32})
                 GROUP BY unit_uuid, creator_uuid, repo_uuid`);
    // Edges from minutes: [from, hourFrom) and [hourTo, to).
    parts.push(`SELECT unit_uuid, creator_uuid, repo_uuid, sum(mm) AS m, max(mm) AS p FROM (
                  SELECT unit_uuid, creator_uuid, repo_uuid, minute, sum(messages) AS mm FROM unit_load_minute
                   WHERE ${where} AND ((minute >= toDateTime({from:UInt32}) AND minute < toDateTime({hourFrom:UInt32}))
                                    OR (minute >= toDateTime({hourTo:UInt32}) AND minute < toDateTime({to:UInt32})))
                   GROUP BY unit_uuid, creator_uuid, repo_uuid, minute)
                 GROUP BY unit_uuid, creator_uuid, repo_uuid`);
  } else {
    parts.push(`SELECT unit_uuid, creator_uuid, repo_uuid, sum(mm) AS m, max(mm) AS p FROM (
                  SELECT unit_uuid, creator_uuid, repo_uuid, minute, sum(messages) AS mm FROM unit_load_minute
                   WHERE ${where} AND minute >= toDateTime({from:UInt32}) AND minute < toDateTime({to:UInt32})
                   GROUP BY unit_uuid, creator_uuid, repo_uuid, minute)
                 GROUP BY unit_uuid, creator_uuid, repo_uuid`);
  }
  let query = `SELECT toString(unit_uuid) AS unit_uuid, toString(creator_uuid) AS creator_uuid, toString(repo_uuid) AS repo_uuid,
                      toUInt64(sum(m)) AS messages, toUInt64(max(p)) AS peak_minute_messages
                 FROM (${parts.join(' UNION ALL ')})
                GROUP BY unit_uuid, creator_uuid, repo_uuid
                ORDER BY messages DESC, unit_uuid`;
  if (limit !== undefined) {
    query += ' LIMIT {limit:UInt32}';
    params.limit = limit;
  }
  const result = await clickhouse.query({ query, query_params: params, format: 'JSONEachRow' });
  const rows = await result.json<{ unit_uuid: string; creator_uuid: string; repo_uuid: string | null; messages: string | number; peak_minute_messages: string | number }>();
  return rows.map((r) => ({ unit_uuid: r.unit_uuid, creator_uuid: r.creator_uuid, repo_uuid: r.repo_uuid ?? null, messages: Number(r.messages), peak_minute_messages: Number(r.peak_minute_messages) }));
}

export type Granularity = 'minute' | 'hour' | 'day';

/** Per-period totals (summed over the filtered units) for a chart: [{start, messages, mps}]. */
export async function loadSeries(clickhouse: ClickHouseClient, filter: LoadFilter, granularity: Granularity, fromS: number, toS: number): Promise<Array<{ start: number; messages: number; mps: number }>> {
  const table = granularity === 'minute' ? 'unit_load_minute' : granularity === 'hour' ? 'unit_load_hourly' : 'unit_load_daily';
  const column = granularity === 'minute' ? 'minute' : granularity === 'hour' ? 'hour' : 'day';
  const seconds = granularity === 'minute' ? 60 : granularity === 'hour' ? 3600 : 86400;
  const params: Record<string, unknown> = { from: fromS - (fromS % seconds), to: toS };
  const where = whereOf(filter, params);
  const start = granularity === 'day' ? `toUInt32(toDateTime(${column}, 'UTC'))` : `toUInt32(${column})`;
  const result = await clickhouse.query({
    query: `SELECT ${start} AS start, toUInt64(sum(messages)) AS messages FROM ${table}
             WHERE ${where} AND ${start} >= {from:UInt32} AND ${start} < {to:UInt32}
             GROUP BY start ORDER BY start LIMIT 10000`,
    query_params: params,
    format: 'JSONEachRow',
  });
  const rows = await result.json<{ start: number | string; messages: number | string }>();
  return rows.map((r) => ({ start: Number(r.start), messages: Number(r.messages), mps: Number(r.messages) / seconds }));
}

/** Billing's view (domain/load-ports.ts): usage of every unit the user created over [from, to). */
export function createUsageReader(clickhouse: ClickHouseClient): LoadUsageReader {
  return {
    async userUsage(userUuid: string, from: Date, to: Date): Promise<UnitUsage[]> {
      const rows = await unitTotals(clickhouse, { creatorUuid: userUuid }, Math.floor(from.getTime() / 1000), Math.floor(to.getTime() / 1000));
      return rows.map((r) => ({ unitUuid: r.unit_uuid, repoUuid: r.repo_uuid, messages: r.messages, peakMps: r.peak_minute_messages / 60 }));
    },
  };
}
