/**
 * Rows the policy buffers emit and the small interface they share.
 *
 * Row objects have exactly the columns of the reference tables, in table order
 * (shared/reference/pepeunit-datapipe.md §4.1; the Go inserts are positional). Datetime
 * columns hold epoch milliseconds (UTC instants, no time-zone ambiguity); writers format them
 * with the helpers below or pass them to a client that takes numbers.
 */
import type { AggregationFunctions, ProcessingPolicyType, TypeInputValue } from '@pepeunit/common/datapipe/index';

export const N_LAST_ENTRY_COLUMNS = ['unit_node_uuid', 'state', 'state_type', 'create_datetime', 'max_count', 'size'] as const;
export const WINDOW_ENTRY_COLUMNS = ['unit_node_uuid', 'state', 'state_type', 'create_datetime', 'expiration_datetime', 'size'] as const;
export const AGGREGATION_ENTRY_COLUMNS = [
  'unit_node_uuid',
  'state',
  'aggregation_type',
  'time_window_size',
  'create_datetime',
  'start_window_datetime',
  'end_window_datetime',
] as const;
/** Columns LastValue sets on `units_nodes` (joined on `uuid`). */
export const LAST_VALUE_COLUMNS = ['unit_node_uuid', 'state', 'last_update_datetime'] as const;

/** ClickHouse `n_last_entry` (NRecords). */
export interface NLastEntryRow {
  unit_node_uuid: string;
  state: string;
  state_type: TypeInputValue;
  /** DateTime64(3), epoch ms. */
  create_datetime: number;
  max_count: number;
  /** UTF-8 byte length of `state`. */
  size: number;
}

/** ClickHouse `window_entry` (TimeWindow). */
export interface WindowEntryRow {
  unit_node_uuid: string;
  state: string;
  state_type: TypeInputValue;
  /** DateTime64(3), epoch ms. */
  create_datetime: number;
  /** DateTime (whole seconds), epoch ms of `create + time_window_size`, truncated to the second. */
  expiration_datetime: number;
  size: number;
}

/** ClickHouse `aggregation_entry` (Aggregation). */
export interface AggregationEntryRow {
  unit_node_uuid: string;
  state: number;
  aggregation_type: AggregationFunctions;
  time_window_size: number;
  /** DateTime64(3), epoch ms: when the window was emitted (flush time), as the reference. */
  create_datetime: number;
  start_window_datetime: number;
  end_window_datetime: number;
}

/** Postgres `UPDATE units_nodes SET state, last_update_datetime` (LastValue). */
export interface LastValueRow {
  unit_node_uuid: string;
  state: string;
  /** `timestamp` (no zone) holding UTC wall time, whole seconds: `YYYY-MM-DD HH:MM:SS`. */
  last_update_datetime: string;
}

/** What every policy buffer offers to the flush loop. Pure in-memory, no I/O. */
export interface PolicyBuffer<Row> {
  readonly policy: ProcessingPolicyType;
  /** Buffered entries (LastValue: nodes; NRecords/TimeWindow: rows; Aggregation: open windows + pending rows). */
  readonly size: number;
  /** Takes the rows that are ready to be written at `nowMs`. */
  drain(nowMs: number): Row[];
  /** Puts rows back after a failed write; returns how many were discarded to respect the cap. */
  requeue(rows: readonly Row[]): number;
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** `YYYY-MM-DD HH:MM:SS` in UTC, truncated to whole seconds. */
export function formatUtcSeconds(ms: number): string {
  const d = new Date(Math.floor(ms / 1000) * 1000);
  return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

/** `YYYY-MM-DD HH:MM:SS.mmm` in UTC (ClickHouse DateTime64(3) text). */
export function formatUtcMillis(ms: number): string {
  const whole = Math.floor(ms);
  return `${formatUtcSeconds(whole)}.${pad(((whole % 1000) + 1000) % 1000, 3)}`;
}

/** Default cap on rows kept for retry by the NRecords/TimeWindow/Aggregation buffers. */
export const DEFAULT_MAX_PENDING_ROWS = 100_000;
