// `${path}` templates of rule actions, rendered against the SELECT output like `emqx_template`
// with `emqx_jsonish` bindings: `${.}` is the whole output as JSON, `${a.b}` walks nested maps
// (decoding JSON text on the way), a missing value renders as the text `undefined`, strings are
// written as is and maps/lists as JSON. `${$}` is a literal `$`.
import { encodeJson, isObject, toText } from './values.js';
import type { Value } from './values.js';

export type TemplatePart = { literal: string } | { path: string[] };

const PLACEHOLDER = /\$\{([^}]*)\}/g;

/** Splits a var path: `a.b`, `.`, `.a`, `pub_props.'User-Property'`. */
function parseVarPath(text: string): string[] {
  const trimmed = text.trim();
  if (trimmed === '.' || trimmed === '') return [];
  const withoutDot = trimmed.startsWith('.') ? trimmed.slice(1) : trimmed;
  const parts: string[] = [];
  let current = '';
  let quote: string | undefined;
  for (const char of withoutDot) {
    if (quote) {
      if (char === quote) quote = undefined;
      else current += char;
    } else if (char === "'" || char === '"') {
      quote = char;
    } else if (char === '.') {
      parts.push(current);
      current = '';
    } else {
      current += char;
    }
  }
  parts.push(current);
  return parts;
}

export function parseTemplate(template: string): TemplatePart[] {
  const parts: TemplatePart[] = [];
  let last = 0;
  for (const match of template.matchAll(PLACEHOLDER)) {
    const index = match.index ?? 0;
    if (index > last) parts.push({ literal: template.slice(last, index) });
    const name = match[1] ?? '';
    if (name === '$') parts.push({ literal: '$' });
    else parts.push({ path: parseVarPath(name) });
    last = index + match[0].length;
  }
  if (last < template.length) parts.push({ literal: template.slice(last) });
  return parts;
}

/** Looks a var path up in the bindings; `undefined` when any step is missing. */
export function lookupPath(bindings: Record<string, Value>, path: readonly string[]): Value {
  let value: Value = bindings;
  for (const key of path) {
    if (typeof value === 'string') {
      try {
        value = JSON.parse(value) as Value;
      } catch {
        return undefined;
      }
    }
    if (!isObject(value) || !Object.hasOwn(value, key)) return undefined;
    value = value[key];
  }
  return value;
}

/** Renders a template; `encode` (e.g. URL encoding for an HTTP path) applies to placeholder values only. */
export function renderTemplate(parts: readonly TemplatePart[], bindings: Record<string, Value>, encode?: (text: string) => string): string {
  let result = '';
  for (const part of parts) {
    if ('literal' in part) {
      result += part.literal;
      continue;
    }
    const value = part.path.length === 0 ? bindings : lookupPath(bindings, part.path);
    const text = part.path.length === 0 ? encodeJson(value) : toText(value);
    result += encode ? encode(text) : text;
  }
  return result;
}

/** A template made of exactly one placeholder (`${qos}`), as EMQX's `render_simple_var` needs. */
export function singleVar(parts: readonly TemplatePart[]): string[] | undefined {
  const only = parts.length === 1 ? parts[0] : undefined;
  return only && 'path' in only ? only.path : undefined;
}
