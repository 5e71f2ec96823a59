/**
 * The DataPipe config document: enums, constants and the validated shape.
 *
 * Single source of truth for the backend (validation, storage, export) and the ingest
 * (compiled per-node pipeline). Key names are the snake_case keys of the stored JSON
 * (`units_nodes.data_pipe_yml`), so the same type describes the JSON text and the object.
 * Reference: shared/reference/pepeunit-datapipe.md §1.
 */

export const ActivePeriodType = {
  Permanent: 'Permanent',
  FromDate: 'FromDate',
  ToDate: 'ToDate',
  DateRange: 'DateRange',
} as const;
export type ActivePeriodType = (typeof ActivePeriodType)[keyof typeof ActivePeriodType];

export const TypeInputValue = {
  Text: 'Text',
  Number: 'Number',
} as const;
export type TypeInputValue = (typeof TypeInputValue)[keyof typeof TypeInputValue];

export const FilterTypeValueFiltering = {
  WhiteList: 'WhiteList',
  BlackList: 'BlackList',
} as const;
export type FilterTypeValueFiltering = (typeof FilterTypeValueFiltering)[keyof typeof FilterTypeValueFiltering];

export const FilterTypeValueThreshold = {
  Min: 'Min',
  Max: 'Max',
  Range: 'Range',
} as const;
export type FilterTypeValueThreshold = (typeof FilterTypeValueThreshold)[keyof typeof FilterTypeValueThreshold];

export const ProcessingPolicyType = {
  LastValue: 'LastValue',
  NRecords: 'NRecords',
  TimeWindow: 'TimeWindow',
  Aggregation: 'Aggregation',
} as const;
export type ProcessingPolicyType = (typeof ProcessingPolicyType)[keyof typeof ProcessingPolicyType];

export const AggregationFunctions = {
  Avg: 'Avg',
  Min: 'Min',
  Max: 'Max',
  Sum: 'Sum',
} as const;
export type AggregationFunctions = (typeof AggregationFunctions)[keyof typeof AggregationFunctions];

/**
 * `stage` of a validation entry. The first four are the reference's (pydantic location,
 * snake -> Camel). The others are ours:
 * - `DataSource`: the optional `data_source` extension (select a value from a JSON payload);
 * - `Config`: the document root is empty or not a mapping (the reference crashes with a 500);
 * - `Yaml`: the upload is not parseable YAML (the reference crashes with a 500).
 */
export const DataPipeStage = {
  ActivePeriod: 'ActivePeriod',
  Filters: 'Filters',
  Transformations: 'Transformations',
  ProcessingPolicy: 'ProcessingPolicy',
  DataSource: 'DataSource',
  Config: 'Config',
  Yaml: 'Yaml',
} as const;
export type DataPipeStage = (typeof DataPipeStage)[keyof typeof DataPipeStage];

/** Allowed `time_window_size` values in seconds (reference constant; every one divides 86400). */
export const TIME_WINDOW_SIZES = [
  60, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 14400, 21600, 28800, 43200, 86400,
] as const;
export type TimeWindowSize = (typeof TIME_WINDOW_SIZES)[number];

/** Reference bounds. */
export const MAX_RATE_SECONDS = 86400;
export const N_RECORDS_MAX = 1024;
export const ROUND_DECIMAL_POINT_MAX = 7;
/** Default `PU_MQTT_MAX_PAYLOAD_SIZE` (KB); `filters.max_size` must be <= this * 1024. */
export const DEFAULT_MQTT_MAX_PAYLOAD_SIZE_KB = 256;

/** Limits of our `data_source.json_path` extension. */
export const JSON_PATH_MAX_LENGTH = 256;
export const JSON_PATH_MAX_SEGMENTS = 32;

export interface ValidationEntry {
  stage: DataPipeStage;
  message: string;
}

/**
 * Datetimes are kept as the text the reference stores: Python `isoformat()` with an offset,
 * e.g. `2023-11-15T00:00:00+00:00` (microseconds only when non-zero).
 */
export interface ActivePeriodConfig {
  type: ActivePeriodType;
  start: string | null;
  end: string | null;
}

export type FilteringValue = string | number;

export interface FiltersConfig {
  type_input_value: TypeInputValue;
  type_value_filtering: FilterTypeValueFiltering | null;
  filtering_values: FilteringValue[] | null;
  type_value_threshold: FilterTypeValueThreshold | null;
  threshold_min: number | null;
  threshold_max: number | null;
  max_rate: number;
  last_unique_check: boolean;
  max_size: number;
}

export interface TransformationsConfig {
  multiplication_ratio: number | null;
  round_decimal_point: number | null;
  slice_start: number | null;
  slice_end: number | null;
}

export interface ProcessingPolicyConfig {
  policy_type: ProcessingPolicyType;
  n_records_count: number | null;
  time_window_size: number | null;
  aggregation_functions: AggregationFunctions | null;
}

/** Our extension: select one value from a JSON payload before the filters. */
export interface DataSourceConfig {
  json_path: string;
}

/** The validated config. `data_source` is absent (not null) when not configured. */
export interface DataPipeConfig {
  active_period: ActivePeriodConfig;
  filters: FiltersConfig;
  transformations: TransformationsConfig | null;
  processing_policy: ProcessingPolicyConfig;
  data_source?: DataSourceConfig;
}

export interface DataPipeValidationOptions {
  /** `PU_MQTT_MAX_PAYLOAD_SIZE` in KB: `filters.max_size` must be <= this * 1024. */
  maxPayloadSizeKb: number;
}
