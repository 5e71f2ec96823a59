/** The pure parts of the system-topic consumer: state normalisation and log rows (reference §2.3). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeState, serializeState, pythonFloat } from '../../src/mqtt/state-payload.js';
import { buildLogRows, capitalizeLevel, parseDeviceDatetime, type LogEntryDropReason } from '../../src/mqtt/log-payload.js';

const UNIT = '9d0c7c1e-4f0b-4a55-9d7b-0e2f1f3a4b5c';

test('state: only the 7 reserved keys survive, in the reference order, with defaults', () => {
  const state = normalizeState({ millis: 5, extra: 'x', pu_commit_version: 'abc' });
  assert.deepEqual(Object.keys(state), ['ifconfig', 'millis', 'mem_free', 'mem_alloc', 'freq', 'statvfs', 'pu_commit_version']);
  assert.deepEqual(state, { ifconfig: [], millis: 5, mem_free: null, mem_alloc: null, freq: null, statvfs: [], pu_commit_version: 'abc' });
});

test('state: wrong types become [] for list fields and null otherwise', () => {
  const state = normalizeState({ ifconfig: 'eth0', statvfs: { a: 1 }, millis: '12', mem_free: true, mem_alloc: null, freq: [1], pu_commit_version: 42 });
  assert.deepEqual(state, { ifconfig: [], millis: null, mem_free: null, mem_alloc: null, freq: null, statvfs: [], pu_commit_version: null });
});

test('state text is what Python json.dumps writes (floats keep ".0", ", " and ": " separators)', () => {
  const text = serializeState(
    normalizeState({
      ifconfig: ['192.168.0.3', '255.255.255.0'],
      millis: 595925249,
      mem_free: 12368.5,
      mem_alloc: 25648,
      freq: 80000000,
      statvfs: [4096, 4096, 763],
      pu_commit_version: '7f1b',
    }),
  );
  assert.equal(
    text,
    '{"ifconfig": ["192.168.0.3", "255.255.255.0"], "millis": 595925249.0, "mem_free": 12368.5, "mem_alloc": 25648.0, "freq": 80000000.0, "statvfs": [4096, 4096, 763], "pu_commit_version": "7f1b"}',
  );
  assert.equal(serializeState(normalizeState({})), '{"ifconfig": [], "millis": null, "mem_free": null, "mem_alloc": null, "freq": null, "statvfs": [], "pu_commit_version": null}');
  assert.deepEqual(JSON.parse(text).statvfs, [4096, 4096, 763]);
  // Non-ASCII is escaped like Python's ensure_ascii.
  assert.equal(JSON.parse(serializeState(normalizeState({ pu_commit_version: 'é\u007f' }))).pu_commit_version, 'é\u007f');
  assert.match(serializeState(normalizeState({ pu_commit_version: 'é' })), /"pu_commit_version": "\\u00e9"/);
});

test('pythonFloat matches Python repr(float)', () => {
  const cases: Array<[number, string]> = [
    [1, '1.0'], [0, '0.0'], [-0, '-0.0'], [0.5, '0.5'], [1e16, '1e+16'], [1.5e17, '1.5e+17'], [1e-5, '1e-05'], [0.0001, '0.0001'], [123456789012345, '123456789012345.0'], [-3, '-3.0'], [1e22, '1e+22'],
  ];
  for (const [value, expected] of cases) assert.equal(pythonFloat(value), expected, String(value));
});

test('log levels are capitalised like Python str.capitalize()', () => {
  assert.equal(capitalizeLevel('INFO'), 'Info');
  assert.equal(capitalizeLevel('warning'), 'Warning');
  assert.equal(capitalizeLevel('cRITICAL'), 'Critical');
});

test('device datetimes: naive ISO is UTC, offsets respected, unix seconds/ms, garbage refused', () => {
  assert.equal(parseDeviceDatetime('2025-04-08T11:27:52.044394'), Date.UTC(2025, 3, 8, 11, 27, 52, 44));
  assert.equal(parseDeviceDatetime('2025-04-08 11:27:52'), Date.UTC(2025, 3, 8, 11, 27, 52));
  assert.equal(parseDeviceDatetime('2025-04-08T13:27:52+02:00'), Date.UTC(2025, 3, 8, 11, 27, 52));
  assert.equal(parseDeviceDatetime('2025-04-08'), Date.UTC(2025, 3, 8));
  assert.equal(parseDeviceDatetime(1744111672), 1744111672000);
  assert.equal(parseDeviceDatetime(1744111672044), 1744111672044);
  for (const bad of ['yesterday', '2025-13-45T99:99:99', '0001-01-01T00:00:00', '', true, {}, Number.NaN]) {
    assert.equal(parseDeviceDatetime(bad), null, JSON.stringify(bad));
  }
});

test('log rows: one object or an array; server time + i seconds; invalid entries dropped one by one', () => {
  const now = Date.UTC(2025, 0, 1, 12, 0, 0, 500);
  const drops: LogEntryDropReason[] = [];
  const rows = buildLogRows(
    [
      { level: 'info', text: 'a' },
      { level: 'Verbose', text: 'b' },
      { level: 'ERROR', text: 'c', create_datetime: '2025-04-08T11:27:52.044394' },
      { level: 'Debug', text: 7 },
      'not an object',
      { level: 'Warning', text: 'f' },
      { level: 'Info', text: 'g', create_datetime: 'soon' },
      { level: 3, text: 'h' },
    ],
    UNIT,
    now,
    86_400,
    (reason) => drops.push(reason),
  );
  assert.ok(rows);
  assert.deepEqual(rows.map((r) => [r.level, r.text]), [['Info', 'a'], ['Error', 'c'], ['Warning', 'f']]);
  assert.equal(rows[0]!.create_datetime, new Date(now).toISOString());
  assert.equal(rows[1]!.create_datetime, '2025-04-08T11:27:52.044Z');
  assert.equal(rows[2]!.create_datetime, new Date(now + 5000).toISOString(), 'index 5 → now + 5 s');
  assert.equal(rows[0]!.expiration_datetime, new Date(Date.UTC(2025, 0, 2, 12, 0, 0)).toISOString());
  assert.equal(new Set(rows.map((r) => r.uuid)).size, 3);
  assert.ok(rows.every((r) => r.unit_uuid === UNIT));
  assert.deepEqual(drops.sort(), ['invalid_log_entry', 'invalid_log_entry', 'invalid_log_entry', 'unknown_level', 'unknown_level'].sort());

  const single = buildLogRows({ level: 'critical', text: 'x' }, UNIT, now, 10, () => assert.fail('no drop expected'));
  assert.equal(single?.length, 1);
  assert.equal(single?.[0]?.level, 'Critical');
  assert.equal(buildLogRows('text', UNIT, now, 10, () => {}), null);
  assert.equal(buildLogRows(12, UNIT, now, 10, () => {}), null);
  assert.equal(buildLogRows(null, UNIT, now, 10, () => {}), null);
});

test('log text with JSON-escaped lone surrogates is made valid UTF-8', () => {
  const rows = buildLogRows(JSON.parse('{"level":"Info","text":"a\\ud800b\\ud83d\\ude00"}'), UNIT, 0, 10, () => {});
  assert.equal(rows?.[0]?.text, 'a\ufffdb\u{1F600}');
});
