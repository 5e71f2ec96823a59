// The built-in SQL functions the embedded engine runs: a small, commonly used subset of
// `emqx_rule_funcs.erl` (reference/emqx-5.md §3.7). A rule naming any other function is refused
// at creation with a 400, so a rule that works here never silently does something else than on
// EMQX. A function error makes the rule fail for that message (`failed.exception`), as in EMQX.
import { createHash } from 'node:crypto';
import { RuleRuntimeError, encodeJson, isObject, toText } from './values.js';
import type { Value } from './values.js';

type SqlFunction = (args: Value[]) => Value;

function arity(name: string, args: Value[], ...allowed: number[]): void {
  if (!allowed.includes(args.length)) throw new RuleRuntimeError(`bad_sql_function_argument: ${name}/${args.length}`);
}

function str(name: string, value: Value): string {
  if (typeof value !== 'string') throw new RuleRuntimeError(`bad_sql_function_argument: ${name} expects a string`);
  return value;
}

function num(name: string, value: Value): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) return Number(value);
  throw new RuleRuntimeError(`bad_sql_function_argument: ${name} expects a number`);
}

const FUNCTIONS: Record<string, SqlFunction> = {
  // strings
  lower: (args) => (arity('lower', args, 1), str('lower', args[0]).toLowerCase()),
  upper: (args) => (arity('upper', args, 1), str('upper', args[0]).toUpperCase()),
  trim: (args) => (arity('trim', args, 1), str('trim', args[0]).trim()),
  ltrim: (args) => (arity('ltrim', args, 1), str('ltrim', args[0]).trimStart()),
  rtrim: (args) => (arity('rtrim', args, 1), str('rtrim', args[0]).trimEnd()),
  strlen: (args) => (arity('strlen', args, 1), [...str('strlen', args[0])].length),
  concat: (args) => (arity('concat', args, 2), toText(args[0]) + toText(args[1])),
  substr: (args) => {
    arity('substr', args, 2, 3);
    const chars = [...str('substr', args[0])];
    const start = num('substr', args[1] ?? 0);
    const length = args.length === 3 ? num('substr', args[2]) : undefined;
    return chars.slice(start, length === undefined ? undefined : start + length).join('');
  },
  replace: (args) => (arity('replace', args, 3), str('replace', args[0]).split(str('replace', args[1])).join(str('replace', args[2]))),
  regex_match: (args) => {
    arity('regex_match', args, 2);
    try {
      return new RegExp(str('regex_match', args[1])).test(str('regex_match', args[0]));
    } catch (error) {
      if (error instanceof RuleRuntimeError) throw error;
      throw new RuleRuntimeError('bad_sql_function_argument: regex_match: invalid regular expression');
    }
  },
  // conversions and type tests
  str: (args) => (arity('str', args, 1), toText(args[0])),
  int: (args) => {
    arity('int', args, 1);
    const value = args[0];
    if (typeof value === 'boolean') return value ? 1 : 0;
    return Math.trunc(num('int', value));
  },
  float: (args) => (arity('float', args, 1, 2), args.length === 2 ? Number(num('float', args[0]).toFixed(num('float', args[1]))) : num('float', args[0])),
  bool: (args) => {
    arity('bool', args, 1);
    const value = args[0];
    if (value === true || value === 'true' || value === 1) return true;
    if (value === false || value === 'false' || value === 0) return false;
    throw new RuleRuntimeError('bad_sql_function_argument: bool');
  },
  abs: (args) => (arity('abs', args, 1), Math.abs(num('abs', args[0]))),
  round: (args) => (arity('round', args, 1), Math.round(num('round', args[0]))),
  ceil: (args) => (arity('ceil', args, 1), Math.ceil(num('ceil', args[0]))),
  floor: (args) => (arity('floor', args, 1), Math.floor(num('floor', args[0]))),
  is_null: (args) => (arity('is_null', args, 1), args[0] === undefined || args[0] === null),
  is_not_null: (args) => (arity('is_not_null', args, 1), !(args[0] === undefined || args[0] === null)),
  is_num: (args) => (arity('is_num', args, 1), typeof args[0] === 'number'),
  is_int: (args) => (arity('is_int', args, 1), typeof args[0] === 'number' && Number.isInteger(args[0])),
  is_float: (args) => (arity('is_float', args, 1), typeof args[0] === 'number' && !Number.isInteger(args[0])),
  is_str: (args) => (arity('is_str', args, 1), typeof args[0] === 'string'),
  is_bool: (args) => (arity('is_bool', args, 1), typeof args[0] === 'boolean'),
  is_map: (args) => (arity('is_map', args, 1), isObject(args[0])),
  is_array: (args) => (arity('is_array', args, 1), Array.isArray(args[0])),
  coalesce: (args) => (arity('coalesce', args, 2), args[0] === undefined || args[0] === null ? args[1] : args[0]),
  // JSON and maps
  json_encode: (args) => (arity('json_encode', args, 1), encodeJson(args[0])),
  json_decode: (args) => {
    arity('json_decode', args, 1);
    try {
      return JSON.parse(str('json_decode', args[0])) as Value;
    } catch (error) {
      if (error instanceof RuleRuntimeError) throw error;
      throw new RuleRuntimeError('decode_json_failed');
    }
  },
  map_get: (args) => {
    arity('map_get', args, 2, 3);
    const map = args[1];
    if (!isObject(map)) throw new RuleRuntimeError('bad_sql_function_argument: map_get expects a map');
    const value = map[toText(args[0])];
    return value === undefined ? args[2] : value;
  },
  contains: (args) => {
    arity('contains', args, 2);
    const list = args[1];
    if (!Array.isArray(list)) throw new RuleRuntimeError('bad_sql_function_argument: contains expects a list');
    return list.some((item) => encodeJson(item) === encodeJson(args[0]));
  },
  nth: (args) => {
    arity('nth', args, 2);
    const list = args[1];
    const index = args[0];
    if (!Array.isArray(list) || typeof index !== 'number' || !Number.isInteger(index) || index < 1 || index > list.length) {
      throw new RuleRuntimeError('bad_sql_function_argument: nth(N, List) needs 1 <= N <= length(List)');
    }
    return list[index - 1];
  },
  split: (args) => {
    arity('split', args, 2, 3);
    return splitText(str('split', args[0]), str('split', args[1]), args.length === 3 ? str('split', args[2]) : undefined);
  },
  length: (args) => {
    arity('length', args, 1);
    if (!Array.isArray(args[0])) throw new RuleRuntimeError('bad_sql_function_argument: length expects a list');
    return args[0].length;
  },
  // time and hashes
  now_timestamp: (args) => {
    arity('now_timestamp', args, 0, 1);
    const unit = args.length === 0 ? 'second' : str('now_timestamp', args[0]);
    const now = Date.now();
    if (unit === 'second') return Math.floor(now / 1000);
    if (unit === 'millisecond') return now;
    if (unit === 'microsecond') return now * 1000;
    if (unit === 'nanosecond') return now * 1_000_000;
    throw new RuleRuntimeError('bad_sql_function_argument: now_timestamp unit');
  },
  md5: (args) => (arity('md5', args, 1), createHash('md5').update(str('md5', args[0])).digest('hex')),
  sha256: (args) => (arity('sha256', args, 1), createHash('sha256').update(str('sha256', args[0])).digest('hex')),
};

