// Rule actions (reference/emqx-5.md §4.1-§4.2): checking and normalising what the API receives,
// and the compiled form the runtime executes.
//
// - `{"function": "republish", "args": {...}}`: EMQX's defaults are filled in on write, as EMQX's
//   schema check does, so GET shows the full argument set.
// - `{"function": "console"}`: logs the output.
// - `"<type>:<name>"` (a connector action, e.g. `http:pu-alerts`): accepted even when the action
//   does not exist, as EMQX accepts it; at run time a send to a missing action is counted as
//   `actions.discarded`, otherwise the action (bridges.ts) runs it.
// Anything else (plugin functions `module:function`, unknown builtins) is refused.
import { isValidTopicFilter } from '../access/topic-match.js';
import { SUPPORTED_EVENTS } from './events.js';
import { parseTemplate } from './templates.js';
import type { TemplatePart } from './templates.js';

export type StoredAction = string | { function: string; args?: Record<string, unknown> };

export const REPUBLISH_DEFAULTS = Object.freeze({
  qos: '${qos}',
  retain: '${retain}',
  payload: '${payload}',
  mqtt_properties: {},
  user_properties: '${user_properties}',
  direct_dispatch: false,
});

const REPUBLISH_KEYS = new Set(['topic', ...Object.keys(REPUBLISH_DEFAULTS)]);
const MQTT_PROPERTY_KEYS = new Set(['Payload-Format-Indicator', 'Message-Expiry-Interval', 'Content-Type', 'Response-Topic', 'Correlation-Data']);
const ACTION_REF = /^[A-Za-z0-9_]+:[A-Za-z0-9][A-Za-z0-9_-]*$/;

export class ActionValidationError extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path}: ${reason}`);
    this.name = 'ActionValidationError';
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isTemplate(value: unknown): value is string {
  return typeof value === 'string' && /^\$\{[^}]+\}$/.test(value);
}

/** Checks one `actions[]` entry and returns it with EMQX's defaults filled in. */
export function checkAction(action: unknown, path: string): StoredAction {
  if (typeof action === 'string') {
    if (!ACTION_REF.test(action)) throw new ActionValidationError(path, `invalid action reference ${JSON.stringify(action)} (expected "<type>:<name>")`);
    // EMQX normalises the legacy webhook type.
    return action.startsWith('webhook:') ? `http:${action.slice('webhook:'.length)}` : action;
  }
  if (!isPlainObject(action)) throw new ActionValidationError(path, 'an action is a "<type>:<name>" string or an object {function, args}');
  for (const key of Object.keys(action)) {
    if (key !== 'function' && key !== 'args') throw new ActionValidationError(`${path}.${key}`, 'unknown_fields');
  }
  const fn = action.function;
  if (typeof fn !== 'string' || fn === '') throw new ActionValidationError(`${path}.function`, 'required_field');
  if (fn === 'console') {
    if (action.args !== undefined && !isPlainObject(action.args)) throw new ActionValidationError(`${path}.args`, 'expected an object');
    return action.args === undefined ? { function: 'console' } : { function: 'console', args: structuredClone(action.args) };
  }
  if (fn !== 'republish') {
    const reason = fn.includes(':') ? 'action_function_not_supported (plugin functions are not available in the embedded broker)' : 'unknown_action_function';
    throw new ActionValidationError(`${path}.function`, reason);
  }
  return { function: 'republish', args: checkRepublishArgs(action.args, `${path}.args`) };
}

function checkRepublishArgs(args: unknown, path: string): Record<string, unknown> {
  if (!isPlainObject(args)) throw new ActionValidationError(path, 'republish needs args with at least a topic');
  for (const key of Object.keys(args)) {
    if (!REPUBLISH_KEYS.has(key)) throw new ActionValidationError(`${path}.${key}`, 'unknown_fields');
  }
  const result: Record<string, unknown> = { ...structuredClone(REPUBLISH_DEFAULTS), ...structuredClone(args) };
  const topic = result.topic;
  if (typeof topic !== 'string' || topic === '') throw new ActionValidationError(`${path}.topic`, 'required_field (a non-empty topic template)');
  const literalTopic = topic.replace(/\$\{[^}]*\}/g, 'x');
  if (/[+#]/.test(literalTopic) || topic.includes('\u0000')) throw new ActionValidationError(`${path}.topic`, 'a republish topic must not contain wildcards or NUL');
  const qos = result.qos;
  if (!(qos === 0 || qos === 1 || qos === 2 || isTemplate(qos))) throw new ActionValidationError(`${path}.qos`, 'expected 0, 1, 2 or a ${var} template');
  for (const key of ['retain', 'direct_dispatch'] as const) {
    const value = result[key];
    if (!(typeof value === 'boolean' || isTemplate(value))) throw new ActionValidationError(`${path}.${key}`, 'expected a boolean or a ${var} template');
  }
  if (typeof result.payload !== 'string') throw new ActionValidationError(`${path}.payload`, 'expected a string template ("" = the whole output as JSON)');
  if (typeof result.user_properties !== 'string') throw new ActionValidationError(`${path}.user_properties`, 'expected a string (a ${var} template or "")');
  const properties = result.mqtt_properties;
  if (!isPlainObject(properties)) throw new ActionValidationError(`${path}.mqtt_properties`, 'expected an object');
  for (const [key, value] of Object.entries(properties)) {
    if (!MQTT_PROPERTY_KEYS.has(key)) throw new ActionValidationError(`${path}.mqtt_properties.${key}`, 'unknown MQTT property');
    if (typeof value !== 'string') throw new ActionValidationError(`${path}.mqtt_properties.${key}`, 'expected a string template');
  }
  return result;
}

export type CompiledAction =
  | { kind: 'republish'; topic: TemplatePart[]; payload: TemplatePart[]; qos: number | TemplatePart[]; retain: boolean | TemplatePart[]; directDispatch: boolean | TemplatePart[] }
  | { kind: 'console' }
  | { kind: 'connector'; ref: string };

export function compileAction(action: StoredAction): CompiledAction {
  if (typeof action === 'string') return { kind: 'connector', ref: action };
  if (action.function === 'console') return { kind: 'console' };
  const args = action.args ?? {};
  const payload = String(args.payload ?? '');
  const simple = <V>(value: unknown, fallback: V): V | TemplatePart[] => (typeof value === 'string' ? parseTemplate(value) : ((value as V | undefined) ?? fallback));
  return {
    kind: 'republish',
    topic: parseTemplate(String(args.topic)),
    // An empty payload template means the whole output (`${.}`).
    payload: parseTemplate(payload === '' ? '${.}' : payload),
    qos: simple<number>(args.qos, 0),
    retain: simple<boolean>(args.retain, false),
    directDispatch: simple<boolean>(args.direct_dispatch, false),
  };
}

/** A FROM entry the engine can index: a valid MQTT topic filter or one of the implemented events. */
export function checkFromEntry(entry: string): string | undefined {
  if (SUPPORTED_EVENTS.has(entry)) return undefined;
  if (entry.startsWith('$events/') || entry.startsWith('$bridges/') || entry.startsWith('$sources/')) {
    return `${entry}: not supported by the embedded rule engine (events: ${[...SUPPORTED_EVENTS].join(', ')}; no bridge sources)`;
  }
  if (!isValidTopicFilter(entry)) return `${entry}: not a valid MQTT topic filter`;
  if (/['"]/.test(entry)) return `${entry}: quotes are not allowed in a topic filter`;
  return undefined;
}
