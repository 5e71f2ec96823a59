/**
 * The `data_source.json_path` extension: select one value of a JSON payload.
 *
 * One pass over the text that validates the whole document (RFC 8259) and captures the
 * selected value's source text, so numbers keep the spelling the device sent (`1.50`,
 * `12345678901234567890`) instead of a float64 round trip. Like `JSON.parse`, a duplicated
 * key means its last occurrence.
 *
 * Result: strings as their decoded text; numbers and booleans as their JSON text;
 * objects and arrays as compact JSON text (whitespace outside strings removed, otherwise as
 * sent); `null` or a path that does not exist -> `json_path_missing`; not JSON (or nested
 * deeper than 256 levels) -> `json_invalid`.
 */
import type { JsonPathSegment } from '@pepeunit/common/datapipe/index';

export type JsonExtractResult = { ok: true; value: string } | { ok: false; reason: 'json_invalid' | 'json_path_missing' };

const MAX_DEPTH = 256;

class InvalidJson extends Error {}

type Selected = { kind: 'string' | 'number' | 'literal' | 'container' | 'null'; start: number; end: number; hasEscape: boolean };

function compact(raw: string): string {
  let out = '';
  let inString = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as string;
    if (inString) {
      out += c;
      if (c === '\\') {
        out += raw[i + 1] ?? '';
        i++;
      } else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
      out += c;
    } else if (c !== ' ' && c !== '\t' && c !== '\n' && c !== '\r') out += c;
  }
  return out;
}

export function extractJsonValue(text: string, path: readonly JsonPathSegment[]): JsonExtractResult {
  let i = 0;
  let selected: Selected | null = null;
  const n = text.length;

  const ws = (): void => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
  };

  /** Scans a string token starting at `"`; returns whether it had escapes. */
  const scanString = (): boolean => {
    i++;
    let hasEscape = false;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return hasEscape;
      }
      if (c < 0x20) throw new InvalidJson();
      if (c === 0x5c) {
        hasEscape = true;
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) throw new InvalidJson();
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2;
        else throw new InvalidJson();
      } else i++;
    }
    throw new InvalidJson();
  };

  const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

  /** Parses one value; `level` is the path index this value stands at, or -1 off the path. */
  const value = (level: number, depth: number): void => {
    if (depth > MAX_DEPTH) throw new InvalidJson();
    ws();
    const start = i;
    const c = text[i];
    const target = level === path.length;
    const segment = level >= 0 && level < path.length ? path[level] : undefined;
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') i++;
      else {
        for (;;) {
          ws();
          if (text[i] !== '"') throw new InvalidJson();
          const keyStart = i;
          const keyEscaped = scanString();
          const keyEnd = i;
          ws();
          if (text[i] !== ':') throw new InvalidJson();
          i++;
          let next = -1;
          if (segment?.kind === 'key') {
            const key = keyEscaped ? (JSON.parse(text.slice(keyStart, keyEnd)) as string) : text.slice(keyStart + 1, keyEnd - 1);
            if (key === segment.key) {
              // A later duplicate key replaces what an earlier one selected (as JSON.parse).
              selected = null;
              next = level + 1;
            }
          }
          value(next, depth + 1);
          ws();
          if (text[i] === ',') {
            i++;
            continue;
          }
          if (text[i] === '}') {
            i++;
            break;
          }
          throw new InvalidJson();
        }
      }
      if (target) selected = { kind: 'container', start, end: i, hasEscape: false };
      return;
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') i++;
      else {
        for (let index = 0; ; index++) {
          const next = segment?.kind === 'index' && segment.index === index ? level + 1 : -1;
          value(next, depth + 1);
          ws();
          if (text[i] === ',') {
            i++;
            continue;
          }
          if (text[i] === ']') {
            i++;
            break;
          }
          throw new InvalidJson();
        }
      }
      if (target) selected = { kind: 'container', start, end: i, hasEscape: false };
      return;
    }
    if (c === '"') {
      const hasEscape = scanString();
      if (target) selected = { kind: 'string', start, end: i, hasEscape };
      return;
    }
    for (const literal of ['true', 'false', 'null']) {
      if (text.startsWith(literal, i)) {
        i += literal.length;
        if (target) selected = { kind: literal === 'null' ? 'null' : 'literal', start, end: i, hasEscape: false };
        return;
      }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m || m[0].length === 0) throw new InvalidJson();
    i += m[0].length;
    if (target) selected = { kind: 'number', start, end: i, hasEscape: false };
  };

  try {
    value(0, 0);
    ws();
    if (i !== n) throw new InvalidJson();
  } catch (err) {
    if (err instanceof InvalidJson || err instanceof RangeError) return { ok: false, reason: 'json_invalid' };
    throw err;
  }
  const found = selected as Selected | null;
  if (found === null || found.kind === 'null') return { ok: false, reason: 'json_path_missing' };
  const raw = text.slice(found.start, found.end);
  switch (found.kind) {
    case 'string':
      return { ok: true, value: found.hasEscape ? (JSON.parse(raw) as string) : raw.slice(1, -1) };
    case 'container':
      return { ok: true, value: compact(raw) };
    default:
      return { ok: true, value: raw };
  }
}
