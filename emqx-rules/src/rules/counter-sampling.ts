// Turning rule counters into load figures (wave2-integrations.md §4.2), pure and I/O-free: the
// backend's sampler reads `GET /api/v5/prometheus/data_integration` once per interval and hands
// the answer here.
//
// 1. `parseDataIntegration`: EMQX's answer, JSON (`Accept: application/json`) or Prometheus text,
//    into per-rule / per-action / per-connector numbers. With `mode=all_nodes_unaggregated`
//    every series carries a `node` label and is kept apart, so a reset of one node is detected
//    on that node's series alone.
// 2. `counterReading` + `counterDeltas`: per-series deltas of one metric (`matched` for counting
//    rules) between two readings with Prometheus' counter-reset rule: a value below the last one
//    means the counter restarted (node restart, rule recreated), so the delta is the value itself;
//    a series seen for the first time counts from zero (its rule is new). Deltas are never
//    negative and never count a message twice.
// 3. `ruleRates`, `unitLoads`: messages and messages per second per rule, and per unit (its
//    `cnt-unit-` rule plus the `cnt-node-` rules of its nodes).
// Parsing 20 000 rules takes a few tens of milliseconds (see docs/BENCHMARKS.md, load-broker).
import type { CountedUnit } from './counting.js';
import { COUNT_NODE_RULE_PREFIX, COUNT_UNIT_RULE_PREFIX } from './catalogue.js';

/** Metric values of one series (EMQX's metric names, e.g. `emqx_rule_matched`). */
export type SeriesValues = Record<string, number>;

/** One rule/action/connector series: its id, the node label when present, and its values. */
export interface Series {
  id: string;
  node?: string;
  values: SeriesValues;
}

export interface DataIntegrationSnapshot {
  rules: Series[];
  actions: Series[];
  connectors: Series[];
  /** `emqx_rules_count`, `emqx_actions_count`, `emqx_connectors_count`, ... */
  overview: Record<string, number>;
}

export class CounterParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CounterParseError';
  }
}

/** What to keep: every metric (default) or only the named ones (cheaper for 20 000 rules). */
export interface ParseOptions {
  metrics?: readonly string[];
}

function seriesFromJson(items: unknown, what: string, metrics: readonly string[] | undefined): Series[] {
  if (items === undefined) return [];
  if (!Array.isArray(items)) throw new CounterParseError(`data_integration JSON: "${what}" is not a list`);
  const result: Series[] = [];
  for (const item of items) {
    if (!item || typeof item !== 'object' || typeof (item as { id?: unknown }).id !== 'string') throw new CounterParseError(`data_integration JSON: an entry of "${what}" has no id`);
    const record = item as Record<string, unknown>;
    const values: SeriesValues = {};
    if (metrics) {
      for (const key of metrics) {
        const value = record[key];
        if (typeof value === 'number' && Number.isFinite(value)) values[key] = value;
      }
    } else {
      for (const [key, value] of Object.entries(record)) {
        if (typeof value === 'number' && Number.isFinite(value)) values[key] = value;
      }
    }
    const series: Series = { id: record.id as string, values };
    if (typeof record.node === 'string') series.node = record.node;
    result.push(series);
  }
  return result;
}

/** The JSON form (`{data_integration_overview, rules, actions, connectors}`). */
export function parseDataIntegrationJson(body: unknown, options: ParseOptions = {}): DataIntegrationSnapshot {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new CounterParseError('data_integration JSON: expected an object');
  const record = body as Record<string, unknown>;
  const overview: Record<string, number> = {};
  const rawOverview = record.data_integration_overview;
  if (rawOverview && typeof rawOverview === 'object') {
    for (const [key, value] of Object.entries(rawOverview)) if (typeof value === 'number') overview[key] = value;
  }
  return {
    rules: seriesFromJson(record.rules, 'rules', options.metrics),
    actions: seriesFromJson(record.actions, 'actions', options.metrics),
    connectors: seriesFromJson(record.connectors, 'connectors', options.metrics),
    overview,
  };
}

