/**
 * The pure pieces of the DataPipe API with tables of cases: CSV reading/writing, Python number
 * and datetime formats, the zip writer (checked by Info-ZIP's unzip), cursors and the filter
 * parser, the stream JSON, and notifications surviving an unreachable Redis.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { CsvSyntaxError, CsvTooManyRowsError, csvLine, parseCsv } from '../../src/routes/api/v1/unit_nodes/datapipe/csv.ts';
import { parseCsvDateTime, parsePythonFloat, pythonDateTimeText } from '../../src/routes/api/v1/unit_nodes/datapipe/csv-import.ts';
import { decodeCursor, encodeCursor, parseReadFilters, relativeCutoff } from '../../src/routes/api/v1/unit_nodes/datapipe/reads.ts';
import { zipSingleFile } from '../../src/routes/api/v1/unit_nodes/datapipe/zip.ts';
import { createDataPipeEvents, unitNodeStreamJson, type UnitNodeStreamRow } from '../../src/services/datapipe-events.ts';
import { waitFor } from '@pepeunit/tests/wait';
import { testServices } from '@pepeunit/tests/harness';

const fields = (text: string) => parseCsv(text).map((r) => r.fields);

test('parseCsv reads what Python csv reads: quotes, escaped quotes, line breaks in fields, CRLF/LF/CR, BOM, blank lines', () => {
  const cases: Array<[string, string[][]]> = [
    ['a,b\r\n1,2\r\n', [['a', 'b'], ['1', '2']]],
    ['a,b\n1,2', [['a', 'b'], ['1', '2']]],
    ['a,b\r1,2\r', [['a', 'b'], ['1', '2']]],
    ['\ufeffa,b\n1,2\n', [['a', 'b'], ['1', '2']]],
    ['a,b\n\n\r\n1,2\n\n', [['a', 'b'], ['1', '2']]],
    ['a\n"x, y","say ""hi"""\n', [['a'], ['x, y', 'say "hi"']]],
    ['a\n"line1\r\nline2",z\n', [['a'], ['line1\r\nline2', 'z']]],
    ['a\n"",\n', [['a'], ['', '']]],
    ['a\n1,\n', [['a'], ['1', '']]],
    ['a\n1,', [['a'], ['1', '']]],
    ['a\n5"in,x\n', [['a'], ['5"in', 'x']]],
    ['a\n  spaced , kept \n', [['a'], ['  spaced ', ' kept ']]],
    ['', []],
  ];
  for (const [text, expected] of cases) assert.deepEqual(fields(text), expected, JSON.stringify(text));
  assert.deepEqual(parseCsv('h\n\n"a\nb"\nc\n').map((r) => r.line), [1, 3, 5], 'records know their first line');
});

test('parseCsv errors name the line; row limits hold', () => {
  for (const [text, line, message] of [
    ['h\n"open\n', 2, /not closed/],
    ['h\nok\n"x"y,1\n', 3, /unexpected character "y"/],
  ] as const) {
    assert.throws(() => parseCsv(text), (err: unknown) => err instanceof CsvSyntaxError && err.line === line && message.test(err.message));
  }
  assert.equal(parseCsv('h\n1\n2\n', 3).length, 3);
  assert.throws(() => parseCsv('h\n1\n2\n3\n', 3), CsvTooManyRowsError);
});

test('csvLine quotes minimally with CRLF, and parseCsv reads it back', () => {
  const values = ['plain', 'with,comma', 'with "quote"', 'multi\nline', '', 'x\r'];
  const line = csvLine(values);
  assert.equal(line, 'plain,"with,comma","with ""quote""","multi\nline",,"x\r"\r\n');
  assert.deepEqual(fields(`h\r\n${line}`)[1], values);
});

test('Python float() as the reference CSV import reads states', () => {
  const cases: Array<[string, number | null]> = [
    ['1', 1], [' 2.5 ', 2.5], ['-3', -3], ['+4.', 4], ['.5', 0.5], ['1e3', 1000], ['1E-2', 0.01], ['1_000', 1000], ['1_0.2_5', 10.25],
    ['inf', Infinity], ['-Infinity', -Infinity], ['NaN', NaN],
    ['', null], ['abc', null], ['1__0', null], ['_1', null], ['0x10', null], ['1e', null], ['1,5', null], ['--1', null], ['.', null],
  ];
  for (const [text, expected] of cases) {
    const value = parsePythonFloat(text);
    if (expected === null) assert.equal(value, null, text);
    else assert.ok(Object.is(value, expected) || value === expected, `${text} -> ${value}`);
  }
});

test('CSV datetimes: %Y-%m-%d %H:%M:%S[.%f] in UTC, and Python str(datetime) back', () => {
  assert.equal(parseCsvDateTime('2024-01-02 03:04:05')?.ms, Date.parse('2024-01-02T03:04:05Z'));
  assert.equal(parseCsvDateTime('2024-1-2 3:4:5.25')?.ms, Date.parse('2024-01-02T03:04:05.250Z'));
  assert.equal(parseCsvDateTime('2024-01-02 03:04:05.123456')?.micros, 123456);
  for (const bad of ['2024-01-02T03:04:05', '2024-01-02 03:04:05Z', '2024-02-30 00:00:00', '2024-01-02 24:00:00', '2024-01-02 03:04:60', '2024-01-02', '2024-01-02 03:04:05.1234567', "2024-01-02 03:04:05' OR 1=1"]) {
    assert.equal(parseCsvDateTime(bad), null, bad);
  }
  assert.equal(pythonDateTimeText(Date.parse('2025-09-10T08:27:00Z')), '2025-09-10 08:27:00');
  assert.equal(pythonDateTimeText(Date.parse('2025-09-10T08:27:00.123Z')), '2025-09-10 08:27:00.123000');
});

function unzip(zip: Buffer): { names: string[]; content: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'pu-zip-'));
  try {
    const file = join(dir, 'a.zip');
    writeFileSync(file, zip);
    execFileSync('unzip', ['-tq', file]);
    return { names: execFileSync('zipinfo', ['-1', file]).toString().trim().split('\n'), content: execFileSync('unzip', ['-p', file], { maxBuffer: 64 * 1024 * 1024 }) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}

test('zipSingleFile streams an archive that unzip verifies (CRC, sizes), for text, random and empty data', async () => {
  const text = Array.from({ length: 20000 }, (_, i) => `row ${i},value ${i * 3}\r\n`).join('');
  const random = randomBytes(300_000);
  for (const [label, pieces] of [
    ['text in chunks', [text.slice(0, 1000), Buffer.from(text.slice(1000, 200000)), text.slice(200000)]],
    ['incompressible', [random.subarray(0, 100_000), random.subarray(100_000)]],
    ['empty', []],
  ] as const) {
    async function* source() {
      for (const p of pieces) yield p;
    }
    const zip = await collect(zipSingleFile('dp_data_x.csv', source()));
    const out = unzip(zip);
    assert.deepEqual(out.names, ['dp_data_x.csv'], label);
    const expected = Buffer.concat(pieces.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
    assert.ok(out.content.equals(expected), label);
  }
  // A failing source fails the stream instead of producing a truncated archive silently.
  async function* failing() {
    yield 'a,b\r\n';
    throw new Error('ClickHouse went away');
  }
  await assert.rejects(collect(zipSingleFile('x.csv', failing())), /ClickHouse went away/);
});

test('cursors: round trip, tampering and other queries are refused', () => {
  const c = encodeCursor('q1', { t: 1735689600123, k: '18446744073709551615', s: 2 });
  assert.match(c, /^[A-Za-z0-9_-]+$/);
  assert.deepEqual(decodeCursor(c, 'q1'), { t: 1735689600123, k: '18446744073709551615', s: 2 });
  assert.throws(() => decodeCursor(c, 'q2'), /another query/);
  const make = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  for (const [bad, why] of [
    ['not base64!', /base64url/],
    [make([1]), /not an object/],
    [make({ v: 2, q: 'q1', t: 0, k: '1', s: 0 }), /version/],
    [make({ v: 1, q: 'q1', t: 1.5, k: '1', s: 0 }), /bad time/],
    [make({ v: 1, q: 'q1', t: 0, k: '18446744073709551616', s: 0 }), /bad tiebreak/],
    [make({ v: 1, q: 'q1', t: 0, k: '1 OR 1=1', s: 0 }), /bad tiebreak/],
    [make({ v: 1, q: 'q1', t: 0, k: '1', s: -1 }), /bad position/],
    [Buffer.from('{').toString('base64url'), /not JSON/],
  ] as const) {
    assert.throws(() => decodeCursor(bad, 'q1'), why, bad);
  }
});

test('relative_time units (calendar months and years) and filter normalisation', () => {
  const now = Date.parse('2025-03-31T12:00:00Z');
  assert.equal(relativeCutoff('90s', now), now - 90_000);
  assert.equal(relativeCutoff('5m', now), now - 300_000);
  assert.equal(relativeCutoff('2h', now), now - 7_200_000);
  assert.equal(relativeCutoff('1d', now), now - 86_400_000);
  assert.equal(relativeCutoff('1M', now), Date.parse('2025-03-03T12:00:00Z'), 'Feb 31 rolls over like JS dates');
  assert.equal(relativeCutoff('2y', now), Date.parse('2023-03-31T12:00:00Z'));
  assert.equal(relativeCutoff('999999999y', now), -2208988800000, 'clamped to the DateTime64 range');
  for (const bad of ['5', 'm5', '5 m', '5mm', '1.5h', '-1d', '5D']) {
    assert.throws(() => relativeCutoff(bad, now), /relative_time/, bad);
  }
  const f = parseReadFilters({ uuid: 'AAAAAAAA-0000-4000-8000-000000000000', type: 'Aggregation', aggregation_type: ['Max', 'Avg', 'Max'], limit: 0 }, 500, now);
  assert.equal(f.limit, 500);
  assert.equal(f.order, 'desc');
  assert.deepEqual(f.aggregationTypes, ['Avg', 'Max']);
  assert.equal(f.uuid, 'aaaaaaaa-0000-4000-8000-000000000000');
  const same = parseReadFilters({ uuid: 'aaaaaaaa-0000-4000-8000-000000000000', type: 'Aggregation', aggregation_type: ['Avg', 'Max'], limit: 7 }, 500, now + 5000);
  assert.equal(same.queryId, f.queryId, 'limit and case do not change the query identity');
  assert.notEqual(parseReadFilters({ uuid: f.uuid, type: 'Aggregation', order_by_create_date: 'asc' }, 500, now).queryId, f.queryId);
  assert.throws(() => parseReadFilters({ uuid: f.uuid, type: 'NRecords', limit: 501 }, 500, now), /limit must be <= 500/);
});

const row: UnitNodeStreamRow = {
  uuid: '11111111-2222-4333-8444-555555555555',
  type: 'Output',
  visibility_level: 'Private',
  is_rewritable_input: false,
  max_connections: 10,
  topic_name: 'temp/pepeunit',
  create_datetime: '2025-01-25T00:00:00',
  state: 'é',
  last_update_datetime: '2025-01-25T00:00:00.123456',
  is_data_pipe_active: true,
  data_pipe_yml: '{"a": 1}',
  data_pipe_status: null,
  data_pipe_error: null,
  creator_uuid: '11111111-2222-4333-8444-666666666666',
  unit_uuid: '11111111-2222-4333-8444-777777777777',
};

test('unit_node_data is Python json.dumps text in the reference key order', () => {
  assert.equal(
    unitNodeStreamJson(row),
    '{"uuid": "11111111-2222-4333-8444-555555555555", "type": "Output", "visibility_level": "Private", "is_rewritable_input": false, "max_connections": 10, "topic_name": "temp/pepeunit", "create_datetime": "2025-01-25T00:00:00", "state": "\\u00e9", "last_update_datetime": "2025-01-25T00:00:00.123456", "is_data_pipe_active": true, "data_pipe_yml": "{\\"a\\": 1}", "data_pipe_status": null, "data_pipe_error": null, "creator_uuid": "11111111-2222-4333-8444-666666666666", "unit_uuid": "11111111-2222-4333-8444-777777777777"}',
  );
});

test('notifyChanged survives an unreachable Redis: NOTIFY and listeners still happen, nothing throws', async () => {
  const pool = new pg.Pool({ connectionString: (await testServices()).pgAdminUrl, max: 2 });
  const listener = await pool.connect();
  const warnings: string[] = [];
  const events = createDataPipeEvents({
    pg: pool,
    redisUrl: 'redis://127.0.0.1:1/0',
    enabled: true,
    redisTimeoutMs: 300,
    logger: { debug() {}, info() {}, error() {}, warn: (_o: object, msg?: string) => void warnings.push(String(msg)) },
  });
  try {
    const notes: string[] = [];
    listener.on('notification', (n) => notes.push(String(n.payload)));
    await listener.query('LISTEN pepeunit_datapipe_changed');
    const seen: string[] = [];
    const off = events.onChange((e) => {
      seen.push(`${e.action}:${e.nodeUuid}:${e.node?.topic_name}`);
    });
    events.onChange(() => {
      throw new Error('a broken listener');
    });
    await events.notifyChanged(row.uuid, 'Delete', { node: row }); // resolves although Redis is unreachable
    assert.deepEqual(seen, [`Delete:${row.uuid}:temp/pepeunit`]);
    await waitFor(() => notes.length > 0, { what: 'the NOTIFY' });
    assert.deepEqual(notes, [row.uuid]);
    assert.ok(warnings.some((w) => /XADD/.test(w)), warnings.join('; '));
    assert.ok(warnings.some((w) => /listener failed/.test(w)));
    off();
    await events.notifyChanged(row.uuid, 'Update', { node: row });
    assert.equal(seen.length, 1, 'a removed listener is not called');
  } finally {
    await events.close();
    listener.release();
    await pool.end();
  }
});
