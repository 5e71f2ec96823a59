export {
  ALERT_AUTHZ_DENY_RULE_ID,
  ALERT_DISCONNECT_RULE_ID,
  ALERT_LEVELS,
  ALERT_LOG_RULE_PREFIX,
  ALERT_RULE_PREFIX,
  COUNT_NODE_RULE_PREFIX,
  COUNT_RULE_PREFIX,
  COUNT_UNIT_RULE_PREFIX,
  PIPE_RULE_PREFIX,
  RULE_FAMILIES,
  RULE_ID_MAX_LENGTH,
  RULE_ID_PATTERN,
  RuleGenerationError,
  alertLogRuleId,
  countNodeRuleId,
  countUnitRuleId,
  isAlertLevel,
  isValidRuleId,
  nodeUuidOfPipeRule,
  pipeRuleId,
  ruleFamilyOf,
  stableRuleOwner,
} from './catalogue.js';
export type { AlertLevel, RuleFamily, RuleFamilyName, RuleSpec, StableRuleOwner } from './catalogue.js';
export { checkDomain, pipeRepublishAction, pipeRule, pipeRuleSql, pipeRules, pipeSourceTopic, quoteTopicFilter, sqlString } from './generator.js';
export type { PipeRuleInput } from './generator.js';
export { actionsEqual, normaliseSql, ruleDifferences } from './compare.js';
export { RuleReconcileError, forEachConcurrently, listFamilyRules, reconcileRule, reconcileRules, ruleBody } from './reconciler.js';
export type { ReconcileRulesOptions, RuleReconcileResult, RuleSetSpec, SingleRuleOutcome } from './reconciler.js';
export { reconcileNode, reconcilePipeNode, reconcilePipeRules } from './pipe.js';
export type { PipeRuleSet } from './pipe.js';
export { StableReconcileError, planStableRules, reconcileStableRules } from './stable.js';
export type { StablePlan, StableReconcileOptions, StableReconcileResult, StableRuleSetSpec } from './stable.js';
export {
  countingRules,
  nodeCountingFilters,
  nodeCountingRule,
  nodeCountingSql,
  reconcileCountingRules,
  reconcileUnitCountingRules,
  unitCountingFilters,
  unitCountingRule,
  unitCountingRules,
  unitCountingSql,
} from './counting.js';
export type { CountedUnit } from './counting.js';
export {
  ALERT_DISCONNECT_REASONS,
  ALERT_KINDS,
  alertLogRule,
  alertLogSql,
  alertRules,
  authzDenyAlertRule,
  authzDenyAlertSql,
  disconnectAlertRule,
  disconnectAlertSql,
  levelSpellings,
  levelsAtOrAbove,
  reconcileAlertRules,
  reconcileUnitAlertRules,
  unitLogTopic,
} from './alerts.js';
export type { AlertKind, AlertRuleOptions, AlertRuleSet, UnitAlertLevel } from './alerts.js';
export {
  ALERT_ACTION_NAME,
  ALERT_ACTION_PATH,
  ALERT_ACTION_REF,
  ALERT_CONNECTOR_NAME,
  BACKEND_EMQX_WEBHOOK_PATH,
  buildAlertAction,
  buildAlertConnector,
  secretFingerprint,
} from './alert-webhook.js';
export type { AlertWebhookOptions } from './alert-webhook.js';
export {
  CounterParseError,
  counterDeltas,
  counterReading,
  parseDataIntegration,
  parseDataIntegrationJson,
  parseDataIntegrationText,
  ruleIdOfSeries,
  ruleRates,
  unitLoads,
} from './counter-sampling.js';
export type { CounterDeltas, CounterReading, DataIntegrationSnapshot, ParseOptions, Series, SeriesValues, UnitLoad } from './counter-sampling.js';