/** Label values of `{a="x",b="y"}` (Prometheus escapes: `\\`, `\"`, `\n`). */
function parseLabels(text: string, start: number, end: number): Record<string, string> {
  const labels: Record<string, string> = {};
  let index = start;
  while (index < end) {
    while (text.charCodeAt(index) === 32 || text.charCodeAt(index) === 44) index += 1; // spaces, commas
    if (index >= end) break;
    const equals = text.indexOf('=', index);
    if (equals === -1 || equals >= end || text.charCodeAt(equals + 1) !== 34) throw new CounterParseError(`Prometheus text: bad labels ${text.slice(start, end)}`);
    const name = text.slice(index, equals).trim();
    let value = '';
    let cursor = equals + 2;
    for (;;) {
      const char = text.charCodeAt(cursor);
      if (Number.isNaN(char) || cursor > end) throw new CounterParseError(`Prometheus text: unterminated label value in ${text.slice(start, end)}`);
      if (char === 34) break; // closing quote
      if (char === 92) {
        const next = text[cursor + 1];
        value += next === 'n' ? '\n' : (next ?? '');
        cursor += 2;
        continue;
      }
      // Copy a run of plain characters at once.
      let run = cursor;
      while (run < end && text.charCodeAt(run) !== 34 && text.charCodeAt(run) !== 92) run += 1;
      value += text.slice(cursor, run);
      cursor = run;
    }
    labels[name] = value;
    index = cursor + 1;
  }
  return labels;
}

/** The Prometheus text exposition form. Unknown families are ignored. */
export function parseDataIntegrationText(text: string, options: ParseOptions = {}): DataIntegrationSnapshot {
  const wanted = options.metrics ? new Set(options.metrics) : undefined;
  const groups = { rules: new Map<string, Series>(), actions: new Map<string, Series>(), connectors: new Map<string, Series>() };
  const overview: Record<string, number> = {};
  const bad = (lineStart: number, lineEnd: number, what: string): never => {
    throw new CounterParseError(`Prometheus text: ${what} in ${text.slice(lineStart, Math.min(lineEnd, lineStart + 200))}`);
  };
  let lineStart = 0;
  while (lineStart < text.length) {
    let lineEnd = text.indexOf('\n', lineStart);
    if (lineEnd === -1) lineEnd = text.length;
    if (lineEnd > lineStart && text.charCodeAt(lineStart) !== 35 /* # */) {
      const brace = text.indexOf('{', lineStart);
      const hasLabels = brace !== -1 && brace < lineEnd;
      const nameEnd = hasLabels ? brace : text.indexOf(' ', lineStart);
      if (nameEnd === -1 || nameEnd > lineEnd) bad(lineStart, lineEnd, 'no value');
      const name = text.slice(lineStart, nameEnd);
      const close = hasLabels ? text.lastIndexOf('}', lineEnd) : nameEnd - 1;
      if (hasLabels && close < brace) bad(lineStart, lineEnd, 'unclosed labels');
      // The value: the first field after the labels (a timestamp may follow).
      let valueStart = close + 1;
      while (text.charCodeAt(valueStart) === 32) valueStart += 1;
      let valueEnd = text.indexOf(' ', valueStart);
      if (valueEnd === -1 || valueEnd > lineEnd) valueEnd = lineEnd;
      const value = valueEnd > valueStart ? Number(text.slice(valueStart, valueEnd)) : Number.NaN;
      if (Number.isNaN(value)) bad(lineStart, lineEnd, 'bad value');
      if (!hasLabels) {
        overview[name] = value;
      } else {
        const group = wanted && !wanted.has(name) ? undefined : name.startsWith('emqx_rule_') ? groups.rules : name.startsWith('emqx_action_') ? groups.actions : name.startsWith('emqx_connector_') ? groups.connectors : undefined;
        if (group) {
          // Fast path for EMQX's usual `{id="..."}` without escapes; the general parser otherwise.
          let id: string | undefined;
          let node: string | undefined;
          const quoteEnd = close - 1;
          const plain = text.startsWith('id="', brace + 1) && text.charCodeAt(quoteEnd) === 34 && text.indexOf('"', brace + 5) === quoteEnd ? text.slice(brace + 5, quoteEnd) : undefined;
          if (plain !== undefined && !plain.includes('\\')) {
            id = plain;
          } else {
            const labels = parseLabels(text, brace + 1, close);
            id = labels.id;
            node = labels.node;
          }
          if (id === undefined) bad(lineStart, lineEnd, `${name} without an id label`);
          const key = node === undefined ? (id as string) : `${id as string}\u0000${node}`;
          let series = group.get(key);
          if (!series) {
            series = node === undefined ? { id: id as string, values: {} } : { id: id as string, node, values: {} };
            group.set(key, series);
          }
          series.values[name] = value;
        }
      }
    }
    lineStart = lineEnd + 1;
  }
  return { rules: [...groups.rules.values()], actions: [...groups.actions.values()], connectors: [...groups.connectors.values()], overview };
}

