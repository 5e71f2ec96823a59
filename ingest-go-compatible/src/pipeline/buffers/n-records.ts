/**
 * NRecords (§3.7): one `n_last_entry` row per accepted message with that message's own
 * `max_count` (the reference wrote the last message's count for the whole batch, §8.1.3).
 * Keeping only the last N is the trim job's work, not the buffer's.
 */
import { ProcessingPolicyType, type TypeInputValue } from '@pepeunit/common/datapipe/index';
import { DEFAULT_MAX_PENDING_ROWS, type NLastEntryRow, type PolicyBuffer } from './types.js';

export interface NRecordsEntry {
  unitNodeUuid: string;
  state: string;
  stateType: TypeInputValue;
  atMs: number;
  /** The node's `n_records_count`. */
  maxCount: number;
}

export class NRecordsBuffer implements PolicyBuffer<NLastEntryRow> {
  readonly policy = ProcessingPolicyType.NRecords;
  private rows: NLastEntryRow[] = [];
  constructor(private readonly maxPendingRows = DEFAULT_MAX_PENDING_ROWS) {}

  get size(): number {
    return this.rows.length;
  }

  add(entry: NRecordsEntry): void {
    this.rows.push({
      unit_node_uuid: entry.unitNodeUuid,
      state: entry.state,
      state_type: entry.stateType,
      create_datetime: entry.atMs,
      max_count: entry.maxCount,
      size: Buffer.byteLength(entry.state, 'utf8'),
    });
  }

  drain(): NLastEntryRow[] {
    const out = this.rows;
    this.rows = [];
    return out;
  }

  /** Failed rows go back in front (oldest first); beyond the cap the oldest are discarded. */
  requeue(rows: readonly NLastEntryRow[]): number {
    this.rows = [...rows, ...this.rows];
    const excess = this.rows.length - this.maxPendingRows;
    if (excess > 0) this.rows.splice(0, excess);
    return Math.max(0, excess);
  }
}
