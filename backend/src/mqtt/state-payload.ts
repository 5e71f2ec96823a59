/**
 * The `state` system topic payload (reference pepeunit-backend.md §2.3): only the reserved keys
 * are kept, normalised, and stored as JSON text in `units.unit_state_dict`.
 *
 * The stored text is written the way the reference (Python `json.dumps`) writes it — `", "` and
 * `": "` separators, numbers of the float fields with a fractional part (`595925249.0`) — so
 * tools that read the column keep seeing the same text.
 */

/** Reserved state keys in the reference order (§1.2 ReservedStateKey). */
export const RESERVED_STATE_KEYS = ['ifconfig', 'millis', 'mem_free', 'mem_alloc', 'freq', 'statvfs', 'pu_commit_version'] as const;

export interface UnitState {
  ifconfig: unknown[];
  millis: number | null;
  mem_free: number | null;
  mem_alloc: number | null;
  freq: number | null;
  statvfs: unknown[];
  pu_commit_version: string | null;
}

const FLOAT_KEYS = new Set(['millis', 'mem_free', 'mem_alloc', 'freq']);

function asFloat(value: unknown): number | null {
  // JSON booleans are not numbers here (Python would coerce True to 1.0; a device never means that).
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/**
 * Keeps the 7 reserved keys of a parsed state object: numbers stay numbers (stored as floats),
 * wrong-typed values become `[]` for the list fields (`ifconfig`, `statvfs`) or `null` for the
 * others, missing keys get those defaults. Unknown keys are dropped.
 */
export function normalizeState(input: Record<string, unknown>): UnitState {
  return {
    ifconfig: Array.isArray(input.ifconfig) ? input.ifconfig : [],
    millis: asFloat(input.millis),
    mem_free: asFloat(input.mem_free),
    mem_alloc: asFloat(input.mem_alloc),
    freq: asFloat(input.freq),
    statvfs: Array.isArray(input.statvfs) ? input.statvfs : [],
    pu_commit_version: typeof input.pu_commit_version === 'string' ? input.pu_commit_version : null,
  };
}

/** Python's `repr(float)` for finite numbers: `1.0`, `0.5`, `1e+16`, `1e-05`. */
export function pythonFloat(value: number): string {
  if (Object.is(value, -0)) return '-0.0';
  if (value === 0) return '0.0';
  const magnitude = Math.abs(value);
  if (magnitude >= 1e16 || magnitude < 1e-4) {
    // Python pads the exponent to two digits; JS does not.
    return value.toExponential().replace(/e([+-])(\d)$/, 'e$10$2');
  }
  const text = String(value);
  return Number.isInteger(value) ? `${text}.0` : text;
}

/** `json.dumps` with default separators (`, ` and `: `); numbers as JSON.stringify writes them. */
function pythonJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(', ')}]`;
  if (typeof value === 'object') {
    return `{${Object.entries(value as Record<string, unknown>)
      .map(([k, v]) => `${asciiJsonString(k)}: ${pythonJson(v)}`)
      .join(', ')}}`;
  }
  if (typeof value === 'string') return asciiJsonString(value);
  return JSON.stringify(value) ?? 'null';
}

/** JSON string with non-ASCII escaped as `\uXXXX` (Python's default `ensure_ascii=True`). */
function asciiJsonString(text: string): string {
  return JSON.stringify(text).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The `units.unit_state_dict` text of a normalised state, byte-compatible with the reference. */
export function serializeState(state: UnitState): string {
  const parts: string[] = [];
  for (const key of RESERVED_STATE_KEYS) {
    const value = state[key];
    const text = FLOAT_KEYS.has(key) && typeof value === 'number' ? pythonFloat(value) : pythonJson(value);
    parts.push(`"${key}": ${text}`);
  }
  return `{${parts.join(', ')}}`;
}
