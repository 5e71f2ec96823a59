// Semantic comparison of a wanted EMQX config fragment with what the API returns. EMQX fills in
// defaults on read (headers, ssl options, timeouts), redacts secrets as "******" and may print a
// duration or size differently than it was written, so a plain deep-equal would report changes
// on every run. The rule: every key we set must be present with an equivalent value; keys EMQX
// adds are ignored.
import { parseByteSize, parseDuration, parseRate } from './emqx-values.js';

/** Arrays EMQX treats as sets (order is irrelevant). Every other array is compared in order. */
const SET_LIKE_KEYS = new Set(['excludes', 'versions', 'ciphers']);
/** Maps whose keys are case-insensitive (HTTP header names). */
const CASE_INSENSITIVE_MAP_KEYS = new Set(['headers']);
const REDACTED = '******';

/**
 * Paths (dot-separated) where `actual` differs from `desired`; empty when `actual` already
 * satisfies everything `desired` asks for.
 */
export function differences(desired: unknown, actual: unknown, path = ''): string[] {
  if (desired === undefined) return [];
  if (actual === REDACTED && typeof desired === 'string') return [];
  if (Array.isArray(desired)) {
    if (!Array.isArray(actual) || actual.length !== desired.length) return [path || '.'];
    const key = lastKey(path);
    if (SET_LIKE_KEYS.has(key)) {
      const wanted = desired.map((item) => canonical(item)).sort();
      const have = actual.map((item) => canonical(item)).sort();
      return wanted.every((item, index) => item === have[index]) ? [] : [path];
    }
    return desired.flatMap((item, index) => differences(item, actual[index], `${path}[${index}]`));
  }
  if (isPlainObject(desired)) {
    if (!isPlainObject(actual)) return [path || '.'];
    const caseInsensitive = CASE_INSENSITIVE_MAP_KEYS.has(lastKey(path));
    const actualMap = caseInsensitive ? lowerCaseKeys(actual) : actual;
    const result: string[] = [];
    for (const [key, value] of Object.entries(desired)) {
      const lookup = caseInsensitive ? key.toLowerCase() : key;
      result.push(...differences(value, actualMap[lookup], path ? `${path}.${key}` : key));
    }
    return result;
  }
  return scalarsEquivalent(desired, actual, lastKey(path)) ? [] : [path || '.'];
}

export function isSatisfied(desired: unknown, actual: unknown): boolean {
  return differences(desired, actual).length === 0;
}

function scalarsEquivalent(desired: unknown, actual: unknown, key: string): boolean {
  if (desired === actual) return true;
  if (typeof desired === 'string' && typeof actual === 'string') {
    if (key === 'rules') return normaliseAclText(desired) === normaliseAclText(actual);
    if (desired.toLowerCase() === 'infinity' || actual.toLowerCase() === 'infinity') {
      return desired.toLowerCase() === actual.toLowerCase();
    }
    return sameParsed(parseDuration, desired, actual) || sameParsed(parseByteSize, desired, actual) || sameParsed(parseRate, desired, actual);
  }
  if (typeof desired === 'number' && typeof actual === 'string') return sameParsed(parseDuration, desired, actual) && /[a-z]/i.test(actual);
  if (typeof desired === 'string' && typeof actual === 'number') return sameParsed(parseDuration, desired, actual) && /[a-z]/i.test(desired);
  return false;
}

function sameParsed(parse: (value: unknown) => number | undefined, a: unknown, b: unknown): boolean {
  const left = parse(a);
  const right = parse(b);
  return left !== undefined && right !== undefined && left === right;
}

/** acl.conf text compared line by line, ignoring trailing spaces, blank lines and `%` comments. */
export function normaliseAclText(text: string): string {
  return text
    .split(/\r?\n/)
    .map((line) => line.replace(/^\s*%.*$/, '').trimEnd())
    .filter((line) => line.trim() !== '')
    .join('\n');
}

function canonical(value: unknown): string {
  if (isPlainObject(value)) {
    const sorted = Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonical(value[key])}`);
    return `{${sorted.join(',')}}`;
  }
  if (Array.isArray(value)) return `[${value.map((item) => canonical(item)).join(',')}]`;
  return JSON.stringify(value);
}

function lowerCaseKeys(map: Record<string, unknown>): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(map)) result[key.toLowerCase()] = value;
  return result;
}

function lastKey(path: string): string {
  const withoutIndex = path.replace(/\[\d+\]$/, '');
  const dot = withoutIndex.lastIndexOf('.');
  return dot === -1 ? withoutIndex : withoutIndex.slice(dot + 1);
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
