// Throw-away PostgreSQL databases for backend tests: the harness' PostgreSQL (the runner's, or
// one the harness starts; never a server that happens to run on 5432), a fresh database per call
// (dropped by `dropFreshDatabases`), and a one-client helper.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createDatabase, databaseUrl, dropDatabase } from '@pepeunit/common/postgres';
import { testServices } from '@pepeunit/tests/harness';

export const ADMIN_URL = (await testServices()).pgAdminUrl;

const created: string[] = [];

/** Creates an empty database named `<prefix>_<random>` and returns its URL. */
export async function freshDatabase(prefix = 'pu_t'): Promise<string> {
  const name = `${prefix}_${randomBytes(5).toString('hex')}`;
  await createDatabase(ADMIN_URL, name);
  created.push(name);
  return databaseUrl(ADMIN_URL, name);
}

/** Drops every database `freshDatabase` created in this process. */
export async function dropFreshDatabases(): Promise<void> {
  while (created.length > 0) await dropDatabase(ADMIN_URL, created.pop() as string);
}

/** Runs `fn` with one connected client of `url`, closing it afterwards. */
export async function withDb<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
