/**
 * GET /unit_nodes/get_data_pipe_data/ against real Postgres + ClickHouse: per-policy reads and
 * filters, keyset pagination (walks, cursor vs offset), the limit cap, count, Aggregation order,
 * expired TimeWindow rows and surplus NRecords rows hidden, SQL injection attempts refused.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { unitToken } from '@pepeunit/common';
import { parseDataPipeYaml, normaliseDataPipeConfig, serialiseDataPipeConfig } from '@pepeunit/common/datapipe';
import type { RunningBackend } from '@pepeunit/backend';
import { startTestBackend, type TestBackend } from '@pepeunit/tests/backend';

const api = '/pepeunit/api/v1';
const url = `${api}/unit_nodes/get_data_pipe_data/`;
const MAX_PAGE = 50;

let backend: RunningBackend;
let t: TestBackend;
const owner = { uuid: '', token: '' };
const unit = randomUUID();
const nodes = { nr: randomUUID(), big: randomUUID(), tw: randomUUID(), agg: randomUUID(), lv: randomUUID(), inj: randomUUID(), deep: randomUUID() };
const base = Date.parse('2025-03-01T00:00:00Z');
let insertedAt = 0;

const policyYaml = (policy: string) =>
  `active_period: {type: Permanent}\nfilters: {type_input_value: Text, max_rate: 0, max_size: 0}\nprocessing_policy: {${policy}}\n`;

async function get(query: Record<string, string | number | string[]>, token = owner.token) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) for (const item of Array.isArray(v) ? v : [v]) qs.append(k, String(item));
  const res = await backend.app.inject({ method: 'GET', url: `${url}?${qs}`, headers: { 'x-auth-token': token } });
  return { status: res.statusCode, body: res.json() };
}

const ch = () => backend.deps.clickhouse;
const iso = (ms: number) => new Date(ms).toISOString();
const isoNaive = (ms: number) => iso(ms).replace('Z', '');

before(async () => {
  t = await startTestBackend({ label: 'dp_reads', env: { PU_MAX_PAGINATION_SIZE: String(MAX_PAGE) } });
  backend = t.backend;
  await backend.app.inject({ method: 'POST', url: `${api}/users`, payload: { login: 'reader_one', password: 'Passw0rd!' } });
  owner.token = (await backend.app.inject({ method: 'POST', url: `${api}/users/auth`, payload: { credentials: 'reader_one', password: 'Passw0rd!' } })).json().token;
  owner.uuid = (await backend.deps.pg.query(`SELECT uuid FROM users WHERE login = 'reader_one'`)).rows[0].uuid;
  const pg = backend.deps.pg;
  await pg.query(
    `INSERT INTO units (uuid, visibility_level, name, create_datetime, last_update_datetime, is_auto_update_from_repo_unit, creator_uuid) VALUES ($1, 'Private', 'reads_unit', now(), now(), true, $2)`,
    [unit, owner.uuid],
  );
  const configs: Record<keyof typeof nodes, string> = {
    nr: 'policy_type: NRecords, n_records_count: 29',
    big: 'policy_type: NRecords, n_records_count: 1024',
    tw: 'policy_type: TimeWindow, time_window_size: 3600',
    agg: 'policy_type: Aggregation, time_window_size: 60, aggregation_functions: Avg',
    lv: 'policy_type: LastValue',
    inj: 'policy_type: NRecords, n_records_count: 10',
    deep: 'policy_type: TimeWindow, time_window_size: 86400',
  };
  for (const [key, policy] of Object.entries(configs)) {
    const parsed = parseDataPipeYaml(policyYaml(policy));
    assert.ok(parsed.ok);
    await pg.query(
      `INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, topic_name, create_datetime, unit_uuid, creator_uuid, is_data_pipe_active, data_pipe_yml)
       VALUES ($1, 'Output', 'Private', false, $2, now(), $3, $4, true, $5)`,
      [nodes[key as keyof typeof nodes], `${key}/pepeunit`, unit, owner.uuid, serialiseDataPipeConfig(normaliseDataPipeConfig(parsed.document))],
    );
  }
  await pg.query(`UPDATE units_nodes SET state = 'on', last_update_datetime = '2026-01-02 03:04:05' WHERE uuid = $1`, [nodes.lv]);

  // NRecords: 40 rows in pairs sharing a timestamp, plus 3 identical rows; N = 29 keeps the 29 newest.
  const nr = [];
  for (let i = 0; i < 40; i++) nr.push({ unit_node_uuid: nodes.nr, state: `v${i}`, state_type: 'Text', create_datetime: iso(base + Math.floor(i / 2) * 1000), max_count: 29, size: String(i).length + 1 });
  for (let i = 0; i < 3; i++) nr.push({ unit_node_uuid: nodes.nr, state: 'dup', state_type: 'Text', create_datetime: iso(base + 10_500), max_count: 29, size: 3 });
  const big = Array.from({ length: 120 }, (_, i) => ({ unit_node_uuid: nodes.big, state: `b${i}`, state_type: 'Text', create_datetime: iso(base + i * 10), max_count: 1024, size: 4 }));
  const inj = ["x' OR '1'='1", 'plain', '100%', 'a_b'].map((state, i) => ({ unit_node_uuid: nodes.inj, state, state_type: 'Text', create_datetime: iso(base + i), max_count: 10, size: state.length }));
  await ch().insert({ table: 'n_last_entry', format: 'JSONEachRow', values: [...nr, ...big, ...inj] });

  // TimeWindow: TTL merges stopped so expired rows stay stored, as between lazy TTL merges.
  await ch().command({ query: 'SYSTEM STOP TTL MERGES window_entry' });
  insertedAt = Math.floor(Date.now() / 1000) * 1000;
  const tw = [];
  for (let k = 1; k <= 10; k++) tw.push({ unit_node_uuid: nodes.tw, state: `live${k}`, state_type: 'Text', create_datetime: iso(insertedAt - k * 60_000), expiration_datetime: iso(insertedAt - k * 60_000 + 3_600_000), size: 5 });
  for (let k = 1; k <= 5; k++) tw.push({ unit_node_uuid: nodes.tw, state: `expired${k}`, state_type: 'Text', create_datetime: iso(insertedAt - 7_200_000 - k * 1000), expiration_datetime: iso(insertedAt - 3_600_000 - k * 1000), size: 8 });
  await ch().insert({ table: 'window_entry', format: 'JSONEachRow', values: tw });

  // Aggregation: windows w = 0..9 of 60 s, flushed in the reverse order (create_datetime decreasing), plus two 300 s windows.
  const agg = [];
  const types = ['Avg', 'Min', 'Max'];
  for (let w = 0; w < 10; w++) {
    agg.push({ unit_node_uuid: nodes.agg, state: w + 0.5, aggregation_type: types[w % 3], time_window_size: 60, create_datetime: iso(base + 3_600_000 - w * 1000), start_window_datetime: iso(base + w * 60_000), end_window_datetime: iso(base + (w + 1) * 60_000) });
  }
  for (let w = 0; w < 2; w++) {
    agg.push({ unit_node_uuid: nodes.agg, state: 100 + w, aggregation_type: 'Sum', time_window_size: 300, create_datetime: iso(base + 7_200_000), start_window_datetime: iso(base + 900_000 + w * 300_000), end_window_datetime: iso(base + 1_200_000 + w * 300_000) });
  }
  await ch().insert({ table: 'aggregation_entry', format: 'JSONEachRow', values: agg });
});

after(async () => {
  await t?.close();
});

test('NRecords: only the N newest rows are visible (count included); reference item shape', async () => {
  const stored = await ch().query({ query: 'SELECT count() AS c FROM n_last_entry WHERE unit_node_uuid = {u:UUID}', query_params: { u: nodes.nr }, format: 'JSONEachRow' });
  assert.equal(Number((await stored.json<{ c: number }>())[0]!.c), 43, 'surplus rows are stored (the trim job has not run)');
  const res = await get({ uuid: nodes.nr, type: 'NRecords', limit: MAX_PAGE });
  assert.equal(res.status, 200);
  assert.equal(res.body.count, 29);
  assert.equal(res.body.pipe_data.length, 29);
  assert.equal(res.body.next_cursor, null);
  // The 29 newest: v14..v39 (13 timestamps, 26 rows) and the 3 identical rows.
  const expected = [...Array.from({ length: 26 }, (_, i) => `v${i + 14}`), 'dup', 'dup', 'dup'].sort();
  assert.deepEqual(res.body.pipe_data.map((r: { state: string }) => r.state).sort(), expected);
  assert.deepEqual(Object.keys(res.body.pipe_data[0]), ['unit_node_uuid', 'state', 'state_type', 'create_datetime', 'max_count', 'size']);
  assert.deepEqual(res.body.pipe_data[0], { unit_node_uuid: nodes.nr, state: res.body.pipe_data[0].state, state_type: 'Text', create_datetime: isoNaive(base + 19_000), max_count: 29, size: 3 });
  const times = res.body.pipe_data.map((r: { create_datetime: string }) => r.create_datetime);
  assert.deepEqual(times, [...times].sort().reverse(), 'default order is newest first');
});

test('keyset pagination: walking with next_cursor equals one big query, in both orders and for every page size', async () => {
  for (const [node, type, total] of [[nodes.nr, 'NRecords', 29], [nodes.agg, 'Aggregation', 12], [nodes.tw, 'TimeWindow', 10]] as const) {
    for (const order of ['asc', 'desc']) {
      const all = await get({ uuid: node, type, order_by_create_date: order, limit: MAX_PAGE });
      assert.equal(all.body.pipe_data.length, total);
      for (const limit of type === 'NRecords' ? [2, 7] : [2, 5]) {
        const walked: unknown[] = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          const page = await get({ uuid: node, type, order_by_create_date: order, limit, ...(cursor ? { cursor } : {}) });
          assert.equal(page.status, 200, JSON.stringify(page.body));
          assert.equal(page.body.count, total, 'count covers every page');
          assert.ok(page.body.pipe_data.length <= limit);
          walked.push(...page.body.pipe_data);
          cursor = page.body.next_cursor;
          pages++;
          assert.ok(pages <= total + 1, 'the walk ends');
        } while (cursor);
        assert.deepEqual(walked, all.body.pipe_data, `${type} ${order} limit ${limit}`);
        assert.equal(pages, Math.ceil(total / limit));
      }
    }
  }
});

test('page 3 through cursors equals offset page 3; an offset page continues with its cursor, even inside identical rows', async () => {
  const q = { uuid: nodes.nr, type: 'NRecords', order_by_create_date: 'desc', limit: 7 };
  const p1 = await get(q);
  const p2 = await get({ ...q, cursor: p1.body.next_cursor });
  const p3 = await get({ ...q, cursor: p2.body.next_cursor });
  const o3 = await get({ ...q, offset: 14 });
  assert.equal(p3.body.pipe_data.length, 7);
  assert.deepEqual(p3.body.pipe_data, o3.body.pipe_data);
  assert.deepEqual((await get({ ...q, cursor: o3.body.next_cursor })).body.pipe_data, (await get({ ...q, offset: 21 })).body.pipe_data);
  // limit 1 at offsets around and inside the 3 identical rows (asc: positions 8-10, desc: 18-20):
  // the cursor of page k yields page k + 1.
  for (const order of ['asc', 'desc']) {
    for (const k of [0, 7, 8, 9, 10, 17, 18, 19, 20]) {
      const page = await get({ uuid: nodes.nr, type: 'NRecords', order_by_create_date: order, limit: 1, offset: k });
      const next = await get({ uuid: nodes.nr, type: 'NRecords', order_by_create_date: order, limit: 1, cursor: page.body.next_cursor });
      const expected = await get({ uuid: nodes.nr, type: 'NRecords', order_by_create_date: order, limit: 1, offset: k + 1 });
      assert.deepEqual(next.body.pipe_data, expected.body.pipe_data, `${order} offset ${k}`);
    }
  }
  const last = await get({ uuid: nodes.nr, type: 'NRecords', limit: 1, offset: 28 });
  assert.equal(last.body.next_cursor, null, 'no cursor after the last row');
});

test('limit: absent or 0 means PU_MAX_PAGINATION_SIZE (not unlimited); above it is a 422', async () => {
  for (const q of [{}, { limit: 0 }] as Array<Record<string, number>>) {
    const res = await get({ uuid: nodes.big, type: 'NRecords', ...q });
    assert.equal(res.body.count, 120);
    assert.equal(res.body.pipe_data.length, MAX_PAGE);
    assert.ok(res.body.next_cursor);
  }
  const over = await get({ uuid: nodes.big, type: 'NRecords', limit: MAX_PAGE + 1 });
  assert.equal(over.status, 422);
  assert.equal(over.body.detail, `422: 2: Validation Error: limit must be <= ${MAX_PAGE}`);
});

test('filters: search_string (case-insensitive, literal), create datetime range, relative_time', async () => {
  const search = await get({ uuid: nodes.nr, type: 'NRecords', search_string: 'V3', limit: MAX_PAGE });
  assert.deepEqual(search.body.pipe_data.map((r: { state: string }) => r.state).sort(), ['v30', 'v31', 'v32', 'v33', 'v34', 'v35', 'v36', 'v37', 'v38', 'v39']);
  assert.equal(search.body.count, 10);
  // LIKE wildcards in the search text are matched literally.
  assert.deepEqual((await get({ uuid: nodes.inj, type: 'NRecords', search_string: '%' })).body.pipe_data.map((r: { state: string }) => r.state), ['100%']);
  assert.deepEqual((await get({ uuid: nodes.inj, type: 'NRecords', search_string: '_' })).body.pipe_data.map((r: { state: string }) => r.state), ['a_b']);

  const range = await get({ uuid: nodes.nr, type: 'NRecords', start_create_datetime: iso(base + 15_000), end_create_datetime: isoNaive(base + 16_000), order_by_create_date: 'asc' });
  assert.deepEqual(range.body.pipe_data.map((r: { state: string }) => r.state).sort(), ['v30', 'v31', 'v32', 'v33']);
  assert.deepEqual(range.body.pipe_data.map((r: { create_datetime: string }) => r.create_datetime), [isoNaive(base + 15_000), isoNaive(base + 15_000), isoNaive(base + 16_000), isoNaive(base + 16_000)]);
  assert.equal(range.body.count, 4);
  // With an offset, naive datetimes are UTC, and sub-millisecond bounds round inwards.
  const offset = await get({ uuid: nodes.nr, type: 'NRecords', start_create_datetime: '2025-03-01T02:00:14.9995+02:00', end_create_datetime: '2025-03-01 00:00:15.0005' });
  assert.equal(offset.body.count, 2);
  // relative_time: rows created within the last 330 s are live1..live5.
  const recent = await get({ uuid: nodes.tw, type: 'TimeWindow', relative_time: '330s', order_by_create_date: 'asc' });
  assert.deepEqual(recent.body.pipe_data.map((r: { state: string }) => r.state), ['live5', 'live4', 'live3', 'live2', 'live1']);
  assert.equal((await get({ uuid: nodes.tw, type: 'TimeWindow', relative_time: '1d' })).body.count, 10);
  assert.equal((await get({ uuid: nodes.nr, type: 'NRecords', relative_time: '1y' })).body.count, 0);
  assert.equal((await get({ uuid: nodes.nr, type: 'NRecords', relative_time: '100y' })).body.count, 29);
  assert.equal((await get({ uuid: nodes.nr, type: 'NRecords', relative_time: '999999999M' })).body.count, 29);
});

test('TimeWindow never returns expired rows, even before the TTL merge removed them', async () => {
  const stored = await ch().query({ query: 'SELECT count() AS c FROM window_entry WHERE unit_node_uuid = {u:UUID}', query_params: { u: nodes.tw }, format: 'JSONEachRow' });
  assert.equal(Number((await stored.json<{ c: number }>())[0]!.c), 15, 'expired rows are still stored');
  const res = await get({ uuid: nodes.tw, type: 'TimeWindow' });
  assert.equal(res.body.count, 10);
  assert.ok(res.body.pipe_data.every((r: { state: string }) => r.state.startsWith('live')));
  assert.deepEqual(Object.keys(res.body.pipe_data[0]), ['unit_node_uuid', 'state', 'state_type', 'create_datetime', 'expiration_datetime', 'size']);
  assert.equal(res.body.pipe_data[0].state, 'live1');
  assert.equal(res.body.pipe_data[0].create_datetime, isoNaive(insertedAt - 60_000));
  assert.equal(res.body.pipe_data[0].expiration_datetime, isoNaive(insertedAt - 60_000 + 3_600_000));
});

test('deep pages: every offset, cursor and order equals one sort of all visible rows (ties, identical and expired rows, 25,000 rows)', async () => {
  // 25,000 rows: timestamps shared by 1-4 rows, runs of identical rows, 1,000 expired rows mixed in.
  const now = Math.floor(Date.now() / 1000) * 1000;
  const rows = [];
  let t = now - 3_600_000;
  for (let i = 0; i < 25_000; i++) {
    if (i % 4 === 0 || i % 7 === 0) t += 10;
    const expired = i % 25 === 3;
    const state = i % 11 === 0 ? 'same' : `d${i % 997}`;
    rows.push({
      unit_node_uuid: nodes.deep,
      state,
      state_type: 'Text',
      create_datetime: iso(t),
      expiration_datetime: iso(expired ? now - 60_000 : now + 3_600_000),
      size: state.length,
    });
  }
  await ch().insert({ table: 'window_entry', format: 'JSONEachRow', values: rows });
  type Row = { state: string; create_datetime: string; expiration_datetime: string };
  // The oracle: one ORDER BY over every visible row, as the reads were defined before (same tiebreak).
  const oracle = async (order: 'asc' | 'desc'): Promise<Row[]> => {
    const dir = order === 'asc' ? 'ASC' : 'DESC';
    const res = await ch().query({
      query: `SELECT state, toUnixTimestamp64Milli(create_datetime) AS c, toUnixTimestamp(expiration_datetime) AS e FROM window_entry
               WHERE unit_node_uuid = {u:UUID} AND expiration_datetime > now()
               ORDER BY create_datetime ${dir}, cityHash64(state, state_type, expiration_datetime, size) ${dir}`,
      query_params: { u: nodes.deep },
      format: 'JSONEachRow',
    });
    return (await res.json<{ state: string; c: string; e: string }>()).map((r) => ({ state: r.state, create_datetime: isoNaive(Number(r.c)), expiration_datetime: isoNaive(Number(r.e) * 1000) }));
  };
  const pick = (items: Row[]) => items.map((r) => ({ state: r.state, create_datetime: r.create_datetime, expiration_datetime: r.expiration_datetime }));
  for (const order of ['desc', 'asc'] as const) {
    const all = await oracle(order);
    assert.equal(all.length, 24_000);
    // offsets: shallow, deep (counted from the start), deeper than half (counted from the end), the last rows, past the end
    for (const offset of [0, 1, 3, 4_999, 11_000, 12_001, 17_003, 23_990, 23_999, 24_000, 30_000]) {
      const page = await get({ uuid: nodes.deep, type: 'TimeWindow', order_by_create_date: order, limit: MAX_PAGE, offset });
      assert.equal(page.status, 200, JSON.stringify(page.body));
      assert.equal(page.body.count, 24_000, 'count excludes the expired rows');
      assert.deepEqual(pick(page.body.pipe_data), all.slice(offset, offset + MAX_PAGE), `${order} offset ${offset}`);
      if (offset + MAX_PAGE < all.length) {
        // its cursor continues exactly where the offset page ended
        const next = await get({ uuid: nodes.deep, type: 'TimeWindow', order_by_create_date: order, limit: MAX_PAGE, cursor: page.body.next_cursor });
        assert.deepEqual(pick(next.body.pipe_data), all.slice(offset + MAX_PAGE, offset + 2 * MAX_PAGE), `${order} cursor after offset ${offset}`);
      } else {
        assert.equal(page.body.next_cursor, null);
      }
    }
    // a walk by cursors over the first 40 pages of 7 rows
    const walked: Row[] = [];
    let cursor: string | null = null;
    for (let i = 0; i < 40; i++) {
      const page = await get({ uuid: nodes.deep, type: 'TimeWindow', order_by_create_date: order, limit: 7, ...(cursor ? { cursor } : {}) });
      walked.push(...pick(page.body.pipe_data));
      cursor = page.body.next_cursor;
    }
    assert.deepEqual(walked, all.slice(0, 280), `${order} walk`);
  }
});

test('Aggregation: ordered by window start (not flush time); aggregation_type, time_window_size and window filters', async () => {
  const desc = await get({ uuid: nodes.agg, type: 'Aggregation' });
  assert.equal(desc.body.count, 12);
  const starts = desc.body.pipe_data.map((r: { start_window_datetime: string }) => r.start_window_datetime);
  assert.deepEqual(starts, [...starts].sort().reverse());
  assert.deepEqual(desc.body.pipe_data[0], {
    unit_node_uuid: nodes.agg,
    state: 101,
    aggregation_type: 'Sum',
    time_window_size: 300,
    create_datetime: isoNaive(base + 7_200_000),
    start_window_datetime: isoNaive(base + 1_200_000),
    end_window_datetime: isoNaive(base + 1_500_000),
  });
  const asc = await get({ uuid: nodes.agg, type: 'Aggregation', order_by_create_date: 'asc', time_window_size: 60 });
  assert.deepEqual(asc.body.pipe_data.map((r: { state: number }) => r.state), [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5]);
  const creates = asc.body.pipe_data.map((r: { create_datetime: string }) => r.create_datetime);
  assert.deepEqual(creates, [...creates].sort().reverse(), 'flush times run the other way');
  const minMax = await get({ uuid: nodes.agg, type: 'Aggregation', aggregation_type: ['Min', 'Max'], order_by_create_date: 'asc' });
  assert.deepEqual(minMax.body.pipe_data.map((r: { aggregation_type: string }) => r.aggregation_type), ['Min', 'Max', 'Min', 'Max', 'Min', 'Max']);
  const sum = await get({ uuid: nodes.agg, type: 'Aggregation', time_window_size: 300 });
  assert.equal(sum.body.count, 2);
  const windows = await get({ uuid: nodes.agg, type: 'Aggregation', time_window_size: 60, start_agg_window_datetime: iso(base + 180_000), end_agg_window_datetime: iso(base + 300_000), order_by_create_date: 'asc' });
  assert.deepEqual(windows.body.pipe_data.map((r: { state: number }) => r.state), [2.5, 3.5, 4.5], 'end_window_datetime within [3 min, 5 min]');
});

test('LastValue reads Postgres; filters apply to state and last_update_datetime', async () => {
  const res = await get({ uuid: nodes.lv, type: 'LastValue' });
  assert.deepEqual(res.body, { count: 1, pipe_data: [{ unit_node_uuid: nodes.lv, state: 'on', last_update_datetime: '2026-01-02T03:04:05.000' }], next_cursor: null });
  assert.equal((await get({ uuid: nodes.lv, type: 'LastValue', search_string: 'off' })).body.count, 0);
  assert.equal((await get({ uuid: nodes.lv, type: 'LastValue', start_create_datetime: '2026-01-02T03:04:06Z' })).body.count, 0);
  assert.equal((await get({ uuid: nodes.lv, type: 'LastValue', end_create_datetime: '2026-01-02T03:04:05Z' })).body.count, 1);
  const second = await get({ uuid: nodes.lv, type: 'LastValue', offset: 1 });
  assert.deepEqual(second.body.pipe_data, []);
  assert.equal(second.body.count, 1);
  const own = await get({ uuid: nodes.lv, type: 'LastValue' }, unitToken(unit, backend.deps.config.secretKey));
  assert.equal(own.status, 200, "the node's own unit reads");
  // The path without the trailing slash (FastAPI redirected it) answers the same.
  const noSlash = await backend.app.inject({ method: 'GET', url: `${url.slice(0, -1)}?uuid=${nodes.lv}&type=LastValue`, headers: { 'x-auth-token': owner.token } });
  assert.deepEqual(noSlash.json(), res.body);
});

test('SQL injection attempts in every filter are 422s and execute nothing', async () => {
  const countAll = async () => {
    const r = await ch().query({ query: 'SELECT (SELECT count() FROM n_last_entry) + (SELECT count() FROM window_entry) + (SELECT count() FROM aggregation_entry) AS c', format: 'JSONEachRow' });
    return Number((await r.json<{ c: number }>())[0]!.c);
  };
  const before = await countAll();
  const attacks = ["1' OR '1'='1", "'; DROP TABLE n_last_entry; --", '1) OR (1=1', '0x41 UNION SELECT * FROM system.tables'];
  const base = { uuid: nodes.agg, type: 'Aggregation' };
  const foreignCursor = (await get({ uuid: nodes.nr, type: 'NRecords', limit: 1 })).body.next_cursor;
  const forged = (k: string) => Buffer.from(JSON.stringify({ v: 1, q: 'x', t: 0, k, s: 0 })).toString('base64url');
  const cases: Array<{ param: string; query: Record<string, string | number | string[]>; detail: RegExp }> = [];
  for (const a of attacks) {
    cases.push(
      { param: 'uuid', query: { ...base, uuid: a }, detail: /uuid/ },
      { param: 'uuid (suffix)', query: { ...base, uuid: `${nodes.agg}' OR '1'='1` }, detail: /uuid/ },
      { param: 'type', query: { ...base, type: `NRecords${a}` }, detail: /type/ },
      { param: 'aggregation_type', query: { ...base, aggregation_type: ['Avg', `Min${a}`] }, detail: /aggregation_type/ },
      { param: 'time_window_size', query: { ...base, time_window_size: `60${a}` }, detail: /time_window_size/ },
      { param: 'start_agg_window_datetime', query: { ...base, start_agg_window_datetime: `2025-01-01${a}` }, detail: /^422: 2: Validation Error: start_agg_window_datetime: .* is not a valid datetime/ },
      { param: 'end_agg_window_datetime', query: { ...base, end_agg_window_datetime: a }, detail: /^422: 2: Validation Error: end_agg_window_datetime: .* is not a valid datetime/ },
      { param: 'start_create_datetime', query: { ...base, start_create_datetime: `2025-01-01 00:00:00${a}` }, detail: /start_create_datetime: .* is not a valid datetime/ },
      { param: 'end_create_datetime', query: { ...base, end_create_datetime: a }, detail: /end_create_datetime: .* is not a valid datetime/ },
      { param: 'relative_time', query: { ...base, relative_time: `1d${a}` }, detail: /relative_time/ },
      { param: 'order_by_create_date', query: { ...base, order_by_create_date: `asc${a}` }, detail: /order_by_create_date/ },
      { param: 'offset', query: { ...base, offset: `0${a}` }, detail: /offset/ },
      { param: 'limit', query: { ...base, limit: `10${a}` }, detail: /limit/ },
      { param: 'cursor (raw)', query: { ...base, cursor: a }, detail: /cursor is invalid/ },
      { param: 'cursor (forged key)', query: { ...base, cursor: forged(a) }, detail: /cursor is invalid \(bad tiebreak\)/ },
    );
  }
  cases.push(
    { param: 'relative_time unit', query: { ...base, relative_time: '5x' }, detail: /^422: 2: Validation Error: relative_time: "5x" is not valid; use a whole number followed by one unit: s \(seconds\)/ },
    { param: 'relative_time negative', query: { ...base, relative_time: '-5d' }, detail: /relative_time/ },
    { param: 'datetime words', query: { ...base, start_create_datetime: 'yesterday' }, detail: /is not a valid datetime/ },
    { param: 'impossible date', query: { ...base, start_create_datetime: '2025-02-30T00:00:00Z' }, detail: /is not a valid datetime/ },
    { param: 'cursor of another query', query: { ...base, cursor: foreignCursor }, detail: /cursor belongs to another query/ },
    { param: 'cursor with offset', query: { uuid: nodes.nr, type: 'NRecords', limit: 1, cursor: foreignCursor, offset: 3 }, detail: /offset cannot be combined with cursor/ },
  );
  for (const c of cases) {
    const res = await get(c.query);
    assert.equal(res.status, 422, `${c.param}: ${JSON.stringify(res.body)}`);
    const detail = typeof res.body.detail === 'string' ? res.body.detail : JSON.stringify(res.body.detail);
    assert.match(detail, c.detail, `${c.param}: ${JSON.stringify(res.body)}`);
  }
  // search_string is free text: it is bound and matched literally, never executed.
  for (const a of attacks) {
    const res = await get({ uuid: nodes.nr, type: 'NRecords', search_string: a });
    assert.equal(res.status, 200);
    assert.equal(res.body.count, 0, a);
  }
  assert.deepEqual((await get({ uuid: nodes.inj, type: 'NRecords', search_string: "' OR '1'='1" })).body.pipe_data.map((r: { state: string }) => r.state), ["x' OR '1'='1"]);
  for (const odd of ['\\', '\\\'', '\t\n\r', '{p0:String}', '$1', '😀', '%_%', '\u2028']) {
    for (const type of ['NRecords', 'LastValue']) {
      const res = await get({ uuid: type === 'LastValue' ? nodes.lv : nodes.nr, type, search_string: odd });
      assert.equal(res.status, 200, `${type} ${JSON.stringify(odd)}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.count, 0, JSON.stringify(odd));
    }
  }
  const nul = await get({ uuid: nodes.lv, type: 'LastValue', search_string: 'a\u0000b' });
  assert.equal(nul.status, 422);
  assert.match(nul.body.detail, /NUL/);
  assert.equal(await countAll(), before, 'no table changed');
  const tables = await ch().query({ query: "SELECT name FROM system.tables WHERE database = currentDatabase() AND name IN ('n_last_entry', 'window_entry', 'aggregation_entry') ORDER BY name", format: 'JSONEachRow' });
  assert.deepEqual((await tables.json<{ name: string }>()).map((t) => t.name), ['aggregation_entry', 'n_last_entry', 'window_entry']);
});
