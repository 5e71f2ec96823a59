/**
 * Named (prepared) statements for hot queries whose text varies with a few filters: the name is
 * derived from the text, so each shape is parsed once per pooled connection and Postgres can
 * switch to a generic plan (no planning per request). Only for statements with an explicit
 * column list: a prepared `SELECT *` fails ("cached plan must not change result type") once a
 * migration adds a column while the process runs.
 */
import { createHash } from 'node:crypto';
import type { Pool, PoolClient, QueryResult, QueryResultRow } from 'pg';

export function preparedQuery<R extends QueryResultRow>(db: Pool | PoolClient, prefix: string, text: string, values: unknown[]): Promise<QueryResult<R>> {
  const name = `${prefix}_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
  return db.query<R>({ name, text, values });
}
