// The rule catalogue: every EMQX rule the platform owns belongs to one family, recognised by its
// id prefix. The reconciler of a family only ever lists, changes and deletes ids with that
// prefix, so families never touch each other's rules (nor rules an operator made by hand).
//
// Policy rules change whenever users enable or edit a DataPipe policy; stable rules (message
// counters, alerts) must not, because every PUT resets a rule's metrics (reference/emqx-5.md
// §2.3, §8.3). Keeping them in separate families means a policy edit never zeroes a counter.
import type { RuleAction } from '../emqx-types.js';

/** A rule as the platform wants it in EMQX (the body of `PUT /rules/{id}` plus its id). */
export interface RuleSpec {
  /** Deterministic id: `<family prefix><key>`, matching `^[A-Za-z0-9]+[A-Za-z0-9-_]*$`. */
  id: string;
  sql: string;
  actions: RuleAction[];
  enable: boolean;
  description: string;
  /** Dashboard name; compared only when set. */
  name?: string;
}

export type RuleFamilyName = 'pipe' | 'count' | 'alert';

export interface RuleFamily {
  name: RuleFamilyName;
  prefix: string;
  /** `policy`: changes with user policies; `stable`: created once per unit/event, never edited for policy changes. */
  kind: 'policy' | 'stable';
  /** True while no code generates rules of the family yet (the prefix is only reserved). */
  reserved: boolean;
  description: string;
}

/** DataPipe intake: one rule per unit node with an enabled policy (`pipe-<node uuid>`). */
export const PIPE_RULE_PREFIX = 'pipe-';
/** Message counters (stable, no actions; read through rule metrics): `cnt-unit-*`, `cnt-node-*`. */
export const COUNT_RULE_PREFIX = 'cnt-';
/** `cnt-unit-<unit uuid>`: the unit's system topics. */
export const COUNT_UNIT_RULE_PREFIX = 'cnt-unit-';
/** `cnt-node-<node uuid>`: one unit node's topic, in both forms. */
export const COUNT_NODE_RULE_PREFIX = 'cnt-node-';
/** Alert forwarding (stable; HTTP action to the backend): `alert-log-*`, `alert-authz-deny`, `alert-disconnect`. */
export const ALERT_RULE_PREFIX = 'alert-';
/** `alert-log-<level>-<unit uuid>`: the unit's log entries at or above `level`. */
export const ALERT_LOG_RULE_PREFIX = 'alert-log-';
/** Instance rule: authorization denials (not cache hits). */
export const ALERT_AUTHZ_DENY_RULE_ID = 'alert-authz-deny';
/** Instance rule: abnormal disconnects. */
export const ALERT_DISCONNECT_RULE_ID = 'alert-disconnect';

export const RULE_FAMILIES: Readonly<Record<RuleFamilyName, RuleFamily>> = Object.freeze({
  pipe: {
    name: 'pipe',
    prefix: PIPE_RULE_PREFIX,
    kind: 'policy',
    reserved: false,
    description: 'Pre-filter for the ingest: republishes a unit node topic to pepeunit_ingest/<topic> while its DataPipe policy is enabled',
  },
  count: {
    name: 'count',
    prefix: COUNT_RULE_PREFIX,
    kind: 'stable',
    reserved: false,
    description: 'Message counters per unit (cnt-unit-<unit>) and per unit node (cnt-node-<node>), no actions; their matched metric is sampled by the backend; created and deleted with their owner, never edited',
  },
  alert: {
    name: 'alert',
    prefix: ALERT_RULE_PREFIX,
    kind: 'stable',
    reserved: false,
    description: 'Forwards unit log entries at or above the unit alert level (alert-log-<level>-<unit>), authorization denials and abnormal disconnects to the backend through the HTTP action',
  },
});

/** EMQX's rule id rule (HOCON map key, reference/emqx-5.md §2.2). */
export const RULE_ID_PATTERN = /^[A-Za-z0-9]+[A-Za-z0-9_-]*$/;
export const RULE_ID_MAX_LENGTH = 255;

export function isValidRuleId(id: string): boolean {
  return id.length <= RULE_ID_MAX_LENGTH && RULE_ID_PATTERN.test(id);
}

