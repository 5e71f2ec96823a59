/**
 * Reading a node's DataPipe data (pepeunit-datapipe.md §5.1-5.2, reference bugs of §8.2.7 fixed).
 *
 * - Every filter value is bound (`{pN:Type}`); malformed values are 422s with a clear message.
 * - Keyset pagination: each page returns `next_cursor`, an opaque base64url JSON of the last
 *   row's sort key (time column, tiebreak hash, and how many rows with exactly that key were
 *   already returned). The next page starts from that key through the table's sort key
 *   `(unit_node_uuid, <time>)`, so page N costs the same as page 1. `offset` still works.
 * - `limit` 0/absent means PU_MAX_PAGINATION_SIZE (the reference meant "unlimited").
 * - `count` is `SELECT count()` (the reference fetched every row to count them).
 * - Aggregation is ordered by `start_window_datetime` (the reference used the flush time).
 * - TimeWindow never shows expired rows; NRecords never shows more than the node's N newest.
 * - LastValue reads Postgres; the filters apply to `state` and `last_update_datetime`.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import type { ExportRow } from './csv-export.js';
import type { Pool } from 'pg';
import { N_RECORDS_MAX, ProcessingPolicyType, parseConfigDateTimeText, type DataPipeConfig } from '@pepeunit/common/datapipe';
import { ValidationError } from '../../../../../errors.js';
import { isoNaive } from '../../../../../schemas/common.js';
import type {
  AggregationFunction,
  AggregationItem,
  DataPipeDataQuery,
  LastValueItem,
  NRecordsItem,
  PipeDataItem,
  PipeDataResult,
  ProcessingPolicy,
  TimeWindowItem,
} from '../../../../../schemas/datapipe.js';
import { QueryParams, TABLE_SPECS, fingerprint, visibleSource, type ClickHousePolicy } from './tables.js';

/** DateTime64(3) range (1900-01-01 .. 2299-12-31): bounds outside are clamped. */
const MIN_MS = -2208988800000;
const MAX_MS = 10413791999999;
const clampMs = (ms: number): number => Math.min(MAX_MS, Math.max(MIN_MS, ms));

export interface ReadFilters {
  readonly uuid: string;
  readonly type: ProcessingPolicy;
  readonly search: string | null;
  readonly aggregationTypes: readonly AggregationFunction[] | null;
  readonly timeWindowSize: number | null;
  readonly startAggMs: number | null;
  readonly endAggMs: number | null;
  readonly startCreateMs: number | null;
  readonly endCreateMs: number | null;
  readonly relativeCutoffMs: number | null;
  readonly order: 'asc' | 'desc';
  readonly offset: number;
  readonly limit: number;
  readonly cursor: CursorKey | null;
  /** Identifies the query (node, policy, filters, order): a cursor only continues its own query. */
  readonly queryId: string;
}

export interface CursorKey {
  /** Sort time in epoch ms. */
  readonly t: number;
  /** Tiebreak hash (UInt64 as decimal text). */
  readonly k: string;
  /** Rows with exactly (t, k) already returned. */
  readonly s: number;
}