/**
 * `split(S, P[, Mode])` of emqx_rule_funcs: all occurrences (default) or only the first
 * (`leading`) / last (`trailing`) one; empty parts are dropped unless the mode ends in `notrim`
 * (`notrim` alone keeps them and splits at every occurrence).
 */
const SPLIT_MODES: Readonly<Record<string, { at: 'all' | 'leading' | 'trailing'; keepEmpty: boolean }>> = {
  notrim: { at: 'all', keepEmpty: true },
  leading: { at: 'leading', keepEmpty: false },
  leading_notrim: { at: 'leading', keepEmpty: true },
  trailing: { at: 'trailing', keepEmpty: false },
  trailing_notrim: { at: 'trailing', keepEmpty: true },
};

function splitText(text: string, separator: string, mode: string | undefined): string[] {
  const chosen = mode === undefined ? { at: 'all' as const, keepEmpty: false } : SPLIT_MODES[mode];
  if (!chosen) throw new RuleRuntimeError(`bad_sql_function_argument: split mode ${JSON.stringify(mode)}`);
  let parts: string[];
  if (separator === '') parts = [text];
  else if (chosen.at === 'all') parts = text.split(separator);
  else {
    const position = chosen.at === 'leading' ? text.indexOf(separator) : text.lastIndexOf(separator);
    parts = position === -1 ? [text] : [text.slice(0, position), text.slice(position + separator.length)];
  }
  return chosen.keepEmpty ? parts : parts.filter((part) => part !== '');
}

export function isSupportedFunction(name: string): boolean {
  return Object.hasOwn(FUNCTIONS, name);
}

export function supportedFunctions(): string[] {
  return Object.keys(FUNCTIONS).sort();
}

export function callFunction(name: string, args: Value[]): Value {
  const fn = FUNCTIONS[name];
  if (!fn) throw new RuleRuntimeError(`undefined function ${name}`);
  return fn(args);
}
