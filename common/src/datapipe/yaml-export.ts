/**
 * Export of a stored config as YAML, as the reference's `get_data_pipe_config` does
 * (§1.1 item 6): JSON parsed, `null`s removed recursively, then PyYAML
 * `safe_dump(allow_unicode=True, default_flow_style=False, sort_keys=False)`:
 * block style, key order kept, sequences not indented under their key, strings quoted
 * only when PyYAML would quote them (e.g. datetimes: `start: '2023-11-15T00:00:00+00:00'`),
 * floats in PyYAML spelling (`1.0`, `1.0e-05`, `.inf`).
 *
 * Not reproduced: PyYAML folds scalars longer than 80 columns onto several lines; we keep
 * every scalar on one line (the YAML means the same).
 */
import { PyFloat, parsePythonJson, pythonFloatRepr, type PyJsonValue } from './python-json.js';

const BOOL_RE = /^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$/;
const INT_RE = /^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$/;
const FLOAT_RE =
  /^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/;
const NULL_RE = /^(?:~|null|Null|NULL|)$/;
const TIMESTAMP_RE =
  /^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$/;

/** Would PyYAML read this plain text as something other than a string? */
function resolvesToNonString(s: string): boolean {
  return BOOL_RE.test(s) || INT_RE.test(s) || FLOAT_RE.test(s) || NULL_RE.test(s) || TIMESTAMP_RE.test(s) || s === '<<' || s === '=';
}

const BREAKS = '\n\x85\u2028\u2029';
const WHITESPACE = '\0 \t\r\n\x85\u2028\u2029';

interface Analysis {
  multiline: boolean;
  allowBlockPlain: boolean;
  allowSingleQuoted: boolean;
}

/** PyYAML `Emitter.analyze_scalar` (allow_unicode=True), block context only. */
function analyse(s: string): Analysis {
  const chars = Array.from(s);
  if (chars.length === 0) return { multiline: false, allowBlockPlain: true, allowSingleQuoted: true };
  let blockIndicators = false;
  let lineBreaks = false;
  let specialCharacters = false;
  let leadingSpace = false;
  let leadingBreak = false;
  let trailingSpace = false;
  let trailingBreak = false;
  let breakSpace = false;
  let spaceBreak = false;
  let previousSpace = false;
  let previousBreak = false;
  if (s.startsWith('---') || s.startsWith('...')) blockIndicators = true;
  let precededByWhitespace = true;
  let followedByWhitespace = chars.length === 1 || WHITESPACE.includes(chars[1] as string);
  chars.forEach((ch, index) => {
    if (index === 0) {
      if ('#,[]{}&*!|>\'"%@`'.includes(ch)) blockIndicators = true;
      if ('?:'.includes(ch) && followedByWhitespace) blockIndicators = true;
      if (ch === '-' && followedByWhitespace) blockIndicators = true;
    } else {
      if (ch === ':' && followedByWhitespace) blockIndicators = true;
      if (ch === '#' && precededByWhitespace) blockIndicators = true;
    }
    if (BREAKS.includes(ch)) lineBreaks = true;
    const code = ch.codePointAt(0) as number;
    if (!(ch === '\n' || (code >= 0x20 && code <= 0x7e))) {
      const printableUnicode =
        (code === 0x85 || (code >= 0xa0 && code <= 0xd7ff) || (code >= 0xe000 && code <= 0xfffd) || (code >= 0x10000 && code < 0x10ffff)) && code !== 0xfeff;
      if (!printableUnicode) specialCharacters = true;
    }
    if (ch === ' ') {
      if (index === 0) leadingSpace = true;
      if (index === chars.length - 1) trailingSpace = true;
      if (previousBreak) breakSpace = true;
      previousSpace = true;
      previousBreak = false;
    } else if (BREAKS.includes(ch)) {
      if (index === 0) leadingBreak = true;
      if (index === chars.length - 1) trailingBreak = true;
      if (previousSpace) spaceBreak = true;
      previousSpace = false;
      previousBreak = true;
    } else {
      previousSpace = false;
      previousBreak = false;
    }
    precededByWhitespace = WHITESPACE.includes(ch);
    followedByWhitespace = index + 1 >= chars.length - 1 || WHITESPACE.includes(chars[index + 2] as string);
  });
  let allowBlockPlain = true;
  let allowSingleQuoted = true;
  if (leadingSpace || leadingBreak || trailingSpace || trailingBreak) allowBlockPlain = false;
  if (breakSpace) {
    allowBlockPlain = false;
    allowSingleQuoted = false;
  }
  if (spaceBreak || specialCharacters) {
    allowBlockPlain = false;
    allowSingleQuoted = false;
  }
  if (lineBreaks) allowBlockPlain = false;
  if (blockIndicators) allowBlockPlain = false;
  return { multiline: lineBreaks, allowBlockPlain, allowSingleQuoted };
}

const ESCAPES: Record<string, string> = {
  '\0': '0',
  '\x07': 'a',
  '\x08': 'b',
  '\x09': 't',
  '\x0A': 'n',
  '\x0B': 'v',
  '\x0C': 'f',
  '\x0D': 'r',
  '\x1B': 'e',
  '"': '"',
  '\\': '\\',
  '\x85': 'N',
  '\xA0': '_',
  '\u2028': 'L',
  '\u2029': 'P',
};

