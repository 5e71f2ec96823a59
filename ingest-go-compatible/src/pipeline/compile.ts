/**
 * A node's stored config (`units_nodes.data_pipe_yml`, JSON text) compiled once into the
 * form the per-message path uses: parsed datetimes, list lookups as sets, the JSON path as
 * segments. The reference re-parsed the JSON on every message (§1.5).
 *
 * The text is validated with the same rules as the backend (so a config the Go service
 * would have ignored silently, e.g. a datetime without offset, is read as UTC), except the
 * `max_size` upper bound, which depends on the backend's `PU_MQTT_MAX_PAYLOAD_SIZE`.
 */
import {
  ProcessingPolicyType,
  TypeInputValue,
  parseJsonPath,
  validateDataPipeConfig,
  type AggregationFunctions,
  type DataPipeConfig,
  type JsonPathSegment,
} from '@pepeunit/common/datapipe/index';
import { compileActivePeriod, type CompiledActivePeriod } from './active-period.js';
import { compileFilters, type CompiledFilters } from './filters.js';
import { compileTransformations, type CompiledTransformations } from './transformations.js';

export type CompiledPolicy =
  | { type: typeof ProcessingPolicyType.LastValue }
  | { type: typeof ProcessingPolicyType.NRecords; nRecordsCount: number }
  | { type: typeof ProcessingPolicyType.TimeWindow; timeWindowSize: number }
  | { type: typeof ProcessingPolicyType.Aggregation; timeWindowSize: number; aggregationFunction: AggregationFunctions };

export interface CompiledNodeConfig {
  /** The validated config the rest was compiled from. */
  readonly config: DataPipeConfig;
  readonly inputType: TypeInputValue;
  readonly activePeriod: CompiledActivePeriod;
  readonly filters: CompiledFilters;
  readonly transformations: CompiledTransformations | null;
  readonly policy: CompiledPolicy;
  /** `data_source.json_path` as segments, or null when the whole payload is the value. */
  readonly jsonPath: readonly JsonPathSegment[] | null;
}

export type CompileResult = { ok: true; compiled: CompiledNodeConfig } | { ok: false; error: string };

function compilePolicy(config: DataPipeConfig): CompiledPolicy {
  const p = config.processing_policy;
  switch (p.policy_type) {
    case ProcessingPolicyType.NRecords:
      return { type: p.policy_type, nRecordsCount: p.n_records_count as number };
    case ProcessingPolicyType.TimeWindow:
      return { type: p.policy_type, timeWindowSize: p.time_window_size as number };
    case ProcessingPolicyType.Aggregation:
      return {
        type: p.policy_type,
        timeWindowSize: p.time_window_size as number,
        aggregationFunction: p.aggregation_functions as AggregationFunctions,
      };
    default:
      return { type: ProcessingPolicyType.LastValue };
  }
}

/** Compiles an already validated config. */
export function compileValidatedConfig(config: DataPipeConfig): CompiledNodeConfig {
  let jsonPath: JsonPathSegment[] | null = null;
  if (config.data_source) {
    const parsed = parseJsonPath(config.data_source.json_path);
    if (!parsed.ok) throw new Error(parsed.message);
    jsonPath = parsed.segments;
  }
  return {
    config,
    inputType: config.filters.type_input_value,
    activePeriod: compileActivePeriod(config.active_period),
    filters: compileFilters(config.filters),
    transformations: compileTransformations(config.transformations),
    policy: compilePolicy(config),
    jsonPath,
  };
}

/** Parses and validates the stored JSON text once; an error says why the node cannot run. */
export function compileNodeConfig(jsonText: string): CompileResult {
  let doc: unknown;
  try {
    doc = JSON.parse(jsonText);
  } catch (err) {
    return { ok: false, error: `DataPipe config is not valid JSON: ${err instanceof Error ? err.message : String(err)}` };
  }
  const result = validateDataPipeConfig(doc, { maxPayloadSizeKb: Number.POSITIVE_INFINITY });
  if (!result.config) {
    return { ok: false, error: `DataPipe config is invalid: ${result.errors.map((e) => `${e.stage}: ${e.message}`).join('; ')}` };
  }
  try {
    return { ok: true, compiled: compileValidatedConfig(result.config) };
  } catch (err) {
    return { ok: false, error: `DataPipe config is invalid: ${err instanceof Error ? err.message : String(err)}` };
  }
}

/** `state_type` column value for the ClickHouse rows (the config's `type_input_value`). */
export function stateTypeOf(compiled: CompiledNodeConfig): TypeInputValue {
  return compiled.inputType === TypeInputValue.Number ? TypeInputValue.Number : TypeInputValue.Text;
}
