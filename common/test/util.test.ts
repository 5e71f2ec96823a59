import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { inTransaction, redactUrlPassword, serialRunner, withTimeout } from '../src/util.js';
import { createDatabase, dropDatabase, databaseUrl } from '../src/postgres.js';
import { resolvePostgres } from '../src/postgres-provision.js';

test('redactUrlPassword hides every password and keeps users, hosts and text around', () => {
  assert.equal(redactUrlPassword('postgresql://pu:s3cr%40t@db:5432/x'), 'postgresql://pu:***@db:5432/x');
  assert.equal(
    redactUrlPassword('redis connect to redis://:pw@127.0.0.1:6379/0 failed; http://default:abc@ch:8123 too'),
    'redis connect to redis://:***@127.0.0.1:6379/0 failed; http://default:***@ch:8123 too',
  );
  assert.equal(redactUrlPassword('http://host:8123/db?x=1'), 'http://host:8123/db?x=1', 'a port is not a password');
});

test('withTimeout rejects with the name of what timed out, and passes a result through', async () => {
  await assert.rejects(withTimeout(new Promise(() => {}), 20, 'PING'), /PING timed out after 20 ms/);
  assert.equal(await withTimeout(Promise.resolve(7), 1000, 'x'), 7);
});

test('inTransaction commits on success, rolls back on error (the error wins), and releases the client', async () => {
  const server = await resolvePostgres({ url: process.env.PU_TEST_PG_ADMIN_URL, dataDir: '/tmp/pepeunit-test-pg', allowInstall: false });
  const name = `util_tx_${process.pid}`;
  await createDatabase(server.adminUrl, name);
  const pool = new pg.Pool({ connectionString: databaseUrl(server.adminUrl, name), max: 1 });
  try {
    await pool.query('CREATE TABLE t (v int)');
    assert.equal(await inTransaction(pool, async (c) => (await c.query('INSERT INTO t VALUES (1) RETURNING v')).rows[0].v), 1);
    await assert.rejects(
      inTransaction(pool, async (c) => {
        await c.query('INSERT INTO t VALUES (2)');
        throw new Error('work failed');
      }),
      /work failed/,
    );
    // max: 1 — a client that was not released would make this wait forever.
    const { rows } = await pool.query('SELECT v FROM t ORDER BY v');
    assert.deepEqual(rows.map((r) => r.v), [1], 'the failed transaction left nothing');
  } finally {
    await pool.end();
    await dropDatabase(server.adminUrl, name);
    await server.stop();
  }
});

test('serialRunner: a call during a run gets a run that starts after it; calls meanwhile share it; one in flight', async () => {
  let state = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const gates: Array<() => void> = [];
  const runner = serialRunner(async () => {
    inFlight += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const seen = state; // what a reconcile reads when it starts
    await new Promise<void>((resolve) => gates.push(resolve));
    inFlight -= 1;
    return seen;
  });
  const first = runner.run();
  await Promise.resolve();
  state = 1; // a write after the first run read its state
  const second = runner.run();
  const third = runner.run();
  assert.equal(second, third, 'calls during a run share the one queued behind it');
  assert.notEqual(first, second);
  while (gates.length === 0) await Promise.resolve();
  gates.shift()!();
  assert.equal(await first, 0);
  while (gates.length === 0) await Promise.resolve();
  gates.shift()!();
  assert.equal(await second, 1, 'the queued run read the state written after the first started');
  assert.equal(maxInFlight, 1);
  await runner.idle();
  const failing = serialRunner(async () => {
    throw new Error('boom');
  });
  await assert.rejects(failing.run(), /boom/);
  await assert.rejects(failing.run(), /boom/, 'a failed run does not wedge the runner');
  await failing.idle();
});
