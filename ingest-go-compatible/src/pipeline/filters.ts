/**
 * Filters (§3.3), in the reference order; the first failing one drops the message:
 * white/black list, threshold, rate, size, uniqueness. They run on the raw value (the
 * payload text, or the value `data_source` selected), before transformations.
 *
 * As in the reference: list membership matches string entries textually and numeric entries
 * by Go float64 equality; a WhiteList with no values drops everything; thresholds apply
 * whatever `type_input_value` says and are skipped for values that are not numbers; the rate
 * counts from the last *accepted* message. Uniqueness compares with the last accepted raw
 * value (see node-state.ts for why that differs from the reference).
 */
import type { FilterTypeValueFiltering, FilterTypeValueThreshold, FiltersConfig } from '@pepeunit/common/datapipe/index';
import { parseGoFloat } from './go-number.js';
import type { NodeState } from './node-state.js';

export interface CompiledFilters {
  listMode: FilterTypeValueFiltering | null;
  /** String entries of `filtering_values`. */
  textValues: ReadonlySet<string>;
  /** Numeric entries of `filtering_values` (finite; 0 and -0 are equal, as in Go). */
  numberValues: ReadonlySet<number>;
  threshold: { type: FilterTypeValueThreshold; min: number | null; max: number | null } | null;
  /** 0 = unlimited. */
  maxRateMs: number;
  /** Bytes; 0 = unlimited. */
  maxSize: number;
  lastUniqueCheck: boolean;
}

export type FilterDropReason = 'filter_list' | 'filter_threshold' | 'filter_rate' | 'filter_size' | 'filter_unique';

export function compileFilters(config: FiltersConfig): CompiledFilters {
  const textValues = new Set<string>();
  const numberValues = new Set<number>();
  for (const v of config.filtering_values ?? []) {
    if (typeof v === 'string') textValues.add(v);
    else if (Number.isFinite(v)) numberValues.add(v);
  }
  return {
    listMode: config.type_value_filtering,
    textValues,
    numberValues,
    threshold: config.type_value_threshold
      ? { type: config.type_value_threshold, min: config.threshold_min, max: config.threshold_max }
      : null,
    maxRateMs: config.max_rate * 1000,
    maxSize: config.max_size,
    lastUniqueCheck: config.last_unique_check,
  };
}

function isInList(filters: CompiledFilters, value: string): boolean {
  if (filters.textValues.has(value)) return true;
  if (filters.numberValues.size === 0) return false;
  const n = parseGoFloat(value);
  return n !== null && filters.numberValues.has(n);
}

function failsThreshold(threshold: NonNullable<CompiledFilters['threshold']>, value: string): boolean {
  const n = parseGoFloat(value);
  if (n === null) return false;
  const belowMin = threshold.min !== null && n < threshold.min;
  const aboveMax = threshold.max !== null && n > threshold.max;
  switch (threshold.type) {
    case 'Min':
      return belowMin;
    case 'Max':
      return aboveMax;
    case 'Range':
      return belowMin || aboveMax;
    default:
      return false;
  }
}

/**
 * Returns why the value is dropped, or null when it passes.
 * `valueBytes` is the UTF-8 length of `value` (the caller usually knows it already).
 */
export function applyFilters(
  filters: CompiledFilters,
  value: string,
  valueBytes: number,
  state: NodeState,
  nowMs: number,
): FilterDropReason | null {
  if (filters.listMode !== null) {
    const inList = isInList(filters, value);
    if (filters.listMode === 'WhiteList' ? !inList : inList) return 'filter_list';
  }
  if (filters.threshold !== null && failsThreshold(filters.threshold, value)) return 'filter_threshold';
  if (filters.maxRateMs > 0 && state.lastAcceptedAtMs !== null && nowMs - state.lastAcceptedAtMs < filters.maxRateMs) {
    return 'filter_rate';
  }
  if (filters.maxSize > 0 && valueBytes > filters.maxSize) return 'filter_size';
  if (filters.lastUniqueCheck && state.lastAcceptedRaw !== null && value === state.lastAcceptedRaw) return 'filter_unique';
  return null;
}
