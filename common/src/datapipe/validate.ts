/**
 * Validation of the DataPipe config document with the reference's (pydantic v2) rules and
 * messages (shared/reference/pepeunit-datapipe.md §1.3-1.4):
 *
 * - stages are checked in the order active_period, filters, transformations,
 *   processing_policy (then our data_source); unknown keys are ignored;
 * - inside a stage every field is checked (errors in field order); the stage's model-level
 *   rule runs only when all its fields are valid, and reports only its first failure, as
 *   `Value error, <message>`;
 * - a union list element that fits none of str/int/float yields three entries, as pydantic.
 *
 * Differences from the reference, on purpose:
 * - an empty document or a root that is not a mapping yields one `Config` entry (the
 *   reference answers 500);
 * - non-finite floats (`.inf`, `.nan`) are refused in `multiplication_ratio` and
 *   `filtering_values` (`Input should be a finite number`): Python would store `NaN` /
 *   `Infinity`, which is not JSON, and the Go service then silently ignored the node;
 * - integers beyond ±(2^53-1) are refused (JS numbers cannot hold them exactly);
 * - datetimes without an offset are read as UTC (see datetime.ts).
 */
import {
  MSG,
  coerceBool,
  coerceBoundedInt,
  coerceDateTime,
  coerceEnum,
  coerceFloat,
  coerceInt,
  coerceString,
  coerceStrIntFloat,
  isPlainObject,
  type Coerced,
} from './coerce.js';
import { ConfigDateTime } from './datetime.js';
import { PyFloat } from './python-json.js';
import { parseJsonPath } from './json-path.js';
import {
  ActivePeriodType,
  AggregationFunctions,
  DEFAULT_MQTT_MAX_PAYLOAD_SIZE_KB,
  DataPipeStage,
  FilterTypeValueFiltering,
  FilterTypeValueThreshold,
  MAX_RATE_SECONDS,
  N_RECORDS_MAX,
  ProcessingPolicyType,
  ROUND_DECIMAL_POINT_MAX,
  TIME_WINDOW_SIZES,
  TypeInputValue,
  type ActivePeriodConfig,
  type DataPipeConfig,
  type DataPipeValidationOptions,
  type DataSourceConfig,
  type FilteringValue,
  type FiltersConfig,
  type ProcessingPolicyConfig,
  type TransformationsConfig,
  type ValidationEntry,
} from './types.js';

const values = <T extends Record<string, string>>(o: T): Array<T[keyof T]> => Object.values(o) as Array<T[keyof T]>;

/**
 * Which entries of a normalised `filtering_values` list were floats in the source
 * (`1.0`), so the stored JSON can print them as Python does. Kept beside the array
 * rather than in it so the config stays plain data.
 */
const filteringFloatIndexes = new WeakMap<readonly FilteringValue[], ReadonlySet<number>>();

export function isFloatFilteringValue(list: readonly FilteringValue[], index: number): boolean {
  const value = list[index];
  if (typeof value !== 'number') return false;
  return !Number.isInteger(value) || (filteringFloatIndexes.get(list)?.has(index) ?? false);
}

/** Reads the fields of one stage, collecting pydantic-style messages in field order. */
class StageReader {
  readonly errors: string[] = [];
  constructor(private readonly source: Record<string, unknown>) {}

  private has(key: string): boolean {
    return Object.hasOwn(this.source, key) && this.source[key] !== undefined;
  }

  private take<T>(result: Coerced<T>): T | undefined {
    if (result.ok) return result.value;
    this.errors.push(...result.errors);
    return undefined;
  }

  required<T>(key: string, coerce: (v: unknown) => Coerced<T>): T | undefined {
    if (!this.has(key)) {
      this.errors.push(MSG.required);
      return undefined;
    }
    return this.take(coerce(this.source[key]));
  }

  optional<T>(key: string, coerce: (v: unknown) => Coerced<T>): T | null | undefined {
    if (!this.has(key) || this.source[key] === null) return null;
    return this.take(coerce(this.source[key]));
  }

  withDefault<T>(key: string, coerce: (v: unknown) => Coerced<T>, fallback: T): T | undefined {
    if (!this.has(key)) return fallback;
    return this.take(coerce(this.source[key]));
  }
}

type StageResult<T> = { value: T; errors: [] } | { value: null; errors: string[] };

const bounded =
  (min: number | null, max: number | null) =>
  (v: unknown): Coerced<number> =>
    coerceBoundedInt(v, min, max);

