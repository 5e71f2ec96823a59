/**
 * DataPipe read speed-ups that must not change what a reader sees: identical reads in flight share
 * one set of ClickHouse statements; cached pages (PU_DATAPIPE_READ_CACHE_MS) are dropped at once
 * when the node's data or config changes through the backend, and are only ever served after the
 * reader's access was checked.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { parseDataPipeYaml, normaliseDataPipeConfig, serialiseDataPipeConfig } from '@pepeunit/common/datapipe';
import type { RunningBackend } from '@pepeunit/backend';
import { parseReadFilters, readPipeData } from '../../src/routes/api/v1/unit_nodes/datapipe/reads.ts';
import { PipeReadCache } from '../../src/routes/api/v1/unit_nodes/datapipe/read-cache.ts';
import { startTestBackend, type TestBackend } from '@pepeunit/tests/backend';

const api = '/pepeunit/api/v1';
let backend: RunningBackend;
let t: TestBackend;
const tokens = { owner: '', other: '' };
const unit = randomUUID();
const node = randomUUID();
const now = Math.floor(Date.now() / 1000) * 1000;

const row = (i: number) => ({
  unit_node_uuid: node,
  state: `r${i}`,
  state_type: 'Text',
  create_datetime: new Date(now - 600_000 + i * 1000).toISOString(),
  expiration_datetime: new Date(now + 3_600_000).toISOString(),
  size: 3,
});

async function read(token: string, query = '') {
  const res = await backend.app.inject({ method: 'GET', url: `${api}/unit_nodes/get_data_pipe_data/?uuid=${node}&type=TimeWindow&limit=10${query}`, headers: { 'x-auth-token': token } });
  return { status: res.statusCode, body: res.json(), type: res.headers['content-type'] };
}

async function login(name: string): Promise<string> {
  await backend.app.inject({ method: 'POST', url: `${api}/users`, payload: { login: name, password: 'Passw0rd!' } });
  return (await backend.app.inject({ method: 'POST', url: `${api}/users/auth`, payload: { credentials: name, password: 'Passw0rd!' } })).json().token;
}

before(async () => {
  // A long cache time: a second read inside it is certainly a cached one.
  t = await startTestBackend({ label: 'dp_cache', env: { PU_DATAPIPE_READ_CACHE_MS: '60000' } });
  backend = t.backend;
  tokens.owner = await login('cache_owner');
  tokens.other = await login('cache_other');
  const pg = backend.deps.pg;
  const ownerUuid = (await pg.query(`SELECT uuid FROM users WHERE login = 'cache_owner'`)).rows[0].uuid;
  await pg.query(
    `INSERT INTO units (uuid, visibility_level, name, create_datetime, last_update_datetime, is_auto_update_from_repo_unit, creator_uuid) VALUES ($1, 'Private', 'cache_unit', now(), now(), true, $2)`,
    [unit, ownerUuid],
  );
  const parsed = parseDataPipeYaml('active_period: {type: Permanent}\nfilters: {type_input_value: Text, max_rate: 0, max_size: 0}\nprocessing_policy: {policy_type: TimeWindow, time_window_size: 3600}\n');
  assert.ok(parsed.ok);
  await pg.query(
    `INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, topic_name, create_datetime, unit_uuid, creator_uuid, is_data_pipe_active, data_pipe_yml)
     VALUES ($1, 'Output', 'Private', false, 'cache/pepeunit', now(), $2, $3, true, $4)`,
    [node, unit, ownerUuid, serialiseDataPipeConfig(normaliseDataPipeConfig(parsed.document))],
  );
  await backend.deps.clickhouse.insert({ table: 'window_entry', format: 'JSONEachRow', values: Array.from({ length: 30 }, (_, i) => row(i)) });
});

after(async () => {
  await t?.close();
});

test('20 identical reads at once run one set of ClickHouse statements and get the same page', async () => {
  const ch = backend.deps.clickhouse;
  const issued: string[] = [];
  const counting = new Proxy(ch, {
    get(target, name, receiver) {
      if (name === 'query') return (params: { query: string }) => (issued.push(params.query), target.query(params as never));
      return Reflect.get(target, name, receiver);
    },
  });
  const filters = parseReadFilters({ uuid: node, type: 'TimeWindow', limit: 10 } as never, 500, Date.now());
  const pages = await Promise.all(Array.from({ length: 20 }, () => readPipeData({ pg: backend.deps.pg, clickhouse: counting }, null, filters)));
  // count, positions, page: three statements for all 20 readers
  assert.equal(issued.length, 3, issued.join('\n---\n'));
  for (const page of pages) assert.deepEqual(page, pages[0]);
  assert.equal(pages[0]!.count, 30);
  assert.deepEqual(pages[0]!.pipe_data.map((r) => r.state), ['r29', 'r28', 'r27', 'r26', 'r25', 'r24', 'r23', 'r22', 'r21', 'r20']);
  // nothing is kept once answered: the next read asks ClickHouse again
  await readPipeData({ pg: backend.deps.pg, clickhouse: counting }, null, filters);
  assert.equal(issued.length, 6);
});

test('a cached page is served only after the access check; a change through the API drops it at once', async () => {
  const first = await read(tokens.owner);
  assert.equal(first.body.count, 30);
  // Rows written behind the backend's back (as the ingest does): the cached page stays.
  await backend.deps.clickhouse.insert({ table: 'window_entry', format: 'JSONEachRow', values: [row(40)] });
  const cached = await read(tokens.owner);
  assert.deepEqual(cached.body, first.body, 'the page is reused inside PU_DATAPIPE_READ_CACHE_MS');
  assert.equal(cached.type, 'application/json; charset=utf-8', 'a cached (serialised) page is still JSON');
  assert.deepEqual(Object.keys(cached.body).sort(), Object.keys(first.body).sort());
  // Another user may not read the node: the cache does not change that.
  assert.equal((await read(tokens.other)).status, 403);
  // Deleting the data through the API: the next read is empty, not the cached page.
  assert.equal((await backend.app.inject({ method: 'DELETE', url: `${api}/unit_nodes/delete_data_pipe_data/${node}`, headers: { 'x-auth-token': tokens.owner } })).statusCode, 204);
  const emptied = await read(tokens.owner);
  assert.equal(emptied.body.count, 0);
  assert.deepEqual(emptied.body.pipe_data, []);
  // New rows, then a config change through the API: again read fresh.
  await backend.deps.clickhouse.insert({ table: 'window_entry', format: 'JSONEachRow', values: [row(1), row(2)] });
  assert.equal((await read(tokens.owner)).body.count, 0, 'still the cached empty page');
  await backend.app.datapipe.notifyChanged(node, 'Update');
  assert.equal((await read(tokens.owner)).body.count, 2);
});

test('with PU_DATAPIPE_READ_CACHE_MS=0 every read sees the rows written just before', async () => {
  const plain = (await t.another({ PU_DATAPIPE_READ_CACHE_MS: '0' })).backend;
  try {
    const get = async () =>
      (await plain.app.inject({ method: 'GET', url: `${api}/unit_nodes/get_data_pipe_data/?uuid=${node}&type=TimeWindow&limit=10`, headers: { 'x-auth-token': tokens.owner } })).json();
    const before = (await get()).count;
    await plain.deps.clickhouse.insert({ table: 'window_entry', format: 'JSONEachRow', values: [row(50)] });
    assert.equal((await get()).count, before + 1);
  } finally {
    await plain.close();
  }
});

test('the page cache keeps serialised pages: misses in flight share one read; a change during a read keeps it out', async () => {
  const cache = new PipeReadCache(60_000);
  let reads = 0;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const page = { count: 1, pipe_data: [] } as never;
  const read = async () => {
    reads++;
    await gate;
    return page;
  };
  const serialize = (result: unknown) => JSON.stringify(result);
  const both = Promise.all([cache.getSerialized('n1', 'k', read, serialize), cache.getSerialized('n1', 'k', read, serialize)]);
  release();
  assert.deepEqual(await both, ['{"count":1,"pipe_data":[]}', '{"count":1,"pipe_data":[]}']);
  assert.equal(reads, 1, 'concurrent misses share one read');
  await cache.getSerialized('n1', 'k', read, serialize);
  assert.equal(reads, 1, 'then served from the cache');
  // A change while a read is in flight: that read answers its caller but is not cached.
  let releaseSlow!: () => void;
  const slowGate = new Promise<void>((resolve) => (releaseSlow = resolve));
  const slow = cache.getSerialized('n2', 'k', async () => (reads++, await slowGate, page), serialize);
  cache.forget('n2');
  releaseSlow();
  await slow;
  await cache.getSerialized('n2', 'k', read, serialize);
  assert.equal(reads, 3, 'the page read before the change was not kept');
});
