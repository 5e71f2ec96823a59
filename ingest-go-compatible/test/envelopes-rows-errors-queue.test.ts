/** Pure pieces of the service: envelopes, subscriptions, row lines, error classes, the write queue. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '@pepeunit/common';
import {
  IngestMetrics,
  QueuedWriter,
  RetryBudget,
  aggregationEntryLine,
  classifyClickHouseError,
  classifyPostgresError,
  decodeEnvelope,
  intakeSubscription,
  nLastEntryLine,
  windowEntryLine,
  type WriteTarget,
} from '@pepeunit/ingest-go-compatible';

const NODE = '3f2504e0-4f89-41d3-9a0c-0305e82c3301';

test('rules envelopes: original topic, payload text, broker time', () => {
  const topic = `d.local/${NODE}/pepeunit`;
  const e = decodeEnvelope(`pepeunit_ingest/${topic}`, Buffer.from(JSON.stringify({ payload: '21.5', topic, clientid: 'c', ts: 1767225600123 })));
  assert.deepEqual(e && { ...e, payload: e.payload.toString() }, { topic, payload: '21.5', ts: 1767225600123 });
  // The topic falls back to the intake topic; a numeric-string ts is read; a decoded JSON payload is re-serialised.
  const f = decodeEnvelope(`pepeunit_ingest/${topic}`, Buffer.from(JSON.stringify({ payload: { t: 1 }, ts: '1767225600000' })));
  assert.deepEqual(f && { ...f, payload: f.payload.toString() }, { topic, payload: '{"t":1}', ts: 1767225600000 });
  assert.equal(decodeEnvelope('pepeunit_ingest/x', Buffer.from(JSON.stringify({ payload: '1', topic: 'x', ts: 'soon' })))?.ts, null);
  assert.equal(decodeEnvelope('pepeunit_ingest/x', Buffer.from('not json')), null);
  assert.equal(decodeEnvelope('pepeunit_ingest/x', Buffer.from('[1]')), null);
  assert.equal(decodeEnvelope('pepeunit_ingest/x', Buffer.from(JSON.stringify({ topic: 'x' }))), null, 'no payload');
  assert.equal(decodeEnvelope('other/x', Buffer.from(JSON.stringify({ payload: '1' }))), null, 'no topic anywhere');
});

test('subscriptions of the two modes', () => {
  assert.equal(intakeSubscription({ intakeMode: 'go-compatible', domain: 'd.local', shareGroup: '' }), 'd.local/+/pepeunit');
  assert.equal(intakeSubscription({ intakeMode: 'go-compatible', domain: 'd.local', shareGroup: 'g' }), '$share/g/d.local/+/pepeunit');
  assert.equal(intakeSubscription({ intakeMode: 'rules', domain: 'd.local', shareGroup: '' }), '$share/pepeunit_ingest/pepeunit_ingest/#');
  assert.equal(intakeSubscription({ intakeMode: 'rules', domain: 'd.local', shareGroup: 'ingest_a' }), '$share/ingest_a/pepeunit_ingest/#');
});

test('JSONEachRow lines: table columns in order, integer datetimes, escaped state, non-finite floats', () => {
  const n = nLastEntryLine({ unit_node_uuid: NODE, state: 'a"b\n', state_type: 'Text', create_datetime: 1767225600123, max_count: 5, size: 4 });
  assert.equal(n, `{"unit_node_uuid":"${NODE}","state":"a\\"b\\n","state_type":"Text","create_datetime":1767225600123,"max_count":5,"size":4}\n`);
  const w = JSON.parse(windowEntryLine({ unit_node_uuid: NODE, state: 'x', state_type: 'Number', create_datetime: 1767225600123, expiration_datetime: 1767229200000, size: 1 }));
  assert.deepEqual(Object.keys(w), ['unit_node_uuid', 'state', 'state_type', 'create_datetime', 'expiration_datetime', 'size']);
  assert.equal(w.expiration_datetime, 1767229200, 'DateTime column: epoch seconds');
  const a = (state: number) =>
    JSON.parse(aggregationEntryLine({ unit_node_uuid: NODE, state, aggregation_type: 'Sum', time_window_size: 60, create_datetime: 1, start_window_datetime: 0, end_window_datetime: 60_000 }));
  assert.deepEqual(Object.keys(a(1)), ['unit_node_uuid', 'state', 'aggregation_type', 'time_window_size', 'create_datetime', 'start_window_datetime', 'end_window_datetime']);
  assert.equal(a(20.5).state, 20.5);
  assert.equal(a(Number.POSITIVE_INFINITY).state, 'inf');
  assert.equal(a(Number.NEGATIVE_INFINITY).state, '-inf');
});

test('errors: data errors are bisected, everything else is retried', () => {
  assert.equal(classifyClickHouseError(Object.assign(new Error('x'), { code: '27', type: 'CANNOT_PARSE_INPUT_ASSERTION_FAILED' })), 'data');
  assert.equal(classifyClickHouseError(Object.assign(new Error('x'), { code: '469', type: 'VIOLATED_CONSTRAINT' })), 'data');
  assert.equal(classifyClickHouseError(Object.assign(new Error('x'), { code: '60', type: 'UNKNOWN_TABLE' })), 'transient');
  assert.equal(classifyClickHouseError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })), 'transient');
  assert.equal(classifyPostgresError(Object.assign(new Error('x'), { code: '22021' })), 'data');
  assert.equal(classifyPostgresError(Object.assign(new Error('x'), { code: '23514' })), 'data');
  assert.equal(classifyPostgresError(Object.assign(new Error('x'), { code: '57P01' })), 'transient');
  assert.equal(classifyPostgresError(new Error('Connection terminated')), 'transient');
});

/** A target that refuses while `down`, and refuses rows equal to 'poison' as data errors. */
function fakeTarget(state: { down: boolean; written: string[]; calls: number }): WriteTarget<string> {
  return {
    table: 'n_last_entry',
    classify: (e) => ((e as { data?: boolean }).data ? 'data' : 'transient'),
    async write(rows) {
      state.calls++;
      if (state.down) throw new Error('down');
      if (rows.includes('poison')) throw Object.assign(new Error('bad row'), { data: true });
      state.written.push(...rows);
      return rows.length;
    },
  };
}

