// The `alert-` family: stable rules forwarding what the backend turns into alerts, through one
// HTTP action (`http:pu-alerts`, alert-webhook.ts) whose path is `alerts/${kind}`
// (wave2-integrations.md §4.4–§4.6). Every rule selects a constant `kind`.
//
//   alert-log-<level>-<unit>  FOREACH over the unit's log payload (one object or an array),
//                             entries whose level is at or above <level>     kind 'unit_log'
//   alert-authz-deny          authorization denials that were not cache hits  kind 'authz_deny'
//   alert-disconnect          abnormal disconnects                            kind 'disconnect'
//
// Log levels: rule SQL cannot order strings, so the accepted set is rendered from the threshold
// (Warning => Warning, Error, Critical) in the spellings devices use (Capitalised, lower, UPPER),
// matched with `IN`: a missing `level` makes `IN` false, where `lower(item.level)` would raise and
// fail the whole message. `CASE WHEN is_array(...)` wraps a single object in a list because
// FOREACH over a non-list yields nothing. `nth(3, split(topic, '/', 'notrim'))` because `topic(3)`
// is undefined in the SELECT/DO list on EMQX 5.8.
//
// The level is part of the rule id, so changing a unit's alert level deletes one rule and
// creates another: stable rules are never edited in place (a PUT would reset their metrics and
// the family's reconciler only creates and deletes).
import { Destination, BACKEND_SUFFIX } from '@pepeunit/common/topics';
import type { EmqxManagementClient } from '../management-client.js';
import {
  ALERT_AUTHZ_DENY_RULE_ID,
  ALERT_DISCONNECT_RULE_ID,
  ALERT_LEVELS,
  ALERT_RULE_PREFIX,
  RuleGenerationError,
  alertLogRuleId,
  isAlertLevel,
} from './catalogue.js';
import type { AlertLevel, RuleSpec } from './catalogue.js';
import { checkDomain, quoteTopicFilter, sqlString } from './generator.js';
import { ALERT_ACTION_REF } from './alert-webhook.js';
import { reconcileStableRules } from './stable.js';
import type { StableReconcileOptions, StableReconcileResult } from './stable.js';

/** The `kind` each alert rule selects (the last segment of the webhook path). */
export const ALERT_KINDS = Object.freeze({ unitLog: 'unit_log', authzDeny: 'authz_deny', disconnect: 'disconnect' } as const);
export type AlertKind = (typeof ALERT_KINDS)[keyof typeof ALERT_KINDS];

/** Disconnect reasons worth an alert (EMQX's `reason` column). */
export const ALERT_DISCONNECT_REASONS = Object.freeze(['keepalive_timeout', 'not_authorized', 'kicked', 'discarded'] as const);

/** Event topics the alert rules read; anything else is refused. */
const EVENT_TOPICS = new Set(['$events/client_check_authz_complete', '$events/client_disconnected']);

function quoteEventTopic(topic: string): string {
  if (!EVENT_TOPICS.has(topic)) throw new RuleGenerationError(`event topic ${JSON.stringify(topic)} is not one the alert rules use`);
  return `"${topic}"`;
}

/** Levels at or above `threshold`, lowest first. */
export function levelsAtOrAbove(threshold: AlertLevel): AlertLevel[] {
  if (!isAlertLevel(threshold)) throw new RuleGenerationError(`alert level ${JSON.stringify(threshold)} is not one of ${ALERT_LEVELS.join(', ')}`);
  return ALERT_LEVELS.slice(ALERT_LEVELS.indexOf(threshold));
}

/** The spellings of `levels` devices send: as written, lower case, upper case. */
export function levelSpellings(levels: readonly AlertLevel[]): string[] {
  return [...levels, ...levels.map((level) => level.toLowerCase()), ...levels.map((level) => level.toUpperCase())];
}

/** The unit's log topic: `<d>/output_base_topic/<unit>/log/pepeunit` (the only place devices write logs). */
export function unitLogTopic(domain: string, unitUuid: string): string {
  const id = alertLogRuleId('Debug', unitUuid);
  const unit = id.slice('alert-log-debug-'.length);
  return `${checkDomain(domain)}/${Destination.OutputBase}/${unit}/log/${BACKEND_SUFFIX}`;
}

export function alertLogSql(domain: string, unitUuid: string, threshold: AlertLevel): string {
  const accepted = levelSpellings(levelsAtOrAbove(threshold)).map(sqlString).join(', ');
  return [
    'FOREACH',
    'CASE WHEN is_array(json_decode(payload)) THEN json_decode(payload)',
    'ELSE [json_decode(payload)] END AS item',
    'DO',
    `${sqlString(ALERT_KINDS.unitLog)} AS kind, item.level AS level, item.text AS text,`,
    "nth(3, split(topic, '/', 'notrim')) AS unit_uuid, clientid, timestamp",
    'INCASE',
    `item.level IN (${accepted})`,
    `FROM ${quoteTopicFilter(unitLogTopic(domain, unitUuid))}`,
  ].join('\n');
}

