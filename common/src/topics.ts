/**
 * The MQTT topic scheme of Pepeunit (reference pepeunit-backend.md §2.1). One source of truth for
 * building and parsing topics, imported by the backend, the ingest and the rule generator.
 */

export const BACKEND_SUFFIX = 'pepeunit';

export const Destination = {
  InputBase: 'input_base_topic',
  OutputBase: 'output_base_topic',
  Input: 'input_topic',
  Output: 'output_topic',
} as const;
export type BaseDestination = typeof Destination.InputBase | typeof Destination.OutputBase;

export const InputBasePurpose = ['update', 'env_update', 'schema_update', 'log_sync'] as const;
export const OutputBasePurpose = ['state', 'log'] as const;
export type InputBasePurpose = (typeof InputBasePurpose)[number];
export type OutputBasePurpose = (typeof OutputBasePurpose)[number];

/** `<domain>/<destination>/<unit_uuid>/<purpose>/pepeunit` */
export function systemTopic(domain: string, destination: BaseDestination, unitUuid: string, purpose: string): string {
  return `${domain}/${destination}/${unitUuid}/${purpose}/${BACKEND_SUFFIX}`;
}

/** Unit-node physical topic: `<domain>/<node_uuid>/pepeunit` when the template name ends in `/pepeunit`, else `<domain>/<node_uuid>`. */
export function unitNodeTopic(domain: string, nodeUuid: string, topicName: string): string {
  return topicName.endsWith(`/${BACKEND_SUFFIX}`) ? `${domain}/${nodeUuid}/${BACKEND_SUFFIX}` : `${domain}/${nodeUuid}`;
}

/** Whether a template name may carry a DataPipe (ends with `/pepeunit`). */
export function isPipeableTopicName(topicName: string): boolean {
  return topicName.endsWith(`/${BACKEND_SUFFIX}`);
}

/** The subscription of the backend for system topics. */
export function systemTopicsFilter(domain: string): string {
  return `${domain}/+/+/+/${BACKEND_SUFFIX}`;
}

/** The Go DataPipe's subscription for pipeable unit-node topics. */
export function unitNodePipeFilter(domain: string): string {
  return `${domain}/+/${BACKEND_SUFFIX}`;
}

export function sharedFilter(group: string, filter: string): string {
  return `$share/${group}/${filter}`;
}

export interface ParsedSystemTopic {
  readonly domain: string;
  readonly destination: BaseDestination;
  readonly unitUuid: string;
  readonly purpose: string;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return UUID_RE.test(value);
}

/** Parses a 5-level system topic; returns null for anything else. */
export function parseSystemTopic(topic: string): ParsedSystemTopic | null {
  const parts = topic.split('/');
  if (parts.length !== 5 || parts[4] !== BACKEND_SUFFIX) return null;
  const [domain, destination, unitUuid, purpose] = parts as [string, string, string, string];
  if (destination !== Destination.InputBase && destination !== Destination.OutputBase) return null;
  if (!isUuid(unitUuid)) return null;
  return { domain, destination, unitUuid: unitUuid.toLowerCase(), purpose };
}

/** Parses `<domain>/<node_uuid>/pepeunit` (3 levels, as the Go DataPipe does); null otherwise. */
export function parsePipeTopic(topic: string): { domain: string; nodeUuid: string } | null {
  const parts = topic.split('/');
  if (parts.length !== 3 || parts[2] !== BACKEND_SUFFIX) return null;
  const nodeUuid = parts[1] as string;
  if (!isUuid(nodeUuid)) return null;
  return { domain: parts[0] as string, nodeUuid: nodeUuid.toLowerCase() };
}

/**
 * Rules intake of the ingest: broker rules republish the publishes of topics with an enabled
 * DataPipe to `pepeunit_ingest/<original topic>` with a JSON envelope
 * `{"payload": ..., "topic": ..., "clientid": ..., "ts": <publish_received_at ms>}`; ingest
 * processes consume it through a shared subscription. Only Backend tokens may touch this prefix.
 */
export const INGEST_TOPIC_PREFIX = 'pepeunit_ingest';

export function ingestTopicTemplate(): string {
  return `${INGEST_TOPIC_PREFIX}/\${topic}`;
}

export function ingestSubscription(group: string): string {
  return sharedFilter(group, `${INGEST_TOPIC_PREFIX}/#`);
}

/** The original topic of a republished intake message, or null. */
export function originalTopicOfIngest(topic: string): string | null {
  return topic.startsWith(`${INGEST_TOPIC_PREFIX}/`) ? topic.slice(INGEST_TOPIC_PREFIX.length + 1) : null;
}
