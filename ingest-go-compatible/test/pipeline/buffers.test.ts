/** The four policy buffers: per-entry parameters, table column order, retry, shutdown. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AGGREGATION_ENTRY_COLUMNS,
  AggregationBuffer,
  LastValueBuffer,
  N_LAST_ENTRY_COLUMNS,
  NRecordsBuffer,
  TimeWindowBuffer,
  WINDOW_ENTRY_COLUMNS,
  formatUtcMillis,
  formatUtcSeconds,
} from '@pepeunit/ingest-go-compatible/pipeline/index';

const A = '11111111-1111-4111-8111-111111111111';
const B = '22222222-2222-4222-8222-222222222222';
const T0 = Date.parse('2026-01-01T10:00:00Z');

test('LastValue: newest value per node, whole-second UTC times, per-row retry', () => {
  const b = new LastValueBuffer();
  b.add(A, 'one', T0 + 100);
  b.add(A, 'two', T0 + 900);
  b.add(A, 'older', T0 + 500);
  b.add(B, 'b', T0 + 1999);
  assert.equal(b.size, 2);
  const rows = b.drain();
  assert.deepEqual(rows, [
    { unit_node_uuid: A, state: 'two', last_update_datetime: '2026-01-01 10:00:00' },
    { unit_node_uuid: B, state: 'b', last_update_datetime: '2026-01-01 10:00:01' },
  ]);
  assert.equal(b.size, 0);
  b.add(A, 'newer', T0 + 5000);
  b.requeue(rows);
  assert.equal(b.peek(A)?.state, 'newer', 'a failed row does not overwrite a newer value');
  assert.equal(b.peek(B)?.state, 'b');
  assert.equal(b.peek(B)?.atMs, T0 + 1000);
});

test('NRecords: one row per message with its own max_count and byte size, in table column order', () => {
  const b = new NRecordsBuffer();
  b.add({ unitNodeUuid: A, state: '21.5', stateType: 'Number', atMs: T0 + 1, maxCount: 200 });
  b.add({ unitNodeUuid: B, state: 'é', stateType: 'Text', atMs: T0 + 2, maxCount: 5 });
  const rows = b.drain();
  assert.deepEqual(Object.keys(rows[0] ?? {}), [...N_LAST_ENTRY_COLUMNS]);
  assert.deepEqual(rows, [
    { unit_node_uuid: A, state: '21.5', state_type: 'Number', create_datetime: T0 + 1, max_count: 200, size: 4 },
    { unit_node_uuid: B, state: 'é', state_type: 'Text', create_datetime: T0 + 2, max_count: 5, size: 2 },
  ]);
  assert.equal(b.size, 0);
  const capped = new NRecordsBuffer(3);
  capped.add({ unitNodeUuid: A, state: 'new', stateType: 'Text', atMs: T0 + 10, maxCount: 1 });
  const discarded = capped.requeue(rows.concat(rows));
  assert.equal(discarded, 2);
  assert.deepEqual(capped.drain().map((r) => r.state), ['21.5', 'é', 'new']);
});

test('TimeWindow: expiration = receive time + the entry\'s own size, whole seconds', () => {
  const b = new TimeWindowBuffer();
  b.add({ unitNodeUuid: A, state: 'open', stateType: 'Text', atMs: T0 + 1500, timeWindowSize: 3600 });
  b.add({ unitNodeUuid: B, state: 'x', stateType: 'Text', atMs: T0 + 1500, timeWindowSize: 60 });
  const rows = b.drain();
  assert.deepEqual(Object.keys(rows[0] ?? {}), [...WINDOW_ENTRY_COLUMNS]);
  assert.equal(rows[0]?.expiration_datetime, T0 + 3601000);
  assert.equal(rows[1]?.expiration_datetime, T0 + 61000);
  assert.equal(rows[0]?.create_datetime, T0 + 1500);
  assert.equal(formatUtcSeconds(rows[0]?.expiration_datetime ?? 0), '2026-01-01 11:00:01');
  assert.equal(formatUtcMillis(rows[0]?.create_datetime ?? 0), '2026-01-01 10:00:01.500');
  b.requeue(rows);
  assert.equal(b.size, 2);
});

test('Aggregation: per-node function and size, emission strictly after the window end', () => {
  const b = new AggregationBuffer();
  const w0 = T0; // 10:00:00, aligned for 60 and 300
  for (const [v, at] of [[3, 1000], [1, 20_000], [8, 59_999]] as const) {
    assert.equal(b.add({ unitNodeUuid: A, value: v, atMs: w0 + at, timeWindowSize: 60, aggregationFunction: 'Avg' }), 'added');
  }
  b.add({ unitNodeUuid: B, value: 5, atMs: w0 + 1000, timeWindowSize: 300, aggregationFunction: 'Max' });
  b.add({ unitNodeUuid: B, value: 7, atMs: w0 + 2000, timeWindowSize: 300, aggregationFunction: 'Max' });
  b.add({ unitNodeUuid: A, value: 100, atMs: w0 + 60_000, timeWindowSize: 60, aggregationFunction: 'Avg' });
  assert.equal(b.openWindowCount, 3);

  assert.deepEqual(b.drainClosed(w0 + 60_000), [], 'a window ending exactly now is not closed yet');
  const rows = b.drainClosed(w0 + 60_001);
  assert.deepEqual(Object.keys(rows[0] ?? {}), [...AGGREGATION_ENTRY_COLUMNS]);
  assert.deepEqual(rows, [
    {
      unit_node_uuid: A,
      state: 4,
      aggregation_type: 'Avg',
      time_window_size: 60,
      create_datetime: w0 + 60_001,
      start_window_datetime: w0,
      end_window_datetime: w0 + 60_000,
    },
  ]);
  const later = b.drainClosed(w0 + 300_001);
  assert.deepEqual(
    later.map((r) => [r.unit_node_uuid, r.state, r.aggregation_type, r.time_window_size]),
    [
      [B, 7, 'Max', 300],
      [A, 100, 'Avg', 60],
    ],
  );
  assert.equal(b.add({ unitNodeUuid: A, value: 1, atMs: w0 + 1000, timeWindowSize: 60, aggregationFunction: 'Avg' }), 'late');
  assert.equal(b.size, 0);
});

test('Aggregation functions', () => {
  for (const [fn, expected] of [['Avg', 2.5], ['Min', -1], ['Max', 6], ['Sum', 10]] as const) {
    const b = new AggregationBuffer();
    for (const v of [4, -1, 6, 1]) b.add({ unitNodeUuid: A, value: v, atMs: T0, timeWindowSize: 60, aggregationFunction: fn });
    assert.equal(b.drainClosed(T0 + 120_000)[0]?.state, expected, fn);
  }
});

test('Aggregation state stays O(1) per window: fixed fields after 100k values', () => {
  const b = new AggregationBuffer();
  b.add({ unitNodeUuid: A, value: 0, atMs: T0, timeWindowSize: 86400, aggregationFunction: 'Sum' });
  const fieldsAfterOne = Object.keys(b.window(A, 86400, Date.parse('2026-01-01T00:00:00Z')) ?? {}).length;
  for (let i = 1; i < 100_000; i++) b.add({ unitNodeUuid: A, value: i, atMs: T0 + i, timeWindowSize: 86400, aggregationFunction: 'Sum' });
  const w = b.window(A, 86400, Date.parse('2026-01-01T00:00:00Z'));
  assert.ok(w);
  assert.equal(Object.keys(w).length, fieldsAfterOne);
  assert.equal(fieldsAfterOne, 9);
  for (const value of Object.values(w)) assert.ok(typeof value === 'number' || typeof value === 'string', 'no arrays or nested state');
  assert.equal(w.count, 100_000);
  assert.equal(w.sum, (99_999 * 100_000) / 2);
  assert.equal(b.openWindowCount, 1);
});

test('Aggregation shutdown: closed windows are emitted, open ones survive a restart', () => {
  const before = new AggregationBuffer();
  before.add({ unitNodeUuid: A, value: 2, atMs: T0 + 1000, timeWindowSize: 60, aggregationFunction: 'Avg' });
  before.add({ unitNodeUuid: B, value: 10, atMs: T0 + 61_000, timeWindowSize: 3600, aggregationFunction: 'Sum' });
  const { rows, open } = before.drainForShutdown(T0 + 90_000);
  assert.deepEqual(rows.map((r) => r.unit_node_uuid), [A]);
  assert.equal(before.size, 0);
  const persisted = JSON.parse(JSON.stringify(open));

  const after = new AggregationBuffer();
  after.add({ unitNodeUuid: B, value: 5, atMs: T0 + 100_000, timeWindowSize: 3600, aggregationFunction: 'Avg' });
  after.restore(persisted);
  const window = after.window(B, 3600, T0);
  assert.deepEqual([window?.sum, window?.count, window?.min, window?.max, window?.aggregation_type], [15, 2, 5, 10, 'Avg']);
  assert.equal(after.add({ unitNodeUuid: A, value: 1, atMs: T0 + 1000, timeWindowSize: 60, aggregationFunction: 'Avg' }), 'late', 'the emitted window stays emitted');
  const final = after.drainClosed(T0 + 3_600_001);
  assert.deepEqual(final.map((r) => [r.unit_node_uuid, r.state]), [[B, 7.5]]);
});

test('Aggregation: failed rows are requeued and come first next time', () => {
  const b = new AggregationBuffer(2);
  b.add({ unitNodeUuid: A, value: 1, atMs: T0, timeWindowSize: 60, aggregationFunction: 'Sum' });
  const rows = b.drainClosed(T0 + 60_001);
  assert.equal(b.requeue(rows), 0);
  assert.equal(b.size, 1);
  b.add({ unitNodeUuid: B, value: 2, atMs: T0 + 60_001, timeWindowSize: 60, aggregationFunction: 'Sum' });
  const next = b.drainClosed(T0 + 120_001);
  assert.deepEqual(next.map((r) => r.unit_node_uuid), [A, B]);
  assert.equal(b.requeue([...next, ...next]), 2, 'the cap bounds memory');
});
