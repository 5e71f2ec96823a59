/**
 * The embedded ClickHouse (chdb over HTTP) driven by the unmodified @clickhouse/client.
 * One engine per test process: a single server, one database per concern.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { deflateSync, gzipSync } from 'node:zlib';
import { randomBytes, randomUUID } from 'node:crypto';
import { createClient, ClickHouseError, ClickHouseLogLevel, type ClickHouseClient } from '@clickhouse/client';
import { startEmbeddedClickHouse, type EmbeddedClickHouse } from '../src/embedded-server.js';
import { createClickHouse } from '../src/client.js';
import { elapse } from '@pepeunit/tests/wait';

const MAX_BODY = 2 * 1024 * 1024;
const AUTH = { username: 'default', password: randomBytes(18).toString('base64url') };
const BASIC = { Authorization: `Basic ${Buffer.from(`${AUTH.username}:${AUTH.password}`).toString('base64')}` };
let dataPath: string;
let server: EmbeddedClickHouse;
const clients: ClickHouseClient[] = [];

function client(database: string, extra: Parameters<typeof createClient>[0] = {}): ClickHouseClient {
  const c = createClient({ url: server.url, ...AUTH, database, log: { level: ClickHouseLogLevel.OFF }, ...extra });
  clients.push(c);
  return c;
}

/** fetch with the server's credentials (Basic auth), merged into the request's headers. */
function chFetch(url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { ...init, headers: { ...BASIC, ...(init.headers as Record<string, string> | undefined) } });
}

async function rows<T>(c: ClickHouseClient, query: string, query_params?: Record<string, unknown>): Promise<T[]> {
  const rs = await c.query({ query, format: 'JSONEachRow', ...(query_params ? { query_params } : {}) });
  return rs.json<T>();
}

