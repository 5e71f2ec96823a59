/**
 * LastValue -> Postgres: one multi-row UPDATE of `units_nodes` per chunk of the flush, all
 * values bound (uuid, state and time arrays joined with `unnest`), rows sorted by uuid so two
 * ingest processes updating overlapping nodes lock them in the same order (no deadlock).
 * `last_update_datetime` is a `timestamp` holding UTC wall time in whole seconds (as the
 * reference). A refused chunk is bisected by the QueuedWriter, so a single row the database
 * rejects (e.g. a constraint) is dropped and counted without blocking the other nodes.
 */
import { inTransaction } from '@pepeunit/common';
import type pg from 'pg';
import type { LastValueRow } from '../pipeline/index.js';
import type { WriteErrorKind, WriteTarget } from './queued-writer.js';

/** Rows per statement; the UPDATE takes three array parameters, so any size binds. */
const CHUNK_ROWS = 5000;

/**
 * SQLSTATE classes that mean "these values are refused": 22 data exception (bad encoding,
 * value too long, bad datetime), 23 integrity constraint violation, 54 program limit exceeded.
 * Anything else (connection, shutdown, lock timeout, serialization, resources) is transient.
 */
export function classifyPostgresError(error: unknown): WriteErrorKind {
  const code = error && typeof error === 'object' ? (error as { code?: unknown }).code : undefined;
  if (typeof code === 'string' && /^(22|23|54)/.test(code)) return 'data';
  return 'transient';
}

export const LAST_VALUE_UPDATE_SQL = `UPDATE units_nodes AS n
   SET state = v.state, last_update_datetime = v.ts
  FROM unnest($1::uuid[], $2::varchar[], $3::timestamp[]) AS v(uuid, state, ts)
 WHERE n.uuid = v.uuid`;

export class LastValueTarget implements WriteTarget<LastValueRow> {
  readonly table = 'units_nodes' as const;
  constructor(private readonly pool: pg.Pool) {}

  async write(rows: LastValueRow[]): Promise<number> {
    const sorted = rows.length > 1 ? [...rows].sort((a, b) => (a.unit_node_uuid < b.unit_node_uuid ? -1 : a.unit_node_uuid > b.unit_node_uuid ? 1 : 0)) : rows;
    let matched = 0;
    if (sorted.length <= CHUNK_ROWS) {
      matched += await this.update(sorted);
      return matched;
    }
    // Several statements, one transaction: all or nothing, so a retry never half-applies.
    return inTransaction(this.pool, async (client) => {
      for (let i = 0; i < sorted.length; i += CHUNK_ROWS) matched += await this.update(sorted.slice(i, i + CHUNK_ROWS), client);
      return matched;
    });
  }

  private async update(rows: readonly LastValueRow[], client: pg.Pool | pg.PoolClient = this.pool): Promise<number> {
    const result = await client.query(LAST_VALUE_UPDATE_SQL, [
      rows.map((r) => r.unit_node_uuid),
      rows.map((r) => r.state),
      rows.map((r) => r.last_update_datetime),
    ]);
    return result.rowCount ?? 0;
  }

  classify(error: unknown): WriteErrorKind {
    return classifyPostgresError(error);
  }
}