const finiteFloat = (v: unknown): Coerced<number> => {
  const r = coerceFloat(v);
  if (r.ok && !Number.isFinite(r.value)) return { ok: false, errors: [MSG.finite] };
  return r;
};

const valueError = (message: string): string[] => [`Value error, ${message}`];

function readActivePeriod(source: Record<string, unknown>): StageResult<ActivePeriodConfig> {
  const r = new StageReader(source);
  const type = r.required('type', (v) => coerceEnum(v, values(ActivePeriodType)));
  const start = r.optional('start', coerceDateTime);
  const end = r.optional('end', coerceDateTime);
  if (r.errors.length > 0 || type === undefined || start === undefined || end === undefined) return { value: null, errors: r.errors };

  if (type === ActivePeriodType.FromDate && !start) return { value: null, errors: valueError('start must be provided for FROM_DATE') };
  if (type === ActivePeriodType.ToDate && !end) return { value: null, errors: valueError('end must be provided for TO_DATE') };
  if (type === ActivePeriodType.DateRange) {
    if (!start || !end) return { value: null, errors: valueError('start and end must be provided for DATE_RANGE') };
    if (start.compare(end) >= 0) return { value: null, errors: valueError('start must be before end for DATE_RANGE') };
  }
  const iso = (d: ConfigDateTime | null): string | null => (d ? d.isoformat() : null);
  return { value: { type, start: iso(start), end: iso(end) }, errors: [] };
}

function readFilteringValues(v: unknown): Coerced<{ list: FilteringValue[]; floats: Set<number> }> {
  if (!Array.isArray(v)) return { ok: false, errors: [MSG.list] };
  const list: FilteringValue[] = [];
  const floats = new Set<number>();
  const errors: string[] = [];
  v.forEach((item: unknown, index) => {
    const r = coerceStrIntFloat(item);
    if (!r.ok) {
      errors.push(...r.errors);
      return;
    }
    list.push(r.value.value);
    if (r.value.kind === 'float') floats.add(index);
  });
  return errors.length > 0 ? { ok: false, errors } : { ok: true, value: { list, floats } };
}

function readFilters(source: Record<string, unknown>, opts: DataPipeValidationOptions): StageResult<FiltersConfig> {
  const r = new StageReader(source);
  const typeInputValue = r.required('type_input_value', (v) => coerceEnum(v, values(TypeInputValue)));
  const typeValueFiltering = r.optional('type_value_filtering', (v) => coerceEnum(v, values(FilterTypeValueFiltering)));
  const filtering = r.optional('filtering_values', readFilteringValues);
  const typeValueThreshold = r.optional('type_value_threshold', (v) => coerceEnum(v, values(FilterTypeValueThreshold)));
  const thresholdMin = r.optional('threshold_min', coerceInt);
  const thresholdMax = r.optional('threshold_max', coerceInt);
  const maxRate = r.required('max_rate', bounded(0, MAX_RATE_SECONDS));
  const lastUniqueCheck = r.withDefault('last_unique_check', coerceBool, false);
  const maxSize = r.required('max_size', bounded(0, null));
  if (
    r.errors.length > 0 ||
    typeInputValue === undefined ||
    typeValueFiltering === undefined ||
    filtering === undefined ||
    typeValueThreshold === undefined ||
    thresholdMin === undefined ||
    thresholdMax === undefined ||
    maxRate === undefined ||
    lastUniqueCheck === undefined ||
    maxSize === undefined
  ) {
    return { value: null, errors: r.errors };
  }

  const list = filtering?.list ?? null;
  if (typeValueFiltering && list && list.length > 0) {
    if (typeInputValue === TypeInputValue.Number && !list.every((x) => typeof x === 'number')) {
      return { value: null, errors: valueError('filtering_values must be numeric for NUMBER input') };
    }
    if (typeInputValue === TypeInputValue.Text && !list.every((x) => typeof x === 'string')) {
      return { value: null, errors: valueError('filtering_values must be strings for TEXT input') };
    }
  }
  if (typeInputValue === TypeInputValue.Number) {
    if (typeValueThreshold === FilterTypeValueThreshold.Min && thresholdMin === null) {
      return { value: null, errors: valueError('threshold_min is required for MIN threshold') };
    }
    if (typeValueThreshold === FilterTypeValueThreshold.Max && thresholdMax === null) {
      return { value: null, errors: valueError('threshold_max is required for MAX threshold') };
    }
    if (typeValueThreshold === FilterTypeValueThreshold.Range) {
      if (thresholdMin === null || thresholdMax === null) {
        return { value: null, errors: valueError('Both threshold_min and threshold_max are required for RANGE threshold') };
      }
      if (thresholdMin >= thresholdMax) return { value: null, errors: valueError('threshold_min must be less than threshold_max') };
    }
  }
  const maxSizeLimit = opts.maxPayloadSizeKb * 1024;
  if (maxSize > maxSizeLimit) return { value: null, errors: valueError(`max_size must be <= ${maxSizeLimit}`) };

  if (list && filtering && filtering.floats.size > 0) filteringFloatIndexes.set(list, filtering.floats);
  return {
    value: {
      type_input_value: typeInputValue,
      type_value_filtering: typeValueFiltering,
      filtering_values: list,
      type_value_threshold: typeValueThreshold,
      threshold_min: thresholdMin,
      threshold_max: thresholdMax,
      max_rate: maxRate,
      last_unique_check: lastUniqueCheck,
      max_size: maxSize,
    },
    errors: [],
  };
}

