/**
 * TimeWindow (§3.8): one `window_entry` row per accepted message; it expires (table TTL)
 * `time_window_size` seconds after its receive time, whole seconds. The size is taken per
 * entry.
 */
import { ProcessingPolicyType, type TypeInputValue } from '@pepeunit/common/datapipe/index';
import { DEFAULT_MAX_PENDING_ROWS, type PolicyBuffer, type WindowEntryRow } from './types.js';

export interface TimeWindowEntry {
  unitNodeUuid: string;
  state: string;
  stateType: TypeInputValue;
  atMs: number;
  /** The node's `time_window_size` in seconds. */
  timeWindowSize: number;
}

export class TimeWindowBuffer implements PolicyBuffer<WindowEntryRow> {
  readonly policy = ProcessingPolicyType.TimeWindow;
  private rows: WindowEntryRow[] = [];
  constructor(private readonly maxPendingRows = DEFAULT_MAX_PENDING_ROWS) {}

  get size(): number {
    return this.rows.length;
  }

  add(entry: TimeWindowEntry): void {
    this.rows.push({
      unit_node_uuid: entry.unitNodeUuid,
      state: entry.state,
      state_type: entry.stateType,
      create_datetime: entry.atMs,
      expiration_datetime: Math.floor((entry.atMs + entry.timeWindowSize * 1000) / 1000) * 1000,
      size: Buffer.byteLength(entry.state, 'utf8'),
    });
  }

  drain(): WindowEntryRow[] {
    const out = this.rows;
    this.rows = [];
    return out;
  }

  requeue(rows: readonly WindowEntryRow[]): number {
    this.rows = [...rows, ...this.rows];
    const excess = this.rows.length - this.maxPendingRows;
    if (excess > 0) this.rows.splice(0, excess);
    return Math.max(0, excess);
  }
}
