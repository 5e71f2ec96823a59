export {
  ALERT_RULE_PREFIX,
  COUNT_RULE_PREFIX,
  PIPE_RULE_PREFIX,
  RULE_FAMILIES,
  RULE_ID_MAX_LENGTH,
  RULE_ID_PATTERN,
  RuleGenerationError,
  isValidRuleId,
  nodeUuidOfPipeRule,
  pipeRuleId,
  ruleFamilyOf,
} from './catalogue.js';
export type { RuleFamily, RuleFamilyName, RuleSpec } from './catalogue.js';
export { checkDomain, pipeRepublishAction, pipeRule, pipeRuleSql, pipeRules, pipeSourceTopic, quoteTopicFilter, sqlString } from './generator.js';
export type { PipeRuleInput } from './generator.js';
export { actionsEqual, normaliseSql, ruleDifferences } from './compare.js';
export { RuleReconcileError, forEachConcurrently, listFamilyRules, reconcileRule, reconcileRules, ruleBody } from './reconciler.js';
export type { ReconcileRulesOptions, RuleReconcileResult, RuleSetSpec, SingleRuleOutcome } from './reconciler.js';
export { reconcileNode, reconcilePipeNode, reconcilePipeRules } from './pipe.js';
export type { PipeRuleSet } from './pipe.js';
