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
/** Reserved: per-unit message counters (stable, no actions; read through rule metrics). */
export const COUNT_RULE_PREFIX = 'count-';
/** Reserved: alert forwarding (stable; HTTP action to the backend). */
export const ALERT_RULE_PREFIX = 'alert-';

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
    reserved: true,
    description: 'Per-unit message counters (matched/passed metrics sampled by the backend); never edited on policy changes',
  },
  alert: {
    name: 'alert',
    prefix: ALERT_RULE_PREFIX,
    kind: 'stable',
    reserved: true,
    description: 'Forwards chosen log levels and broker events to the backend alert endpoint',
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
