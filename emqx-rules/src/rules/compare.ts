// Semantic comparison of a wanted rule with the rule EMQX returns, so the reconciler writes only
// real differences (every write is a cluster-wide config transaction and resets the rule's
// metrics, reference/emqx-5.md §2.3, §8.1):
// - SQL: compared after normalising white space outside quotes (EMQX stores the text as sent,
//   but an operator may have reformatted it in the dashboard);
// - actions: in order; `webhook:x` equals `http:x`; republish args are compared with EMQX's
//   defaults filled in on both sides; for other functions only the args we set must match;
// - enable, description (and name when the spec sets one) exactly.
import { differences } from '../config-compare.js';
import type { RuleAction, RuleInfo } from '../emqx-types.js';
import type { RuleSpec } from './catalogue.js';

const REPUBLISH_DEFAULTS: Readonly<Record<string, unknown>> = Object.freeze({
  qos: '${qos}',
  retain: '${retain}',
  payload: '${payload}',
  mqtt_properties: {},
  user_properties: '${user_properties}',
  direct_dispatch: false,
});

/** Collapses white space outside quoted tokens; keeps the text inside quotes as is. */
export function normaliseSql(sql: string): string {
  let result = '';
  let quote: string | undefined;
  let pendingSpace = false;
  for (const char of sql.trim()) {
    if (quote) {
      result += char;
      if (char === quote) quote = undefined;
      continue;
    }
    if (/\s/.test(char)) {
      pendingSpace = true;
      continue;
    }
    if (pendingSpace) {
      const last = result[result.length - 1] ?? '';
      // Spaces next to punctuation carry no meaning.
      if (!/[,()[\]=<>!]/.test(char) && !/[,()[\]=<>!]/.test(last) && result !== '') result += ' ';
      pendingSpace = false;
    }
    if (char === "'" || char === '"') quote = char;
    result += char;
  }
  // Keywords are case-insensitive; only fold text outside quotes.
  return result.replace(/('[^']*'|"[^"]*")|([^'"]+)/g, (_match, quoted: string | undefined, plain: string | undefined) =>
    quoted ?? (plain ?? '').replace(/\b(select|from|where|and|or|not|as|in|foreach|do|incase|case|when|then|else|end)\b/gi, (word) => word.toUpperCase()),
  );
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    return `{${Object.keys(record)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonical(record[key])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

function normaliseRef(ref: string): string {
  return ref.startsWith('webhook:') ? `http:${ref.slice('webhook:'.length)}` : ref;
}

export function actionsEqual(wanted: readonly RuleAction[], actual: readonly unknown[] | undefined): boolean {
  if (!Array.isArray(actual) || actual.length !== wanted.length) return false;
  return wanted.every((want, index) => {
    const have = actual[index];
    if (typeof want === 'string') return typeof have === 'string' && normaliseRef(want) === normaliseRef(have);
    if (!have || typeof have !== 'object' || Array.isArray(have)) return false;
    const haveAction = have as { function?: unknown; args?: unknown };
    if (haveAction.function !== want.function) return false;
    const wantArgs = (want.args ?? {}) as Record<string, unknown>;
    const haveArgs = (haveAction.args && typeof haveAction.args === 'object' ? haveAction.args : {}) as Record<string, unknown>;
    if (want.function === 'republish') return canonical({ ...REPUBLISH_DEFAULTS, ...wantArgs }) === canonical({ ...REPUBLISH_DEFAULTS, ...haveArgs });
    return differences(wantArgs, haveArgs).length === 0;
  });
}

/** Names of the fields where EMQX's rule differs from the spec; empty when it already matches. */
export function ruleDifferences(wanted: RuleSpec, actual: Pick<RuleInfo, 'sql' | 'actions' | 'enable' | 'description'> & { name?: string }): string[] {
  const result: string[] = [];
  if (typeof actual.sql !== 'string' || normaliseSql(actual.sql) !== normaliseSql(wanted.sql)) result.push('sql');
  if (!actionsEqual(wanted.actions, actual.actions)) result.push('actions');
  if (actual.enable !== wanted.enable) result.push('enable');
  if ((actual.description ?? '') !== wanted.description) result.push('description');
  if (wanted.name !== undefined && (actual.name ?? '') !== wanted.name) result.push('name');
  return result;
}
