/**
 * Field coercion with pydantic v2 "lax mode" rules and messages, for the value kinds a
 * parsed YAML (or JSON) document holds: string, boolean, number, bigint (huge YAML ints),
 * PyFloat (integral YAML floats), ConfigDateTime (YAML timestamps), Date, null, arrays and
 * plain objects.
 */
import { ConfigDateTime, dateTimeFromTimestamp, parseConfigDateTimeText } from './datetime.js';
import { PyFloat } from './python-json.js';

export type Coerced<T> = { ok: true; value: T } | { ok: false; errors: string[] };

const ok = <T>(value: T): Coerced<T> => ({ ok: true, value });
const fail = <T>(...errors: string[]): Coerced<T> => ({ ok: false, errors });

export const MSG = {
  required: 'Field required',
  int: 'Input should be a valid integer',
  intParse: 'Input should be a valid integer, unable to parse string as an integer',
  intFraction: 'Input should be a valid integer, got a number with a fractional part',
  intTooBig: 'Unable to parse input string as an integer, exceeded maximum size',
  /** Ours: JS numbers are exact only up to 2^53 (pydantic accepts any Python int). */
  intUnsafe: `Input should be an integer between ${Number.MIN_SAFE_INTEGER} and ${Number.MAX_SAFE_INTEGER}`,
  finite: 'Input should be a finite number',
  number: 'Input should be a valid number',
  numberParse: 'Input should be a valid number, unable to parse string as a number',
  bool: 'Input should be a valid boolean',
  boolInterpret: 'Input should be a valid boolean, unable to interpret input',
  string: 'Input should be a valid string',
  list: 'Input should be a valid list',
  datetime: 'Input should be a valid datetime',
  model: (name: string) => `Input should be a valid dictionary or instance of ${name}`,
  enum: (values: readonly string[]) => {
    const quoted = values.map((v) => `'${v}'`);
    return `Input should be ${quoted.length > 1 ? `${quoted.slice(0, -1).join(', ')} or ${quoted[quoted.length - 1]}` : quoted[0]}`;
  },
  ge: (n: number) => `Input should be greater than or equal to ${n}`,
  le: (n: number) => `Input should be less than or equal to ${n}`,
} as const;

/** A number-like input, classified as Python would see it. */
type NumberLike = { kind: 'int'; value: number | bigint } | { kind: 'float'; value: number };

