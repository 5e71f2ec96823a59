/** One message through the whole pipeline, in the reference order, with closed drop reasons. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DROP_REASONS, createNodeState, processMessage, type NodeState, type ProcessResult } from '@pepeunit/ingest-go-compatible/pipeline/index';
import { T0, compileStages } from './helpers.js';

const buf = (s: string) => Buffer.from(s, 'utf8');
const show = (r: ProcessResult): string => (r.kind === 'accept' ? `=${r.value}` : `!${r.reason}`);

test('stage by stage: each drop reason and the accepted value', () => {
  const cases: Array<{ name: string; stages: Parameters<typeof compileStages>[0]; payload: string | Buffer; at?: number; expect: string }> = [
    { name: 'permanent text passes verbatim', stages: {}, payload: ' 007 ', expect: '= 007 ' },
    { name: 'before FromDate', stages: { active: '{type: FromDate, start: "2026-01-01T00:00:00Z"}' }, payload: 'x', at: T0, expect: '!inactive_period' },
    { name: 'after FromDate', stages: { active: '{type: FromDate, start: "2026-01-01T00:00:00Z"}' }, payload: 'x', at: T0 + 1, expect: '=x' },
    { name: 'invalid UTF-8', stages: {}, payload: Buffer.from([0x61, 0xff, 0x62]), expect: '!invalid_utf8' },
    { name: 'inactive wins over invalid UTF-8', stages: { active: '{type: ToDate, end: "2020-01-01T00:00:00Z"}' }, payload: Buffer.from([0xff]), expect: '!inactive_period' },
    { name: 'whitelist', stages: { filters: '{type_input_value: Text, type_value_filtering: WhiteList, filtering_values: [open], max_rate: 0, max_size: 0}' }, payload: 'shut', expect: '!filter_list' },
    { name: 'threshold', stages: { filters: '{type_input_value: Number, type_value_threshold: Min, threshold_min: 0, max_rate: 0, max_size: 0}' }, payload: '-1', expect: '!filter_threshold' },
    { name: 'size in bytes', stages: { filters: '{type_input_value: Text, max_rate: 0, max_size: 3}' }, payload: 'éé', expect: '!filter_size' },
    { name: 'number transformations', stages: { filters: '{type_input_value: Number, max_rate: 0, max_size: 0}', transformations: '{multiplication_ratio: 0.001, round_decimal_point: 2}' }, payload: '1234', expect: '=1.23' },
    { name: 'text slice', stages: { transformations: '{slice_start: 0, slice_end: 4}' }, payload: 'open-door', expect: '=open' },
    { name: 'aggregation needs a number', stages: { filters: '{type_input_value: Number, max_rate: 0, max_size: 0}', policy: '{policy_type: Aggregation, time_window_size: 60, aggregation_functions: Avg}' }, payload: 'warm', expect: '!not_numeric' },
    { name: 'aggregation drops nan and inf', stages: { filters: '{type_input_value: Number, max_rate: 0, max_size: 0}', policy: '{policy_type: Aggregation, time_window_size: 60, aggregation_functions: Avg}' }, payload: 'NaN', expect: '!not_numeric' },
    { name: 'aggregation of Text config drops everything (reference)', stages: { policy: '{policy_type: Aggregation, time_window_size: 60, aggregation_functions: Sum}' }, payload: 'abc', expect: '!not_numeric' },
    { name: 'aggregation accepts Go syntax', stages: { filters: '{type_input_value: Number, max_rate: 0, max_size: 0}', policy: '{policy_type: Aggregation, time_window_size: 60, aggregation_functions: Avg}' }, payload: '1_000', expect: '=1_000' },
    { name: 'non-numbers under Number are kept for NRecords (reference)', stages: { filters: '{type_input_value: Number, max_rate: 0, max_size: 0}', policy: '{policy_type: NRecords, n_records_count: 5}' }, payload: 'abc', expect: '=abc' },
    { name: 'NUL refused for LastValue', stages: {}, payload: 'a\u0000b', expect: '!nul_in_text' },
    { name: 'NUL kept for TimeWindow', stages: { policy: '{policy_type: TimeWindow, time_window_size: 60}' }, payload: 'a\u0000b', expect: '=a\u0000b' },
    { name: 'json path selects before the filters', stages: { dataSource: '{json_path: "t[1]"}', filters: '{type_input_value: Number, type_value_threshold: Max, threshold_max: 30, max_rate: 0, max_size: 4}' }, payload: '{"t": [99, 21.5], "padding": "xxxxxxxxxxxx"}', expect: '=21.5' },
    { name: 'json path value filtered', stages: { dataSource: '{json_path: "t[0]"}', filters: '{type_input_value: Number, type_value_threshold: Max, threshold_max: 30, max_rate: 0, max_size: 0}' }, payload: '{"t": [99]}', expect: '!filter_threshold' },
    { name: 'json invalid', stages: { dataSource: '{json_path: a}' }, payload: 'a=1', expect: '!json_invalid' },
    { name: 'json path missing', stages: { dataSource: '{json_path: a}' }, payload: '{"b": 1}', expect: '!json_path_missing' },
    { name: 'json null is missing', stages: { dataSource: '{json_path: a}' }, payload: '{"a": null}', expect: '!json_path_missing' },
    { name: 'json object selected as compact text', stages: { dataSource: '{json_path: a}' }, payload: '{"a": {"x": 1,  "y": [true]}}', expect: '={"x":1,"y":[true]}' },
  ];
  for (const c of cases) {
    const compiled = compileStages(c.stages);
    const payload = typeof c.payload === 'string' ? buf(c.payload) : c.payload;
    assert.equal(show(processMessage(compiled, createNodeState(), payload, c.at ?? T0)), c.expect, c.name);
  }
  for (const c of cases) if (c.expect.startsWith('!')) assert.ok((DROP_REASONS as readonly string[]).includes(c.expect.slice(1)), c.expect);
});

test('node state: rate and uniqueness count accepted messages only; uniqueness compares raw values', () => {
  const compiled = compileStages({
    filters: '{type_input_value: Number, max_rate: 1, last_unique_check: true, max_size: 0}',
    transformations: '{multiplication_ratio: 2}',
  });
  const state: NodeState = createNodeState();
  const results = [
    processMessage(compiled, state, buf('10'), T0),
    processMessage(compiled, state, buf('11'), T0 + 500),
    processMessage(compiled, state, buf('10'), T0 + 1000),
    processMessage(compiled, state, buf('12'), T0 + 1100),
    processMessage(compiled, state, buf('13'), T0 + 1500),
  ].map(show);
  // '10' stored as 20.000000; the reference compared the raw '10' with '20.000000' and let the duplicate through.
  // Message 4 passes the rate: it counts from the last accepted message (T0), not the dropped one.
  assert.deepEqual(results, ['=20.000000', '!filter_rate', '!filter_unique', '=24.000000', '!filter_rate']);
  assert.deepEqual(state, { lastAcceptedAtMs: T0 + 1100, lastAcceptedRaw: '12' });
});

test('numeric is the parsed value for Number configs and Aggregation, null for Text', () => {
  const agg = compileStages({ filters: '{type_input_value: Number, max_rate: 0, max_size: 0}', policy: '{policy_type: Aggregation, time_window_size: 60, aggregation_functions: Max}', transformations: '{round_decimal_point: 1}' });
  assert.deepEqual(processMessage(agg, createNodeState(), buf('21.46'), T0), { kind: 'accept', value: '21.5', numeric: 21.5 });
  const num = compileStages({ filters: '{type_input_value: Number, max_rate: 0, max_size: 0}' });
  assert.deepEqual(processMessage(num, createNodeState(), buf('abc'), T0), { kind: 'accept', value: 'abc', numeric: null });
  const text = compileStages({});
  assert.deepEqual(processMessage(text, createNodeState(), buf('5'), T0), { kind: 'accept', value: '5', numeric: null });
  // A Uint8Array view (not a Buffer) works as well.
  const bytes = new Uint8Array([0, 0x68, 0x69, 0]).subarray(1, 3);
  assert.deepEqual(processMessage(text, createNodeState(), bytes, T0), { kind: 'accept', value: 'hi', numeric: null });
});

test('the compiled config is reused: no JSON parsing per message', () => {
  const compiled = compileStages({ filters: '{type_input_value: Number, max_rate: 0, max_size: 0}' });
  const original = JSON.parse;
  let calls = 0;
  JSON.parse = ((...args: Parameters<typeof JSON.parse>) => {
    calls++;
    return original(...args);
  }) as typeof JSON.parse;
  try {
    const state = createNodeState();
    for (let i = 0; i < 1000; i++) processMessage(compiled, state, buf(String(i)), T0 + i);
  } finally {
    JSON.parse = original;
  }
  assert.equal(calls, 0);
});
