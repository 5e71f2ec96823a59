/**
 * Validation with the reference's pydantic messages (shared/reference/pepeunit-datapipe.md
 * §1.3-1.4). The expected lists of the malformed table were produced by the reference model
 * (pydantic 2 + PyYAML safe_load) on the same YAML.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DataPipeStage,
  DataPipeValidationError,
  checkDataPipeConfig,
  checkDataPipeYaml,
  normaliseDataPipeConfig,
  parseDataPipeYaml,
  serialiseDataPipeConfig,
  validateDataPipeConfig,
} from '@pepeunit/common/datapipe/index';
import { REFERENCE_EXAMPLES } from './examples.js';

const opts = { maxPayloadSizeKb: 256 };

function check(yaml: string): Array<[string, string]> {
  const parsed = parseDataPipeYaml(yaml);
  if (!parsed.ok) assert.fail(`YAML should parse: ${parsed.error.message}`);
  return checkDataPipeConfig(parsed.document, opts).map((e) => [e.stage, e.message]);
}

test('the reference examples of §1.6 are valid', () => {
  for (const example of REFERENCE_EXAMPLES) {
    assert.deepEqual(check(example.yaml), [], example.name);
  }
});

test('the bad document yields exactly the DateRange error and the max_rate=-1 error', () => {
  const bad = [
    'active_period:',
    '  type: DateRange',
    '  start: "2025-06-01T00:00:00Z"',
    '  end: "2025-01-01T00:00:00Z"',
    'filters:',
    '  type_input_value: Text',
    '  type_value_filtering: WhiteList',
    '  filtering_values: [1, 2, 3]',
    '  max_rate: -1',
    '  max_size: 10',
    'processing_policy:',
    '  policy_type: LastValue',
    '',
  ].join('\n');
  assert.deepEqual(check(bad), [
    ['ActivePeriod', 'Value error, start must be before end for DATE_RANGE'],
    ['Filters', 'Input should be greater than or equal to 0'],
  ]);
  // Set mode: the same two errors, counted in the reference's message.
  const parsed = parseDataPipeYaml(bad);
  assert.ok(parsed.ok);
  assert.throws(
    () => normaliseDataPipeConfig(parsed.document, opts),
    (err: unknown) => err instanceof DataPipeValidationError && err.message === '2 validation errors for DataPipeConfig' && err.errors.length === 2,
  );
});

const MALFORMED: Array<{ name: string; yaml: string; errors: Array<[string, string]> }> = [
  {
    name: "missing every stage",
    yaml: "x: 1\n",
    errors: [["ActivePeriod", "Field required"], ["Filters", "Field required"], ["ProcessingPolicy", "Field required"]],
  },
  {
    name: "stages are not mappings",
    yaml: "active_period: [1]\nfilters: abc\ntransformations: 5\nprocessing_policy: []\n",
    errors: [["ActivePeriod", "Input should be a valid dictionary or instance of ActivePeriod"], ["Filters", "Input should be a valid dictionary or instance of FiltersConfig"], ["Transformations", "Input should be a valid dictionary or instance of TransformationConfig"], ["ProcessingPolicy", "Input should be a valid dictionary or instance of ProcessingPolicyConfig"]],
  },
  {
    name: "empty stages",
    yaml: "active_period: {}\nfilters: {}\nprocessing_policy: {}\n",
    errors: [["ActivePeriod", "Field required"], ["Filters", "Field required"], ["Filters", "Field required"], ["Filters", "Field required"], ["ProcessingPolicy", "Field required"]],
  },
  {
    name: "unknown enum values everywhere",
    yaml: "active_period: {type: permanent}\nfilters: {type_input_value: text, type_value_filtering: whitelist, type_value_threshold: range, max_rate: 0, max_size: 0}\nprocessing_policy: {policy_type: lastvalue, aggregation_functions: mean}\n",
    errors: [["ActivePeriod", "Input should be 'Permanent', 'FromDate', 'ToDate' or 'DateRange'"], ["Filters", "Input should be 'Text' or 'Number'"], ["Filters", "Input should be 'WhiteList' or 'BlackList'"], ["Filters", "Input should be 'Min', 'Max' or 'Range'"], ["ProcessingPolicy", "Input should be 'LastValue', 'NRecords', 'TimeWindow' or 'Aggregation'"], ["ProcessingPolicy", "Input should be 'Avg', 'Min', 'Max' or 'Sum'"]],
  },
  {
    name: "wrong types everywhere",
    yaml: "active_period: {type: x, start: y, end: z}\nfilters: {type_input_value: q, type_value_filtering: q, filtering_values: 3, type_value_threshold: q, threshold_min: a, threshold_max: b, max_rate: c, last_unique_check: d, max_size: e}\ntransformations: {multiplication_ratio: a, round_decimal_point: b, slice_start: c, slice_end: d}\nprocessing_policy: {policy_type: a, n_records_count: b, time_window_size: c, aggregation_functions: d}\n",
    errors: [["ActivePeriod", "Input should be 'Permanent', 'FromDate', 'ToDate' or 'DateRange'"], ["ActivePeriod", "Input should be a valid datetime or date, input is too short"], ["ActivePeriod", "Input should be a valid datetime or date, input is too short"], ["Filters", "Input should be 'Text' or 'Number'"], ["Filters", "Input should be 'WhiteList' or 'BlackList'"], ["Filters", "Input should be a valid list"], ["Filters", "Input should be 'Min', 'Max' or 'Range'"], ["Filters", "Input should be a valid integer, unable to parse string as an integer"], ["Filters", "Input should be a valid integer, unable to parse string as an integer"], ["Filters", "Input should be a valid integer, unable to parse string as an integer"], ["Filters", "Input should be a valid boolean, unable to interpret input"], ["Filters", "Input should be a valid integer, unable to parse string as an integer"], ["Transformations", "Input should be a valid number, unable to parse string as a number"], ["Transformations", "Input should be a valid integer, unable to parse string as an integer"], ["Transformations", "Input should be a valid integer, unable to parse string as an integer"], ["Transformations", "Input should be a valid integer, unable to parse string as an integer"], ["ProcessingPolicy", "Input should be 'LastValue', 'NRecords', 'TimeWindow' or 'Aggregation'"], ["ProcessingPolicy", "Input should be a valid integer, unable to parse string as an integer"], ["ProcessingPolicy", "Input should be a valid integer, unable to parse string as an integer"], ["ProcessingPolicy", "Input should be 'Avg', 'Min', 'Max' or 'Sum'"]],
  },
  {
    name: "fractional integers",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Number, max_rate: 1.5, max_size: 2.0, threshold_min: 0.5}\ntransformations: {round_decimal_point: 1.0, slice_start: -1.5}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Input should be a valid integer, got a number with a fractional part"], ["Filters", "Input should be a valid integer, got a number with a fractional part"], ["Transformations", "Input should be a valid integer, got a number with a fractional part"]],
  },
  {
    name: "out of range integers",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Number, max_rate: -1, max_size: -5}\ntransformations: {round_decimal_point: 8}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Input should be greater than or equal to 0"], ["Filters", "Input should be greater than or equal to 0"], ["Transformations", "Input should be less than or equal to 7"]],
  },
  {
    name: "max_rate above a day",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Number, max_rate: 86401, max_size: 0}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Input should be less than or equal to 86400"]],
  },
  {
    name: "booleans",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Number, max_rate: 0, max_size: 0, last_unique_check: maybe}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Input should be a valid boolean, unable to interpret input"]],
  },
  {
    name: "boolean from 2",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Number, max_rate: 0, max_size: 0, last_unique_check: 2}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Input should be a valid boolean, unable to interpret input"]],
  },
  {
    name: "boolean from 1.5",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Number, max_rate: 0, max_size: 0, last_unique_check: 1.5}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Input should be a valid boolean"]],
  },
  {
    name: "boolean from null",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Number, max_rate: 0, max_size: 0, last_unique_check: ~}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Input should be a valid boolean"]],
  },
  {
    name: "required ints null",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Number, max_rate: ~, max_size: ~}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Input should be a valid integer"], ["Filters", "Input should be a valid integer"]],
  },
  {
    name: "FromDate without start",
    yaml: "active_period: {type: FromDate}\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["ActivePeriod", "Value error, start must be provided for FROM_DATE"]],
  },
  {
    name: "ToDate without end",
    yaml: "active_period: {type: ToDate, start: \"2025-01-01T00:00:00Z\"}\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["ActivePeriod", "Value error, end must be provided for TO_DATE"]],
  },
  {
    name: "DateRange without end",
    yaml: "active_period: {type: DateRange, start: \"2025-01-01T00:00:00Z\"}\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["ActivePeriod", "Value error, start and end must be provided for DATE_RANGE"]],
  },
  {
    name: "DateRange equal bounds",
    yaml: "active_period: {type: DateRange, start: \"2025-01-01T01:00:00+01:00\", end: \"2025-01-01T00:00:00Z\"}\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["ActivePeriod", "Value error, start must be before end for DATE_RANGE"]],
  },
  {
    name: "bad datetime texts",
    yaml: "active_period: {type: DateRange, start: \"2025-13-01\", end: \"soon\"}\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["ActivePeriod", "Input should be a valid datetime or date, month value is outside expected range of 1-12"], ["ActivePeriod", "Input should be a valid datetime or date, input is too short"]],
  },
  {
    name: "datetime day out of range",
    yaml: "active_period: {type: FromDate, start: \"2025-02-30T00:00:00Z\"}\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["ActivePeriod", "Input should be a valid datetime or date, day value is outside expected range"]],
  },
  {
    name: "datetime hour 25",
    yaml: "active_period: {type: FromDate, start: \"2025-01-01T25:00:00Z\"}\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["ActivePeriod", "Input should be a valid datetime or date, unexpected extra characters at the end of the input"]],
  },
  {
    name: "datetime from boolean",
    yaml: "active_period: {type: FromDate, start: true}\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["ActivePeriod", "Input should be a valid datetime"]],
  },
  {
    name: "Number list with text",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Number, type_value_filtering: BlackList, filtering_values: [1, \"a\"], max_rate: 0, max_size: 0}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Value error, filtering_values must be numeric for NUMBER input"]],
  },
  {
    name: "Text list with numbers",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Text, type_value_filtering: WhiteList, filtering_values: [\"a\", 2], max_rate: 0, max_size: 0}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Value error, filtering_values must be strings for TEXT input"]],
  },
  {
    name: "Text list with yes (a YAML boolean)",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Text, type_value_filtering: WhiteList, filtering_values: [yes], max_rate: 0, max_size: 0}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Value error, filtering_values must be strings for TEXT input"]],
  },
  {
    name: "list not checked without type_value_filtering",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Text, filtering_values: [1, 2.5], max_rate: 0, max_size: 0}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [],
  },
  {
    name: "list elements of no union type",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Text, filtering_values: [\"a\", ~, [1], {b: 2}], max_rate: 0, max_size: 0}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Input should be a valid string"], ["Filters", "Input should be a valid integer"], ["Filters", "Input should be a valid number"], ["Filters", "Input should be a valid string"], ["Filters", "Input should be a valid integer"], ["Filters", "Input should be a valid number"], ["Filters", "Input should be a valid string"], ["Filters", "Input should be a valid integer"], ["Filters", "Input should be a valid number"]],
  },
  {
    name: "list is a string",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Text, filtering_values: abc, max_rate: 0, max_size: 0}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Input should be a valid list"]],
  },
  {
    name: "Min without threshold_min",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Number, type_value_threshold: Min, max_rate: 0, max_size: 0}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Value error, threshold_min is required for MIN threshold"]],
  },
  {
    name: "Max without threshold_max",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Number, type_value_threshold: Max, threshold_min: 1, max_rate: 0, max_size: 0}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Value error, threshold_max is required for MAX threshold"]],
  },
  {
    name: "Range without a bound",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Number, type_value_threshold: Range, threshold_min: 1, max_rate: 0, max_size: 0}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Value error, Both threshold_min and threshold_max are required for RANGE threshold"]],
  },
  {
    name: "Range with min >= max",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Number, type_value_threshold: Range, threshold_min: 5, threshold_max: 5, max_rate: 0, max_size: 0}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Value error, threshold_min must be less than threshold_max"]],
  },
  {
    name: "thresholds not checked for Text",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Text, type_value_threshold: Range, max_rate: 0, max_size: 0}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [],
  },
  {
    name: "max_size above the payload limit",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Number, max_rate: 0, max_size: 262145}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Value error, max_size must be <= 262144"]],
  },
  {
    name: "first model failure only: list before threshold before size",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Number, type_value_filtering: BlackList, filtering_values: [a], type_value_threshold: Min, max_rate: 0, max_size: 999999}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Value error, filtering_values must be numeric for NUMBER input"]],
  },
  {
    name: "NRecords without count",
    yaml: "active_period:\n  type: Permanent\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy: {policy_type: NRecords}\n",
    errors: [["ProcessingPolicy", "Value error, n_records_count is required for N_RECORDS"]],
  },
  {
    name: "NRecords count 0",
    yaml: "active_period:\n  type: Permanent\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy: {policy_type: NRecords, n_records_count: 0}\n",
    errors: [["ProcessingPolicy", "Value error, n_records_count must be between 1 and 1024"]],
  },
  {
    name: "NRecords count 1025",
    yaml: "active_period:\n  type: Permanent\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy: {policy_type: NRecords, n_records_count: 1025}\n",
    errors: [["ProcessingPolicy", "Value error, n_records_count must be between 1 and 1024"]],
  },
  {
    name: "TimeWindow without size",
    yaml: "active_period:\n  type: Permanent\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy: {policy_type: TimeWindow}\n",
    errors: [["ProcessingPolicy", "Value error, time_window_size is required"]],
  },
  {
    name: "TimeWindow size 61",
    yaml: "active_period:\n  type: Permanent\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy: {policy_type: TimeWindow, time_window_size: 61}\n",
    errors: [["ProcessingPolicy", "Value error, Invalid time_window_size. Must be one of: [60, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 14400, 21600, 28800, 43200, 86400]"]],
  },
  {
    name: "Aggregation without anything",
    yaml: "active_period:\n  type: Permanent\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy: {policy_type: Aggregation}\n",
    errors: [["ProcessingPolicy", "Value error, time_window_size is required"]],
  },
  {
    name: "Aggregation without function",
    yaml: "active_period:\n  type: Permanent\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy: {policy_type: Aggregation, time_window_size: 900}\n",
    errors: [["ProcessingPolicy", "Value error, aggregation_functions is required for AGGREGATION"]],
  },
  {
    name: "int parsing from text",
    yaml: "active_period:\n  type: Permanent\nfilters: {type_input_value: Number, max_rate: \"1_000\", max_size: \" 7 \", threshold_min: \"1e3\"}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Filters", "Input should be a valid integer, unable to parse string as an integer"]],
  },
  {
    name: "float parsing from text",
    yaml: "active_period:\n  type: Permanent\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\ntransformations: {multiplication_ratio: \"abc\"}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Transformations", "Input should be a valid number, unable to parse string as a number"]],
  },
  {
    name: "float from list",
    yaml: "active_period:\n  type: Permanent\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\ntransformations: {multiplication_ratio: [1]}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["Transformations", "Input should be a valid number"]],
  },
  {
    name: "transformations null is fine",
    yaml: "active_period:\n  type: Permanent\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\ntransformations: ~\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [],
  },
  {
    name: "errors in several stages keep stage order",
    yaml: "processing_policy: {policy_type: NRecords}\nfilters: {type_input_value: Number, max_rate: -1, max_size: 0}\nactive_period: {type: FromDate}\n",
    errors: [["ActivePeriod", "Value error, start must be provided for FROM_DATE"], ["Filters", "Input should be greater than or equal to 0"], ["ProcessingPolicy", "Value error, n_records_count is required for N_RECORDS"]],
  },
  {
    name: "model rules of one stage still run when another stage has field errors",
    yaml: "active_period: {type: FromDate}\nfilters: {type_input_value: Number, max_rate: -1, max_size: 0}\nprocessing_policy:\n  policy_type: LastValue\n",
    errors: [["ActivePeriod", "Value error, start must be provided for FROM_DATE"], ["Filters", "Input should be greater than or equal to 0"]],
  },
];

for (const c of MALFORMED) {
  test(`reference messages: ${c.name}`, () => {
    assert.deepEqual(check(c.yaml), c.errors);
  });
}

test('a root that is empty or not a mapping gives one clear Config entry', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /is empty/],
    ['~\n', /is empty/],
    ['# only a comment\n', /is empty/],
    ['- active_period\n- filters\n', /must be a mapping .* got a list/],
    ['just text\n', /must be a mapping .* got a text value/],
    ['42\n', /must be a mapping .* got a number/],
    ['1.0\n', /must be a mapping .* got a number/],
    ['true\n', /must be a mapping .* got a boolean/],
    ['2025-01-01\n', /must be a mapping .* got a date/],
  ];
  for (const [yaml, message] of cases) {
    const entries = check(yaml);
    assert.equal(entries.length, 1, JSON.stringify(yaml));
    assert.equal(entries[0]?.[0], DataPipeStage.Config);
    assert.match(entries[0]?.[1] ?? '', message);
  }
  assert.equal(checkDataPipeConfig(undefined, opts)[0]?.stage, 'Config');
  assert.equal(checkDataPipeConfig(new Map(), opts)[0]?.stage, 'Config');
});

test('max_size is bounded by the configured payload size', () => {
  const yaml = 'active_period: {type: Permanent}\nfilters: {type_input_value: Text, max_rate: 0, max_size: 2048}\nprocessing_policy: {policy_type: LastValue}\n';
  const parsed = parseDataPipeYaml(yaml);
  assert.ok(parsed.ok);
  assert.deepEqual(checkDataPipeConfig(parsed.document, { maxPayloadSizeKb: 2 }), []);
  assert.deepEqual(checkDataPipeConfig(parsed.document, { maxPayloadSizeKb: 1 }), [
    { stage: 'Filters', message: 'Value error, max_size must be <= 1024' },
  ]);
});

test('plain JS documents: Date objects and ISO strings are datetimes, unknown keys are ignored', () => {
  const doc = {
    active_period: { type: 'DateRange', start: new Date('2025-01-01T00:00:00.250Z'), end: '2026-01-01T00:00:00+02:00', extra: 1 },
    filters: { type_input_value: 'Number', max_rate: 0, max_size: 0 },
    processing_policy: { policy_type: 'NRecords', n_records_count: 10, time_window_size: 61 },
    something_else: true,
  };
  const config = normaliseDataPipeConfig(doc, opts);
  assert.equal(config.active_period.start, '2025-01-01T00:00:00.250000+00:00');
  assert.equal(config.active_period.end, '2026-01-01T00:00:00+02:00');
  assert.equal(config.processing_policy.time_window_size, 61, 'extra policy keys are kept but not checked');
  assert.equal('something_else' in config, false);
  assert.deepEqual(checkDataPipeConfig({ ...doc, active_period: { type: 'FromDate', start: new Date(NaN) } }, opts), [
    { stage: 'ActivePeriod', message: 'Input should be a valid datetime' },
  ]);
});

test('deliberate differences: naive datetimes are UTC, non-finite floats and huge integers are refused', () => {
  const naive = checkDataPipeYaml('active_period: {type: FromDate, start: 2025-01-01 10:00:00}\nfilters: {type_input_value: Text, max_rate: 0, max_size: 0}\nprocessing_policy: {policy_type: LastValue}\n', opts);
  assert.ok(naive.ok);
  assert.equal(naive.config.active_period.start, '2025-01-01T10:00:00+00:00');
  const cases: Array<[string, Array<[string, string]>]> = [
    ['transformations: {multiplication_ratio: .inf}', [['Transformations', 'Input should be a finite number']]],
    ['transformations: {multiplication_ratio: "nan"}', [['Transformations', 'Input should be a finite number']]],
    ['transformations: {slice_start: 99999999999999999999}', [['Transformations', 'Input should be an integer between -9007199254740991 and 9007199254740991']]],
  ];
  for (const [extra, errors] of cases) {
    assert.deepEqual(check(`active_period: {type: Permanent}\nfilters: {type_input_value: Number, max_rate: 0, max_size: 0}\n${extra}\nprocessing_policy: {policy_type: LastValue}\n`), errors, extra);
  }
  assert.deepEqual(
    check('active_period: {type: Permanent}\nfilters: {type_input_value: Number, max_rate: 0, max_size: 0, filtering_values: [1, .nan]}\nprocessing_policy: {policy_type: LastValue}\n'),
    [['Filters', 'Input should be a finite number']],
  );
});

test('data_source: valid paths are kept, bad ones are reported under DataSource', () => {
  const base = 'active_period: {type: Permanent}\nfilters: {type_input_value: Number, max_rate: 0, max_size: 0}\nprocessing_policy: {policy_type: LastValue}\n';
  const ok = checkDataPipeYaml(`${base}data_source: {json_path: 'sensors[0].temp'}\n`, opts);
  assert.ok(ok.ok);
  assert.deepEqual(ok.config.data_source, { json_path: 'sensors[0].temp' });
  assert.ok(ok.json.endsWith(', "data_source": {"json_path": "sensors[0].temp"}}'));

  const absent = checkDataPipeYaml(`${base}data_source: ~\n`, opts);
  assert.ok(absent.ok);
  assert.equal('data_source' in absent.config, false);
  assert.equal(absent.json.includes('data_source'), false);

  const cases: Array<[string, string]> = [
    ['data_source: sensors.temp', 'Input should be a valid dictionary or instance of DataSourceConfig'],
    ['data_source: {}', 'Field required'],
    ['data_source: {json_path: 5}', 'Input should be a valid string'],
    ["data_source: {json_path: ''}", 'Value error, json_path must not be empty'],
    ["data_source: {json_path: 'a..b'}", "Value error, json_path is invalid at character 3: expected a key after '.' but found '.'"],
    ["data_source: {json_path: 'a[x]'}", 'Value error, json_path is invalid at character 3: expected an array index (a non-negative integer without leading zeros, at most 9 digits) or a "quoted key" after \'[\''],
    [`data_source: {json_path: '${'a'.repeat(257)}'}`, 'Value error, json_path is too long: 257 characters (the limit is 256)'],
  ];
  for (const [line, message] of cases) {
    assert.deepEqual(check(`${base}${line}\n`), [['DataSource', message]], line);
  }
  // DataSource errors come after the reference stages.
  assert.deepEqual(check(`active_period: {type: Permanent}\nfilters: {type_input_value: Number, max_rate: -1, max_size: 0}\nprocessing_policy: {policy_type: LastValue}\ndata_source: {}\n`), [
    ['Filters', 'Input should be greater than or equal to 0'],
    ['DataSource', 'Field required'],
  ]);
});

test('validateDataPipeConfig returns the config only when there is no error', () => {
  const parsed = parseDataPipeYaml(REFERENCE_EXAMPLES[1]?.yaml ?? '');
  assert.ok(parsed.ok);
  const result = validateDataPipeConfig(parsed.document, opts);
  assert.deepEqual(result.errors, []);
  assert.ok(result.config);
  assert.equal(serialiseDataPipeConfig(result.config), REFERENCE_EXAMPLES[1]?.json);
  const failed = validateDataPipeConfig({}, opts);
  assert.equal(failed.config, null);
  assert.equal(failed.errors.length, 3);
});