async function expectClickHouseError(promise: Promise<unknown>, code: string, type: string): Promise<ClickHouseError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ClickHouseError, `expected ClickHouseError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.type, type);
    return err;
  }
  assert.fail(`expected ClickHouseError ${code} ${type}`);
}

before(async () => {
  dataPath = await mkdtemp(path.join(tmpdir(), 'pu-chdb-server-'));
  server = await startEmbeddedClickHouse({ dataPath: path.join(dataPath, 'data'), port: 0, maxBodyBytes: MAX_BODY, auth: AUTH });
  const admin = client('default');
  for (const db of ['es_a', 'es_b', 'es_misc']) await admin.command({ query: `CREATE DATABASE IF NOT EXISTS ${db}` });
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server?.close();
  await rm(dataPath, { recursive: true, force: true });
});

describe('embedded ClickHouse over HTTP', () => {
  test('answers health checks like clickhouse-server', async () => {
    assert.equal((await client('default').ping()).success, true);
    for (const p of ['/', '/ping']) {
      const res = await fetch(`${server.url}${p}`);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'Ok.\n');
    }
    const missing = await fetch(`${server.url}/nope`);
    assert.equal(missing.status, 404);
    assert.match(await missing.text(), /There is no handle \/nope/);
  });

  test('refuses every query without the credentials (AUTHENTICATION_FAILED, 516, HTTP 403); accepts the forms ClickHouse accepts', async () => {
    const c = client('es_misc');
    await c.command({ query: 'CREATE TABLE IF NOT EXISTS guarded (n UInt8) ENGINE = MergeTree ORDER BY n' });
    const insert = `?database=es_misc&query=${encodeURIComponent('INSERT INTO guarded FORMAT JSONEachRow')}`;
    const wrongBasic = { Authorization: `Basic ${Buffer.from(`${AUTH.username}:wrong`).toString('base64')}` };
    for (const [what, request] of [
      ['no credentials', fetch(`${server.url}/${insert}`, { method: 'POST', body: '{"n":1}' })],
      ['a wrong password', fetch(`${server.url}/${insert}`, { method: 'POST', body: '{"n":1}', headers: wrongBasic })],
      ['another user', fetch(`${server.url}/${insert}`, { method: 'POST', body: '{"n":1}', headers: { 'X-ClickHouse-User': 'intruder', 'X-ClickHouse-Key': AUTH.password } })],
      ['a wrong password parameter', fetch(`${server.url}/${insert}&user=default&password=nope`, { method: 'POST', body: '{"n":1}' })],
      ['GET without credentials', fetch(`${server.url}/?query=${encodeURIComponent('SELECT 1')}`)],
    ] as const) {
      const res = await request;
      assert.equal(res.status, 403, what);
      assert.equal(res.headers.get('x-clickhouse-exception-code'), '516', what);
      const text = await res.text();
      assert.match(text, /Authentication failed.*\(AUTHENTICATION_FAILED\)/, what);
      assert.ok(!text.includes(AUTH.password), 'the error never echoes the password');
    }
    const [count] = await rows<{ n: number | string }>(c, 'SELECT count() AS n FROM guarded');
    assert.equal(Number(count?.n), 0, 'nothing refused was inserted');

    const select = `?query=${encodeURIComponent('SELECT 42')}`;
    assert.equal(await (await fetch(`${server.url}/${select}`, { headers: BASIC })).text(), '42\n', 'Basic auth');
    assert.equal(await (await fetch(`${server.url}/${select}`, { headers: { 'X-ClickHouse-User': AUTH.username, 'X-ClickHouse-Key': AUTH.password } })).text(), '42\n', 'X-ClickHouse-User/Key');
    assert.equal(await (await fetch(`${server.url}/${select}&user=${AUTH.username}&password=${encodeURIComponent(AUTH.password)}`)).text(), '42\n', 'user/password parameters');
    assert.equal(await (await fetch(`${server.url}/${select}&password=${encodeURIComponent(AUTH.password)}`)).text(), '42\n', 'the user defaults to "default"');

    const anonymous = createClient({ url: server.url, log: { level: ClickHouseLogLevel.OFF } });
    clients.push(anonymous);
    await expectClickHouseError(anonymous.query({ query: 'SELECT 1' }), '516', 'AUTHENTICATION_FAILED');
    // The URL form the services are configured with (credentials in the URL, parsed by the factory).
    const fromUrl = createClickHouse(`${server.authenticatedUrl}/es_misc`, 'es_misc');
    clients.push(fromUrl);
    assert.equal(server.authenticatedUrl, `http://default:${AUTH.password}@${server.url.slice('http://'.length)}`);
    assert.deepEqual(await rows(fromUrl, 'SELECT 1 AS one'), [{ one: 1 }]);
    // Health checks answer without credentials, as on clickhouse-server.
    assert.equal((await fetch(`${server.url}/ping`)).status, 200);
  });

  test('keeps its data directory private (mode 700)', async () => {
    assert.equal((await stat(path.join(dataPath, 'data'))).mode & 0o777, 0o700);
  });

  test('cannot be started without a password', async () => {
    const options = { dataPath: path.join(dataPath, 'data'), port: 0 };
    await assert.rejects(startEmbeddedClickHouse({ ...options, auth: { username: 'default', password: '' } }), /non-empty password is required/);
    await assert.rejects(startEmbeddedClickHouse(options as Parameters<typeof startEmbeddedClickHouse>[0]), /non-empty password is required/);
  });

  test('command, JSONEachRow insert and query().json() round-trip', async () => {
    const c = client('es_a');
    await c.command({
      query: 'CREATE TABLE IF NOT EXISTS events (id UInt32, unit UUID, state String, at DateTime64(3)) ENGINE = MergeTree ORDER BY id',
    });
    const now = new Date();
    const unit = randomUUID();
    const inserted = await c.insert({
      table: 'events',
      values: [
        { id: 1, unit, state: 'on', at: now.toISOString().replace('T', ' ').replace('Z', '') },
        { id: 2, unit, state: "it's \\ \"quoted\"\ttab", at: now.toISOString().replace('T', ' ').replace('Z', '') },
      ],
      format: 'JSONEachRow',
    });
    assert.equal(inserted.summary?.written_rows, '2');
    const result = await rows<{ id: number; unit: string; state: string; at: string }>(c, 'SELECT id, unit, state, at FROM events ORDER BY id');
    assert.deepEqual(
      result.map((r) => [r.id, r.unit, r.state]),
      [
        [1, unit, 'on'],
        [2, unit, "it's \\ \"quoted\"\ttab"],
      ],
    );
    assert.equal(new Date(`${result[0]?.at}Z`).getTime(), now.getTime());
    const json = await (await c.query({ query: 'SELECT count() AS n FROM events', format: 'JSON' })).json<{ n: string | number }>();
    assert.equal(Number(json.data[0]?.n), 2);
  });

  test('ISO timestamps insert through the factory defaults (best_effort)', async () => {
    const c = createClickHouse(server.authenticatedUrl, 'es_misc');
    clients.push(c);
    await c.command({ query: 'CREATE TABLE IF NOT EXISTS iso (at DateTime64(3)) ENGINE = MergeTree ORDER BY at' });
    const at = new Date();
    await c.insert({ table: 'iso', values: [{ at: at.toISOString() }], format: 'JSONEachRow' });
    const [row] = await rows<{ ms: string | number }>(c, 'SELECT toUnixTimestamp64Milli(at) AS ms FROM iso');
    assert.equal(Number(row?.ms), at.getTime());
  });

  test('query_params bind scalars, arrays, maps, dates and NULL (server-side, no interpolation)', async () => {
    const c = client('es_misc');
    const tricky = "a'b\\c\"d\te\nf; DROP TABLE x --";
    const when = new Date(Date.now() - 1234);
    const ids = [randomUUID(), randomUUID()];
    const [row] = await rows<Record<string, unknown>>(
      c,
      `SELECT {s:String} AS s, {arr:Array(String)} AS arr, {m:Map(String, UInt8)} AS m, {u:Array(UUID)} AS u,
              toUnixTimestamp64Milli({d:DateTime64(3)}) AS d, {n:Nullable(String)} AS n, {i:UInt64} + 1 AS i`,
      { s: tricky, arr: [tricky, 'plain'], m: { [tricky]: 7 }, u: ids, d: when, n: null, i: 41 },
    );
    assert.equal(row?.s, tricky);
    assert.deepEqual(row?.arr, [tricky, 'plain']);
    assert.deepEqual(row?.m, { [tricky]: 7 });
    assert.deepEqual(row?.u, ids);
    assert.equal(Number(row?.d), when.getTime());
    assert.equal(row?.n, null);
    assert.equal(Number(row?.i), 42);
  });

  test('query_params also work as multipart/form-data', async () => {
    const c = client('es_misc', { use_multipart_params: true });
    const [row] = await rows<{ v: string }>(c, 'SELECT concat({a:String}, {b:String}) AS v', { a: "x'", b: 'y\\' });
    assert.equal(row?.v, "x'y\\");
  });

  test('unknown table: ClickHouseError 60 UNKNOWN_TABLE, HTTP 404, ClickHouse error body and headers', async () => {
    const c = client('es_misc');
    const err = await expectClickHouseError(c.query({ query: 'SELECT * FROM missing_table' }), '60', 'UNKNOWN_TABLE');
    assert.match(err.message, /missing_table/);
    const res = await chFetch(`${server.url}/?database=es_misc&query_id=q-404`, { method: 'POST', body: 'SELECT * FROM missing_table' });
    assert.equal(res.status, 404);
    assert.equal(res.headers.get('x-clickhouse-exception-code'), '60');
    assert.equal(res.headers.get('x-clickhouse-query-id'), 'q-404');
    assert.match(await res.text(), /^Code: 60\. DB::Exception: .*missing_table.* \(UNKNOWN_TABLE\) \(version \d+\.\d+[\d.]*\)\n$/s);
  });

  test('unknown database: ClickHouseError 81, HTTP 404', async () => {
    const c = client('no_such_database');
    await expectClickHouseError(c.query({ query: 'SELECT 1' }), '81', 'UNKNOWN_DATABASE');
    const res = await chFetch(`${server.url}/?database=no_such_database`, { method: 'POST', body: 'SELECT 1' });
    assert.equal(res.status, 404);
  });

  test('syntax errors and multi-statements are refused like the HTTP interface does', async () => {
    const c = client('es_misc');
    await expectClickHouseError(c.query({ query: 'SELEC 1' }), '62', 'SYNTAX_ERROR');
    const err = await expectClickHouseError(c.command({ query: 'SELECT 1; SELECT 2' }), '62', 'SYNTAX_ERROR');
    assert.match(err.message, /Multi-statements are not allowed/);
    // A trailing semicolon and a ';' inside a string are fine.
    assert.deepEqual(await rows(c, "SELECT 'a;b' AS v;"), [{ v: 'a;b' }]);
  });

  test('settings passed with a request apply to that request only', async () => {
    const c = client('es_misc');
    const read = async (settings?: { max_result_rows: string }) => {
      const rs = await c.query({
        query: "SELECT getSetting('max_result_rows') AS v",
        format: 'JSONEachRow',
        ...(settings ? { clickhouse_settings: settings } : {}),
      });
      return String(((await rs.json<{ v: unknown }>())[0] as { v: unknown }).v);
    };
    const baseline = await read();
    assert.notEqual(baseline, '12345');
    assert.equal(await read({ max_result_rows: '12345' }), '12345');
    assert.equal(await read(), baseline, 'a URL setting leaked into the next request');
    // SET and USE inside a request do not leak either (no session).
    await c.command({ query: 'SET max_result_rows = 777' });
    assert.equal(await read(), baseline, 'SET leaked into the next request');
    await c.command({ query: 'USE es_a' });
    const [db] = await rows<{ d: string }>(c, 'SELECT currentDatabase() AS d');
    assert.equal(db?.d, 'es_misc');
    // Concurrent requests each see their own value.
    const values = Array.from({ length: 8 }, (_, i) => 1000 + i);
    assert.deepEqual(await Promise.all(values.map((v) => read({ max_result_rows: String(v) }))), values.map(String));
    assert.equal(await read(), baseline);
  });

  test('databases are isolated: same table name, different rows', async () => {
    const a = client('es_a');
    const b = client('es_b');
    for (const c of [a, b]) await c.command({ query: 'CREATE TABLE IF NOT EXISTS same (v String) ENGINE = MergeTree ORDER BY v' });
    await a.insert({ table: 'same', values: [{ v: 'from a' }], format: 'JSONEachRow' });
    await b.insert({ table: 'same', values: [{ v: 'from b' }, { v: 'also b' }], format: 'JSONEachRow' });
    assert.deepEqual(await rows(a, 'SELECT v FROM same ORDER BY v'), [{ v: 'from a' }]);
    assert.deepEqual(await rows(b, 'SELECT v FROM same ORDER BY v'), [{ v: 'also b' }, { v: 'from b' }]);
  });

  test('gzip: compressed responses when the client enables them, compressed request bodies', async () => {
    const c = client('es_misc', { compression: { response: true, request: true } });
    await c.command({ query: 'CREATE TABLE IF NOT EXISTS gz (n UInt32) ENGINE = MergeTree ORDER BY n' });
    await c.insert({ table: 'gz', values: Array.from({ length: 500 }, (_, n) => ({ n })), format: 'JSONEachRow' });
    const rs = await c.query({ query: 'SELECT n FROM gz ORDER BY n', format: 'JSONEachRow' });
    assert.equal(rs.response_headers['content-encoding'], 'gzip');
    const data = await rs.json<{ n: number }>();
    assert.equal(data.length, 500);
    assert.equal(data[499]?.n, 499);
    // Without enable_http_compression the server does not compress, whatever Accept-Encoding says.
    const plain = await chFetch(`${server.url}/?query=SELECT%201`, { headers: { 'Accept-Encoding': 'gzip' } });
    assert.equal(plain.headers.get('content-encoding'), null);
    // A gzip body sent by hand.
    const res = await chFetch(`${server.url}/?database=es_misc`, {
      method: 'POST',
      headers: { 'Content-Encoding': 'gzip' },
      body: gzipSync('SELECT 40 + 2'),
    });
    assert.equal(await res.text(), '42\n');
    const deflated = await chFetch(`${server.url}/`, { method: 'POST', headers: { 'Content-Encoding': 'deflate' }, body: deflateSync('SELECT 6 * 7') });
    assert.equal(await deflated.text(), '42\n');
    // A deflate response when the client asks for it.
    const zres = await chFetch(`${server.url}/?enable_http_compression=1`, { method: 'POST', headers: { 'Accept-Encoding': 'deflate' }, body: 'SELECT 7' });
    assert.equal(zres.headers.get('content-encoding'), 'deflate');
    assert.equal(await zres.text(), '7\n');
  });

  test('protocol headers: query id echoed, format and summary', async () => {
    const res = await chFetch(`${server.url}/?query_id=my-query-1&default_format=JSONEachRow`, { method: 'POST', body: 'SELECT 1 AS x' });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-clickhouse-query-id'), 'my-query-1');
    assert.equal(res.headers.get('x-clickhouse-format'), 'JSONEachRow');
    assert.ok(JSON.parse(res.headers.get('x-clickhouse-summary') ?? 'null').read_rows !== undefined);
    assert.equal(await res.text(), '{"x":1}\n');
    const explicit = await chFetch(`${server.url}/`, { method: 'POST', body: 'SELECT 1 AS x FORMAT CSVWithNames' });
    assert.equal(explicit.headers.get('x-clickhouse-format'), 'CSVWithNames');
    assert.equal(await explicit.text(), '"x"\n1\n');
  });

  test('an INSERT with an empty body inserts nothing and succeeds', async () => {
    const res = await chFetch(`${server.url}/?database=es_misc&query=${encodeURIComponent('INSERT INTO gz FORMAT JSONEachRow')}`, { method: 'POST', body: '' });
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.headers.get('x-clickhouse-summary') ?? '{}').written_rows, '0');
  });

  test('GET queries are read-only', async () => {
    const res = await chFetch(`${server.url}/?query=${encodeURIComponent('CREATE DATABASE get_must_not_create')}`);
    assert.equal(res.headers.get('x-clickhouse-exception-code'), '164');
    const [exists] = await rows<{ n: number | string }>(client('default'), "SELECT count() AS n FROM system.databases WHERE name = 'get_must_not_create'");
    assert.equal(Number(exists?.n), 0);
  });

  test('sessions keep temporary tables and SET; other sessions and URL settings stay separate', async () => {
    const c = client('es_misc');
    const s1 = `s-${randomUUID()}`;
    const s2 = `s-${randomUUID()}`;
    await c.command({ query: 'CREATE TEMPORARY TABLE tmp_session (v UInt8)', session_id: s1 });
    await c.command({ query: 'INSERT INTO tmp_session VALUES (7)', session_id: s1 });
    await c.command({ query: 'SET max_result_rows = 4321', session_id: s1 });
    const inS1 = await (await c.query({ query: "SELECT sum(v) AS s, getSetting('max_result_rows') AS m FROM tmp_session", format: 'JSONEachRow', session_id: s1 })).json<{ s: number | string; m: number | string }>();
    assert.deepEqual(inS1.map((r) => [Number(r.s), String(r.m)]), [[7, '4321']]);
    // A URL setting inside the session applies once and the session keeps its own value.
    const once = await (await c.query({ query: "SELECT getSetting('max_result_rows') AS m", format: 'JSONEachRow', session_id: s1, clickhouse_settings: { max_result_rows: '99' } })).json<{ m: unknown }>();
    assert.equal(String(once[0]?.m), '99');
    const kept = await (await c.query({ query: "SELECT getSetting('max_result_rows') AS m", format: 'JSONEachRow', session_id: s1 })).json<{ m: unknown }>();
    assert.equal(String(kept[0]?.m), '4321');
    await expectClickHouseError(c.query({ query: 'SELECT * FROM tmp_session', session_id: s2 }), '60', 'UNKNOWN_TABLE');
    // close_session=1 ends the session after the query.
    const closed = await chFetch(`${server.url}/?session_id=${s1}&close_session=1`, { method: 'POST', body: 'SELECT count() FROM tmp_session' });
    assert.equal(await closed.text(), '1\n');
    await expectClickHouseError(c.query({ query: 'SELECT * FROM tmp_session', session_id: s1 }), '60', 'UNKNOWN_TABLE');
  });

  test('request bodies over the limit are refused with 413 and a clear message; the server keeps working', async () => {
    const res = await chFetch(`${server.url}/?query=${encodeURIComponent('INSERT INTO es_misc.gz FORMAT JSONEachRow')}`, {
      method: 'POST',
      body: Buffer.alloc(MAX_BODY + 1024, 0x20),
    });
    assert.equal(res.status, 413);
    assert.equal(res.headers.get('x-clickhouse-exception-code'), '229');
    assert.match(await res.text(), /larger than the embedded ClickHouse limit of 2097152 bytes.*\(QUERY_IS_TOO_LARGE\)/);
    assert.equal((await client('default').ping()).success, true);
  });

  test('binary insert formats get a clear NOT_IMPLEMENTED error', async () => {
    const res = await chFetch(`${server.url}/?query=${encodeURIComponent('INSERT INTO es_misc.gz FORMAT RowBinary')}`, {
      method: 'POST',
      body: Buffer.from([0xff, 0xfe, 0x00, 0x01]),
    });
    assert.equal(res.headers.get('x-clickhouse-exception-code'), '48');
    assert.match(await res.text(), /binary input formats/);
  });

  test('close() lets a running query finish, then releases the port', async () => {
    const c = client('default');
    const slow = c.query({ query: 'SELECT sleep(0.5) AS s, 1 AS one', format: 'JSONEachRow' }).then((rs) => rs.json<{ one: number }>());
    // No observable marks the query as received (and the production server has no hook for it).
    await elapse(100, 'the slow query reaches the server before close()');
    await server.close();
    assert.deepEqual((await slow).map((r) => r.one), [1]);
    await assert.rejects(fetch(`${server.url}/ping`));
  });
});