/** Either form: an object or JSON text is JSON, anything else Prometheus text. */
export function parseDataIntegration(body: unknown, options: ParseOptions = {}): DataIntegrationSnapshot {
  if (typeof body === 'string') {
    const trimmed = body.trimStart();
    if (trimmed.startsWith('{')) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body) as unknown;
      } catch (error) {
        throw new CounterParseError(`data_integration JSON does not parse: ${(error as Error).message}`);
      }
      return parseDataIntegrationJson(parsed, options);
    }
    return parseDataIntegrationText(body, options);
  }
  return parseDataIntegrationJson(body, options);
}

/** One metric of chosen rules at one moment: series key (`id` or `id\0node`) → value. */
export interface CounterReading {
  takenAt: number;
  values: ReadonlyMap<string, number>;
}

/** The rule id of a series key. */
export function ruleIdOfSeries(key: string): string {
  const nul = key.indexOf('\u0000');
  return nul === -1 ? key : key.slice(0, nul);
}

/** A reading of `metric` (default `emqx_rule_matched`) for the rules whose id starts with `prefix` (default all). */
export function counterReading(snapshot: DataIntegrationSnapshot, takenAt: number, options: { metric?: string; prefix?: string } = {}): CounterReading {
  const metric = options.metric ?? 'emqx_rule_matched';
  const prefix = options.prefix ?? '';
  const values = new Map<string, number>();
  for (const series of snapshot.rules) {
    if (!series.id.startsWith(prefix)) continue;
    const value = series.values[metric];
    if (value === undefined) continue;
    values.set(series.node === undefined ? series.id : `${series.id}\u0000${series.node}`, value);
  }
  return { takenAt, values };
}

export interface CounterDeltas {
  elapsedMs: number;
  /** Messages per rule id since the previous reading (series of several nodes summed). */
  deltas: Map<string, number>;
  /** Series whose counter went down (counted from zero). */
  resets: string[];
}

/**
 * Deltas between two readings. The first reading (no `previous`) is a baseline and yields no
 * deltas; afterwards a new series counts from zero, a smaller value is a reset (delta = value),
 * and a series that vanished (rule deleted) yields nothing.
 */
export function counterDeltas(previous: CounterReading | undefined, current: CounterReading): CounterDeltas {
  const deltas = new Map<string, number>();
  const resets: string[] = [];
  if (!previous) return { elapsedMs: 0, deltas, resets };
  for (const [key, value] of current.values) {
    const last = previous.values.get(key);
    let delta: number;
    if (last === undefined) delta = value;
    else if (value >= last) delta = value - last;
    else {
      delta = value;
      resets.push(key);
    }
    const id = ruleIdOfSeries(key);
    deltas.set(id, (deltas.get(id) ?? 0) + delta);
  }
  return { elapsedMs: Math.max(0, current.takenAt - previous.takenAt), deltas, resets };
}

/** Messages per second per rule over the interval (0 for an empty interval). */
export function ruleRates(deltas: CounterDeltas): Map<string, number> {
  const rates = new Map<string, number>();
  const seconds = deltas.elapsedMs / 1000;
  for (const [id, delta] of deltas.deltas) rates.set(id, seconds > 0 ? delta / seconds : 0);
  return rates;
}

export interface UnitLoad {
  /** Messages on the unit's topics during the interval. */
  messages: number;
  /** `messages` per second. */
  mps: number;
}

/**
 * Per-unit load: the unit's `cnt-unit-` rule plus the `cnt-node-` rules of its nodes. Units
 * without any counted message in the interval get zero; rules not in `units` are ignored.
 */
export function unitLoads(deltas: CounterDeltas, units: Iterable<CountedUnit>): Map<string, UnitLoad> {
  const seconds = deltas.elapsedMs / 1000;
  const loads = new Map<string, UnitLoad>();
  // Ids built without re-validating the uuids (a malformed one matches no rule and loads zero).
  for (const unit of units) {
    let messages = deltas.deltas.get(COUNT_UNIT_RULE_PREFIX + unit.unitUuid.toLowerCase()) ?? 0;
    for (const node of unit.nodeUuids) messages += deltas.deltas.get(COUNT_NODE_RULE_PREFIX + node.toLowerCase()) ?? 0;
    loads.set(unit.unitUuid.toLowerCase(), { messages, mps: seconds > 0 ? messages / seconds : 0 });
  }
  return loads;
}
