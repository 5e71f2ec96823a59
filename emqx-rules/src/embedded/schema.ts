// A small schema checker for the embedded broker's API bodies, mirroring what EMQX's HOCON schema
// check does for the fields we serve: type checks, enums, required fields, unknown fields, and
// defaults filled in (EMQX returns configs with defaults on read).
import { parseByteSize, parseDuration, parseRate } from '../emqx-values.js';
import { validationError } from './api-error.js';

export type FieldSpec =
  | { type: 'string'; required?: boolean; default?: string; enum?: readonly string[]; check?: (value: string) => string | undefined }
  | { type: 'boolean'; required?: boolean; default?: boolean }
  | { type: 'integer'; required?: boolean; default?: number | 'infinity'; min?: number; max?: number; infinity?: boolean }
  | { type: 'number'; required?: boolean; default?: number; min?: number }
  | { type: 'duration'; required?: boolean; default?: string; infinity?: boolean; disabled?: boolean }
  | { type: 'bytesize'; required?: boolean; default?: string }
  | { type: 'rate'; required?: boolean; default?: string }
  | { type: 'string_map'; required?: boolean; default?: Record<string, string> }
  | { type: 'string_array'; required?: boolean; default?: string[]; check?: (value: string) => string | undefined }
  | { type: 'object'; required?: boolean; default?: Record<string, unknown>; fields?: Record<string, FieldSpec>; open?: boolean }
  | { type: 'union_bool'; required?: boolean; default?: boolean | string; values: readonly string[] }
  | { type: 'any'; required?: boolean; default?: unknown };

export type ObjectSpec = Record<string, FieldSpec>;

const clone = <T>(value: T): T => (value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T));

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkField(spec: FieldSpec, value: unknown, path: string): unknown {
  const fail = (reason: string, extra: Record<string, unknown> = {}): never => {
    throw validationError(path, reason, { value, ...extra });
  };
  switch (spec.type) {
    case 'string': {
      if (typeof value !== 'string') return fail('not a string');
      if (spec.enum && !spec.enum.includes(value)) return fail('unable_to_convert_to_enum_symbol', { expected: spec.enum.join(' | ') });
      const problem = spec.check?.(value);
      if (problem) return fail(problem);
      return value;
    }
    case 'boolean':
      if (typeof value !== 'boolean') return fail('not a boolean');
      return value;
    case 'union_bool':
      if (typeof value === 'boolean' || (typeof value === 'string' && spec.values.includes(value))) return value;
      return fail('not a boolean', { expected: ['true', 'false', ...spec.values].join(' | ') });
    case 'integer': {
      if (spec.infinity && value === 'infinity') return value;
      if (typeof value !== 'number' || !Number.isInteger(value)) return fail('not an integer');
      if (spec.min !== undefined && value < spec.min) return fail(`must be >= ${spec.min}`);
      if (spec.max !== undefined && value > spec.max) return fail(`must be <= ${spec.max}`);
      return value;
    }
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) return fail('not a number');
      if (spec.min !== undefined && value < spec.min) return fail(`must be >= ${spec.min}`);
      return value;
    case 'duration':
      if (spec.infinity && value === 'infinity') return value;
      if (spec.disabled && value === 'disabled') return value;
      if (parseDuration(value) === undefined) return fail('not a duration (e.g. "5s", "10m")');
      return value;
    case 'bytesize':
      if (parseByteSize(value) === undefined) return fail('not a byte size (e.g. "256KB", "1MB")');
      return value;
    case 'rate':
      if (parseRate(value) === undefined) return fail('not a rate (e.g. "30/s", "1MB/s", "infinity")');
      return value;
    case 'string_map': {
      if (!isObject(value)) return fail('not a map');
      for (const [key, inner] of Object.entries(value)) {
        if (typeof inner !== 'string') throw validationError(`${path}.${key}`, 'not a string', { value: inner });
      }
      return { ...value };
    }
    case 'string_array': {
      if (!Array.isArray(value)) return fail('not an array');
      value.forEach((item, index) => {
        if (typeof item !== 'string') throw validationError(`${path}[${index + 1}]`, 'not a string', { value: item });
        const problem = spec.check?.(item);
        if (problem) throw validationError(`${path}[${index + 1}]`, problem, { value: item });
      });
      return [...(value as string[])];
    }
    case 'object':
      if (!isObject(value)) return fail('not an object');
      return spec.fields ? checkObject(spec.fields, value, path, { open: spec.open }) : clone(value);
    case 'any':
      return clone(value);
  }
}

/**
 * Checks `value` against `spec`: every known field type-checked, required ones present,
 * defaults filled in, unknown fields rejected unless `open`.
 */
export function checkObject(spec: ObjectSpec, value: unknown, path: string, options: { open?: boolean; ignore?: readonly string[] } = {}): Record<string, unknown> {
  if (!isObject(value)) throw validationError(path, 'not an object', { value });
  const result: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    if (options.ignore?.includes(key)) continue;
    const field = spec[key];
    if (!field) {
      if (options.open) {
        result[key] = clone(inner);
        continue;
      }
      throw validationError(path, 'unknown_fields', { unknown: key, expected: Object.keys(spec).join(', ') });
    }
    if (inner === null || inner === undefined) continue;
    result[key] = checkField(field, inner, `${path}.${key}`);
  }
  for (const [key, field] of Object.entries(spec)) {
    if (key in result) continue;
    if (field.default !== undefined) {
      result[key] = clone(field.default);
    } else if (field.required) {
      throw validationError(`${path}.${key}`, 'required_field');
    } else if (field.type === 'object' && field.fields) {
      const defaults = checkObject(field.fields, {}, `${path}.${key}`, { open: field.open });
      if (Object.keys(defaults).length > 0) result[key] = defaults;
    }
  }
  return result;
}
