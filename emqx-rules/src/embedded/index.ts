export { startEmbeddedBroker } from './broker.js';
export type { ClientEvent, EmbeddedBroker, EmbeddedBrokerHooks, EmbeddedBrokerOptions, PublishedMessage } from './broker.js';
export type { ApiKey, ManagementContext, ManagementRoutes } from './http-api.js';
export { ApiError } from './api-error.js';
export { ConfigStore } from './config-store.js';
export type { StoredConfig } from './config-store.js';
export { ClientSession, SessionRegistry } from './sessions.js';
export { topicMatches, isValidTopicFilter } from './access/topic-match.js';
export { parseAclRules, evaluateAclRules, AclSyntaxError } from './access/acl-file.js';
