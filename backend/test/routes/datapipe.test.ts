/**
 * DataPipe API against real Postgres + ClickHouse (+ Redis when reachable): config check/set/get,
 * malformed YAML and CSV tables that change nothing, CSV import/export round trips, delete,
 * ownership on every operation, the feature flag, and the change notifications.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Redis } from 'ioredis';
import { unitToken } from '@pepeunit/common';
import { dataPipeConfigToYaml, parseDataPipeYaml, normaliseDataPipeConfig, serialiseDataPipeConfig } from '@pepeunit/common/datapipe';
import { startEmbeddedBroker } from '@pepeunit/emqx-rules';
import { buildApp, type RunningBackend } from '@pepeunit/backend';
import { testBackendConfig, testRedisUrl, type TestDatabases } from '@pepeunit/tests/harness';
import type { DataPipeChangeEvent } from '../../src/services/datapipe-events.ts';
import { csvField, parseCsv } from '../../src/routes/api/v1/unit_nodes/datapipe/csv.ts';
import { waitFor } from '@pepeunit/tests/wait';
import { startTestBackend, type TestBackend } from '@pepeunit/tests/backend';

let REDIS_URL = '';
const STREAM = 'backend_data_pipe_nodes';
const api = '/pepeunit/api/v1';
const dp = `${api}/unit_nodes`;

let db: TestDatabases;
let broker: Awaited<ReturnType<typeof startEmbeddedBroker>>;
let backend: RunningBackend;
let t: TestBackend;
let redis: Redis;
const events: DataPipeChangeEvent[] = [];

const users: Record<'admin' | 'a' | 'b', { uuid: string; token: string }> = {} as never;
const units = { a: randomUUID(), b: randomUUID() };
const nodes = {
  nr: randomUUID(), // NRecords, Private, owner a
  tw: randomUUID(), // TimeWindow, Public, owner a
  agg: randomUUID(), // Aggregation, Private, owner a
  lv: randomUUID(), // LastValue, Private, owner a
  cfg: randomUUID(), // config tests, Private, owner a
  inactive: randomUUID(), // pipe off
  plain: randomUUID(), // topic without /pepeunit
  other: randomUUID(), // NRecords of owner b (must never be touched)
};

async function call(method: 'GET' | 'POST' | 'DELETE', url: string, opts: { token?: string; body?: unknown; multipart?: { content: Buffer | string; field?: string } } = {}) {
  const headers: Record<string, string> = opts.token ? { 'x-auth-token': opts.token } : {};
  let payload: Buffer | string | object | undefined = opts.body as object | undefined;
  if (opts.multipart) {
    const boundary = `----pu${randomBytes(8).toString('hex')}`;
    payload = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${opts.multipart.field ?? 'data'}"; filename="upload"\r\nContent-Type: application/octet-stream\r\n\r\n`),
      Buffer.from(opts.multipart.content),
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    headers['content-type'] = `multipart/form-data; boundary=${boundary}`;
  }
  const res = await backend.app.inject({ method, url, headers, ...(payload !== undefined ? { payload } : {}) });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON bodies of many shapes
  let body: any = null;
  if (res.headers['content-type']?.toString().includes('json')) body = res.json();
  return { status: res.statusCode, body, raw: res.rawPayload, headers: res.headers, text: res.body };
}

const Y = {
  nrecords: `active_period:
  type: FromDate
  start: "2020-01-01T00:00:00Z"
filters:
  type_input_value: Number
  type_value_filtering: BlackList
  filtering_values: [-1]
  type_value_threshold: Range
  threshold_min: -40
  threshold_max: 125
  max_rate: 1
  last_unique_check: true
  max_size: 12
processing_policy:
  policy_type: NRecords
  n_records_count: 5
`,
  timewindow: `active_period:
  type: Permanent
filters:
  type_input_value: Text
  type_value_filtering: WhiteList
  filtering_values: ["open", "closed", "a-very-long-state"]
  max_rate: 0
  last_unique_check: false
  max_size: 8
processing_policy:
  policy_type: TimeWindow
  time_window_size: 3600
`,
  aggregation: `active_period:
  type: Permanent
filters:
  type_input_value: Number
  max_rate: 0
  last_unique_check: false
  max_size: 0
processing_policy:
  policy_type: Aggregation
  time_window_size: 300
  aggregation_functions: Max
`,
  lastvalue: `active_period:
  type: Permanent
filters:
  type_input_value: Text
  max_rate: 5
  last_unique_check: false
  max_size: 100
processing_policy:
  policy_type: LastValue
`,
};

function storedJson(yaml: string): string {
  const parsed = parseDataPipeYaml(yaml);
  assert.ok(parsed.ok);
  return serialiseDataPipeConfig(normaliseDataPipeConfig(parsed.document));
}

async function insertNode(uuid: string, unit: string, owner: string, opts: { visibility?: string; topic?: string; active?: boolean; yaml?: string | null }) {
  await backend.deps.pg.query(
    `INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, topic_name, create_datetime, unit_uuid, creator_uuid, is_data_pipe_active, data_pipe_yml)
     VALUES ($1, 'Output', $2, false, $3, now(), $4, $5, $6, $7)`,
    [uuid, opts.visibility ?? 'Private', opts.topic ?? 'value/pepeunit', unit, owner, opts.active ?? true, opts.yaml ? storedJson(opts.yaml) : null],
  );
}

const ch = () => backend.deps.clickhouse;

async function chRows(node: string): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for (const table of ['n_last_entry', 'window_entry', 'aggregation_entry']) {
    const r = await ch().query({ query: `SELECT * FROM ${table} WHERE unit_node_uuid = {u:UUID} ORDER BY create_datetime, toString(state)`, query_params: { u: node }, format: 'JSONEachRow' });
    out[table] = await r.json();
  }
  return out;
}

async function storedYml(node: string): Promise<string | null> {
  const { rows } = await backend.deps.pg.query('SELECT data_pipe_yml FROM units_nodes WHERE uuid = $1', [node]);
  return rows[0].data_pipe_yml;
}

const pyDt = (ms: number): string => {
  const iso = new Date(ms).toISOString();
  const base = `${iso.slice(0, 10)} ${iso.slice(11, 19)}`;
  return ms % 1000 === 0 ? base : `${base}.${iso.slice(20, 23)}000`;
};

before(async () => {
  REDIS_URL = `${await testRedisUrl()}/9`;
  t = await startTestBackend({ label: 'datapipe', env: { PU_REDIS_URL: REDIS_URL, PU_MAX_PAGINATION_SIZE: '50' } });
  ({ db, broker, backend } = t);
  backend.app.datapipe.onChange((e) => {
    events.push(e);
  });
  for (const [key, login] of [['admin', 'dp_admin'], ['a', 'dp_owner_a'], ['b', 'dp_owner_b']] as const) {
    assert.equal((await call('POST', `${api}/users`, { body: { login, password: 'Passw0rd!' } })).status, 201);
    const token = (await call('POST', `${api}/users/auth`, { body: { credentials: login, password: 'Passw0rd!' } })).body.token;
    const { rows } = await backend.deps.pg.query('SELECT uuid, role FROM users WHERE login = $1', [login]);
    users[key] = { uuid: rows[0].uuid, token };
  }
  const pool = backend.deps.pg;
  for (const [unit, owner, name] of [[units.a, users.a.uuid, 'dp_unit_a'], [units.b, users.b.uuid, 'dp_unit_b']] as const) {
    await pool.query(
      `INSERT INTO units (uuid, visibility_level, name, create_datetime, last_update_datetime, is_auto_update_from_repo_unit, creator_uuid) VALUES ($1, 'Private', $2, now(), now(), true, $3)`,
      [unit, name, owner],
    );
  }
  await insertNode(nodes.nr, units.a, users.a.uuid, { yaml: Y.nrecords });
  await insertNode(nodes.tw, units.a, users.a.uuid, { yaml: Y.timewindow, visibility: 'Public' });
  await insertNode(nodes.agg, units.a, users.a.uuid, { yaml: Y.aggregation });
  await insertNode(nodes.lv, units.a, users.a.uuid, { yaml: Y.lastvalue });
  await insertNode(nodes.cfg, units.a, users.a.uuid, { yaml: Y.lastvalue });
  await insertNode(nodes.inactive, units.a, users.a.uuid, { active: false });
  await insertNode(nodes.plain, units.a, users.a.uuid, { topic: 'value' });
  await insertNode(nodes.other, units.b, users.b.uuid, { yaml: Y.nrecords });
  await pool.query(`UPDATE units_nodes SET state = 'on', last_update_datetime = '2026-01-02 03:04:05' WHERE uuid = $1`, [nodes.lv]);
  redis = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: 5000, maxRetriesPerRequest: 1 });
  await redis.connect();
  await redis.del(STREAM);
});

after(async () => {
  if (redis) {
    await redis.del(STREAM).catch(() => {});
    redis.disconnect();
  }
  await t?.close();
});

// ---- config ---------------------------------------------------------------------------------

test('check_data_pipe_config: 200 with [] for valid documents and the reference messages for the bad example', async () => {
  for (const yaml of Object.values(Y)) {
    const res = await call('POST', `${dp}/check_data_pipe_config`, { multipart: { content: yaml } });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, []);
  }
  const bad = 'active_period:\n  type: DateRange\n  start: "2025-06-01T00:00:00Z"\n  end: "2025-01-01T00:00:00Z"\nfilters:\n  type_input_value: Text\n  type_value_filtering: WhiteList\n  filtering_values: [1, 2, 3]\n  max_rate: -1\n  max_size: 10\nprocessing_policy:\n  policy_type: LastValue\n';
  // Anonymous (Bot), User and Unit agents may check.
  for (const token of [undefined, users.b.token, unitToken(units.a, backend.deps.config.secretKey)]) {
    const res = await call('POST', `${dp}/check_data_pipe_config`, { token, multipart: { content: bad } });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, [
      { stage: 'ActivePeriod', message: 'Value error, start must be before end for DATE_RANGE' },
      { stage: 'Filters', message: 'Input should be greater than or equal to 0' },
    ]);
  }
  const before = await storedYml(nodes.cfg);
  const set = await call('POST', `${dp}/set_data_pipe_config?uuid=${nodes.cfg}`, { token: users.a.token, multipart: { content: bad } });
  assert.equal(set.status, 422);
  assert.equal(set.body.detail, '422: 8: DataPipe Validation Error: 2 validation errors for DataPipeConfig');
  assert.equal(set.body.errors.length, 2);
  assert.equal(await storedYml(nodes.cfg), before);
  for (const [contentType, payload] of [
    ['multipart/form-data; boundary=abc', 'not multipart at all'],
    ['multipart/form-data', '--x\r\n'],
    ['multipart/form-data; boundary=abc', '--abc\r\nContent-Disposition: form-data; name="data"; filename="f"\r\n\r\nactive_period:'],
  ]) {
    const garbage = await backend.app.inject({ method: 'POST', url: `${dp}/check_data_pipe_config`, headers: { 'content-type': contentType! }, payload });
    assert.ok(garbage.statusCode >= 400 && garbage.statusCode < 500, `${contentType} ${JSON.stringify(payload)}: ${garbage.statusCode} ${garbage.body}`);
  }
  const otherField = await call('POST', `${dp}/check_data_pipe_config`, { multipart: { content: Y.lastvalue, field: 'file' } });
  assert.equal(otherField.status, 422);
  assert.match(otherField.body.detail, /The multipart field "data"/);
  const noFile = await call('POST', `${dp}/check_data_pipe_config`, { body: { data: 'x' } });
  assert.equal(noFile.status, 422);
  assert.match(noFile.body.detail, /multipart\/form-data/);
});

const aliasBomb = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]', ...'bcdefghi'.split('').map((c, i) => `${c}: &${c} [${Array(10).fill(`*${'abcdefghi'[i]}`).join(',')}]`)].join('\n');

const MALFORMED_YAML: Array<{ name: string; content: string | Buffer; stage: string; message: RegExp }> = [
  { name: 'syntax error', content: 'active_period:\n  type: [Permanent\nfilters: {', stage: 'Yaml', message: /^YAML syntax error at line \d+, column \d+/ },
  { name: 'tab indentation', content: 'active_period:\n\ttype: Permanent\n', stage: 'Yaml', message: /YAML/ },
  { name: 'list root', content: '- active_period\n- filters\n', stage: 'Config', message: /must be a mapping .* got a list/ },
  { name: 'scalar root', content: 'just some text\n', stage: 'Config', message: /must be a mapping/ },
  { name: 'number root', content: '42\n', stage: 'Config', message: /must be a mapping .* got a number/ },
  { name: 'empty document', content: '', stage: 'Config', message: /empty/ },
  { name: 'only a comment', content: '# nothing here\n', stage: 'Config', message: /empty/ },
  { name: 'wrong types', content: Y.lastvalue.replace('max_rate: 5', 'max_rate: fast').replace('max_size: 100', 'max_size: [1]'), stage: 'Filters', message: /^Input should be a valid integer/ },
  { name: 'unknown policy enum', content: Y.lastvalue.replace('policy_type: LastValue', 'policy_type: Forever'), stage: 'ProcessingPolicy', message: /^Input should be 'LastValue', 'NRecords', 'TimeWindow' or 'Aggregation'$/ },
  { name: 'unknown period enum', content: Y.lastvalue.replace('type: Permanent', 'type: Sometimes'), stage: 'ActivePeriod', message: /^Input should be 'Permanent'/ },
  { name: 'missing stages', content: 'something: else\n', stage: 'ActivePeriod', message: /^Field required$/ },
  { name: 'stage is not a mapping', content: Y.lastvalue.replace(/filters:[\s\S]*?processing_policy/, 'filters: 7\nprocessing_policy'), stage: 'Filters', message: /valid dictionary/ },
  { name: 'policy parameter missing', content: Y.lastvalue.replace('policy_type: LastValue', 'policy_type: NRecords'), stage: 'ProcessingPolicy', message: /n_records_count is required/ },
  { name: 'window size not allowed', content: Y.aggregation.replace('time_window_size: 300', 'time_window_size: 301'), stage: 'ProcessingPolicy', message: /Invalid time_window_size/ },
  { name: 'alias bomb', content: aliasBomb, stage: 'Yaml', message: /alias/i },
  { name: 'python object tag', content: 'active_period: !!python/object:os.system {}\n', stage: 'Yaml', message: /tag/ },
  { name: 'not UTF-8', content: Buffer.from([0x61, 0x3a, 0x20, 0xff, 0xfe, 0x0a]), stage: 'Yaml', message: /UTF-8/ },
  { name: 'oversized', content: `${Y.lastvalue}# ${'x'.repeat(300 * 1024)}\n`, stage: 'Yaml', message: /too large/ },
];

test('malformed YAML: check lists stage+message; set answers 422 with them and changes nothing', async () => {
  const before = await storedYml(nodes.cfg);
  assert.ok(before);
  for (const c of MALFORMED_YAML) {
    const check = await call('POST', `${dp}/check_data_pipe_config`, { multipart: { content: c.content } });
    assert.equal(check.status, 200, `${c.name}: ${check.text}`);
    assert.ok(check.body.length >= 1, c.name);
    assert.equal(check.body[0].stage, c.stage, `${c.name}: ${JSON.stringify(check.body)}`);
    assert.match(check.body[0].message, c.message, c.name);
    const set = await call('POST', `${dp}/set_data_pipe_config?uuid=${nodes.cfg}`, { token: users.a.token, multipart: { content: c.content } });
    assert.equal(set.status, 422, `${c.name}: ${set.text}`);
    assert.equal(set.body.detail, `422: 8: DataPipe Validation Error: ${check.body.length} validation errors for DataPipeConfig`, c.name);
    assert.deepEqual(set.body.errors, check.body, c.name);
    assert.equal(await storedYml(nodes.cfg), before, `${c.name} changed the stored config`);
  }
  assert.equal(events.filter((e) => e.nodeUuid === nodes.cfg).length, 0, 'no notification for refused configs');
});

test('set_data_pipe_config stores the reference JSON, notifies (NOTIFY, listeners, Redis stream) and get returns the YAML', async () => {
  const listener = new pg.Client({ connectionString: db.pgUrl });
  await listener.connect();
  const notes: string[] = [];
  listener.on('notification', (n) => notes.push(String(n.payload)));
  await listener.query('LISTEN pepeunit_datapipe_changed');
  try {
    const yaml = Y.nrecords.replace('n_records_count: 5', 'n_records_count: 200');
    const res = await call('POST', `${dp}/set_data_pipe_config?uuid=${nodes.cfg}`, { token: users.a.token, multipart: { content: yaml } });
    assert.equal(res.status, 204, res.text);
    const json = await storedYml(nodes.cfg);
    assert.equal(json, storedJson(yaml));
    assert.match(json!, /^\{"active_period": \{"type": "FromDate", "start": "2020-01-01T00:00:00\+00:00", "end": null\}, "filters": \{"type_input_value": "Number"/);

    const get = await call('GET', `${dp}/get_data_pipe_config/${nodes.cfg}`, { token: users.a.token });
    assert.equal(get.status, 200);
    assert.equal(get.text, dataPipeConfigToYaml(json!));
    assert.ok(get.text.startsWith("active_period:\n  type: FromDate\n  start: '2020-01-01T00:00:00+00:00'\n"), get.text);
    assert.match(String(get.headers['content-disposition']), /attachment/);

    await waitFor(() => notes.includes(nodes.cfg), { what: 'the NOTIFY of the node' });
    assert.deepEqual(notes, [nodes.cfg], 'NOTIFY carries the node uuid');
    const event = events.findLast((e) => e.nodeUuid === nodes.cfg);
    assert.ok(event);
    assert.equal(event.action, 'Update');
    assert.equal(event.node?.data_pipe_yml, json);
    assert.equal(event.node?.topic_name, 'value/pepeunit');
  } finally {
    await listener.end();
  }
});

test('Redis stream: set_data_pipe_config XADDs the reference entry (a private Redis from the harness)', async () => {
  await redis.del(STREAM);
  const res = await call('POST', `${dp}/set_data_pipe_config?uuid=${nodes.cfg}`, { token: users.a.token, multipart: { content: Y.lastvalue } });
  assert.equal(res.status, 204);
  const entries = await redis.xrange(STREAM, '-', '+');
  assert.equal(entries.length, 1);
  const [, fields] = entries[0]!;
  assert.equal(fields[0], 'action');
  assert.equal(fields[1], 'Update');
  assert.equal(fields[2], 'unit_node_data');
  const data = JSON.parse(fields[3]!);
  assert.deepEqual(Object.keys(data), [
    'uuid', 'type', 'visibility_level', 'is_rewritable_input', 'max_connections', 'topic_name', 'create_datetime', 'state',
    'last_update_datetime', 'is_data_pipe_active', 'data_pipe_yml', 'data_pipe_status', 'data_pipe_error', 'creator_uuid', 'unit_uuid',
  ]);
  assert.equal(data.uuid, nodes.cfg);
  assert.equal(data.creator_uuid, users.a.uuid);
  assert.equal(data.data_pipe_yml, await storedYml(nodes.cfg));
  assert.match(data.create_datetime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$/);
  assert.match(fields[3]!, /^\{"uuid": "/, 'Python json.dumps separators');
});

test('set_data_pipe_config preconditions: inactive pipe, topic without /pepeunit, unknown node', async () => {
  const inactive = await call('POST', `${dp}/set_data_pipe_config?uuid=${nodes.inactive}`, { token: users.a.token, multipart: { content: Y.lastvalue } });
  assert.equal(inactive.status, 422);
  assert.equal(inactive.body.detail, '422: 8: DataPipe Validation Error: Data pipe is not active');
  const plain = await call('POST', `${dp}/set_data_pipe_config?uuid=${nodes.plain}`, { token: users.a.token, multipart: { content: Y.lastvalue } });
  assert.equal(plain.status, 422);
  assert.match(plain.body.detail, /\/pepeunit/);
  const unknown = await call('POST', `${dp}/set_data_pipe_config?uuid=${randomUUID()}`, { token: users.a.token, multipart: { content: Y.lastvalue } });
  assert.equal(unknown.status, 422);
  const badUuid = await call('POST', `${dp}/set_data_pipe_config?uuid=1' OR '1'='1`, { token: users.a.token, multipart: { content: Y.lastvalue } });
  assert.equal(badUuid.status, 422);
  const getInactive = await call('GET', `${dp}/get_data_pipe_config/${nodes.inactive}`, { token: users.a.token });
  assert.equal(getInactive.body.detail, '422: 8: DataPipe Validation Error: Data pipe is not active');
  assert.equal(await storedYml(nodes.inactive), null);
});

test('the OpenAPI document lists the DataPipe routes with their filters', async () => {
  const res = await backend.app.inject({ method: 'GET', url: `${api}/openapi.json` });
  assert.equal(res.statusCode, 200);
  const doc = res.json();
  for (const path of ['check_data_pipe_config', 'set_data_pipe_config', 'get_data_pipe_config/{uuid}', 'get_data_pipe_data/', 'get_data_pipe_data_csv/{uuid}', 'set_data_pipe_data_csv', 'delete_data_pipe_data/{uuid}']) {
    assert.ok(doc.paths[`${dp}/${path}`], path);
  }
  const params = doc.paths[`${dp}/get_data_pipe_data/`].get.parameters.map((p: { name: string }) => p.name);
  for (const name of ['uuid', 'type', 'search_string', 'aggregation_type', 'time_window_size', 'relative_time', 'order_by_create_date', 'offset', 'limit', 'cursor']) assert.ok(params.includes(name), name);
});

// ---- CSV ------------------------------------------------------------------------------------

const nowSec = () => Math.floor(Date.now() / 1000) * 1000;

async function seed() {
  // Pre-existing rows of the nodes in every table (the import must replace or keep them).
  const t0 = Date.parse('2024-06-01T00:00:00Z');
  await ch().insert({
    table: 'n_last_entry',
    format: 'JSONEachRow',
    values: [
      { unit_node_uuid: nodes.nr, state: '7.0', state_type: 'Number', create_datetime: new Date(t0).toISOString(), max_count: 5, size: 3 },
      { unit_node_uuid: nodes.nr, state: '8.0', state_type: 'Number', create_datetime: new Date(t0 + 2000).toISOString(), max_count: 5, size: 3 },
      { unit_node_uuid: nodes.other, state: '9.0', state_type: 'Number', create_datetime: new Date(t0).toISOString(), max_count: 5, size: 3 },
    ],
  });
  await ch().insert({
    table: 'window_entry',
    format: 'JSONEachRow',
    values: [
      { unit_node_uuid: nodes.tw, state: 'open', state_type: 'Text', create_datetime: new Date(nowSec() - 60_000).toISOString(), expiration_datetime: new Date(nowSec() + 3_540_000).toISOString(), size: 4 },
      { unit_node_uuid: nodes.nr, state: 'stray', state_type: 'Text', create_datetime: new Date(nowSec() - 60_000).toISOString(), expiration_datetime: new Date(nowSec() + 3_540_000).toISOString(), size: 5 },
    ],
  });
  await ch().insert({
    table: 'aggregation_entry',
    format: 'JSONEachRow',
    values: [
      { unit_node_uuid: nodes.agg, state: 1.5, aggregation_type: 'Max', time_window_size: 300, create_datetime: '2024-06-01T00:05:02Z', start_window_datetime: '2024-06-01T00:00:00Z', end_window_datetime: '2024-06-01T00:05:00Z' },
    ],
  });
}

function csv(rows: string[][]): string {
  return rows.map((r) => r.join(',')).join('\r\n') + '\r\n';
}

const H = 'state,create_datetime';
const HA = 'state,create_datetime,start_window_datetime,end_window_datetime';

test('malformed CSV files: 422 with row-numbered messages and the node data unchanged', async () => {
  await seed();
  const tw = (offsetSec: number) => pyDt(nowSec() - offsetSec * 1000);
  const cases: Array<{ name: string; node: string; content: string | Buffer; message: RegExp; row?: number; count?: number }> = [
    { name: 'bad header', node: nodes.nr, content: 'value,time\n1,2024-01-01 00:00:00\n', message: /^CSV header must contain the columns state, create_datetime \(missing: state, create_datetime; found: "value", "time"\)$/ },
    { name: 'aggregation header lacks windows', node: nodes.agg, content: `${H}\n1,2024-01-01 00:05:00\n`, message: /missing: start_window_datetime, end_window_datetime/ },
    { name: 'empty file', node: nodes.nr, content: '', message: /^CSV file is empty/ },
    { name: 'header only', node: nodes.nr, content: `${H}\r\n`, message: /no data rows/ },
    { name: 'bad datetime', node: nodes.nr, content: `${H}\n1,2024-01-01 00:00:00\n2,2024-13-01 00:00:00\n`, message: /^Row 2: create_datetime "2024-13-01 00:00:00" does not match the format/, row: 2 },
    { name: 'ISO datetime is not the CSV format', node: nodes.nr, content: `${H}\n1,2024-01-01T00:00:00Z\n`, message: /^Row 1: create_datetime .* does not match/, row: 1 },
    { name: 'missing value', node: nodes.nr, content: `${H}\n1\n`, message: /^Row 1: create_datetime is missing$/, row: 1 },
    { name: 'non-monotonic time', node: nodes.nr, content: `${H}\n1,2024-01-01 00:00:10\n2,2024-01-01 00:00:05\n`, message: /^Row 2: create_datetime is before the previous row's create_datetime/, row: 2 },
    { name: 'not a float', node: nodes.nr, content: `${H}\nabc,2024-01-01 00:00:00\n`, message: /^Row 1: state is not a valid python float$/, row: 1 },
    { name: 'out of the active period', node: nodes.nr, content: `${H}\n1,2019-06-01 00:00:00\n`, message: /^Row 1: create_datetime is outside the start 2020-01-01T00:00:00\+00:00 of the active period$/, row: 1 },
    { name: 'blacklist', node: nodes.nr, content: `${H}\n1,2024-01-01 00:00:00\n-1,2024-01-01 00:00:05\n`, message: /^Row 2: state in blacklist$/, row: 2 },
    { name: 'threshold max', node: nodes.nr, content: `${H}\n500,2024-01-01 00:00:00\n`, message: /^Row 1: state > threshold_max \(500\.0 > 125\)$/, row: 1 },
    { name: 'threshold min', node: nodes.nr, content: `${H}\n-41,2024-01-01 00:00:00\n`, message: /^Row 1: state < threshold_min/, row: 1 },
    { name: 'max_rate', node: nodes.nr, content: `${H}\n1,2024-01-01 00:00:00\n2,2024-01-01 00:00:00.500\n`, message: /^Row 2: create_datetime is less than max_rate \(1 s\) after the previous row$/, row: 2 },
    { name: 'last_unique_check', node: nodes.nr, content: `${H}\n1,2024-01-01 00:00:00\n1.0,2024-01-01 00:00:05\n`, message: /^Row 2: state is equal to the previous row's state/, row: 2 },
    { name: 'NRecords over N', node: nodes.nr, content: csv([[H], ...[1, 2, 3, 4, 5, 6].map((i) => [String(i), `2024-01-01 00:00:${String(i * 2).padStart(2, '0')}`])]), message: /^Row 6: For NRecords: number of records exceeds limit n_records_count \(5\)$/, row: 6 },
    { name: 'whitelist', node: nodes.tw, content: `${H}\njammed,${tw(10)}\n`, message: /^Row 1: state not in whitelist$/, row: 1 },
    { name: 'max_size in bytes', node: nodes.tw, content: `${H}\na-very-long-state,${tw(10)}\n`, message: /^Row 1: state is 17 bytes long, more than max_size 8$/, row: 1 },
    { name: 'TimeWindow row older than the window', node: nodes.tw, content: `${H}\nopen,${tw(7200)}\n`, message: /^Row 1: create_datetime is outside the range of valid values from time_window_size/, row: 1 },
    { name: 'TimeWindow row in the future', node: nodes.tw, content: `${H}\nopen,${tw(-600)}\n`, message: /time_window_size/, row: 1 },
    { name: 'aggregation window not aligned', node: nodes.agg, content: `${HA}\n1,2024-01-01 00:06:01,2024-01-01 00:01:00,2024-01-01 00:06:00\n`, message: /^Row 1: the window must start at a multiple of time_window_size \(300 s\) from UTC midnight, e.g. 2024-01-01 00:00:00$/, row: 1 },
    { name: 'aggregation window with seconds', node: nodes.agg, content: `${HA}\n1,2024-01-01 00:05:30,2024-01-01 00:00:30,2024-01-01 00:05:30\n`, message: /zero seconds/, row: 1 },
    { name: 'aggregation window of the wrong size', node: nodes.agg, content: `${HA}\n1,2024-01-01 00:10:00,2024-01-01 00:00:00,2024-01-01 00:10:00\n`, message: /must equal time_window_size \(300 s\)/, row: 1 },
    { name: 'aggregation created far from the window end', node: nodes.agg, content: `${HA}\n1,2024-01-01 01:00:00,2024-01-01 00:00:00,2024-01-01 00:05:00\n`, message: /60 seconds/, row: 1 },
    { name: 'aggregation windows repeating', node: nodes.agg, content: `${HA}\n1,2024-01-01 00:05:00,2024-01-01 00:00:00,2024-01-01 00:05:00\n2,2024-01-01 00:05:01,2024-01-01 00:00:00,2024-01-01 00:05:00\n`, message: /^Row 2: the window must come after/, row: 2 },
    { name: 'aggregation non-finite', node: nodes.agg, content: `${HA}\ninf,2024-01-01 00:05:00,2024-01-01 00:00:00,2024-01-01 00:05:00\n`, message: /finite/, row: 1 },
    { name: 'bad UTF-8', node: nodes.tw, content: Buffer.concat([Buffer.from(`${H}\nopen,${tw(5)}\n`), Buffer.from([0x6f, 0xc3, 0x28, 0x2c]), Buffer.from(`${tw(4)}\n`)]), message: /^CSV file is not valid UTF-8 text: line 3/ },
    { name: 'unterminated quote', node: nodes.tw, content: `${H}\nopen,${tw(5)}\n"closed,${tw(4)}\n`, message: /^CSV syntax error at line 3: a quoted field is not closed/ },
    { name: 'junk after a closing quote', node: nodes.tw, content: `${H}\n"open"x,${tw(5)}\n`, message: /^CSV syntax error at line 2: unexpected character "x"/ },
    { name: 'several failing rows are all listed', node: nodes.nr, content: `${H}\n500,2024-01-01 00:00:00\n1,2024-01-01 00:00:05\n-1,2024-01-01 00:00:10\n`, message: /^Row 1: state > threshold_max/, row: 1, count: 2 },
    { name: 'too large', node: nodes.nr, content: Buffer.alloc(32 * 1024 * 1024 + 10, 0x31), message: /^CSV file is too large: the limit is 33554432 bytes$/ },
  ];
  const snapshot = {
    nr: await chRows(nodes.nr),
    tw: await chRows(nodes.tw),
    agg: await chRows(nodes.agg),
  };
  assert.equal(snapshot.nr.n_last_entry!.length, 2);
  for (const c of cases) {
    const res = await call('POST', `${dp}/set_data_pipe_data_csv?uuid=${c.node}`, { token: users.a.token, multipart: { content: c.content } });
    assert.equal(res.status, 422, `${c.name}: ${res.text.slice(0, 300)}`);
    assert.ok(res.body.detail.startsWith('422: 8: DataPipe Validation Error: '), c.name);
    const message = res.body.detail.slice('422: 8: DataPipe Validation Error: '.length);
    assert.match(message, c.message, c.name);
    assert.equal(res.body.errors[0].message, message, c.name);
    if (c.row !== undefined) assert.equal(res.body.errors[0].row, c.row, c.name);
    if (c.count !== undefined) assert.equal(res.body.errors.length, c.count, `${c.name}: ${JSON.stringify(res.body.errors)}`);
  }
  assert.deepEqual(await chRows(nodes.nr), snapshot.nr, 'NRecords node unchanged');
  assert.deepEqual(await chRows(nodes.tw), snapshot.tw, 'TimeWindow node unchanged');
  assert.deepEqual(await chRows(nodes.agg), snapshot.agg, 'Aggregation node unchanged');
});

function unzipCsv(zip: Buffer): { name: string; csv: string } {
  const dir = mkdtempSync(join(tmpdir(), 'pu-dp-zip-'));
  try {
    const file = join(dir, 'export.zip');
    writeFileSync(file, zip);
    // An independent implementation checks the archive (CRC included).
    execFileSync('unzip', ['-tq', file]);
    const name = execFileSync('zipinfo', ['-1', file]).toString().trim();
    return { name, csv: execFileSync('unzip', ['-p', file]).toString('utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a valid CSV replaces the node data in every table; other nodes are untouched', async () => {
  const content = 'create_datetime,state,ignored\r\n2024-01-01 00:00:00,1,x\r\n2024-01-01 00:00:05.250,2.5,y\r\n"2024-01-01 00:00:10","1_000e-1",z\r\n';
  const res = await call('POST', `${dp}/set_data_pipe_data_csv?uuid=${nodes.nr}`, { token: users.a.token, multipart: { content } });
  assert.equal(res.status, 204, res.text);
  const rows = await chRows(nodes.nr);
  assert.deepEqual(
    (rows.n_last_entry as Array<Record<string, unknown>>).map((r) => [r.state, r.state_type, r.create_datetime, r.max_count, r.size]),
    [
      ['1.0', 'Number', '2024-01-01 00:00:00.000', 5, 3],
      ['2.5', 'Number', '2024-01-01 00:00:05.250', 5, 3],
      ['100.0', 'Number', '2024-01-01 00:00:10.000', 5, 5],
    ],
  );
  assert.equal(rows.window_entry!.length, 0, 'the stray TimeWindow row of the node was deleted too');
  assert.equal((await chRows(nodes.other)).n_last_entry!.length, 1, "another node's rows stay");
});

test('CSV export neutralises spreadsheet formulas (issue 10.15) and imports them back unchanged', async () => {
  const now = nowSec();
  // A free-text TimeWindow node (the shared one has a whitelist).
  const node = randomUUID();
  await insertNode(node, units.a, users.a.uuid, { yaml: Y.timewindow.replace('  type_value_filtering: WhiteList\n  filtering_values: ["open", "closed", "a-very-long-state"]\n', '').replace('max_size: 8', 'max_size: 0'), visibility: 'Public' });
  const states = ['=HYPERLINK("http://evil.example","x")', '+1+2', '@SUM(A1)', '-12.5', '-cmd|calc'];
  const csv = `${H}\n${states.map((state, i) => `${csvField(state)},${pyDt(now - 40_000 + i * 1000)}`).join('\n')}\n`;
  const imported = await call('POST', `${dp}/set_data_pipe_data_csv?uuid=${node}`, { token: users.a.token, multipart: { content: csv } });
  assert.equal(imported.status, 204, imported.text);
  const before = await chRows(node);
  const exported = unzipCsv((await call('GET', `${dp}/get_data_pipe_data_csv/${node}`, { token: users.a.token })).raw).csv;
  const cells = parseCsv(exported).slice(1).map((record) => record.fields[1]);
  assert.deepEqual(cells, [`'=HYPERLINK("http://evil.example","x")`, "'+1+2", "'@SUM(A1)", '-12.5', "'-cmd|calc"], 'formulas start with a quote; numbers stay numbers');
  const again = await call('POST', `${dp}/set_data_pipe_data_csv?uuid=${node}`, { token: users.a.token, multipart: { content: exported } });
  assert.equal(again.status, 204, again.text);
  assert.deepEqual(await chRows(node), before, 'the export imports back to the same rows');
});

test('export -> import round trip (NRecords, TimeWindow, Aggregation) keeps the data byte for byte', async () => {
  const now = nowSec();
  const twCsv = `${H}\nopen,${pyDt(now - 30_000)}\nclosed,${pyDt(now - 20_000)}\n"open",${pyDt(now - 10_000)}\n`;
  assert.equal((await call('POST', `${dp}/set_data_pipe_data_csv?uuid=${nodes.tw}`, { token: users.a.token, multipart: { content: twCsv } })).status, 204);
  const aggCsv = `${HA}\n1.25,2024-01-01 00:05:01,2024-01-01 00:00:00,2024-01-01 00:05:00\n-3,2024-01-01 00:15:00.5,2024-01-01 00:10:00,2024-01-01 00:15:00\n`;
  const aggImport = await call('POST', `${dp}/set_data_pipe_data_csv?uuid=${nodes.agg}`, { token: users.a.token, multipart: { content: aggCsv } });
  assert.equal(aggImport.status, 204, aggImport.text);

  const expectedHeaders: Record<string, string> = {
    [nodes.nr]: 'unit_node_uuid,state,state_type,create_datetime,max_count,size',
    [nodes.tw]: 'unit_node_uuid,state,state_type,create_datetime,expiration_datetime,size',
    [nodes.agg]: 'unit_node_uuid,state,aggregation_type,time_window_size,create_datetime,start_window_datetime,end_window_datetime',
  };
  for (const node of [nodes.nr, nodes.tw, nodes.agg]) {
    const first = await call('GET', `${dp}/get_data_pipe_data_csv/${node}`, { token: users.a.token });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers['content-type'], 'application/zip');
    const { name, csv: text } = unzipCsv(first.raw);
    assert.match(name, /^dp_data_[0-9a-f-]{36}\.csv$/);
    const lines = text.split('\r\n');
    assert.equal(lines[0], expectedHeaders[node]);
    assert.equal(lines.at(-1), '', 'CRLF after every record');
    const before = await chRows(node);
    const again = await call('POST', `${dp}/set_data_pipe_data_csv?uuid=${node}`, { token: users.a.token, multipart: { content: text } });
    assert.equal(again.status, 204, again.text);
    assert.deepEqual(await chRows(node), before, 'import of the export restores the same rows');
    const second = await call('GET', `${dp}/get_data_pipe_data_csv/${node}`, { token: users.a.token });
    assert.equal(unzipCsv(second.raw).csv, text);
  }
  const agg = unzipCsv((await call('GET', `${dp}/get_data_pipe_data_csv/${nodes.agg}`, { token: users.a.token })).raw).csv;
  assert.equal(
    agg,
    `${expectedHeaders[nodes.agg]}\r\n${nodes.agg},1.25,Max,300,2024-01-01 00:05:01,2024-01-01 00:00:00,2024-01-01 00:05:00\r\n${nodes.agg},-3.0,Max,300,2024-01-01 00:15:00.500000,2024-01-01 00:10:00,2024-01-01 00:15:00\r\n`,
  );
  const tw = unzipCsv((await call('GET', `${dp}/get_data_pipe_data_csv/${nodes.tw}`, { token: users.a.token })).raw).csv.split('\r\n');
  assert.equal(tw[1], `${nodes.tw},open,Text,${pyDt(now - 30_000)},${pyDt(now - 30_000 + 3_600_000)},4`);

  const lv = await call('GET', `${dp}/get_data_pipe_data_csv/${nodes.lv}`, { token: users.a.token });
  assert.equal(lv.body.detail, '422: 8: DataPipe Validation Error: LastValue type is not supported on this function');
  const lvImport = await call('POST', `${dp}/set_data_pipe_data_csv?uuid=${nodes.lv}`, { token: users.a.token, multipart: { content: `${H}\non,2024-01-01 00:00:00\n` } });
  assert.equal(lvImport.body.detail, '422: 8: DataPipe Validation Error: LastValue type is not supported on this function');
  const inactive = await call('GET', `${dp}/get_data_pipe_data_csv/${nodes.inactive}`, { token: users.a.token });
  assert.equal(inactive.body.detail, '422: 8: DataPipe Validation Error: Data pipe is not active');
});

test('delete_data_pipe_data removes the node rows in all three tables and keeps Postgres state', async () => {
  await seed();
  assert.ok((await chRows(nodes.nr)).n_last_entry!.length > 0);
  const res = await call('DELETE', `${dp}/delete_data_pipe_data/${nodes.nr}`, { token: users.a.token });
  assert.equal(res.status, 204);
  assert.deepEqual(await chRows(nodes.nr), { n_last_entry: [], window_entry: [], aggregation_entry: [] });
  assert.ok((await chRows(nodes.other)).n_last_entry!.length > 0, 'other nodes keep their rows');
  const empty = await call('GET', `${dp}/get_data_pipe_data_csv/${nodes.nr}`, { token: users.a.token });
  assert.equal(empty.body.detail, '422: 8: DataPipe Validation Error: No data found');
  assert.equal((await call('DELETE', `${dp}/delete_data_pipe_data/${nodes.lv}`, { token: users.a.token })).status, 204);
  const { rows } = await backend.deps.pg.query('SELECT state FROM units_nodes WHERE uuid = $1', [nodes.lv]);
  assert.equal(rows[0].state, 'on');
});

// ---- access ---------------------------------------------------------------------------------

test('ownership: non-creators get 403 on every node operation; reads follow the node visibility', async () => {
  await seed();
  const snapshot = await chRows(nodes.nr);
  const yml = await storedYml(nodes.nr);
  const strangerUnit = unitToken(units.b, backend.deps.config.secretKey);
  const ownUnit = unitToken(units.a, backend.deps.config.secretKey);
  const ops = (node: string) => [
    () => call('POST', `${dp}/set_data_pipe_config?uuid=${node}`, { token: users.b.token, multipart: { content: Y.lastvalue } }),
    () => call('GET', `${dp}/get_data_pipe_config/${node}`, { token: users.b.token }),
    () => call('GET', `${dp}/get_data_pipe_data/?uuid=${node}&type=NRecords`, { token: users.b.token }),
    () => call('GET', `${dp}/get_data_pipe_data_csv/${node}`, { token: users.b.token }),
    () => call('POST', `${dp}/set_data_pipe_data_csv?uuid=${node}`, { token: users.b.token, multipart: { content: `${H}\n1,2024-01-01 00:00:00\n` } }),
    () => call('DELETE', `${dp}/delete_data_pipe_data/${node}`, { token: users.b.token }),
  ];
  for (const op of ops(nodes.nr)) {
    const res = await op();
    assert.equal(res.status, 403, res.text);
    assert.match(res.body.detail, /^403: 1: No Access: /);
  }
  // The admin is not the creator either.
  for (const res of [
    await call('GET', `${dp}/get_data_pipe_config/${nodes.nr}`, { token: users.admin.token }),
    await call('DELETE', `${dp}/delete_data_pipe_data/${nodes.nr}`, { token: users.admin.token }),
    await call('GET', `${dp}/get_data_pipe_data/?uuid=${nodes.nr}&type=NRecords`, { token: users.admin.token }),
  ]) assert.equal(res.status, 403);
  // Units: another unit is refused, the node's own unit reads; units never write.
  assert.equal((await call('GET', `${dp}/get_data_pipe_data/?uuid=${nodes.nr}&type=NRecords`, { token: strangerUnit })).status, 403);
  assert.equal((await call('GET', `${dp}/get_data_pipe_data_csv/${nodes.nr}`, { token: strangerUnit })).status, 403);
  assert.equal((await call('GET', `${dp}/get_data_pipe_data/?uuid=${nodes.nr}&type=NRecords`, { token: ownUnit })).status, 200);
  assert.equal((await call('DELETE', `${dp}/delete_data_pipe_data/${nodes.nr}`, { token: ownUnit })).status, 403);
  assert.equal((await call('GET', `${dp}/get_data_pipe_config/${nodes.nr}`, { token: ownUnit })).status, 403);
  // Anonymous callers read nothing.
  assert.equal((await call('GET', `${dp}/get_data_pipe_data/?uuid=${nodes.nr}&type=NRecords`)).status, 403);
  // A permission on a Private node admits its holder to reads only.
  await backend.deps.pg.query(
    `INSERT INTO permissions (uuid, agent_type, agent_user_uuid, resource_type, resource_unit_node_uuid) VALUES (gen_random_uuid(), 'User', $1, 'UnitNode', $2)`,
    [users.b.uuid, nodes.nr],
  );
  assert.equal((await call('GET', `${dp}/get_data_pipe_data/?uuid=${nodes.nr}&type=NRecords`, { token: users.b.token })).status, 200);
  assert.equal((await call('GET', `${dp}/get_data_pipe_config/${nodes.nr}`, { token: users.b.token })).status, 403);
  // A Public node: anyone signed in reads, only the creator changes.
  const publicRead = await call('GET', `${dp}/get_data_pipe_data/?uuid=${nodes.tw}&type=TimeWindow`, { token: strangerUnit });
  assert.equal(publicRead.status, 200);
  for (const op of [ops(nodes.tw)[0]!, ops(nodes.tw)[1]!, ops(nodes.tw)[4]!, ops(nodes.tw)[5]!]) assert.equal((await op()).status, 403);
  assert.deepEqual(await chRows(nodes.nr), snapshot, 'refused operations changed no data');
  assert.equal(await storedYml(nodes.nr), yml, 'refused operations changed no config');
});

test('PU_FF_DATAPIPE_ENABLE=false: every DataPipe operation answers 405', async () => {
  const config = testBackendConfig(db, { PU_MQTT_PORT: String(broker.mqttPort), PU_FF_DATAPIPE_ENABLE: 'False' });
  const app = await buildApp({ ...backend.deps, config });
  try {
    const multipart = (content: string) => {
      const boundary = 'xxBOUNDARYxx';
      return {
        payload: `--${boundary}\r\nContent-Disposition: form-data; name="data"; filename="f"\r\n\r\n${content}\r\n--${boundary}--\r\n`,
        headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'x-auth-token': users.a.token },
      };
    };
    const requests = [
      { method: 'POST' as const, url: `${dp}/check_data_pipe_config`, ...multipart(Y.lastvalue) },
      { method: 'POST' as const, url: `${dp}/set_data_pipe_config?uuid=${nodes.cfg}`, ...multipart(Y.lastvalue) },
      { method: 'GET' as const, url: `${dp}/get_data_pipe_config/${nodes.cfg}`, headers: { 'x-auth-token': users.a.token } },
      { method: 'GET' as const, url: `${dp}/get_data_pipe_data/?uuid=${nodes.nr}&type=NRecords`, headers: { 'x-auth-token': users.a.token } },
      { method: 'GET' as const, url: `${dp}/get_data_pipe_data_csv/${nodes.nr}`, headers: { 'x-auth-token': users.a.token } },
      { method: 'POST' as const, url: `${dp}/set_data_pipe_data_csv?uuid=${nodes.nr}`, ...multipart(`${H}\n1,2024-01-01 00:00:00\n`) },
      { method: 'DELETE' as const, url: `${dp}/delete_data_pipe_data/${nodes.nr}`, headers: { 'x-auth-token': users.a.token } },
    ];
    for (const r of requests) {
      const res = await app.inject(r);
      assert.equal(res.statusCode, 405, `${r.method} ${r.url}: ${res.body}`);
      assert.equal(res.json().detail, '405: 15: Feature Flag Error: This feature has been disabled by the instance Owner');
    }
    const seen: string[] = [];
    app.datapipe.onChange((e) => {
      seen.push(e.nodeUuid);
    });
    await app.datapipe.notifyChanged(nodes.cfg, 'Update');
    assert.deepEqual(seen, [], 'no notification either when the flag is off');
  } finally {
    await app.close();
  }
});
