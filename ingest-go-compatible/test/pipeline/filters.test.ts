/** Filters in the reference order with per-node state (§3.3). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyFilters, compileFilters, createNodeState, type NodeState } from '@pepeunit/ingest-go-compatible/pipeline/index';
import type { FiltersConfig } from '@pepeunit/common/datapipe/index';

const base: FiltersConfig = {
  type_input_value: 'Text',
  type_value_filtering: null,
  filtering_values: null,
  type_value_threshold: null,
  threshold_min: null,
  threshold_max: null,
  max_rate: 0,
  last_unique_check: false,
  max_size: 0,
};

function run(overrides: Partial<FiltersConfig>, value: string, state: NodeState = createNodeState(), now = 100_000): string | null {
  return applyFilters(compileFilters({ ...base, ...overrides }), value, Buffer.byteLength(value), state, now);
}

test('white and black lists', () => {
  const cases: Array<[Partial<FiltersConfig>, string, string | null]> = [
    [{ type_value_filtering: 'WhiteList', filtering_values: ['open', 'closed'] }, 'open', null],
    [{ type_value_filtering: 'WhiteList', filtering_values: ['open', 'closed'] }, 'Open', 'filter_list'],
    [{ type_value_filtering: 'BlackList', filtering_values: ['', 'null'] }, '', 'filter_list'],
    [{ type_value_filtering: 'BlackList', filtering_values: ['', 'null'] }, 'x', null],
    [{ type_value_filtering: 'WhiteList', filtering_values: [] }, 'anything', 'filter_list'],
    [{ type_value_filtering: 'WhiteList', filtering_values: null }, 'anything', 'filter_list'],
    [{ type_value_filtering: 'BlackList', filtering_values: null }, 'anything', null],
    [{ type_input_value: 'Number', type_value_filtering: 'BlackList', filtering_values: [-1, 65535] }, '-1.0', 'filter_list'],
    [{ type_input_value: 'Number', type_value_filtering: 'BlackList', filtering_values: [-1, 65535] }, '6.5535e4', 'filter_list'],
    [{ type_input_value: 'Number', type_value_filtering: 'BlackList', filtering_values: [0] }, '-0', 'filter_list'],
    [{ type_input_value: 'Number', type_value_filtering: 'BlackList', filtering_values: [-1] }, ' -1', null],
    [{ type_input_value: 'Number', type_value_filtering: 'WhiteList', filtering_values: [1, 2] }, 'one', 'filter_list'],
    [{ type_input_value: 'Number', type_value_filtering: 'WhiteList', filtering_values: [0.1] }, '0.1', null],
    [{ type_input_value: 'Number', type_value_filtering: 'WhiteList', filtering_values: [1] }, 'nan', 'filter_list'],
    [{ type_value_filtering: null, filtering_values: ['x'] }, 'y', null],
  ];
  for (const [cfg, value, expected] of cases) assert.equal(run(cfg, value), expected, `${JSON.stringify(cfg)} ${JSON.stringify(value)}`);
});

test('thresholds (skipped for non-numbers, applied whatever the input type)', () => {
  const cases: Array<[Partial<FiltersConfig>, string, string | null]> = [
    [{ type_input_value: 'Number', type_value_threshold: 'Min', threshold_min: 10 }, '9.999', 'filter_threshold'],
    [{ type_input_value: 'Number', type_value_threshold: 'Min', threshold_min: 10 }, '10', null],
    [{ type_input_value: 'Number', type_value_threshold: 'Max', threshold_max: 10 }, '10.0001', 'filter_threshold'],
    [{ type_input_value: 'Number', type_value_threshold: 'Max', threshold_max: 10 }, '10', null],
    [{ type_input_value: 'Number', type_value_threshold: 'Range', threshold_min: -40, threshold_max: 125 }, '-41', 'filter_threshold'],
    [{ type_input_value: 'Number', type_value_threshold: 'Range', threshold_min: -40, threshold_max: 125 }, '126', 'filter_threshold'],
    [{ type_input_value: 'Number', type_value_threshold: 'Range', threshold_min: -40, threshold_max: 125 }, '20', null],
    [{ type_input_value: 'Number', type_value_threshold: 'Range', threshold_min: -40, threshold_max: 125 }, 'warm', null],
    [{ type_input_value: 'Number', type_value_threshold: 'Range', threshold_min: -40, threshold_max: 125 }, 'inf', 'filter_threshold'],
    [{ type_input_value: 'Number', type_value_threshold: 'Range', threshold_min: -40, threshold_max: 125 }, 'nan', null],
    [{ type_input_value: 'Number', type_value_threshold: 'Range', threshold_min: null, threshold_max: 5 }, '-1000', null],
    [{ type_input_value: 'Text', type_value_threshold: 'Max', threshold_max: 5 }, '6', 'filter_threshold'],
    [{ type_input_value: 'Text', type_value_threshold: 'Max', threshold_max: 5 }, 'six', null],
  ];
  for (const [cfg, value, expected] of cases) assert.equal(run(cfg, value), expected, `${JSON.stringify(cfg)} ${JSON.stringify(value)}`);
});

test('rate counts from the last accepted message; size counts bytes; uniqueness compares raw values', () => {
  const accepted: NodeState = { lastAcceptedAtMs: 100_000, lastAcceptedRaw: 'same' };
  assert.equal(run({ max_rate: 5 }, 'x', createNodeState(), 100_000), null, 'first message always passes the rate');
  assert.equal(run({ max_rate: 5 }, 'x', accepted, 104_999), 'filter_rate');
  assert.equal(run({ max_rate: 5 }, 'x', accepted, 105_000), null);
  assert.equal(run({ max_rate: 5 }, 'x', accepted, 99_000), 'filter_rate', 'a clock going back does not let messages through');
  assert.equal(run({ max_size: 4 }, 'abcd'), null);
  assert.equal(run({ max_size: 4 }, 'abcde'), 'filter_size');
  assert.equal(run({ max_size: 4 }, 'ééé'), 'filter_size', '6 bytes');
  assert.equal(run({ max_size: 0 }, 'x'.repeat(100_000)), null);
  assert.equal(run({ last_unique_check: true }, 'same', accepted), 'filter_unique');
  assert.equal(run({ last_unique_check: true }, 'other', accepted), null);
  assert.equal(run({ last_unique_check: true }, '', createNodeState()), null, 'an empty first value is not a duplicate');
  assert.equal(run({ last_unique_check: false }, 'same', accepted), null);
});

test('the first failing filter is reported, in the reference order', () => {
  const all: Partial<FiltersConfig> = {
    type_input_value: 'Number',
    type_value_filtering: 'BlackList',
    filtering_values: [7],
    type_value_threshold: 'Max',
    threshold_max: 5,
    max_rate: 10,
    max_size: 2,
    last_unique_check: true,
  };
  const state: NodeState = { lastAcceptedAtMs: 100_000, lastAcceptedRaw: '3' };
  assert.equal(run(all, '7', state, 101_000), 'filter_list');
  assert.equal(run(all, '8', state, 101_000), 'filter_threshold');
  assert.equal(run(all, '4', state, 101_000), 'filter_rate');
  assert.equal(run(all, '4.5', state, 200_000), 'filter_size');
  assert.equal(run(all, '3', state, 200_000), 'filter_unique');
  assert.equal(run(all, '4', state, 200_000), null);
});
