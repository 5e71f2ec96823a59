/**
 * Named (prepared) statements for hot queries whose text varies with a few filters: each shape
 * is parsed once per pooled connection and Postgres can switch to a generic plan (no planning per
 * request). Only for statements with an explicit column list: a prepared `SELECT *` fails
 * ("cached plan must not change result type") once a migration adds a column while the process
 * runs.
 *
 * Bounded: every prepared shape stays in each Postgres session that ran it, and filters combine
 * into many shapes, so only the first `MAX_PREPARED_SHAPES` shapes of the process are prepared;
 * any other runs as a plain query.
 */
import { createHash } from 'node:crypto';
import type { Pool, PoolClient, QueryResult, QueryResultRow } from 'pg';

export const MAX_PREPARED_SHAPES = 256;
/** SQL text -> statement name, for the shapes that are prepared. */
const names = new Map<string, string>();

type Queryable = Pick<Pool | PoolClient, 'query'>;

export function preparedQuery<R extends QueryResultRow>(db: Queryable, prefix: string, text: string, values: unknown[]): Promise<QueryResult<R>> {
  let name = names.get(text);
  if (name === undefined) {
    if (names.size >= MAX_PREPARED_SHAPES) return db.query<R>(text, values);
    name = `${prefix}_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
    names.set(text, name);
  }
  return db.query<R>({ name, text, values });
}
