/**
 * `data_source.json_path` (our extension): which value of a JSON payload feeds the pipe.
 *
 * Grammar: segments joined by `.` (object keys) or written as `[N]` (array index) or
 * `["key"]` (any key, JSON string escapes), e.g. `sensors[0].temp`, `a.b`, `[2]`,
 * `["key with.dot"].value`. Bare keys are any characters except `.`, `[`, `]`, quotes,
 * backslash and whitespace.
 */
import { JSON_PATH_MAX_LENGTH, JSON_PATH_MAX_SEGMENTS } from './types.js';

export type JsonPathSegment = { kind: 'key'; key: string } | { kind: 'index'; index: number };

export type JsonPathParseResult = { ok: true; segments: JsonPathSegment[] } | { ok: false; message: string };

const BARE_KEY_CHAR = /[^.[\]"'\\\s]/u;
const MAX_INDEX_DIGITS = 9;

export function parseJsonPath(path: string): JsonPathParseResult {
  if (path.length === 0) return { ok: false, message: 'json_path must not be empty' };
  if (path.length > JSON_PATH_MAX_LENGTH) {
    return { ok: false, message: `json_path is too long: ${path.length} characters (the limit is ${JSON_PATH_MAX_LENGTH})` };
  }
  const segments: JsonPathSegment[] = [];
  let i = 0;
  const invalid = (what: string): JsonPathParseResult => ({ ok: false, message: `json_path is invalid at character ${i + 1}: ${what}` });
  const describe = (c: string | undefined): string => (c === undefined ? 'the end of the path' : `'${c}'`);

  const bareKey = (): string | null => {
    const start = i;
    while (i < path.length && BARE_KEY_CHAR.test(path[i] as string)) i++;
    return i > start ? path.slice(start, i) : null;
  };

  while (i < path.length) {
    const c = path[i];
    if (c === '[') {
      i++;
      if (path[i] === '"') {
        const start = i;
        i++;
        while (i < path.length && path[i] !== '"') i += path[i] === '\\' ? 2 : 1;
        if (i >= path.length) {
          i = start;
          return invalid('unterminated quoted key');
        }
        i++;
        let key: string;
        try {
          key = JSON.parse(path.slice(start, i)) as string;
        } catch {
          i = start;
          return invalid('the quoted key is not a valid JSON string');
        }
        segments.push({ kind: 'key', key });
      } else {
        const start = i;
        while (i < path.length && /[0-9]/.test(path[i] as string)) i++;
        const digits = path.slice(start, i);
        if (digits === '' || (digits.length > 1 && digits[0] === '0') || digits.length > MAX_INDEX_DIGITS) {
          i = start;
          return invalid(`expected an array index (a non-negative integer without leading zeros, at most ${MAX_INDEX_DIGITS} digits) or a "quoted key" after '['`);
        }
        segments.push({ kind: 'index', index: Number(digits) });
      }
      if (path[i] !== ']') return invalid(`expected ']' but found ${describe(path[i])}`);
      i++;
    } else if (c === '.') {
      if (segments.length === 0) return invalid("the path cannot start with '.'");
      i++;
      const key = bareKey();
      if (key === null) return invalid(`expected a key after '.' but found ${describe(path[i])}`);
      segments.push({ kind: 'key', key });
    } else if (segments.length === 0) {
      const key = bareKey();
      if (key === null) return invalid(`expected a key or '[' but found ${describe(c)}`);
      segments.push({ kind: 'key', key });
    } else {
      return invalid(`expected '.' or '[' but found ${describe(c)}`);
    }
    if (segments.length > JSON_PATH_MAX_SEGMENTS) {
      return { ok: false, message: `json_path has more than ${JSON_PATH_MAX_SEGMENTS} segments` };
    }
  }
  return { ok: true, segments };
}
