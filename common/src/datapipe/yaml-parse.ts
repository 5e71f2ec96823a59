/**
 * Reads an uploaded DataPipe YAML file into a plain document, as the reference's
 * `yaml.safe_load` (PyYAML, YAML 1.1) would, but safely and with clear errors.
 *
 * - Plain scalars resolve with PyYAML's implicit rules, so a file means the same thing here
 *   as in the reference: `yes`/`on` are booleans (`y` is text), `1e3` is text while
 *   `1.0e+3` is a float, `010` is octal, `1:30` is sexagesimal, `~` is null, and
 *   `2025-01-01T00:00:00Z` is a timestamp (a `ConfigDateTime`).
 * - Integral floats (`1.0`) become `PyFloat` so the stored JSON keeps Python's `1.0`.
 * - Only the standard scalar/collection tags are allowed (no custom or `!!binary`/`!!set`
 *   tags); merge keys `<<` work; aliases are capped; duplicate keys keep the last value
 *   (PyYAML behaviour); the input size is capped.
 * - Problems come back as `{ stage: 'Yaml', message }` with line and column, never thrown.
 */
import { LineCounter, parseDocument, isMap, isSeq, isScalar, visit } from 'yaml';
import type { ScalarTag, Tags } from 'yaml';
import { ConfigDateTime, daysInMonth, utcEpochSeconds } from './datetime.js';
import { PyFloat } from './python-json.js';
import { DataPipeStage, type ValidationEntry } from './types.js';

export const DEFAULT_YAML_MAX_BYTES = 256 * 1024;
export const DEFAULT_YAML_MAX_ALIAS_COUNT = 64;

export interface ParseDataPipeYamlOptions {
  /** Maximum size of the file in bytes (default 256 KiB). */
  maxBytes?: number;
  /** Maximum number of alias nodes resolved (default 64). */
  maxAliasCount?: number;
}

export type ParseDataPipeYamlResult = { ok: true; document: unknown } | { ok: false; error: ValidationEntry };

const STR = 'tag:yaml.org,2002:str';
const NULL = 'tag:yaml.org,2002:null';
const BOOL = 'tag:yaml.org,2002:bool';
const INT = 'tag:yaml.org,2002:int';
const FLOAT = 'tag:yaml.org,2002:float';
const TIMESTAMP = 'tag:yaml.org,2002:timestamp';
const MAP = 'tag:yaml.org,2002:map';
const SEQ = 'tag:yaml.org,2002:seq';
const MERGE = 'tag:yaml.org,2002:merge';
const ALLOWED_TAGS = new Set([STR, NULL, BOOL, INT, FLOAT, TIMESTAMP, MAP, SEQ, MERGE, '!']);

// PyYAML's implicit resolvers (resolver.py), verbatim in meaning.
const BOOL_RE = /^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$/;
const INT_RE = /^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$/;
const FLOAT_RE =
  /^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/;
const NULL_RE = /^(?:~|null|Null|NULL|)$/;
const TIMESTAMP_RE =
  /^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$/;
const TIMESTAMP_PARTS =
  /^([0-9][0-9][0-9][0-9])-([0-9][0-9]?)-([0-9][0-9]?)(?:(?:[Tt]|[ \t]+)([0-9][0-9]?):([0-9][0-9]):([0-9][0-9])(?:\.([0-9]*))?(?:[ \t]*(Z|([-+])([0-9][0-9]?)(?::([0-9][0-9]))?))?)?$/;

function numberOrBigInt(n: bigint): number | bigint {
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}

/** PyYAML `construct_yaml_int`. */
function constructInt(source: string): number | bigint {
  let value = source.replace(/_/g, '');
  let sign = 1n;
  if (value[0] === '-') sign = -1n;
  if (value[0] === '-' || value[0] === '+') value = value.slice(1);
  if (value === '') throw new Error(`invalid integer '${source}'`);
  let result: bigint;
  if (value === '0') result = 0n;
  else if (value.startsWith('0b')) result = BigInt(`0b${value.slice(2)}`);
  else if (value.startsWith('0x')) result = BigInt(`0x${value.slice(2)}`);
  else if (value[0] === '0') result = BigInt(`0o${value.slice(1)}`);
  else if (value.includes(':')) {
    result = 0n;
    for (const part of value.split(':')) result = result * 60n + BigInt(part);
  } else if (/^[0-9]+$/.test(value)) result = BigInt(value);
  else throw new Error(`invalid integer '${source}'`);
  return numberOrBigInt(sign * result);
}

/** PyYAML `construct_yaml_float`. */
function constructFloat(source: string): number | PyFloat {
  let value = source.replace(/_/g, '').toLowerCase();
  let sign = 1;
  if (value[0] === '-') sign = -1;
  if (value[0] === '-' || value[0] === '+') value = value.slice(1);
  let result: number;
  if (value === '.inf') result = Infinity;
  else if (value === '.nan') result = NaN;
  else if (value.includes(':')) {
    result = 0;
    for (const part of value.split(':')) result = result * 60 + Number(part);
  } else if (/^(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[-+]?[0-9]+)?$/.test(value)) result = Number(value);
  else throw new Error(`invalid float '${source}'`);
  if (Number.isNaN(result) && value !== '.nan') throw new Error(`invalid float '${source}'`);
  result *= sign;
  return Number.isFinite(result) && Number.isInteger(result) ? new PyFloat(result) : result;
}