function numberLike(v: unknown): NumberLike | null {
  if (typeof v === 'bigint') return { kind: 'int', value: v };
  if (v instanceof PyFloat) return { kind: 'float', value: v.value };
  if (typeof v === 'number') return Number.isInteger(v) ? { kind: 'int', value: v } : { kind: 'float', value: v };
  return null;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function safeInt(value: number | bigint): Coerced<number> {
  if (typeof value === 'bigint') {
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? ok(Number(value)) : fail(MSG.intUnsafe);
  }
  return Number.isSafeInteger(value) ? ok(value === 0 ? 0 : value) : fail(MSG.intUnsafe);
}

const INT_TEXT = /^[+-]?[0-9](?:_?[0-9])*(?:\.0+)?$/;
const FLOAT_TEXT = /^[+-]?(?:[0-9](?:_?[0-9])*(?:\.(?:[0-9](?:_?[0-9])*)?)?|\.[0-9](?:_?[0-9])*)(?:[eE][+-]?[0-9](?:_?[0-9])*)?$/;
const FLOAT_SPECIAL = /^[+-]?(?:inf|infinity|nan)$/i;
const I64_LIMIT = 2 ** 63;

/** pydantic `int` (lax), keeping integers beyond 2^53 exact as bigint. */
export function coerceIntExact(v: unknown): Coerced<number | bigint> {
  if (typeof v === 'boolean') return ok(v ? 1 : 0);
  const n = numberLike(v);
  if (n) {
    if (n.kind === 'int') return ok(n.value);
    if (!Number.isFinite(n.value)) return fail(MSG.finite);
    if (!Number.isInteger(n.value)) return fail(MSG.intFraction);
    if (Math.abs(n.value) >= I64_LIMIT) return fail(MSG.intTooBig);
    return ok(n.value);
  }
  if (typeof v === 'string') {
    const s = v.trim();
    if (!INT_TEXT.test(s)) return fail(MSG.intParse);
    const exact = BigInt(s.replace(/_/g, '').replace(/\.0+$/, ''));
    return ok(exact >= BigInt(Number.MIN_SAFE_INTEGER) && exact <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(exact) : exact);
  }
  return fail(MSG.int);
}

/** pydantic `int` (lax) for a JS number field: integers beyond 2^53 are refused (ours). */
export function coerceInt(v: unknown): Coerced<number> {
  const r = coerceIntExact(v);
  return r.ok ? safeInt(r.value) : r;
}

/** `int = Field(ge=min, le=max)`: bounds are checked on the exact value first, as pydantic. */
export function coerceBoundedInt(v: unknown, min: number | null, max: number | null): Coerced<number> {
  const r = coerceIntExact(v);
  if (!r.ok) return r;
  if (min !== null && r.value < min) return fail(MSG.ge(min));
  if (max !== null && r.value > max) return fail(MSG.le(max));
  return safeInt(r.value);
}

/** pydantic `float` (lax). Non-finite values are allowed here; callers decide. */
export function coerceFloat(v: unknown): Coerced<number> {
  if (typeof v === 'boolean') return ok(v ? 1 : 0);
  const n = numberLike(v);
  if (n) return ok(Number(n.value));
  if (typeof v === 'string') {
    const s = v.trim();
    if (FLOAT_SPECIAL.test(s)) {
      const lower = s.toLowerCase();
      if (lower.endsWith('nan')) return ok(NaN);
      return ok(lower.startsWith('-') ? -Infinity : Infinity);
    }
    if (!FLOAT_TEXT.test(s)) return fail(MSG.numberParse);
    return ok(Number(s.replace(/_/g, '')));
  }
  return fail(MSG.number);
}

const TRUE_TEXT = new Set(['1', 'on', 't', 'true', 'y', 'yes']);
const FALSE_TEXT = new Set(['0', 'off', 'f', 'false', 'n', 'no']);

/** pydantic `bool` (lax). */
export function coerceBool(v: unknown): Coerced<boolean> {
  if (typeof v === 'boolean') return ok(v);
  const n = numberLike(v);
  if (n) {
    const value = Number(n.value);
    if (value === 0) return ok(false);
    if (value === 1) return ok(true);
    // pydantic tries ints that fit in 64 bits ("unable to interpret"); anything else is not a bool at all.
    if (Number.isInteger(value) && Math.abs(value) < I64_LIMIT) return fail(MSG.boolInterpret);
    return fail(MSG.bool);
  }
  if (typeof v === 'string') {
    const s = v.toLowerCase();
    if (TRUE_TEXT.has(s)) return ok(true);
    if (FALSE_TEXT.has(s)) return ok(false);
    return fail(MSG.boolInterpret);
  }
  return fail(MSG.bool);
}

/** A str-valued Enum: the input must be exactly one of the values. */
export function coerceEnum<T extends string>(v: unknown, values: readonly T[]): Coerced<T> {
  if (typeof v === 'string' && (values as readonly string[]).includes(v)) return ok(v as T);
  return fail(MSG.enum(values));
}

/** pydantic `str` (lax: only text). */
export function coerceString(v: unknown): Coerced<string> {
  return typeof v === 'string' ? ok(v) : fail(MSG.string);
}

/** pydantic `datetime` (lax); also JS Date and YAML timestamps. */
export function coerceDateTime(v: unknown): Coerced<ConfigDateTime> {
  if (v instanceof ConfigDateTime) return ok(v);
  if (v instanceof Date) {
    const dt = ConfigDateTime.fromDate(v);
    return dt ? ok(dt) : fail(MSG.datetime);
  }
  if (typeof v === 'string') {
    const r = parseConfigDateTimeText(v);
    return r.ok ? ok(r.value) : fail(r.message);
  }
  const n = numberLike(v);
  if (n) {
    const r = dateTimeFromTimestamp(Number(n.value));
    return r.ok ? ok(r.value) : fail(r.message);
  }
  return fail(MSG.datetime);
}

/** One element of `list[Union[str, int, float]]` (pydantic smart union). */
export type UnionMember = { kind: 'str'; value: string } | { kind: 'int'; value: number } | { kind: 'float'; value: number };

export function coerceStrIntFloat(v: unknown): Coerced<UnionMember> {
  if (typeof v === 'string') return ok({ kind: 'str', value: v });
  if (typeof v === 'boolean') return ok({ kind: 'int', value: v ? 1 : 0 });
  const n = numberLike(v);
  if (n) {
    if (n.kind === 'int') {
      const i = safeInt(n.value);
      return i.ok ? ok({ kind: 'int', value: i.value }) : fail(...i.errors);
    }
    // Ours: Python would store NaN/Infinity tokens that are not JSON (§8).
    if (!Number.isFinite(n.value)) return fail(MSG.finite);
    return ok({ kind: 'float', value: n.value });
  }
  return fail(MSG.string, MSG.int, MSG.number);
}