const shown = (value: string): string => JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}...` : value);

function parseDateTimeFilter(name: string, value: string | undefined, bound: 'lower' | 'upper'): number | null {
  if (value === undefined || value === '') return null;
  const parsed = parseConfigDateTimeText(value);
  if (!parsed.ok) {
    throw new ValidationError(`${name}: ${shown(value)} is not a valid datetime (${parsed.message}); use ISO 8601, e.g. 2025-01-01T00:00:00Z (without an offset the time is UTC)`);
  }
  const ms = parsed.value.epochMs;
  // DateTime64(3) holds milliseconds: `x >= t` is `x >= ceil(t)`, `x <= t` is `x <= floor(t)`.
  return clampMs(bound === 'lower' ? Math.ceil(ms) : Math.floor(ms));
}

const UNIT_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `relative_time` `<int><s|m|h|d|M|y>` to the cutoff (epoch ms); months and years are calendar ones. */
export function relativeCutoff(value: string, nowMs: number): number {
  const m = /^(\d{1,9})([smhdMy])$/.exec(value);
  if (!m) {
    throw new ValidationError(
      `relative_time: ${shown(value)} is not valid; use a whole number followed by one unit: s (seconds), m (minutes), h (hours), d (days), M (months), y (years), e.g. 30m or 7d`,
    );
  }
  const n = Number(m[1]);
  const unit = m[2] as string;
  const unitMs = UNIT_MS[unit];
  if (unitMs !== undefined) return clampMs(nowMs - n * unitMs);
  const d = new Date(nowMs);
  if (unit === 'M') d.setUTCMonth(d.getUTCMonth() - n);
  else d.setUTCFullYear(d.getUTCFullYear() - n);
  const t = d.getTime();
  return Number.isFinite(t) ? clampMs(t) : MIN_MS;
}

export function encodeCursor(queryId: string, key: CursorKey): string {
  return Buffer.from(JSON.stringify({ v: 1, q: queryId, t: key.t, k: key.k, s: key.s }), 'utf8').toString('base64url');
}

const U64_MAX = 18446744073709551615n;

export function decodeCursor(text: string, queryId: string): CursorKey {
  const invalid = (why: string) => new ValidationError(`cursor is invalid (${why}); pass the next_cursor of the previous page unchanged`);
  if (!/^[A-Za-z0-9_-]+$/.test(text)) throw invalid('not base64url');
  let data: unknown;
  try {
    data = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw invalid('not JSON');
  }
  if (!data || typeof data !== 'object' || Array.isArray(data)) throw invalid('not an object');
  const c = data as Record<string, unknown>;
  if (c.v !== 1) throw invalid('unknown version');
  if (typeof c.t !== 'number' || !Number.isSafeInteger(c.t) || c.t < MIN_MS || c.t > MAX_MS) throw invalid('bad time');
  if (typeof c.k !== 'string' || !/^\d{1,20}$/.test(c.k) || BigInt(c.k) > U64_MAX) throw invalid('bad tiebreak');
  if (typeof c.s !== 'number' || !Number.isSafeInteger(c.s) || c.s < 0 || c.s > 1_000_000) throw invalid('bad position');
  if (c.q !== queryId) {
    throw new ValidationError('cursor belongs to another query: keep uuid, type, the filters and order_by_create_date unchanged while paging');
  }
  return { t: c.t, k: c.k, s: c.s };
}

/** Validates and normalises the query (`nowMs` anchors `relative_time`). */
export function parseReadFilters(query: DataPipeDataQuery, maxPaginationSize: number, nowMs: number): ReadFilters {
  const limit = query.limit ?? 0;
  if (limit > maxPaginationSize) throw new ValidationError(`limit must be <= ${maxPaginationSize}`);
  const order = query.order_by_create_date ?? 'desc';
  const aggregationTypes = query.aggregation_type ? [...new Set(query.aggregation_type)].sort() : null;
  const startAggMs = parseDateTimeFilter('start_agg_window_datetime', query.start_agg_window_datetime, 'lower');
  const endAggMs = parseDateTimeFilter('end_agg_window_datetime', query.end_agg_window_datetime, 'upper');
  const startCreateMs = parseDateTimeFilter('start_create_datetime', query.start_create_datetime, 'lower');
  const endCreateMs = parseDateTimeFilter('end_create_datetime', query.end_create_datetime, 'upper');
  const relative = query.relative_time === undefined || query.relative_time === '' ? null : query.relative_time;
  const relativeCutoffMs = relative === null ? null : relativeCutoff(relative, nowMs);
  const search = query.search_string ? query.search_string : null;
  if (search !== null && search.includes('\u0000')) throw new ValidationError('search_string must not contain NUL characters');
  const queryId = fingerprint([
    query.uuid.toLowerCase(),
    query.type,
    search,
    aggregationTypes,
    query.time_window_size ?? null,
    startAggMs,
    endAggMs,
    startCreateMs,
    endCreateMs,
    relative,
    order,
  ]);
  let cursor: CursorKey | null = null;
  if (query.cursor !== undefined && query.cursor !== '') {
    if ((query.offset ?? 0) > 0) throw new ValidationError('offset cannot be combined with cursor: the cursor already marks the position');
    cursor = decodeCursor(query.cursor, queryId);
  }
  return {
    uuid: query.uuid.toLowerCase(),
    type: query.type,
    search,
    aggregationTypes,
    timeWindowSize: query.time_window_size ?? null,
    startAggMs,
    endAggMs,
    startCreateMs,
    endCreateMs,
    relativeCutoffMs,
    order,
    offset: query.offset ?? 0,
    limit: limit === 0 ? maxPaginationSize : limit,
    cursor,
    queryId,
  };
}

/** `%word%` for ILIKE with the LIKE wildcards of the search text escaped (matched literally). */
function likePattern(search: string): string {
  return `%${search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** A row as the read queries select it: the export's columns plus the keyset sort key. */
interface RawRow extends ExportRow {
  _ts: number | string;
  _tb: string;
}

const iso = (ms: number | string | undefined): string => isoNaive(new Date(Number(ms)))!;

function toItem(policy: ClickHousePolicy, r: RawRow): PipeDataItem {
  switch (policy) {
    case 'NRecords':
      return {
        unit_node_uuid: r.node_text,
        state: String(r.state),
        state_type: r.state_type_text ?? '',
        create_datetime: iso(r.create_ms),
        max_count: Number(r.max_count),
        size: Number(r.size),
      } satisfies NRecordsItem;
    case 'TimeWindow':
      return {
        unit_node_uuid: r.node_text,
        state: String(r.state),
        state_type: r.state_type_text ?? '',
        create_datetime: iso(r.create_ms),
        expiration_datetime: iso(Number(r.expiration_s) * 1000),
        size: Number(r.size),
      } satisfies TimeWindowItem;
    case 'Aggregation': {
      const value = r.state === null ? Number(r.state_text) : Number(r.state);
      return {
        unit_node_uuid: r.node_text,
        state: Number.isFinite(value) ? value : null,
        aggregation_type: r.aggregation_type_text ?? '',
        time_window_size: Number(r.time_window_size),
        create_datetime: iso(r.create_ms),
        start_window_datetime: iso(r.start_ms),
        end_window_datetime: iso(r.end_ms),
      } satisfies AggregationItem;
    }
  }
}

/** N of the visible NRecords rows: the node's current n_records_count, else the policy maximum. */
export function nRecordsLimit(config: DataPipeConfig | null): number {
  if (config?.processing_policy.policy_type === ProcessingPolicyType.NRecords && config.processing_policy.n_records_count) {
    return config.processing_policy.n_records_count;
  }
  return N_RECORDS_MAX;
}

/** WHERE conditions of the filters (without keyset). */
function filterConditions(policy: ClickHousePolicy, f: ReadFilters, params: QueryParams): string[] {
  const out: string[] = [];
  const at = (ms: number) => `fromUnixTimestamp64Milli(${params.bind('Int64', ms)})`;
  if (f.search !== null && policy !== 'Aggregation') out.push(`state ILIKE ${params.bind('String', likePattern(f.search))}`);
  if (f.startCreateMs !== null) out.push(`create_datetime >= ${at(f.startCreateMs)}`);
  if (f.endCreateMs !== null) out.push(`create_datetime <= ${at(f.endCreateMs)}`);
  if (f.relativeCutoffMs !== null) out.push(`create_datetime >= ${at(f.relativeCutoffMs)}`);
  if (policy === 'Aggregation') {
    if (f.aggregationTypes !== null) out.push(`has(${params.bind('Array(String)', f.aggregationTypes)}, toString(aggregation_type))`);
    if (f.timeWindowSize !== null) out.push(`time_window_size = ${params.bind('UInt32', f.timeWindowSize)}`);
    if (f.startAggMs !== null) out.push(`end_window_datetime >= ${at(f.startAggMs)}`);
    if (f.endAggMs !== null) out.push(`end_window_datetime <= ${at(f.endAggMs)}`);
  }
  return out;
}

const sameKey = (a: RawRow, t: number, k: string) => Number(a._ts) === t && a._tb === k;

/**
 * Identical statements in flight share one ClickHouse query: many viewers of one chart, or a
 * burst of the same page, cost one read. Nothing is kept after the answer (no staleness); the
 * map holds only queries running right now and is bounded.
 */
const MAX_SHARED_QUERIES = 1000;
const inFlight = new WeakMap<ClickHouseClient, Map<string, Promise<unknown[]>>>();

function selectRows<T>(clickhouse: ClickHouseClient, query: string, params: QueryParams): Promise<readonly T[]> {
  let running = inFlight.get(clickhouse);
  if (!running) inFlight.set(clickhouse, (running = new Map()));
  const key = `${query}\u0000${JSON.stringify(params.values)}`;
  const shared = running.get(key);
  if (shared) return shared as Promise<T[]>;
  const promise = clickhouse.query({ query, query_params: params.values, format: 'JSONEachRow' }).then((r) => r.json<T>());
  if (running.size >= MAX_SHARED_QUERIES) return promise;
  const map = running;
  map.set(key, promise);
  void promise.then(
    () => map.delete(key),
    () => map.delete(key),
  );
  return promise;
}

/** Offsets deeper than this may be located from the other end of the rows (see `positions`). */
const FLIP_OFFSET = 10_000;

/**
 * One page of a ClickHouse table, in three cheap statements instead of one sort of every row:
 *
 * 1. positions: the sort times of the page's rows, read in the table's own order
 *    (`ORDER BY <time>` only: ClickHouse reads the sort key in order and stops after the page);
 * 2. the rows between the first and the last of those times, sorted by (time, tiebreak):
 *    a sort of about one page, not of the node's history;
 * 3. the count of the visible rows (`countRows`: without a scan where the filters allow).
 *
 * The order of the rows is exactly the order of `ORDER BY <time>, <tiebreak>` over all visible
 * rows, so pages, cursors and offsets mean what they meant with one big sort.
 */
async function readClickHouse(clickhouse: ClickHouseClient, policy: ClickHousePolicy, f: ReadFilters, nRecords: number): Promise<PipeDataResult> {
  const spec = TABLE_SPECS[policy];
  const dir = f.order === 'asc' ? 'ASC' : 'DESC';
  const reverse = f.order === 'asc' ? 'DESC' : 'ASC';
  const at = (params: QueryParams, ms: number) => `fromUnixTimestamp64Milli(${params.bind('Int64', ms)})`;
  /** `time` comes before `other` in the page order (strictly, or also when equal). */
  const before = (strict: boolean) => (f.order === 'asc' ? (strict ? '<' : '<=') : strict ? '>' : '>=');
  const after = (strict: boolean) => (f.order === 'asc' ? (strict ? '>' : '>=') : strict ? '<' : '<=');

  /** Source and WHERE of the visible, filtered rows (plus the cursor's keyset, plus `extra`). */
  const keyset = (params: QueryParams): string[] => {
    if (!f.cursor) return [];
    const t = at(params, f.cursor.t);
    const k = params.bind('UInt64', f.cursor.k);
    return [`${spec.ts} ${after(false)} ${t}`, `(${spec.ts} ${after(true)} ${t} OR ${spec.tiebreak} ${after(false)} ${k})`];
  };
  const query = (params: QueryParams, extra: (p: QueryParams) => string[] = () => [], fromCursor = true) => {
    const source = visibleSource(policy, params, f.uuid, nRecords);
    const conditions = [...source.conditions, ...filterConditions(policy, f, params)];
    if (fromCursor) conditions.push(...keyset(params));
    conditions.push(...extra(params));
    return { from: source.from, where: conditions.length ? `WHERE ${conditions.join(' AND ')}` : '' };
  };

  /**
   * Visible rows (from the cursor on unless `fromCursor` is false, plus `extra`). TimeWindow
   * without a text search: the rows minus those already expired that no TTL merge removed yet
   * (exact for any conditions); both counts come from the primary key and the expiry's minmax
   * index (ClickHouse migration 005) instead of reading every row's expiry.
   */
  const countRows = async (extra: (p: QueryParams) => string[] = () => [], fromCursor = true): Promise<number> => {
    const params = new QueryParams();
    let sql: string;
    if (policy === 'TimeWindow' && f.search === null) {
      const node = params.bind('UUID', f.uuid);
      const conditions = [`unit_node_uuid = ${node}`, ...filterConditions(policy, f, params), ...(fromCursor ? keyset(params) : []), ...extra(params)];
      const where = conditions.join(' AND ');
      sql = `SELECT (SELECT count() FROM ${spec.table} WHERE ${where}) - (SELECT count() FROM ${spec.table} WHERE ${where} AND expiration_datetime <= now()) AS c`;
    } else {
      const q = query(params, extra, fromCursor);
      sql = `SELECT count() AS c FROM ${q.from} ${q.where}`;
    }
    const rows = await selectRows<{ c: number | string }>(clickhouse, sql, params);
    return Number(rows[0]?.c ?? 0);
  };

  /**
   * Sort times of the rows at positions `skip` .. `skip + limit` (up to `limit + 1` of them).
   * A deep offset is counted from the other end when that is shorter (`total` known).
   */
  const positions = async (skip: number, total: number | null): Promise<number[]> => {
    const params = new QueryParams();
    const q = query(params);
    const ts = `toUnixTimestamp64Milli(${spec.ts}) AS t`;
    if (total !== null && skip > total / 2) {
      const last = total - 1 - skip;
      if (last < 0) return [];
      const first = Math.max(0, last - f.limit);
      const rows = await selectRows<{ t: number | string }>(
        clickhouse,
        `SELECT ${ts} FROM ${q.from} ${q.where} ORDER BY ${spec.ts} ${reverse} LIMIT ${params.bind('UInt32', last - first + 1)} OFFSET ${params.bind('UInt64', first)}`,
        params,
      );
      return rows.map((r) => Number(r.t)).reverse();
    }
    const rows = await selectRows<{ t: number | string }>(
      clickhouse,
      `SELECT ${ts} FROM ${q.from} ${q.where} ORDER BY ${spec.ts} ${dir} LIMIT ${params.bind('UInt32', f.limit + 1)} OFFSET ${params.bind('UInt64', skip)}`,
      params,
    );
    return rows.map((r) => Number(r.t));
  };

  const skip = f.cursor ? f.cursor.s : f.offset;
  const deep = !f.cursor && skip > FLIP_OFFSET;
  // A deep offset needs the count first (to count from the nearer end); otherwise both run at once.
  const countPromise = countRows(undefined, false);
  const total = deep ? await countPromise : null;
  const times = await positions(skip, total);
  let pageRows: readonly RawRow[] = [];
  if (times.length > 0) {
    const first = times[0]!;
    const lastTime = times.length > f.limit ? times.at(-1)! : null;
    // Rows strictly before the first row's time: the page starts `skip - earlier` rows into the range.
    let earlier = 0;
    if (skip > 0 && !(f.cursor && f.cursor.t === first)) {
      if (deep && total !== null && skip > total / 2) {
        earlier = total - (await countRows((p) => [`${spec.ts} ${after(false)} ${at(p, first)}`]));
      } else {
        earlier = await countRows((p) => [`${spec.ts} ${before(true)} ${at(p, first)}`]);
      }
    }
    const params = new QueryParams();
    const q = query(params, (p) => [
      `${spec.ts} ${after(false)} ${at(p, first)}`,
      ...(lastTime === null ? [] : [`${spec.ts} ${before(false)} ${at(p, lastTime)}`]),
    ]);
    pageRows = await selectRows<RawRow>(
      clickhouse,
      `SELECT ${spec.columns}, toUnixTimestamp64Milli(${spec.ts}) AS _ts, toString(${spec.tiebreak}) AS _tb
        FROM ${q.from} ${q.where}
        ORDER BY ${spec.ts} ${dir}, ${spec.tiebreak} ${dir}
        LIMIT ${params.bind('UInt32', f.limit + 1)} OFFSET ${params.bind('UInt64', Math.max(0, skip - earlier))}`,
      params,
    );
  }
  const count = await countPromise;
  const page = pageRows.slice(0, f.limit);
  let nextCursor: string | null = null;
  const last = page.at(-1);
  if (pageRows.length > f.limit && last) {
    const t = Number(last._ts);
    const k = last._tb;
    let run = 0;
    for (let i = page.length - 1; i >= 0 && sameKey(page[i]!, t, k); i--) run++;
    let s = run;
    if (run === page.length) {
      if (f.cursor) {
        // The whole page continued the cursor's own key group.
        if (f.cursor.t === t && f.cursor.k === k) s = f.cursor.s + run;
      } else if (f.offset > 0) {
        // Rows with this key may also sit before the page: count the rows strictly before the key.
        const strictlyBefore = await countRows((p) => {
          const bt = at(p, t);
          const bk = p.bind('UInt64', k);
          return [`${spec.ts} ${before(false)} ${bt}`, `(${spec.ts} ${before(true)} ${bt} OR ${spec.tiebreak} ${before(true)} ${bk})`];
        });
        s = f.offset + page.length - strictlyBefore;
      }
    }
    nextCursor = encodeCursor(f.queryId, { t, k, s });
  }
  return { count, pipe_data: page.map((r) => toItem(policy, r)), next_cursor: nextCursor };
}

/** LastValue lives in Postgres (`units_nodes.state`); one item at most, no further pages. */
async function readLastValue(pg: Pool, f: ReadFilters): Promise<PipeDataResult> {
  const values: unknown[] = [f.uuid];
  const conditions = ['uuid = $1', 'state IS NOT NULL'];
  const naive = (ms: number) => new Date(ms).toISOString().replace('Z', '');
  if (f.search !== null) {
    values.push(likePattern(f.search));
    conditions.push(`state ILIKE $${values.length}`);
  }
  for (const [ms, op] of [
    [f.startCreateMs, '>='],
    [f.endCreateMs, '<='],
    [f.relativeCutoffMs, '>='],
  ] as const) {
    if (ms === null) continue;
    values.push(naive(ms));
    conditions.push(`last_update_datetime ${op} $${values.length}::timestamp`);
  }
  const { rows } = await pg.query<{ uuid: string; state: string; ms: number }>(
    `SELECT uuid::text AS uuid, state, (extract(epoch FROM last_update_datetime) * 1000)::float8 AS ms FROM units_nodes WHERE ${conditions.join(' AND ')}`,
    values,
  );
  const row = rows[0];
  if (!row) return { count: 0, pipe_data: [], next_cursor: null };
  const item: LastValueItem = { unit_node_uuid: row.uuid, state: row.state, last_update_datetime: iso(Math.round(Number(row.ms))) };
  // One row: pages after the first (offset or cursor) are empty.
  const visible = f.offset === 0 && f.cursor === null;
  return { count: 1, pipe_data: visible ? [item] : [], next_cursor: null };
}

/** One page of a node's data; `config` is the node's current config (for NRecords' N), or null. */
export async function readPipeData(
  deps: { pg: Pool; clickhouse: ClickHouseClient },
  config: DataPipeConfig | null,
  filters: ReadFilters,
): Promise<PipeDataResult> {
  if (filters.type === 'LastValue') return readLastValue(deps.pg, filters);
  return readClickHouse(deps.clickhouse, filters.type, filters, nRecordsLimit(config));
}