function readTransformations(source: Record<string, unknown>): StageResult<TransformationsConfig> {
  const r = new StageReader(source);
  const multiplicationRatio = r.optional('multiplication_ratio', finiteFloat);
  const roundDecimalPoint = r.optional('round_decimal_point', bounded(0, ROUND_DECIMAL_POINT_MAX));
  const sliceStart = r.optional('slice_start', coerceInt);
  const sliceEnd = r.optional('slice_end', coerceInt);
  if (r.errors.length > 0 || multiplicationRatio === undefined || roundDecimalPoint === undefined || sliceStart === undefined || sliceEnd === undefined) {
    return { value: null, errors: r.errors };
  }
  return {
    value: { multiplication_ratio: multiplicationRatio, round_decimal_point: roundDecimalPoint, slice_start: sliceStart, slice_end: sliceEnd },
    errors: [],
  };
}

function readProcessingPolicy(source: Record<string, unknown>): StageResult<ProcessingPolicyConfig> {
  const r = new StageReader(source);
  const policyType = r.required('policy_type', (v) => coerceEnum(v, values(ProcessingPolicyType)));
  const nRecordsCount = r.optional('n_records_count', coerceInt);
  const timeWindowSize = r.optional('time_window_size', coerceInt);
  const aggregationFunctions = r.optional('aggregation_functions', (v) => coerceEnum(v, values(AggregationFunctions)));
  if (r.errors.length > 0 || policyType === undefined || nRecordsCount === undefined || timeWindowSize === undefined || aggregationFunctions === undefined) {
    return { value: null, errors: r.errors };
  }
  if (policyType === ProcessingPolicyType.NRecords) {
    if (nRecordsCount === null) return { value: null, errors: valueError('n_records_count is required for N_RECORDS') };
    if (!(nRecordsCount > 0 && nRecordsCount <= N_RECORDS_MAX)) {
      return { value: null, errors: valueError(`n_records_count must be between 1 and ${N_RECORDS_MAX}`) };
    }
  }
  if (policyType === ProcessingPolicyType.TimeWindow || policyType === ProcessingPolicyType.Aggregation) {
    if (timeWindowSize === null) return { value: null, errors: valueError('time_window_size is required') };
    if (!(TIME_WINDOW_SIZES as readonly number[]).includes(timeWindowSize)) {
      return { value: null, errors: valueError(`Invalid time_window_size. Must be one of: [${TIME_WINDOW_SIZES.join(', ')}]`) };
    }
  }
  if (policyType === ProcessingPolicyType.Aggregation && aggregationFunctions === null) {
    return { value: null, errors: valueError('aggregation_functions is required for AGGREGATION') };
  }
  return {
    value: {
      policy_type: policyType,
      n_records_count: nRecordsCount,
      time_window_size: timeWindowSize,
      aggregation_functions: aggregationFunctions,
    },
    errors: [],
  };
}

function readDataSource(source: Record<string, unknown>): StageResult<DataSourceConfig> {
  const r = new StageReader(source);
  const jsonPath = r.required('json_path', coerceString);
  if (r.errors.length > 0 || jsonPath === undefined) return { value: null, errors: r.errors };
  const parsed = parseJsonPath(jsonPath);
  if (!parsed.ok) return { value: null, errors: valueError(parsed.message) };
  return { value: { json_path: jsonPath }, errors: [] };
}