function doubleQuoted(s: string): string {
  let out = '"';
  for (const ch of s) {
    const code = ch.codePointAt(0) as number;
    const plainOk = (code >= 0x20 && code <= 0x7e) || (code >= 0xa0 && code <= 0xd7ff) || (code >= 0xe000 && code <= 0xfffd);
    if ('"\\\x85\u2028\u2029\uFEFF'.includes(ch) || !plainOk) {
      const named = ESCAPES[ch];
      if (named !== undefined) out += `\\${named}`;
      else if (code <= 0xff) out += `\\x${code.toString(16).toUpperCase().padStart(2, '0')}`;
      else if (code <= 0xffff) out += `\\u${code.toString(16).toUpperCase().padStart(4, '0')}`;
      else out += `\\U${code.toString(16).toUpperCase().padStart(8, '0')}`;
    } else out += ch;
  }
  return `${out}"`;
}

/** PyYAML `write_single_quoted` without width folding: line breaks are written doubled. */
function singleQuoted(s: string, indent: string): string {
  let out = "'";
  let i = 0;
  while (i < s.length) {
    const ch = s[i] as string;
    if (BREAKS.includes(ch)) {
      let j = i;
      while (j < s.length && BREAKS.includes(s[j] as string)) j++;
      const run = s.slice(i, j);
      if (run[0] === '\n') out += '\n';
      for (const br of run) out += br === '\n' ? '\n' : br;
      out += indent;
      i = j;
      continue;
    }
    out += ch === "'" ? "''" : ch;
    i++;
  }
  return `${out}'`;
}

function stringScalar(s: string, continuationIndent: string, simpleKey: boolean): string {
  const a = analyse(s);
  const implicitPlain = !resolvesToNonString(s);
  if (implicitPlain && !(simpleKey && (s.length === 0 || a.multiline)) && a.allowBlockPlain) return s;
  if (a.allowSingleQuoted && !(simpleKey && a.multiline)) return singleQuoted(s, continuationIndent);
  return doubleQuoted(s);
}

function floatScalar(x: number): string {
  if (Number.isNaN(x)) return '.nan';
  if (x === Infinity) return '.inf';
  if (x === -Infinity) return '-.inf';
  const r = pythonFloatRepr(x).toLowerCase();
  return !r.includes('.') && r.includes('e') ? r.replace('e', '.0e') : r;
}

function scalar(v: PyJsonValue, continuationIndent: string, simpleKey = false): string | null {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (v instanceof PyFloat) return floatScalar(v.value);
  if (typeof v === 'number') return Number.isInteger(v) ? String(BigInt(v)) : floatScalar(v);
  if (typeof v === 'string') return stringScalar(v, continuationIndent, simpleKey);
  return null;
}

type Container = PyJsonValue[] | { [key: string]: PyJsonValue };

function isEmptyContainer(v: Container): boolean {
  return Array.isArray(v) ? v.length === 0 : Object.keys(v).length === 0;
}

function emitMapping(map: { [key: string]: PyJsonValue }, indent: number, lines: string[], firstPrefix?: string): void {
  const pad = ' '.repeat(indent);
  Object.entries(map).forEach(([key, value], index) => {
    const prefix = index === 0 && firstPrefix !== undefined ? firstPrefix : pad;
    const k = stringScalar(key, pad, true);
    const s = scalar(value, ' '.repeat(indent + 2));
    if (s !== null) lines.push(`${prefix}${k}: ${s}`);
    else if (isEmptyContainer(value as Container)) lines.push(`${prefix}${k}: ${Array.isArray(value) ? '[]' : '{}'}`);
    else if (Array.isArray(value)) {
      lines.push(`${prefix}${k}:`);
      emitSequence(value, indent, lines);
    } else {
      lines.push(`${prefix}${k}:`);
      emitMapping(value as { [key: string]: PyJsonValue }, indent + 2, lines);
    }
  });
}

function emitSequence(seq: PyJsonValue[], indent: number, lines: string[]): void {
  const pad = ' '.repeat(indent);
  for (const item of seq) {
    const s = scalar(item, ' '.repeat(indent + 2));
    if (s !== null) lines.push(`${pad}- ${s}`);
    else if (isEmptyContainer(item as Container)) lines.push(`${pad}- ${Array.isArray(item) ? '[]' : '{}'}`);
    else if (Array.isArray(item)) {
      lines.push(`${pad}-`);
      emitSequence(item, indent + 2, lines);
    } else emitMapping(item as { [key: string]: PyJsonValue }, indent + 2, lines, `${pad}- `);
  }
}

/** PyYAML `remove_dict_none` of the reference: drops nulls from mappings and lists. */
export function removeNulls(v: PyJsonValue): PyJsonValue {
  if (Array.isArray(v)) return v.filter((x) => x !== null).map(removeNulls);
  if (v !== null && typeof v === 'object' && !(v instanceof PyFloat)) {
    const out: { [key: string]: PyJsonValue } = {};
    for (const [k, x] of Object.entries(v)) if (x !== null) out[k] = removeNulls(x);
    return out;
  }
  return v;
}

/** YAML text of a value, PyYAML `safe_dump` block style. */
export function pythonYamlDump(value: PyJsonValue): string {
  const s = scalar(value, '  ');
  if (s !== null) return `${s}\n...\n`;
  if (isEmptyContainer(value as Container)) return Array.isArray(value) ? '[]\n' : '{}\n';
  const lines: string[] = [];
  if (Array.isArray(value)) emitSequence(value, 0, lines);
  else emitMapping(value as { [key: string]: PyJsonValue }, 0, lines);
  return `${lines.join('\n')}\n`;
}

/** The export of a stored config (JSON text) as YAML. Throws `SyntaxError` on bad JSON. */
export function dataPipeConfigToYaml(jsonText: string): string {
  return pythonYamlDump(removeNulls(parsePythonJson(jsonText)));
}