/** PyYAML `construct_yaml_timestamp`; a date alone is midnight (as pydantic reads a date). */
function constructTimestamp(source: string): ConfigDateTime {
  const m = TIMESTAMP_PARTS.exec(source);
  if (!m) throw new Error(`invalid timestamp '${source}'`);
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) {
    throw new Error(`invalid timestamp '${source}': day is out of range for month`);
  }
  const hour = Number(m[4] ?? 0);
  const minute = Number(m[5] ?? 0);
  const second = Number(m[6] ?? 0);
  if (hour > 23 || minute > 59 || second > 59) throw new Error(`invalid timestamp '${source}': time is out of range`);
  const micros = m[7] ? Number(m[7].slice(0, 6).padEnd(6, '0')) : 0;
  let offsetSeconds = 0;
  if (m[9]) {
    offsetSeconds = (m[9] === '-' ? -1 : 1) * (Number(m[10]) * 3600 + Number(m[11] ?? 0) * 60);
    if (Math.abs(offsetSeconds) >= 86400) throw new Error(`invalid timestamp '${source}': offset is out of range`);
  }
  return new ConfigDateTime(utcEpochSeconds(year, month, day, hour, minute, second) - offsetSeconds, micros, offsetSeconds);
}

function constructBool(source: string): boolean {
  const v = source.toLowerCase();
  if (v === 'yes' || v === 'true' || v === 'on') return true;
  if (v === 'no' || v === 'false' || v === 'off') return false;
  throw new Error(`invalid boolean '${source}'`);
}

function scalarTags(): ScalarTag[] {
  const pair = (tag: string, test: RegExp, resolve: (s: string) => unknown): ScalarTag[] => [
    // Implicit resolution of plain scalars.
    { tag, default: true, test, resolve },
    // Explicit `!!tag value`: no test, so it is picked by name for any text.
    { tag, resolve },
  ];
  return [
    ...pair(BOOL, BOOL_RE, constructBool),
    ...pair(FLOAT, FLOAT_RE, constructFloat),
    ...pair(INT, INT_RE, constructInt),
    ...pair(NULL, NULL_RE, () => null),
    ...pair(TIMESTAMP, TIMESTAMP_RE, constructTimestamp),
  ];
}

function customTags(defaults: Tags): Tags {
  const keep = defaults.filter((t) => typeof t !== 'string' && (t.tag === MAP || t.tag === SEQ || t.tag === STR));
  return [...keep, ...scalarTags()];
}

function byteLength(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/**
 * Parses the YAML text of a DataPipe config. Returns the document (any YAML value; the
 * validator reports a non-mapping root) or one `Yaml` stage error with line and column.
 */
export function parseDataPipeYaml(input: string | Uint8Array, opts: ParseDataPipeYamlOptions = {}): ParseDataPipeYamlResult {
  const maxBytes = opts.maxBytes ?? DEFAULT_YAML_MAX_BYTES;
  const maxAliasCount = opts.maxAliasCount ?? DEFAULT_YAML_MAX_ALIAS_COUNT;
  const error = (message: string): ParseDataPipeYamlResult => ({ ok: false, error: { stage: DataPipeStage.Yaml, message } });

  const size = typeof input === 'string' ? byteLength(input) : input.byteLength;
  if (size > maxBytes) return error(`DataPipe config is too large: ${size} bytes (the limit is ${maxBytes} bytes)`);
  let text: string;
  if (typeof input === 'string') text = input;
  else {
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(input);
    } catch {
      return error('DataPipe config is not valid UTF-8 text');
    }
  }

  const lineCounter = new LineCounter();
  const at = (offset: number | undefined): string => {
    if (offset === undefined) return '';
    const { line, col } = lineCounter.linePos(offset);
    return ` at line ${line}, column ${col}`;
  };
  const doc = parseDocument(text, {
    schema: 'core',
    customTags,
    resolveKnownTags: false,
    merge: true,
    uniqueKeys: false,
    prettyErrors: false,
    strict: true,
    // Problems are returned, never printed (a user's file must not reach process warnings).
    logLevel: 'error',
    lineCounter,
  });
  const first = doc.errors[0];
  if (first) return error(`YAML syntax error${at(first.pos[0])}: ${first.message}`);
  const tagProblem = doc.warnings.find((w) => w.code === 'TAG_RESOLVE_FAILED');
  if (tagProblem) return error(`YAML tag error${at(tagProblem.pos[0])}: ${tagProblem.message}`);

  let badTag: { tag: string; offset: number | undefined } | undefined;
  visit(doc, (_key, node) => {
    if ((isScalar(node) || isMap(node) || isSeq(node)) && node.tag && !ALLOWED_TAGS.has(node.tag)) {
      badTag = { tag: node.tag, offset: node.range?.[0] };
      return visit.BREAK;
    }
    return undefined;
  });
  if (badTag) return error(`YAML tag error${at(badTag.offset)}: the tag ${badTag.tag} is not supported`);

  try {
    return { ok: true, document: doc.toJS({ maxAliasCount }) };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return error(`YAML error: ${message}`);
  }
}
