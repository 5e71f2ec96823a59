// Shapes of the EMQX 5.8 management API resources used by the platform
// (reference/emqx-5.md §1, §5, §6). Index signatures are kept because EMQX returns many
// fields we neither set nor read; the named fields are the ones we rely on.

export interface EmqxErrorBody {
  code: string;
  message: string;
}

export interface PageMeta {
  page: number;
  limit: number;
  count?: number;
  hasnext: boolean;
}

export interface Page<T> {
  data: T[];
  meta: PageMeta;
}

export interface SslOptions {
  enable: boolean;
  verify?: 'verify_peer' | 'verify_none';
  versions?: string[];
  server_name_indication?: string;
  cacertfile?: string;
  certfile?: string;
  keyfile?: string;
  [key: string]: unknown;
}

// ---------------------------------------------------------------------------------------------
// Authentication (global MQTT chain)

export interface AuthenticatorConfig {
  mechanism: string;
  backend?: string;
  enable?: boolean;
  [key: string]: unknown;
}

/** `password_based:http` — the authenticator the platform configures. */
export interface HttpAuthenticatorConfig extends AuthenticatorConfig {
  mechanism: 'password_based';
  backend: 'http';
  method: 'post' | 'get';
  url: string;
  headers?: Record<string, string>;
  body?: Record<string, unknown>;
  request_timeout?: string;
  connect_timeout?: string;
  pool_size?: number;
  enable_pipelining?: number;
  ssl?: SslOptions;
}

/** What `GET /authentication` returns per entry: the config plus its id. */
export interface Authenticator extends AuthenticatorConfig {
  id: string;
}

export type AuthenticatorPosition = 'front' | 'rear' | `before:${string}` | `after:${string}`;

// ---------------------------------------------------------------------------------------------
// Authorization

export interface AuthzSourceConfig {
  type: string;
  enable?: boolean;
  [key: string]: unknown;
}

export interface HttpAuthzSourceConfig extends AuthzSourceConfig {
  type: 'http';
  method: 'post' | 'get';
  url: string;
  headers?: Record<string, string>;
  body?: Record<string, unknown>;
  request_timeout?: string;
  connect_timeout?: string;
  pool_size?: number;
  enable_pipelining?: number;
  ssl?: SslOptions;
}

/** File source: `rules` holds acl.conf text (Erlang terms, one rule per `.`). */
export interface FileAuthzSourceConfig extends AuthzSourceConfig {
  type: 'file';
  rules: string;
}

export type AuthzSourcePosition = 'front' | 'rear' | `before:${string}` | `after:${string}`;

export interface AuthzCacheSettings {
  enable: boolean;
  max_size?: number;
  ttl?: string;
  excludes?: string[];
  [key: string]: unknown;
}

export interface AuthzSettings {
  no_match: 'allow' | 'deny';
  deny_action: 'ignore' | 'disconnect';
  cache: AuthzCacheSettings;
  [key: string]: unknown;
}

// ---------------------------------------------------------------------------------------------
// Listeners, zone, retainer

export interface ListenerConfig {
  id?: string;
  type?: string;
  name?: string;
  enable?: boolean;
  bind?: string;
  acceptors?: number;
  max_connections?: number | 'infinity';
  max_conn_rate?: string;
  messages_rate?: string;
  bytes_rate?: string;
  enable_authn?: boolean | 'quick_deny_anonymous';
  zone?: string;
  mountpoint?: string;
  access_rules?: string[];
  [key: string]: unknown;
}

