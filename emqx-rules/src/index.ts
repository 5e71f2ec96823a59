// @pepeunit/emqx-rules — EMQX management-API client, the idempotent EMQX controller, the rule
// catalogue/generator/reconciler (rules/) and the embedded EMQX-compatible broker with its rule
// engine (embedded/).
export {
  EmqxManagementClient,
  EmqxApiError,
  EmqxUnavailableError,
  isAlreadyExistsError,
  isMissingSourceError,
} from './management-client.js';
export type { EmqxManagementClientOptions, ApiResponse, Query, RequestOptions } from './management-client.js';
export {
  AUTHN_REQUEST_BODY_TEMPLATE,
  AUTHZ_REQUEST_BODY_TEMPLATE,
  BACKEND_AUTHN_PATH,
  BACKEND_AUTHZ_PATH,
  DEFAULT_LISTENER_ID,
  authenticatorId,
  buildEmqxBaseConfig,
  buildFileSourceRules,
  emqxBaseOptionsFromEnv,
  reconcileEmqxBase,
} from './controller.js';
export type { EmqxBaseConfig, EmqxBaseOptions, ReconcileResult } from './controller.js';
export { differences, isSatisfied } from './config-compare.js';
export { parseByteSize, parseDuration, parseRate } from './emqx-values.js';
export type * from './emqx-types.js';
export type { Logger } from './logger.js';
export { startEmbeddedBroker } from './embedded/index.js';
export type { ApiKey, ClientEvent, EmbeddedBroker, EmbeddedBrokerHooks, EmbeddedBrokerOptions, ManagementRoutes, PublishedMessage } from './embedded/index.js';
export * from './rules/index.js';
export { RuleEngine, parseRuleSql, compileRuleSql, SqlSyntaxError, UnsupportedSqlError, EmptyFromError, supportedFunctions } from './embedded/index.js';
export type { RepublishMessage, RuleEngineOptions, RulePublishEvent } from './embedded/index.js';