function describeRoot(doc: unknown): string {
  if (Array.isArray(doc)) return 'a list';
  if (typeof doc === 'string') return 'a text value';
  if (typeof doc === 'number' || typeof doc === 'bigint' || doc instanceof PyFloat) return 'a number';
  if (typeof doc === 'boolean') return 'a boolean';
  if (doc instanceof Date || doc instanceof ConfigDateTime) return 'a date';
  return `a value of type ${typeof doc}`;
}

export interface DataPipeValidationResult {
  /** The normalised config when `errors` is empty, else null. */
  config: DataPipeConfig | null;
  errors: ValidationEntry[];
}

/** Validates and normalises in one pass. */
export function validateDataPipeConfig(doc: unknown, opts: DataPipeValidationOptions): DataPipeValidationResult {
  if (doc === null || doc === undefined) {
    return {
      config: null,
      errors: [{ stage: DataPipeStage.Config, message: 'DataPipe config is empty: expected a mapping with the keys active_period, filters and processing_policy' }],
    };
  }
  if (!isPlainObject(doc)) {
    return {
      config: null,
      errors: [
        {
          stage: DataPipeStage.Config,
          message: `DataPipe config must be a mapping (key: value pairs) at the top level, got ${describeRoot(doc)}`,
        },
      ],
    };
  }
  const errors: ValidationEntry[] = [];
  const stage = <T>(
    key: string,
    stageName: DataPipeStage,
    className: string,
    read: (source: Record<string, unknown>) => StageResult<T>,
    optional: boolean,
  ): T | null | undefined => {
    const raw = Object.hasOwn(doc, key) ? doc[key] : undefined;
    if (raw === undefined || (optional && raw === null)) {
      if (!optional) errors.push({ stage: stageName, message: MSG.required });
      return optional ? null : undefined;
    }
    if (!isPlainObject(raw)) {
      errors.push({ stage: stageName, message: MSG.model(className) });
      return undefined;
    }
    const result = read(raw);
    for (const message of result.errors) errors.push({ stage: stageName, message });
    return result.errors.length > 0 ? undefined : result.value;
  };

  const activePeriod = stage('active_period', DataPipeStage.ActivePeriod, 'ActivePeriod', readActivePeriod, false);
  const filters = stage('filters', DataPipeStage.Filters, 'FiltersConfig', (s) => readFilters(s, opts), false);
  const transformations = stage('transformations', DataPipeStage.Transformations, 'TransformationConfig', readTransformations, true);
  const processingPolicy = stage('processing_policy', DataPipeStage.ProcessingPolicy, 'ProcessingPolicyConfig', readProcessingPolicy, false);
  const dataSource = stage('data_source', DataPipeStage.DataSource, 'DataSourceConfig', readDataSource, true);

  if (errors.length > 0 || !activePeriod || !filters || transformations === undefined || !processingPolicy || dataSource === undefined) {
    return { config: null, errors };
  }
  const config: DataPipeConfig = {
    active_period: activePeriod,
    filters,
    transformations,
    processing_policy: processingPolicy,
  };
  if (dataSource) config.data_source = dataSource;
  return { config, errors: [] };
}

/** Check mode: the list of `{ stage, message }`, empty when the document is valid. */
export function checkDataPipeConfig(doc: unknown, opts: DataPipeValidationOptions): ValidationEntry[] {
  return validateDataPipeConfig(doc, opts).errors;
}

/**
 * Set mode failure. `message` is the reference's `<n> validation errors for DataPipeConfig`
 * (sic, also for one error); the backend answers 422 with it.
 */
export class DataPipeValidationError extends Error {
  constructor(readonly errors: ValidationEntry[]) {
    super(`${errors.length} validation errors for DataPipeConfig`);
    this.name = 'DataPipeValidationError';
  }
}

/** Set mode: the validated, normalised config, or throws `DataPipeValidationError`. */
export function normaliseDataPipeConfig(
  doc: unknown,
  opts: DataPipeValidationOptions = { maxPayloadSizeKb: DEFAULT_MQTT_MAX_PAYLOAD_SIZE_KB },
): DataPipeConfig {
  const result = validateDataPipeConfig(doc, opts);
  if (!result.config) throw new DataPipeValidationError(result.errors);
  return result.config;
}
