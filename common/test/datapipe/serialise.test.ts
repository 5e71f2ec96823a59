/**
 * Stored JSON and YAML export, byte for byte as the reference (Python json.dumps and PyYAML
 * safe_dump); expected texts were produced by the reference's own code path.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkDataPipeYaml,
  dataPipeConfigToYaml,
  defaultLastValueConfig,
  normaliseDataPipeConfig,
  parseDataPipeYaml,
  parsePythonJson,
  pythonFloatRepr,
  pythonJsonDumps,
  pythonJsonString,
  serialiseDataPipeConfig,
} from '@pepeunit/common/datapipe/index';
import { DEFAULT_LAST_VALUE_JSON, REFERENCE_EXAMPLES } from './examples.js';

const opts = { maxPayloadSizeKb: 256 };

function storedJson(yaml: string): string {
  const r = checkDataPipeYaml(yaml, opts);
  if (!r.ok) assert.fail(JSON.stringify(r.errors));
  return r.json;
}

test('reference examples: stored JSON and exported YAML are the reference texts', () => {
  for (const example of REFERENCE_EXAMPLES) {
    const json = storedJson(example.yaml);
    assert.equal(json, example.json, example.name);
    assert.equal(dataPipeConfigToYaml(json), example.exported, example.name);
  }
});

test('the Aggregation example matches the stored JSON shown in §1.6', () => {
  const aggregation = REFERENCE_EXAMPLES.find((e) => e.name === 'Aggregation');
  assert.ok(aggregation);
  assert.equal(
    storedJson(aggregation.yaml),
    '{"active_period": {"type": "ToDate", "start": null, "end": "2035-12-31T23:59:59+00:00"}, "filters": {"type_input_value": "Number", "type_value_filtering": null, "filtering_values": null, "type_value_threshold": "Range", "threshold_min": -40, "threshold_max": 125, "max_rate": 0, "last_unique_check": false, "max_size": 20}, "transformations": {"multiplication_ratio": null, "round_decimal_point": 1, "slice_start": null, "slice_end": null}, "processing_policy": {"policy_type": "Aggregation", "n_records_count": null, "time_window_size": 300, "aggregation_functions": "Max"}}',
  );
});

test('the default LastValue config serialises as the reference default', () => {
  assert.equal(serialiseDataPipeConfig(defaultLastValueConfig()), DEFAULT_LAST_VALUE_JSON);
  assert.deepEqual(normaliseDataPipeConfig(JSON.parse(DEFAULT_LAST_VALUE_JSON), opts), defaultLastValueConfig());
});

test('round trips: export -> parse -> validate -> store gives the same JSON', () => {
  const extra = [
    'active_period: {type: DateRange, start: "2025-01-01T00:00:00.5+05:30", end: 2030-01-01 00:00:00 -3}\nfilters: {type_input_value: Text, type_value_filtering: BlackList, filtering_values: ["", "null", "yes", "1.5", "a: b", "#x", "é日本😀", "tab\\there", "two\\nlines", " pad ", "it\'s"], max_rate: 1, max_size: 10}\nprocessing_policy: {policy_type: LastValue}\ndata_source: {json_path: \'a["b.c"][0]\'}\n',
    'active_period: {type: Permanent}\nfilters: {type_input_value: Number, type_value_filtering: WhiteList, filtering_values: [1, 1.0, -0.0, 0.0005, 1.0e+20, 123.456], max_rate: 0, max_size: 0}\ntransformations: {multiplication_ratio: 1, round_decimal_point: 0}\nprocessing_policy: {policy_type: Aggregation, time_window_size: 86400, aggregation_functions: Avg}\n',
  ];
  for (const yaml of [...REFERENCE_EXAMPLES.map((e) => e.yaml), ...extra]) {
    const json = storedJson(yaml);
    const exported = dataPipeConfigToYaml(json);
    assert.equal(storedJson(exported), json, exported);
  }
});

test('Python float and string spelling in the stored JSON', () => {
  const json = storedJson(
    'active_period: {type: Permanent}\nfilters: {type_input_value: Number, filtering_values: [1, 1.0, 2.5, 1.0e-7, 1.0e+16, 123456789012345.0, -0.0], max_rate: 0, max_size: 0}\ntransformations: {multiplication_ratio: 3}\nprocessing_policy: {policy_type: LastValue}\n',
  );
  assert.match(json, /"filtering_values": \[1, 1\.0, 2\.5, 1e-07, 1e\+16, 123456789012345\.0, -0\.0\]/);
  assert.match(json, /"multiplication_ratio": 3\.0/);
  const floats: Array<[number, string]> = [
    [0.001, '0.001'],
    [0.0001, '0.0001'],
    [0.00001, '1e-05'],
    [1e15, '1000000000000000.0'],
    [1e16, '1e+16'],
    [1.5e300, '1.5e+300'],
    [5e-324, '5e-324'],
    [0.1 + 0.2, '0.30000000000000004'],
    [-2.5, '-2.5'],
  ];
  for (const [x, text] of floats) assert.equal(pythonFloatRepr(x), text);
  assert.equal(pythonJsonString('é"\\\n\t\u0001\u007f😀'), '"\\u00e9\\"\\\\\\n\\t\\u0001\\u007f\\ud83d\\ude00"');
  assert.equal(pythonJsonDumps({ a: [1, null, true, 'x'], b: {} }), '{"a": [1, null, true, "x"], "b": {}}');
});

test('YAML export quoting follows PyYAML', () => {
  const json = storedJson(
    'active_period: {type: Permanent}\nfilters: {type_input_value: Text, type_value_filtering: BlackList, filtering_values: ["", "null", "yes", "y", "1.5", "1e3", "a: b", "a:b", "#x", "a #b", "- x", "é", "tab\\there", " lead", "trail ", "2025-01-01", "<<", "two\\nlines"], max_rate: 1, max_size: 10}\ntransformations: {multiplication_ratio: 0.00001}\nprocessing_policy: {policy_type: LastValue}\n',
  );
  assert.equal(
    dataPipeConfigToYaml(json),
    [
      'active_period:',
      '  type: Permanent',
      'filters:',
      '  type_input_value: Text',
      '  type_value_filtering: BlackList',
      '  filtering_values:',
      "  - ''",
      "  - 'null'",
      "  - 'yes'",
      '  - y',
      "  - '1.5'",
      '  - 1e3',
      "  - 'a: b'",
      '  - a:b',
      "  - '#x'",
      "  - 'a #b'",
      "  - '- x'",
      '  - é',
      '  - "tab\\there"',
      "  - ' lead'",
      "  - 'trail '",
      "  - '2025-01-01'",
      "  - '<<'",
      "  - 'two",
      '',
      "    lines'",
      '  max_rate: 1',
      '  last_unique_check: false',
      '  max_size: 10',
      'transformations:',
      '  multiplication_ratio: 1.0e-05',
      'processing_policy:',
      '  policy_type: LastValue',
      '',
    ].join('\n'),
  );
});

test('parsePythonJson keeps ints and floats apart and rejects bad JSON', () => {
  assert.deepEqual(JSON.parse(JSON.stringify(parsePythonJson('{"a": [1, 1.0, 2.5e0, "x"]}'))), { a: [1, { value: 1 }, 2.5, 'x'] });
  assert.throws(() => parsePythonJson('{"a": 1,}'), SyntaxError);
  assert.throws(() => parsePythonJson('{"a": 1} x'), SyntaxError);
  assert.throws(() => dataPipeConfigToYaml('not json'), SyntaxError);
});

test('datetimes are stored with an offset and exported quoted', () => {
  const parsed = parseDataPipeYaml('active_period: {type: FromDate, start: "2023-11-15"}\nfilters: {type_input_value: Text, max_rate: 0, max_size: 0}\nprocessing_policy: {policy_type: LastValue}\n');
  assert.ok(parsed.ok);
  const json = serialiseDataPipeConfig(normaliseDataPipeConfig(parsed.document, opts));
  assert.match(json, /"start": "2023-11-15T00:00:00\+00:00"/);
  assert.match(dataPipeConfigToYaml(json), /\n {2}start: '2023-11-15T00:00:00\+00:00'\n/);
});
