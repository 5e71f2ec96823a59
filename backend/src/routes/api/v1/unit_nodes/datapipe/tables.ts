/**
 * The three DataPipe tables in ClickHouse (clickhouse-schemas migrations 002-004) as the API
 * reads them: which column orders the rows, a deterministic tiebreaker for rows that share it,
 * the selected columns, and the "visible rows" source (NRecords: only the node's N newest).
 *
 * Every SQL text here is constant; values always travel as bound `{name:Type}` parameters.
 */
import { createHash } from 'node:crypto';
import { DATAPIPE_POLICY_TABLES, type DataPipeStoragePolicy } from '@pepeunit/clickhouse-schemas';

export type ClickHousePolicy = DataPipeStoragePolicy;

interface TableSpec {
  readonly table: string;
  /** The time column of the table's sort key: keyset pagination and ordering use it. */
  readonly ts: string;
  /**
   * Tiebreaker for rows with the same time: a hash of every other column, so two rows that tie
   * on (ts, tiebreak) are identical and their relative order cannot matter.
   */
  readonly tiebreak: string;
  /** Selected columns (aliases never shadow a real column, so WHERE keeps seeing the columns). */
  readonly columns: string;
}

export const TABLE_SPECS: Readonly<Record<ClickHousePolicy, TableSpec>> = {
  NRecords: {
    table: DATAPIPE_POLICY_TABLES.NRecords,
    ts: 'create_datetime',
    tiebreak: 'cityHash64(state, state_type, max_count, size)',
    columns:
      'toString(unit_node_uuid) AS node_text, state, toString(state_type) AS state_type_text, toUnixTimestamp64Milli(create_datetime) AS create_ms, max_count, size',
  },
  TimeWindow: {
    table: DATAPIPE_POLICY_TABLES.TimeWindow,
    ts: 'create_datetime',
    tiebreak: 'cityHash64(state, state_type, expiration_datetime, size)',
    columns:
      'toString(unit_node_uuid) AS node_text, state, toString(state_type) AS state_type_text, toUnixTimestamp64Milli(create_datetime) AS create_ms, toUnixTimestamp(expiration_datetime) AS expiration_s, size',
  },
  Aggregation: {
    table: DATAPIPE_POLICY_TABLES.Aggregation,
    ts: 'start_window_datetime',
    tiebreak: 'cityHash64(state, aggregation_type, time_window_size, create_datetime, end_window_datetime)',
    columns:
      'toString(unit_node_uuid) AS node_text, state, toString(state) AS state_text, toString(aggregation_type) AS aggregation_type_text, time_window_size, toUnixTimestamp64Milli(create_datetime) AS create_ms, toUnixTimestamp64Milli(start_window_datetime) AS start_ms, toUnixTimestamp64Milli(end_window_datetime) AS end_ms',
  },
};

/** Generates `{pN:Type}` placeholders; the SQL text never contains a value. */
export class QueryParams {
  readonly values: Record<string, unknown> = {};
  private next = 0;
  bind(type: string, value: unknown): string {
    const name = `p${this.next++}`;
    this.values[name] = value;
    return `{${name}:${type}}`;
  }
}

/**
 * The rows of a node that a reader may see. NRecords: the N newest rows only (surplus rows wait
 * for the ingest's trim job and must stay invisible); TimeWindow: rows not expired yet (TTL
 * merges are lazy). The caller adds `unit_node_uuid = ...` itself for the other tables.
 */
export function visibleSource(policy: ClickHousePolicy, params: QueryParams, nodeUuid: string, nRecords: number): { from: string; conditions: string[] } {
  const spec = TABLE_SPECS[policy];
  const node = params.bind('UUID', nodeUuid);
  if (policy === 'NRecords') {
    const n = params.bind('UInt32', nRecords);
    return {
      from: `(SELECT * FROM ${spec.table} WHERE unit_node_uuid = ${node} ORDER BY ${spec.ts} DESC, ${spec.tiebreak} DESC LIMIT ${n})`,
      conditions: [],
    };
  }
  const conditions = [`unit_node_uuid = ${node}`];
  if (policy === 'TimeWindow') conditions.push('expiration_datetime > now()');
  return { from: spec.table, conditions };
}

/** Short stable hash (hex) of a JSON-able value. */
export function fingerprint(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}
