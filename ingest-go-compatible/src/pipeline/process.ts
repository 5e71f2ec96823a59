/**
 * One message through one node's pipeline, in the reference order (§3.1):
 * active period -> (UTF-8 check) -> (data_source selection) -> filters -> transformations
 * -> policy preconditions. Pure: no I/O, no clock; the caller passes the receive time and
 * the node's state, and on `accept` the state records the message (as the reference
 * updates it after a successful hand-over to the buffer).
 *
 * Decisions beyond the reference:
 * - `invalid_utf8`: payloads that are not UTF-8 are dropped. The reference took bytes as a
 *   string unchecked; such a value poisoned the whole LastValue batch in Postgres (§8.1.5).
 * - `nul_in_text`: LastValue values containing U+0000 are dropped (Postgres text cannot hold
 *   them; same poison-batch bug). ClickHouse policies keep them.
 * - `not_numeric`: Aggregation needs a finite number (Go ParseFloat syntax). Like the
 *   reference, text and non-numbers are dropped; unlike it, `nan`/`inf` are dropped too, so
 *   one bad reading cannot turn a whole window's Avg/Sum into NaN.
 * - Uniqueness compares raw values (see node-state.ts).
 */
import { Buffer, isUtf8 } from 'node:buffer';
import { ProcessingPolicyType, TypeInputValue } from '@pepeunit/common/datapipe/index';
import { isActive } from './active-period.js';
import type { CompiledNodeConfig } from './compile.js';
import { applyFilters, type FilterDropReason } from './filters.js';
import { parseGoFloat } from './go-number.js';
import { extractJsonValue } from './json-extract.js';
import type { NodeState } from './node-state.js';
import { applyTransformations } from './transformations.js';

export const DROP_REASONS = [
  'inactive_period',
  'invalid_utf8',
  'json_invalid',
  'json_path_missing',
  'filter_list',
  'filter_threshold',
  'filter_rate',
  'filter_size',
  'filter_unique',
  'not_numeric',
  'nul_in_text',
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

// Compile-time check that every filter reason is a drop reason.
const filterReasonIsDropReason = (r: FilterDropReason): DropReason => r;
void filterReasonIsDropReason;

export type ProcessResult =
  | {
      kind: 'accept';
      /** The value to store (after transformations). */
      value: string;
      /** The value as a Go float64 when it parses (always set for Aggregation), else null. */
      numeric: number | null;
    }
  | { kind: 'drop'; reason: DropReason };

const drop = (reason: DropReason): ProcessResult => ({ kind: 'drop', reason });

export function processMessage(compiled: CompiledNodeConfig, nodeState: NodeState, payload: Uint8Array, nowMs: number): ProcessResult {
  if (!isActive(compiled.activePeriod, nowMs)) return drop('inactive_period');
  if (!isUtf8(payload)) return drop('invalid_utf8');
  const bytes = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  let raw = bytes.toString('utf8');
  let rawBytes = bytes.length;
  if (compiled.jsonPath !== null) {
    const selected = extractJsonValue(raw, compiled.jsonPath);
    if (!selected.ok) return drop(selected.reason);
    raw = selected.value;
    rawBytes = Buffer.byteLength(raw, 'utf8');
  }

  const filtered = applyFilters(compiled.filters, raw, rawBytes, nodeState, nowMs);
  if (filtered !== null) return drop(filtered);

  const value = applyTransformations(compiled.transformations, compiled.inputType, raw);
  let numeric: number | null = null;
  if (compiled.policy.type === ProcessingPolicyType.Aggregation) {
    numeric = parseGoFloat(value);
    if (numeric === null || !Number.isFinite(numeric)) return drop('not_numeric');
  } else if (compiled.inputType === TypeInputValue.Number) {
    numeric = parseGoFloat(value);
  }
  if (compiled.policy.type === ProcessingPolicyType.LastValue && value.includes('\u0000')) return drop('nul_in_text');

  nodeState.lastAcceptedAtMs = nowMs;
  nodeState.lastAcceptedRaw = raw;
  return { kind: 'accept', value, numeric };
}
