/**
 * db/prepared.ts against a real Postgres session: a query shape is prepared once and answers
 * correctly; the number of prepared shapes is bounded (the rest run as plain queries, with the
 * same answers), so filters that combine into many shapes cannot grow every session.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_PREPARED_SHAPES, preparedQuery } from '../../src/db/prepared.js';
import { dropFreshDatabases, freshDatabase, withDb } from '../pg-databases.js';

after(dropFreshDatabases);

test('shapes are prepared once per session, at most MAX_PREPARED_SHAPES of them; the rest still answer', async () => {
  const url = await freshDatabase();
  await withDb(url, async (client) => {
    const prepared = async () => Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM pg_prepared_statements')).rows[0]!.n);
    // One shape, run twice: prepared once.
    for (let i = 0; i < 2; i++) {
      const { rows } = await preparedQuery<{ v: number }>(client, 't', 'SELECT $1::int + 1 AS v', [i]);
      assert.equal(rows[0]!.v, i + 1);
    }
    assert.equal(await prepared(), 1);
    // Many shapes (as filter combinations make): every one answers, only the bound is prepared.
    const shapes = MAX_PREPARED_SHAPES + 40;
    for (let i = 0; i < shapes; i++) {
      const { rows } = await preparedQuery<{ v: number }>(client, 't', `SELECT $1::int + ${i} AS v`, [1]);
      assert.equal(rows[0]!.v, 1 + i);
    }
    assert.equal(await prepared(), MAX_PREPARED_SHAPES);
  });
});
