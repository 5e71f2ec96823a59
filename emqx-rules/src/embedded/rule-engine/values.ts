// Runtime values of the rule SQL: what EMQX's Erlang terms become here. Binaries are strings,
// `undefined` is a missing value, JSON objects/arrays are maps/lists.

export type Value = string | number | boolean | null | undefined | Value[] | { [key: string]: Value };

/** A rule evaluation error (EMQX: the rule fails for this message, `failed.exception`). */
export class RuleRuntimeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RuleRuntimeError';
  }
}

export function isObject(value: unknown): value is { [key: string]: Value } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** JSON text of a value (`undefined` becomes null, as EMQX encodes the atom). */
export function encodeJson(value: Value): string {
  return JSON.stringify(value, (_key, item: unknown) => (item === undefined ? null : item)) ?? 'null';
}

/** How EMQX templates and `str()` print a value: strings as is, maps/lists as JSON. */
export function toText(value: Value): string {
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return encodeJson(value);
}
