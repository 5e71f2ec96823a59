/**
 * The stored form of a config (`units_nodes.data_pipe_yml`): JSON text byte-identical to the
 * reference's `json.dumps(model.dict(), default=obj_serializer)` (§1.1 item 4): every key
 * present in the reference order, absent values as `null`, Python separators, ASCII-only
 * escapes, Python float spelling (`1.0`, `1e-05`). Our `data_source` extension is appended
 * after `processing_policy` only when configured, so configs without it are unchanged.
 */
import { PyFloat, pythonJsonDumps, type PyJsonValue } from './python-json.js';
import { isFloatFilteringValue } from './validate.js';
import { ActivePeriodType, ProcessingPolicyType, TypeInputValue, type DataPipeConfig } from './types.js';

export function serialiseDataPipeConfig(config: DataPipeConfig): string {
  const { active_period: ap, filters: f, transformations: t, processing_policy: p } = config;
  const filteringValues = f.filtering_values;
  const doc: Record<string, PyJsonValue> = {
    active_period: { type: ap.type, start: ap.start, end: ap.end },
    filters: {
      type_input_value: f.type_input_value,
      type_value_filtering: f.type_value_filtering,
      filtering_values: filteringValues
        ? filteringValues.map((v, i) => (typeof v === 'number' && isFloatFilteringValue(filteringValues, i) ? new PyFloat(v) : v))
        : null,
      type_value_threshold: f.type_value_threshold,
      threshold_min: f.threshold_min,
      threshold_max: f.threshold_max,
      max_rate: f.max_rate,
      last_unique_check: f.last_unique_check,
      max_size: f.max_size,
    },
    transformations: t
      ? {
          multiplication_ratio: t.multiplication_ratio === null ? null : new PyFloat(t.multiplication_ratio),
          round_decimal_point: t.round_decimal_point,
          slice_start: t.slice_start,
          slice_end: t.slice_end,
        }
      : null,
    processing_policy: {
      policy_type: p.policy_type,
      n_records_count: p.n_records_count,
      time_window_size: p.time_window_size,
      aggregation_functions: p.aggregation_functions,
    },
  };
  if (config.data_source) doc.data_source = { json_path: config.data_source.json_path };
  return pythonJsonDumps(doc);
}

/**
 * The config attached to new `/pepeunit` nodes when `PU_FF_DATAPIPE_DEFAULT_LAST_VALUE_ENABLE`
 * is on (§1.2): Permanent, Text, max_rate 5, max_size 100, LastValue.
 */
export function defaultLastValueConfig(): DataPipeConfig {
  return {
    active_period: { type: ActivePeriodType.Permanent, start: null, end: null },
    filters: {
      type_input_value: TypeInputValue.Text,
      type_value_filtering: null,
      filtering_values: null,
      type_value_threshold: null,
      threshold_min: null,
      threshold_max: null,
      max_rate: 5,
      last_unique_check: false,
      max_size: 100,
    },
    transformations: null,
    processing_policy: {
      policy_type: ProcessingPolicyType.LastValue,
      n_records_count: null,
      time_window_size: null,
      aggregation_functions: null,
    },
  };
}
