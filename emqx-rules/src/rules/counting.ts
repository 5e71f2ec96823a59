// The `cnt-` family: stable message counters (wave2-integrations.md §4.1, reference/emqx-5.md §8.3).
//
//   cnt-unit-<unit>  SELECT clientid FROM "<d>/+/<unit>/+/pepeunit"
//   cnt-node-<node>  SELECT clientid FROM "<d>/<node>", "<d>/<node>/pepeunit"
//
// No actions, a minimal SELECT (never `payload`: that would decode JSON per message), and never
// edited: a PUT would reset the counter the backend samples, so each rule is created with its
// owner (unit or node) and deleted with it. Node topics do not contain the unit uuid, hence one
// rule per node; both forms of a node topic are listed so the counter survives a template rename
// from `x` to `x/pepeunit`, and a message matching both filters of one rule counts once.
// Unit load = matched(cnt-unit-U) + Σ matched(cnt-node-N) over U's nodes (counter-sampling.ts).
// Every PUBLISH routed on these topics counts, from any publisher (the unit's outputs, backend
// commands, other units writing its inputs).
import { BACKEND_SUFFIX } from '@pepeunit/common/topics';
import type { EmqxManagementClient } from '../management-client.js';
import { COUNT_RULE_PREFIX, countNodeRuleId, countUnitRuleId } from './catalogue.js';
import type { RuleSpec } from './catalogue.js';
import { checkDomain, quoteTopicFilter } from './generator.js';
import { reconcileStableRules } from './stable.js';
import type { StableReconcileOptions, StableReconcileResult } from './stable.js';

/** A unit and the nodes whose messages count towards its load. */
export interface CountedUnit {
  unitUuid: string;
  nodeUuids: readonly string[];
}

/** `<d>/+/<unit>/+/pepeunit`: every system topic of the unit (input and output base topics). */
export function unitCountingFilters(domain: string, unitUuid: string): string[] {
  const unit = countUnitRuleId(unitUuid).slice('cnt-unit-'.length);
  return [`${checkDomain(domain)}/+/${unit}/+/${BACKEND_SUFFIX}`];
}

/** `<d>/<node>` and `<d>/<node>/pepeunit`: both forms a unit node topic takes. */
export function nodeCountingFilters(domain: string, nodeUuid: string): string[] {
  const node = countNodeRuleId(nodeUuid).slice('cnt-node-'.length);
  const base = `${checkDomain(domain)}/${node}`;
  return [base, `${base}/${BACKEND_SUFFIX}`];
}

function countingSql(filters: readonly string[]): string {
  return `SELECT clientid FROM ${filters.map(quoteTopicFilter).join(', ')}`;
}

export function unitCountingSql(domain: string, unitUuid: string): string {
  return countingSql(unitCountingFilters(domain, unitUuid));
}

export function nodeCountingSql(domain: string, nodeUuid: string): string {
  return countingSql(nodeCountingFilters(domain, nodeUuid));
}

export function unitCountingRule(domain: string, unitUuid: string): RuleSpec {
  const id = countUnitRuleId(unitUuid);
  return {
    id,
    sql: unitCountingSql(domain, unitUuid),
    actions: [],
    enable: true,
    description: `Pepeunit message counter of unit ${id.slice('cnt-unit-'.length)} (system topics); managed by the Pepeunit backend, never edited (a change resets the counter)`,
  };
}

export function nodeCountingRule(domain: string, nodeUuid: string): RuleSpec {
  const id = countNodeRuleId(nodeUuid);
  return {
    id,
    sql: nodeCountingSql(domain, nodeUuid),
    actions: [],
    enable: true,
    description: `Pepeunit message counter of unit node ${id.slice('cnt-node-'.length)}; managed by the Pepeunit backend, never edited (a change resets the counter)`,
  };
}

/** The counting rules of one unit: its own and one per node. */
export function unitCountingRules(domain: string, unit: CountedUnit): RuleSpec[] {
  return [unitCountingRule(domain, unit.unitUuid), ...unit.nodeUuids.map((node) => nodeCountingRule(domain, node))];
}

/** Counting rules of many units (duplicates removed, sorted by id). */
export function countingRules(domain: string, units: Iterable<CountedUnit>): RuleSpec[] {
  const byId = new Map<string, RuleSpec>();
  for (const unit of units) for (const rule of unitCountingRules(domain, unit)) byId.set(rule.id, rule);
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** Bulk: makes the `cnt-` rules exactly those of `units` (creates missing, deletes the rest, never PUTs). */
export async function reconcileCountingRules(
  client: EmqxManagementClient,
  set: { domain: string; units: Iterable<CountedUnit> | (() => Promise<Iterable<CountedUnit>>) },
  options: StableReconcileOptions = {},
): Promise<StableReconcileResult> {
  const { units } = set;
  const wanted = typeof units === 'function' ? async () => countingRules(set.domain, await units()) : countingRules(set.domain, units);
  return reconcileStableRules(client, { prefix: COUNT_RULE_PREFIX, wanted }, options);
}

/**
 * One unit after a change: creates its missing counting rules and deletes those of nodes it no
 * longer has (`removedNodeUuids`), or all of them when `deleted`. Reads only this unit's rules.
 */
export async function reconcileUnitCountingRules(
  client: EmqxManagementClient,
  unit: { domain: string; unitUuid: string; nodeUuids: readonly string[]; removedNodeUuids?: readonly string[]; deleted?: boolean },
  options: StableReconcileOptions = {},
): Promise<StableReconcileResult> {
  const owners = [unit.unitUuid, ...unit.nodeUuids, ...(unit.removedNodeUuids ?? [])];
  const wanted = unit.deleted ? [] : unitCountingRules(unit.domain, unit);
  return reconcileStableRules(client, { prefix: COUNT_RULE_PREFIX, wanted, owners }, options);
}