/** The family owning a rule id; undefined for rules the platform does not manage. */
export function ruleFamilyOf(id: string): RuleFamily | undefined {
  return Object.values(RULE_FAMILIES).find((family) => id.startsWith(family.prefix));
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `pipe-<node uuid>` (lower case). Throws for anything that is not a UUID. */
export function pipeRuleId(nodeUuid: string): string {
  if (typeof nodeUuid !== 'string' || !UUID.test(nodeUuid)) throw new RuleGenerationError(`unit node uuid ${JSON.stringify(nodeUuid)} is not a UUID`);
  return `${PIPE_RULE_PREFIX}${nodeUuid.toLowerCase()}`;
}

function checkUuid(uuid: string, what: string): string {
  if (typeof uuid !== 'string' || !UUID.test(uuid)) throw new RuleGenerationError(`${what} ${JSON.stringify(uuid)} is not a UUID`);
  return uuid.toLowerCase();
}

/** `cnt-unit-<unit uuid>` (lower case). */
export function countUnitRuleId(unitUuid: string): string {
  return `${COUNT_UNIT_RULE_PREFIX}${checkUuid(unitUuid, 'unit uuid')}`;
}

/** `cnt-node-<node uuid>` (lower case). */
export function countNodeRuleId(nodeUuid: string): string {
  return `${COUNT_NODE_RULE_PREFIX}${checkUuid(nodeUuid, 'unit node uuid')}`;
}

/** Unit log levels as the backend writes them, lowest first (reference `unit_logs.level`). */
export const ALERT_LEVELS = ['Debug', 'Info', 'Warning', 'Error', 'Critical'] as const;
export type AlertLevel = (typeof ALERT_LEVELS)[number];

export function isAlertLevel(value: unknown): value is AlertLevel {
  return typeof value === 'string' && (ALERT_LEVELS as readonly string[]).includes(value);
}

/**
 * `alert-log-<level>-<unit uuid>`: the level is part of the id, so changing a unit's alert
 * level deletes one rule and creates another instead of editing a rule in place (stable rules
 * are never PUT).
 */
export function alertLogRuleId(level: AlertLevel, unitUuid: string): string {
  if (!isAlertLevel(level)) throw new RuleGenerationError(`alert level ${JSON.stringify(level)} is not one of ${ALERT_LEVELS.join(', ')}`);
  return `${ALERT_LOG_RULE_PREFIX}${level.toLowerCase()}-${checkUuid(unitUuid, 'unit uuid')}`;
}

/** What a stable rule id says about its owner; null for ids of no stable family. */
export type StableRuleOwner =
  | { kind: 'count-unit'; unitUuid: string }
  | { kind: 'count-node'; nodeUuid: string }
  | { kind: 'alert-log'; unitUuid: string; level: AlertLevel }
  | { kind: 'alert-instance'; id: string };

export function stableRuleOwner(id: string): StableRuleOwner | null {
  const uuidAfter = (prefix: string): string | null => {
    const rest = id.slice(prefix.length);
    return UUID.test(rest) ? rest.toLowerCase() : null;
  };
  if (id.startsWith(COUNT_UNIT_RULE_PREFIX)) {
    const unitUuid = uuidAfter(COUNT_UNIT_RULE_PREFIX);
    return unitUuid ? { kind: 'count-unit', unitUuid } : null;
  }
  if (id.startsWith(COUNT_NODE_RULE_PREFIX)) {
    const nodeUuid = uuidAfter(COUNT_NODE_RULE_PREFIX);
    return nodeUuid ? { kind: 'count-node', nodeUuid } : null;
  }
  if (id.startsWith(ALERT_LOG_RULE_PREFIX)) {
    const rest = id.slice(ALERT_LOG_RULE_PREFIX.length);
    const dash = rest.indexOf('-');
    const level = ALERT_LEVELS.find((candidate) => candidate.toLowerCase() === rest.slice(0, dash));
    const unitUuid = rest.slice(dash + 1);
    return level && UUID.test(unitUuid) ? { kind: 'alert-log', unitUuid: unitUuid.toLowerCase(), level } : null;
  }
  if (id === ALERT_AUTHZ_DENY_RULE_ID || id === ALERT_DISCONNECT_RULE_ID) return { kind: 'alert-instance', id };
  return null;
}

/** The node uuid of a `pipe-` rule id, or null. */
export function nodeUuidOfPipeRule(id: string): string | null {
  if (!id.startsWith(PIPE_RULE_PREFIX)) return null;
  const uuid = id.slice(PIPE_RULE_PREFIX.length);
  return UUID.test(uuid) ? uuid.toLowerCase() : null;
}

/** A rule could not be generated from the given data (bad domain, uuid, topic...). */
export class RuleGenerationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RuleGenerationError';
  }
}
