/**
 * What a stopping ingest could not hand to its databases, kept in Postgres
 * (`pepeunit_ingest_spill`, backend migration 005) and taken back by the next ingest that
 * starts: the open Aggregation windows (O(1) state each) and rows whose write had not
 * succeeded by the shutdown deadline. Claiming deletes the rows (`FOR UPDATE SKIP LOCKED`), so
 * with several ingest processes each spill is restored once.
 *
 * Against a reference database without the table (an ingest dropped into an existing Pepeunit
 * deployment), persistence is unavailable: the ingest says so at start-up and, at shutdown,
 * counts what it could not keep as `shutdown_unwritten`.
 */
import { inTransaction } from '@pepeunit/common';
import type pg from 'pg';
import type { Logger } from '@pepeunit/common';
import type { AggregationEntryRow, AggregationSnapshot, LastValueRow, NLastEntryRow, WindowEntryRow } from './pipeline/index.js';

export const SPILL_TABLE = 'pepeunit_ingest_spill';
/** Rows (or windows) per stored record. */
const ROWS_PER_RECORD = 20_000;

export type SpillRecord =
  | { kind: 'aggregation_snapshot'; payload: AggregationSnapshot }
  | { kind: 'n_last_entry'; payload: NLastEntryRow[] }
  | { kind: 'window_entry'; payload: WindowEntryRow[] }
  | { kind: 'aggregation_entry'; payload: AggregationEntryRow[] }
  | { kind: 'last_value'; payload: LastValueRow[] };

export class SpillStore {
  private available: boolean | null = null;

  constructor(
    private readonly pool: pg.Pool,
    private readonly instance: string,
    private readonly logger: Logger,
  ) {}

  /** Whether the spill table exists (checked once; re-checked after a failure). */
  async isAvailable(): Promise<boolean> {
    if (this.available !== null) return this.available;
    const result = await this.pool.query<{ exists: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS exists`, [SPILL_TABLE]);
    this.available = result.rows[0]?.exists === true;
    return this.available;
  }

  /** Claims (and deletes) every stored record, oldest first. */
  async claimAll(): Promise<SpillRecord[]> {
    if (!(await this.isAvailable())) return [];
    const out: SpillRecord[] = [];
    for (;;) {
      const result = await this.pool.query<{ kind: SpillRecord['kind']; payload: unknown }>(
        `DELETE FROM ${SPILL_TABLE}
          WHERE id IN (SELECT id FROM ${SPILL_TABLE} ORDER BY id LIMIT 50 FOR UPDATE SKIP LOCKED)
          RETURNING id, kind, payload`,
      );
      if (result.rows.length === 0) break;
      const rows = [...result.rows].sort((a, b) => Number((a as { id?: string }).id) - Number((b as { id?: string }).id));
      for (const row of rows) out.push({ kind: row.kind, payload: row.payload } as SpillRecord);
    }
    return out;
  }

  /** Stores records (chunked); throws when Postgres fails. Returns rows/windows stored. */
  async save(records: readonly SpillRecord[]): Promise<number> {
    if (records.length === 0) return 0;
    if (!(await this.isAvailable())) throw new Error(`table ${SPILL_TABLE} does not exist (run the backend's Postgres migrations)`);
    const chunks: { kind: string; payload: string; count: number }[] = [];
    for (const record of records) {
      if (record.kind === 'aggregation_snapshot') {
        const { windows, pendingRows } = record.payload;
        for (let i = 0; i < Math.max(1, windows.length); i += ROWS_PER_RECORD) {
          const part: AggregationSnapshot = { ...record.payload, windows: windows.slice(i, i + ROWS_PER_RECORD), pendingRows: i === 0 ? pendingRows : [] };
          chunks.push({ kind: record.kind, payload: JSON.stringify(part), count: part.windows.length + part.pendingRows.length });
        }
      } else {
        const rows = record.payload as unknown[];
        for (let i = 0; i < rows.length; i += ROWS_PER_RECORD) {
          const part = rows.slice(i, i + ROWS_PER_RECORD);
          chunks.push({ kind: record.kind, payload: JSON.stringify(part), count: part.length });
        }
      }
    }
    let stored = 0;
    try {
      await inTransaction(this.pool, async (client) => {
        for (const c of chunks) {
          await client.query(`INSERT INTO ${SPILL_TABLE} (kind, payload, row_count, instance) VALUES ($1, $2::jsonb, $3, $4)`, [c.kind, c.payload, c.count, this.instance]);
          stored += c.count;
        }
      });
    } catch (error) {
      this.available = null;
      stored = 0;
      throw error;
    }
    this.logger.info({ records: chunks.length, entries: stored }, 'ingest state persisted for the next start');
    return stored;
  }
}