test('queued writer: bisects poison rows, keeps order, bounds the retry buffer', async () => {
  const metrics = new IngestMetrics('rules');
  const state = { down: false, written: [] as string[], calls: 0 };
  const budget = new RetryBudget(5);
  const writer = new QueuedWriter(fakeTarget(state), { metrics, logger: silentLogger, budget, minBackoffMs: 5, maxBackoffMs: 20 });
  writer.enqueue(['a', 'b', 'poison', 'c']);
  assert.equal(await writer.drainUntil(Date.now() + 2000), true);
  assert.deepEqual(state.written, ['a', 'b', 'c']);
  assert.equal(metrics.dropped.poison_row, 1);
  assert.equal(budget.used, 0);

  state.down = true;
  writer.enqueue(['1', '2', '3']);
  await writer.idle();
  writer.enqueue(['4', '5', '6', '7']);
  assert.equal(metrics.dropped.retry_buffer_full, 2, 'beyond 5 rows the oldest go');
  assert.equal(writer.pending, 5);
  assert.equal(budget.used, 5);
  assert.equal(await writer.drainUntil(Date.now() + 100), false);
  state.down = false;
  assert.equal(await writer.drainUntil(Date.now() + 2000), true);
  assert.deepEqual(state.written.slice(3), ['3', '4', '5', '6', '7']);
  assert.equal(budget.used, 0);
  assert.equal(metrics.rowsWritten.n_last_entry, 8);
});
