/** Stored JSON compiled once into the fast form. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultLastValueConfig, serialiseDataPipeConfig } from '@pepeunit/common/datapipe/index';
import { compileNodeConfig } from '@pepeunit/ingest-go-compatible/pipeline/index';
import { compileYaml } from './helpers.js';

test('a reference config compiles to the fast form', () => {
  const c = compileYaml(
    'active_period: {type: DateRange, start: "2026-01-01T00:00:00Z", end: "2027-01-01T00:00:00Z"}\nfilters: {type_input_value: Number, type_value_filtering: BlackList, filtering_values: [-1, 65535, 1.5], type_value_threshold: Max, threshold_max: 50000, max_rate: 2, last_unique_check: true, max_size: 32}\ntransformations: {multiplication_ratio: 0.001, round_decimal_point: 3}\nprocessing_policy: {policy_type: Aggregation, time_window_size: 300, aggregation_functions: Avg}\ndata_source: {json_path: "v[0].w"}\n',
  );
  assert.equal(c.inputType, 'Number');
  assert.deepEqual(c.activePeriod, { type: 'DateRange', startMs: Date.parse('2026-01-01T00:00:00Z'), endMs: Date.parse('2027-01-01T00:00:00Z') });
  assert.deepEqual([...c.filters.numberValues], [-1, 65535, 1.5]);
  assert.equal(c.filters.maxRateMs, 2000);
  assert.deepEqual(c.filters.threshold, { type: 'Max', min: null, max: 50000 });
  assert.deepEqual(c.transformations, { multiplicationRatio: 0.001, roundDecimalPoint: 3, sliceStart: null, sliceEnd: null });
  assert.deepEqual(c.policy, { type: 'Aggregation', timeWindowSize: 300, aggregationFunction: 'Avg' });
  assert.deepEqual(c.jsonPath, [{ kind: 'key', key: 'v' }, { kind: 'index', index: 0 }, { kind: 'key', key: 'w' }]);
});

test('the default config and configs stored by the reference compile (naive datetimes read as UTC)', () => {
  const d = compileNodeConfig(serialiseDataPipeConfig(defaultLastValueConfig()));
  assert.ok(d.ok);
  assert.deepEqual(d.compiled.policy, { type: 'LastValue' });
  assert.equal(d.compiled.jsonPath, null);
  const naive = compileNodeConfig(
    '{"active_period": {"type": "FromDate", "start": "2026-01-01T00:00:00", "end": null}, "filters": {"type_input_value": "Text", "type_value_filtering": null, "filtering_values": null, "type_value_threshold": null, "threshold_min": null, "threshold_max": null, "max_rate": 0, "last_unique_check": false, "max_size": 500000}, "transformations": null, "processing_policy": {"policy_type": "NRecords", "n_records_count": 5, "time_window_size": null, "aggregation_functions": null}}',
  );
  assert.ok(naive.ok, naive.ok ? '' : naive.error);
  assert.equal(naive.compiled.activePeriod.startMs, Date.parse('2026-01-01T00:00:00Z'));
  assert.equal(naive.compiled.filters.maxSize, 500000, 'the payload-size bound is the backend\'s business');
});

test('broken stored configs give an error, never a throw', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /not valid JSON/],
    ['{"active_period": {"type": "Permanent"}, "filters": {"type_input_value": "Text", "max_rate": 0, "max_size": 0}, "processing_policy": {"policy_type": "LastValue", "x": NaN}}', /not valid JSON/],
    ['[]', /invalid: Config: DataPipe config must be a mapping/],
    ['{"active_period": {"type": "Sometimes"}, "filters": {"type_input_value": "Text", "max_rate": 0, "max_size": 0}, "processing_policy": {"policy_type": "NRecords"}}', /ActivePeriod: Input should be 'Permanent'.*; ProcessingPolicy: Value error, n_records_count is required for N_RECORDS/],
    ['null', /invalid: Config: DataPipe config is empty/],
  ];
  for (const [text, message] of cases) {
    const r = compileNodeConfig(text);
    assert.ok(!r.ok, text);
    assert.match(r.ok ? '' : r.error, message);
  }
});