export function authzDenyAlertSql(): string {
  return [
    `SELECT ${sqlString(ALERT_KINDS.authzDeny)} AS kind, clientid, username, peerhost, topic, action, authz_source, timestamp`,
    `FROM ${quoteEventTopic('$events/client_check_authz_complete')}`,
    `WHERE result = ${sqlString('deny')} AND authz_source != ${sqlString('cache')}`,
  ].join('\n');
}

export function disconnectAlertSql(): string {
  return [
    `SELECT ${sqlString(ALERT_KINDS.disconnect)} AS kind, clientid, username, reason, disconnected_at`,
    `FROM ${quoteEventTopic('$events/client_disconnected')}`,
    `WHERE reason IN (${ALERT_DISCONNECT_REASONS.map(sqlString).join(', ')})`,
  ].join('\n');
}

export interface AlertRuleOptions {
  /** The action rules send to (default `http:pu-alerts`). */
  action?: string;
}

function actionOf(options: AlertRuleOptions): string {
  const action = options.action ?? ALERT_ACTION_REF;
  if (!/^[a-z_]+:[0-9a-zA-Z][-0-9a-zA-Z_]*$/.test(action)) throw new RuleGenerationError(`action reference ${JSON.stringify(action)} is not "<type>:<name>"`);
  return action;
}

export function alertLogRule(domain: string, unitUuid: string, threshold: AlertLevel, options: AlertRuleOptions = {}): RuleSpec {
  const id = alertLogRuleId(threshold, unitUuid);
  return {
    id,
    sql: alertLogSql(domain, unitUuid, threshold),
    actions: [actionOf(options)],
    enable: true,
    description: `Pepeunit alerts: log entries of unit ${unitUuid.toLowerCase()} at ${threshold} or above; managed by the Pepeunit backend (a level change replaces the rule)`,
  };
}

export function authzDenyAlertRule(options: AlertRuleOptions = {}): RuleSpec {
  return {
    id: ALERT_AUTHZ_DENY_RULE_ID,
    sql: authzDenyAlertSql(),
    actions: [actionOf(options)],
    enable: true,
    description: 'Pepeunit alerts: authorization denials (cache hits skipped); managed by the Pepeunit backend',
  };
}

export function disconnectAlertRule(options: AlertRuleOptions = {}): RuleSpec {
  return {
    id: ALERT_DISCONNECT_RULE_ID,
    sql: disconnectAlertSql(),
    actions: [actionOf(options)],
    enable: true,
    description: `Pepeunit alerts: disconnects for ${ALERT_DISCONNECT_REASONS.join(', ')}; managed by the Pepeunit backend`,
  };
}

/** A unit's alert threshold; null = no log alerts for it. */
export interface UnitAlertLevel {
  unitUuid: string;
  level: AlertLevel | null;
}

export interface AlertRuleSet extends AlertRuleOptions {
  domain: string;
  units: Iterable<UnitAlertLevel>;
  /** Instance rules (both on by default). */
  authzDeny?: boolean;
  disconnect?: boolean;
}

/** Every wanted `alert-` rule (sorted by id). */
export function alertRules(set: AlertRuleSet): RuleSpec[] {
  const byId = new Map<string, RuleSpec>();
  for (const unit of set.units) {
    if (unit.level === null) continue;
    const rule = alertLogRule(set.domain, unit.unitUuid, unit.level, set);
    byId.set(rule.id, rule);
  }
  if (set.authzDeny !== false) byId.set(ALERT_AUTHZ_DENY_RULE_ID, authzDenyAlertRule(set));
  if (set.disconnect !== false) byId.set(ALERT_DISCONNECT_RULE_ID, disconnectAlertRule(set));
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/**
 * Bulk: makes the `alert-` rules exactly `alertRules(set)` (create / delete / recreate, never
 * PUT). `units` may be a function: it is then read after EMQX's rules were listed, so a level
 * changed meanwhile is not undone.
 */
export async function reconcileAlertRules(
  client: EmqxManagementClient,
  set: Omit<AlertRuleSet, 'units'> & { units: Iterable<UnitAlertLevel> | (() => Promise<Iterable<UnitAlertLevel>>) },
  options: StableReconcileOptions = {},
): Promise<StableReconcileResult> {
  const { units } = set;
  const wanted = typeof units === 'function' ? async () => alertRules({ ...set, units: await units() }) : alertRules({ ...set, units });
  return reconcileStableRules(client, { prefix: ALERT_RULE_PREFIX, wanted }, options);
}

/** One unit after its alert level changed (or the unit was deleted: `level: null`). */
export async function reconcileUnitAlertRules(
  client: EmqxManagementClient,
  unit: { domain: string; unitUuid: string; level: AlertLevel | null } & AlertRuleOptions,
  options: StableReconcileOptions = {},
): Promise<StableReconcileResult> {
  const wanted = unit.level === null ? [] : [alertLogRule(unit.domain, unit.unitUuid, unit.level, unit)];
  return reconcileStableRules(client, { prefix: ALERT_RULE_PREFIX, wanted, owners: [unit.unitUuid] }, options);
}
