/**
 * The LIMIT of a prepared page statement (services/validators.ts `paging` with `shapeLimit`):
 * with the limit in the statement text Postgres keeps a generic plan; with `LIMIT $n` it plans
 * the statement again at every execution (what made the units list slow). Runs in its own file:
 * db/prepared.ts bounds the prepared shapes per process, and prepared.test.ts fills that bound.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import type { BackendConfig } from '@pepeunit/common';
import { preparedQuery } from '../../src/db/prepared.js';
import { paging } from '../../src/services/validators.js';
import { dropFreshDatabases, freshDatabase, withDb } from '../pg-databases.js';

after(dropFreshDatabases);

test('a page statement with its limit in the text keeps a generic plan; with LIMIT $n Postgres plans it at every execution', async () => {
  const url = await freshDatabase();
  const config = { maxPaginationSize: 100 } as BackendConfig;
  await withDb(url, async (client) => {
    await client.query(`CREATE TABLE items (id int PRIMARY KEY, owner int NOT NULL, created timestamp NOT NULL)`);
    await client.query(`CREATE INDEX items_created ON items (created)`);
    await client.query(`INSERT INTO items SELECT g, g % 7, now() - make_interval(secs => g) FROM generate_series(1, 20000) AS g`);
    await client.query('ANALYZE items');
    const plans = async (name: string) =>
      (await client.query<{ generic_plans: string; custom_plans: string }>('SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name LIKE $1', [`${name}_%`])).rows[0]!;
    const run = async (prefix: string, shapeLimit: boolean) => {
      for (let i = 0; i < 8; i++) {
        const values: unknown[] = [3];
        const page = paging({ limit: 10 }, config, values, { shapeLimit });
        const { rows } = await preparedQuery<{ id: number }>(client, prefix, `SELECT id FROM items WHERE owner = $1 ORDER BY created DESC, id ${page}`, values);
        assert.equal(rows.length, 10);
        assert.equal(rows[0]!.id, 3);
      }
    };
    await run('shaped', true);
    await run('bound', false);
    const shaped = await plans('shaped');
    const bound = await plans('bound');
    assert.ok(Number(shaped.generic_plans) >= 3, `shaped: ${JSON.stringify(shaped)}`);
    assert.equal(Number(bound.generic_plans), 0, `bound: ${JSON.stringify(bound)}`);
    assert.equal(Number(bound.custom_plans), 8);
  });
});

test('paging: the limit as a literal only when asked, a zero offset left out then; anything but a safe integer refused', () => {
  const config = { maxPaginationSize: 100 } as BackendConfig;
  let values: unknown[] = [];
  assert.equal(paging({ limit: 10 }, config, values, { shapeLimit: true }), 'LIMIT 10');
  assert.deepEqual(values, []);
  values = ['x'];
  assert.equal(paging({ limit: 10, offset: 20 }, config, values, { shapeLimit: true }), 'LIMIT 10 OFFSET $2');
  assert.deepEqual(values, ['x', 20]);
  values = [];
  assert.equal(paging({ limit: 10, offset: 20 }, config, values), 'LIMIT $1 OFFSET $2');
  assert.deepEqual(values, [10, 20]);
  for (const bad of [1.5, -1, Number.NaN, 2 ** 60, 101]) {
    assert.throws(() => paging({ limit: bad }, config, [], { shapeLimit: true }), /limit must be/);
  }
  assert.throws(() => paging({ offset: 0.5 }, config, []), /offset must be/);
});
