// The `pipe-` family end to end: which nodes get a rule (those with an enabled DataPipe policy),
// reconciled in bulk or one node at a time. The caller decides which nodes are enabled (the
// backend reads Postgres); this module only turns that into EMQX rules.
import type { EmqxManagementClient } from '../management-client.js';
import type { Logger } from '../logger.js';
import { PIPE_RULE_PREFIX, pipeRuleId } from './catalogue.js';
import { pipeRule, pipeRules } from './generator.js';
import { reconcileRule, reconcileRules } from './reconciler.js';
import type { ReconcileRulesOptions, RuleReconcileResult, SingleRuleOutcome } from './reconciler.js';

export interface PipeRuleSet {
  domain: string;
  /** Uuids of the nodes whose policy is enabled, or a function reading them (called after EMQX was listed). */
  enabledNodes: Iterable<string> | (() => Promise<Iterable<string>>);
}

/** Makes the `pipe-` rules in EMQX exactly one per enabled node. */
export async function reconcilePipeRules(client: EmqxManagementClient, set: PipeRuleSet, options: ReconcileRulesOptions = {}): Promise<RuleReconcileResult> {
  const { enabledNodes } = set;
  const wanted = typeof enabledNodes === 'function' ? async () => pipeRules(set.domain, await enabledNodes()) : pipeRules(set.domain, enabledNodes);
  return reconcileRules(client, { prefix: PIPE_RULE_PREFIX, wanted }, options);
}

/** One node after a policy change: PUT its rule when enabled (and different), DELETE it otherwise. */
export async function reconcilePipeNode(
  client: EmqxManagementClient,
  node: { domain: string; nodeUuid: string; enabled: boolean },
  options: { logger?: Logger } = {},
): Promise<SingleRuleOutcome> {
  const id = pipeRuleId(node.nodeUuid);
  return reconcileRule(client, id, node.enabled ? pipeRule({ domain: node.domain, nodeUuid: node.nodeUuid }) : null, options);
}

/** Alias of `reconcilePipeNode` (the single-node fast path). */
export const reconcileNode = reconcilePipeNode;
