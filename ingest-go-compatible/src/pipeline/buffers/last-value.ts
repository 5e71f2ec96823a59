/**
 * LastValue (§3.6): per node only the newest value survives until the next flush, so a node
 * costs at most one Postgres update per flush interval. Unlike the reference, a failed
 * write is retried per row (`requeue`), never blocking the other nodes (§8.1.5), and a row
 * is requeued only if no newer value arrived meanwhile. Times are UTC whole seconds.
 */
import { ProcessingPolicyType } from '@pepeunit/common/datapipe/index';
import { formatUtcSeconds, type LastValueRow, type PolicyBuffer } from './types.js';

interface Entry {
  state: string;
  atMs: number;
}

export class LastValueBuffer implements PolicyBuffer<LastValueRow> {
  readonly policy = ProcessingPolicyType.LastValue;
  private entries = new Map<string, Entry>();

  get size(): number {
    return this.entries.size;
  }

  /** Keeps the value unless an entry with a later time is already buffered. */
  add(unitNodeUuid: string, state: string, atMs: number): void {
    const existing = this.entries.get(unitNodeUuid);
    if (existing && existing.atMs > atMs) return;
    this.entries.set(unitNodeUuid, { state, atMs });
  }

  /** The latest entry buffered for a node (for tests and diagnostics). */
  peek(unitNodeUuid: string): { state: string; atMs: number } | undefined {
    const e = this.entries.get(unitNodeUuid);
    return e ? { ...e } : undefined;
  }

  drain(): LastValueRow[] {
    const rows: LastValueRow[] = [];
    for (const [unitNodeUuid, e] of this.entries) {
      rows.push({ unit_node_uuid: unitNodeUuid, state: e.state, last_update_datetime: formatUtcSeconds(e.atMs) });
    }
    this.entries = new Map();
    return rows;
  }

  requeue(rows: readonly LastValueRow[]): number {
    for (const row of rows) {
      if (this.entries.has(row.unit_node_uuid)) continue;
      this.entries.set(row.unit_node_uuid, { state: row.state, atMs: Date.parse(`${row.last_update_datetime.replace(' ', 'T')}Z`) });
    }
    return 0;
  }
}
