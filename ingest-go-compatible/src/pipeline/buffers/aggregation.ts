/**
 * Aggregation (§3.9): tumbling windows per (node, window size, window start) with O(1)
 * state (sum, count, min, max; the reference also kept every value, §7). Function and size
 * are kept per window, from the node's own config (the reference applied the last message's
 * to every node, §8.1.3); if a node's function changes mid-window, the latest one is used.
 *
 * Emission: `drainClosed(now)` emits every window whose end is strictly before `now`, with
 * `create_datetime = now` (flush time), as the reference. Windows without messages emit
 * nothing. A message for a window that has already been emitted (end < the last drain time,
 * e.g. a late broker timestamp) is refused with `'late'` instead of writing a second row for
 * the same window.
 *
 * Shutdown and restart: the reference lost open windows (up to a day of data, §8.1.4).
 * `drainForShutdown(now)` returns the closed windows' rows to write and a JSON-serialisable
 * snapshot of the open windows (and rows whose write failed) to persist; `restore(snapshot)`
 * merges it back after a restart, combining with windows that reopened meanwhile.
 */
import { AggregationFunctions, ProcessingPolicyType } from '@pepeunit/common/datapipe/index';
import { aggregationWindow } from '../window.js';
import { DEFAULT_MAX_PENDING_ROWS, type AggregationEntryRow, type PolicyBuffer } from './types.js';

/** The whole state of one open window: a fixed set of fields, whatever the message count. */
export interface AggregationWindowState {
  unit_node_uuid: string;
  aggregation_type: AggregationFunctions;
  time_window_size: number;
  start_ms: number;
  end_ms: number;
  sum: number;
  count: number;
  min: number;
  max: number;
}

export interface AggregationSnapshot {
  version: 1;
  /** Drain time up to which windows were emitted. */
  closedBeforeMs: number;
  windows: AggregationWindowState[];
  pendingRows: AggregationEntryRow[];
}

export interface AggregationEntry {
  unitNodeUuid: string;
  /** A finite number (the pipeline drops anything else as `not_numeric`). */
  value: number;
  atMs: number;
  timeWindowSize: number;
  aggregationFunction: AggregationFunctions;
}

export function aggregateValue(w: AggregationWindowState): number {
  switch (w.aggregation_type) {
    case AggregationFunctions.Avg:
      return w.sum / w.count;
    case AggregationFunctions.Min:
      return w.min;
    case AggregationFunctions.Max:
      return w.max;
    default:
      return w.sum;
  }
}

const windowKey = (unitNodeUuid: string, size: number, startMs: number): string => `${unitNodeUuid}\u0000${size}\u0000${startMs}`;

export class AggregationBuffer implements PolicyBuffer<AggregationEntryRow> {
  readonly policy = ProcessingPolicyType.Aggregation;
  private windows = new Map<string, AggregationWindowState>();
  private pendingRows: AggregationEntryRow[] = [];
  private closedBeforeMs = Number.NEGATIVE_INFINITY;
  constructor(private readonly maxPendingRows = DEFAULT_MAX_PENDING_ROWS) {}

  get size(): number {
    return this.windows.size + this.pendingRows.length;
  }

  get openWindowCount(): number {
    return this.windows.size;
  }

  /** The live state of one window (for tests and diagnostics). */
  window(unitNodeUuid: string, timeWindowSize: number, startMs: number): Readonly<AggregationWindowState> | undefined {
    return this.windows.get(windowKey(unitNodeUuid, timeWindowSize, startMs));
  }

  add(entry: AggregationEntry): 'added' | 'late' {
    const { startMs, endMs } = aggregationWindow(entry.atMs, entry.timeWindowSize);
    if (endMs < this.closedBeforeMs) return 'late';
    const key = windowKey(entry.unitNodeUuid, entry.timeWindowSize, startMs);
    const w = this.windows.get(key);
    if (w === undefined) {
      this.windows.set(key, {
        unit_node_uuid: entry.unitNodeUuid,
        aggregation_type: entry.aggregationFunction,
        time_window_size: entry.timeWindowSize,
        start_ms: startMs,
        end_ms: endMs,
        sum: entry.value,
        count: 1,
        min: entry.value,
        max: entry.value,
      });
      return 'added';
    }
    w.aggregation_type = entry.aggregationFunction;
    w.sum += entry.value;
    w.count += 1;
    if (entry.value < w.min) w.min = entry.value;
    if (entry.value > w.max) w.max = entry.value;
    return 'added';
  }

  /** Rows of the windows that ended strictly before `nowMs` (plus rows requeued earlier). */
  drainClosed(nowMs: number): AggregationEntryRow[] {
    const rows = this.pendingRows;
    this.pendingRows = [];
    for (const [key, w] of this.windows) {
      if (w.end_ms < nowMs) {
        rows.push(toRow(w, nowMs));
        this.windows.delete(key);
      }
    }
    if (nowMs > this.closedBeforeMs) this.closedBeforeMs = nowMs;
    return rows;
  }

  drain(nowMs: number): AggregationEntryRow[] {
    return this.drainClosed(nowMs);
  }

  requeue(rows: readonly AggregationEntryRow[]): number {
    this.pendingRows = [...rows, ...this.pendingRows];
    const excess = this.pendingRows.length - this.maxPendingRows;
    if (excess > 0) this.pendingRows.splice(0, excess);
    return Math.max(0, excess);
  }

  /** A copy of everything still held (open windows and unwritten rows). */
  snapshot(): AggregationSnapshot {
    return {
      version: 1,
      closedBeforeMs: Number.isFinite(this.closedBeforeMs) ? this.closedBeforeMs : 0,
      windows: [...this.windows.values()].map((w) => ({ ...w })),
      pendingRows: this.pendingRows.map((r) => ({ ...r })),
    };
  }

  /**
   * On shutdown: the rows to write now (windows closed at `nowMs`) and the snapshot of the
   * open windows to persist. The buffer is empty afterwards.
   */
  drainForShutdown(nowMs: number): { rows: AggregationEntryRow[]; open: AggregationSnapshot } {
    const rows = this.drainClosed(nowMs);
    const open = this.snapshot();
    this.windows = new Map();
    this.pendingRows = [];
    return { rows, open };
  }

  /** Merges a snapshot back (after a restart); windows that reopened meanwhile are combined. */
  restore(snapshot: AggregationSnapshot): void {
    for (const s of snapshot.windows) {
      const key = windowKey(s.unit_node_uuid, s.time_window_size, s.start_ms);
      const w = this.windows.get(key);
      if (w === undefined) {
        this.windows.set(key, { ...s });
        continue;
      }
      // The live window saw the newer messages, so its function wins.
      w.sum += s.sum;
      w.count += s.count;
      if (s.min < w.min) w.min = s.min;
      if (s.max > w.max) w.max = s.max;
    }
    this.requeue(snapshot.pendingRows);
    if (snapshot.closedBeforeMs > this.closedBeforeMs) this.closedBeforeMs = snapshot.closedBeforeMs;
  }
}

function toRow(w: AggregationWindowState, nowMs: number): AggregationEntryRow {
  return {
    unit_node_uuid: w.unit_node_uuid,
    state: aggregateValue(w),
    aggregation_type: w.aggregation_type,
    time_window_size: w.time_window_size,
    create_datetime: nowMs,
    start_window_datetime: w.start_ms,
    end_window_datetime: w.end_ms,
  };
}