export interface GlobalZoneConfig {
  mqtt?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface RetainerConfig {
  enable?: boolean;
  [key: string]: unknown;
}

// ---------------------------------------------------------------------------------------------
// Clients and bans

export interface ClientInfo {
  clientid: string;
  username: string | null;
  node?: string;
  ip_address?: string;
  port?: number;
  listener?: string;
  proto_name?: string;
  proto_ver?: number;
  clean_start?: boolean;
  keepalive?: number;
  connected?: boolean;
  connected_at?: string;
  created_at?: string;
  recv_msg?: number;
  send_msg?: number;
  subscriptions_cnt?: number;
  client_attrs?: Record<string, string>;
  [key: string]: unknown;
}

export interface ClientListQuery {
  page?: number;
  limit?: number;
  clientid?: string | string[];
  username?: string | string[];
  like_clientid?: string;
  like_username?: string;
  ip_address?: string;
  conn_state?: 'connected' | 'idle' | 'disconnected';
  /** `all` or a list of field names to keep responses small. */
  fields?: 'all' | string[];
}

export interface SubscriptionListQuery {
  page?: number;
  limit?: number;
  /** The filter exactly as subscribed. */
  topic?: string;
  /** Filters that match this topic name. */
  match_topic?: string;
  clientid?: string;
  qos?: 0 | 1 | 2;
}

export interface SubscriptionInfo {
  clientid: string;
  topic: string;
  qos: number;
  node?: string;
  [key: string]: unknown;
}

export type BanAs = 'clientid' | 'username' | 'peerhost' | 'clientid_re' | 'username_re' | 'peerhost_net';

export interface BanCreate {
  as: BanAs;
  who: string;
  by?: string;
  reason?: string;
  /** RFC 3339 or epoch seconds. */
  at?: string | number;
  /** RFC 3339, epoch seconds, or "infinity" (the default). */
  until?: string | number;
}

export interface Ban {
  as: BanAs;
  who: string;
  by: string;
  reason: string;
  at: string;
  until: string;
}

export interface BanListQuery {
  page?: number;
  limit?: number;
  clientid?: string;
  username?: string;
  peerhost?: string;
  like_clientid?: string;
  like_username?: string;
  like_peerhost?: string;
}

export interface EmqxStatus {
  /** True when the node answered 200 (broker started, app running). */
  running: boolean;
  nodeName?: string;
  version?: string;
  brokerStatus?: string;
  appStatus?: string;
}

// ---------------------------------------------------------------------------------------------
// Rules (reference/emqx-5.md §2, §4)

/** Built-in `republish` arguments (all template strings render `${var}` against the SELECT output). */
export interface RepublishArgs {
  topic: string;
  qos?: number | string;
  retain?: boolean | string;
  /** "" = the whole SELECT output as JSON. */
  payload?: string;
  mqtt_properties?: Record<string, string>;
  /** "" = no user properties; `${pub_props.'User-Property'}` forwards the original ones. */
  user_properties?: string;
  direct_dispatch?: boolean | string;
}

export type RuleAction =
  | string
  | { function: 'republish'; args: RepublishArgs }
  | { function: string; args?: Record<string, unknown> };

/** Body of `POST /rules` (`id` included) and `PUT /rules/{id}` (`id` ignored). */
export interface RuleCreate {
  id?: string;
  sql: string;
  actions?: RuleAction[];
  enable?: boolean;
  name?: string;
  description?: string;
}

export interface RuleInfo {
  id: string;
  name: string;
  sql: string;
  enable: boolean;
  description: string;
  from: string[];
  actions: RuleAction[];
  created_at: string;
  last_modified_at?: string;
  [key: string]: unknown;
}

export interface RuleListQuery {
  page?: number;
  limit?: number;
  enable?: boolean;
  from?: string;
  /** Substring of the id (not a prefix match). */
  like_id?: string;
  like_from?: string;
  like_description?: string;
  match_from?: string;
}

export interface RuleMetricsValues {
  matched: number;
  passed: number;
  failed: number;
  'failed.exception': number;
  'failed.no_result': number;
  'actions.total': number;
  'actions.success': number;
  'actions.failed': number;
  'actions.failed.out_of_service': number;
  'actions.failed.unknown': number;
  'actions.discarded': number;
  'matched.rate': number;
  'matched.rate.max': number;
  'matched.rate.last5m': number;
  [key: string]: number;
}

export interface RuleMetrics {
  id: string;
  metrics: RuleMetricsValues;
  node_metrics: Array<{ node: string; metrics: RuleMetricsValues }>;
}

/** `POST /rule_test` context for a publish (`event_type: message_publish`). */
export interface RuleTestContext {
  event_type?: string;
  topic?: string;
  clientid?: string;
  username?: string;
  qos?: number;
  payload?: string;
  [key: string]: unknown;
}

// ---------------------------------------------------------------------------------------------
// Connectors and actions (reference/emqx-5.md §4.3; EMQX 5.4+ "bridge v2")

/** `POST /connectors` body of an HTTP connector (`type`/`name` are ignored by PUT). */
export interface ConnectorCreate {
  type: string;
  name: string;
  url: string;
  enable?: boolean;
  description?: string;
  headers?: Record<string, string>;
  connect_timeout?: string;
  pool_type?: 'random' | 'hash';
  pool_size?: number;
  enable_pipelining?: number;
  ssl?: SslOptions;
  resource_opts?: Record<string, unknown>;
  [key: string]: unknown;
}

/** What `GET /connectors[/{type:name}]` returns: the config plus its state. */
export interface ConnectorInfo extends ConnectorCreate {
  status?: string;
  node_status?: Array<{ node: string; status: string }>;
}

export interface HttpActionParameters {
  path?: string;
  method?: 'post' | 'put' | 'get' | 'delete';
  headers?: Record<string, string>;
  /** Template; empty/absent = the whole rule output as JSON (`${.}`). */
  body?: string;
  max_retries?: number;
  [key: string]: unknown;
}

/** `POST /actions` body of an HTTP action. */
export interface ActionCreate {
  type: string;
  name: string;
  connector: string;
  enable?: boolean;
  description?: string;
  parameters: HttpActionParameters;
  resource_opts?: {
    query_mode?: 'sync' | 'async';
    inflight_window?: number;
    worker_pool_size?: number;
    request_ttl?: string;
    max_buffer_bytes?: string;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

export interface ActionInfo extends ActionCreate {
  status?: string;
  node_status?: Array<{ node: string; status: string }>;
}

/** `GET /actions/{id}/metrics`: counters (`matched`, `success`, `failed`, `retried`, `dropped.*`...) and gauges (`inflight`, `queuing`). */
export interface ActionMetrics {
  metrics: Record<string, number>;
  node_metrics: Array<{ node: string; metrics: Record<string, number> }>;
}

/** `mode` of `/prometheus/data_integration`. */
export type DataIntegrationMode = 'node' | 'all_nodes_aggregated' | 'all_nodes_unaggregated';
