// Schemas and defaults of the configuration resources the embedded broker serves, following
// EMQX 5.8's schema for the fields in use. Bodies EMQX would reject are rejected here with
// 400 BAD_REQUEST; resources EMQX has but the embedded broker does not implement are refused with
// a message saying so instead of being silently accepted.
import { isIP } from 'node:net';
import { parseEpochSecondsOrRfc3339 } from '../emqx-values.js';
import { ApiError, badRequest, validationError } from './api-error.js';
import { AclSyntaxError, parseAclRules } from './access/acl-file.js';
import { isValidTopicFilter } from './access/topic-match.js';
import { checkObject, isObject } from './schema.js';
import type { ObjectSpec } from './schema.js';

// ---------------------------------------------------------------------------------------------
// Shared HTTP request fields (authenticator and authorization source)

export const sslSpec: ObjectSpec = {
  enable: { type: 'boolean', default: false },
  verify: { type: 'string', enum: ['verify_peer', 'verify_none'], default: 'verify_peer' },
  versions: { type: 'string_array' },
  server_name_indication: { type: 'string' },
  cacertfile: { type: 'string' },
  certfile: { type: 'string' },
  keyfile: { type: 'string' },
  password: { type: 'string' },
  ciphers: { type: 'string_array' },
  depth: { type: 'integer', min: 0 },
  reuse_sessions: { type: 'boolean' },
  secure_renegotiate: { type: 'boolean' },
  log_level: { type: 'string' },
  hibernate_after: { type: 'duration' },
  middlebox_comp_mode: { type: 'boolean' },
};

export function checkHttpUrl(value: string): string | undefined {
  try {
    const url = new URL(value.replace(/\$\{[^}]*\}/g, 'x'));
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'bad_url: scheme must be http or https';
    return undefined;
  } catch {
    return 'bad_url';
  }
}

function httpRequestSpec(requestTimeoutDefault: string): ObjectSpec {
  return {
    enable: { type: 'boolean', default: true },
    method: { type: 'string', enum: ['post', 'get'], default: 'post' },
    url: { type: 'string', required: true, check: checkHttpUrl },
    headers: { type: 'string_map' },
    body: { type: 'object' },
    request_timeout: { type: 'duration', default: requestTimeoutDefault },
    connect_timeout: { type: 'duration', default: '15s' },
    pool_size: { type: 'integer', min: 1, max: 1024, default: 8 },
    enable_pipelining: { type: 'integer', min: 1, default: 100 },
    max_retries: { type: 'integer', min: 0 },
    ssl: { type: 'object', fields: sslSpec, default: { enable: false, verify: 'verify_peer' } },
  };
}

const DEFAULT_REQUEST_HEADERS: Record<string, string> = {
  accept: 'application/json',
  'cache-control': 'no-cache',
  connection: 'keep-alive',
  'keep-alive': 'timeout=30, max=1000',
};

/** Header names lower-cased and EMQX's default headers merged under the configured ones. */
function withDefaultHeaders(config: Record<string, unknown>, path: string): void {
  const headers: Record<string, string> = {};
  for (const [key, value] of Object.entries((config.headers as Record<string, string> | undefined) ?? {})) headers[key.toLowerCase()] = value;
  if (config.method === 'get' && 'content-type' in headers) {
    throw validationError(`${path}.headers`, 'HTTP GET requests cannot include content-type header.');
  }
  const defaults = config.method === 'post' ? { ...DEFAULT_REQUEST_HEADERS, 'content-type': 'application/json' } : DEFAULT_REQUEST_HEADERS;
  config.headers = { ...defaults, ...headers };
  if (config.body === undefined) config.body = {};
}

// ---------------------------------------------------------------------------------------------
// Authentication

export const SUPPORTED_AUTHENTICATOR = 'password_based:http';

/** Validates an authenticator body (POST/PUT) and returns the stored config with defaults. */
export function checkAuthenticator(body: unknown): Record<string, unknown> {
  if (!isObject(body)) throw validationError('authentication', 'not an object', { value: body });
  const mechanism = body.mechanism;
  const backend = body.backend;
  if (typeof mechanism !== 'string') throw validationError('authentication.mechanism', 'required_field');
  const known = ['password_based', 'jwt', 'scram', 'gcp_device', 'cinfo', 'ldap'];
  if (!known.includes(mechanism)) throw badRequest(`Unknown type '${mechanism}'`);
  if (mechanism !== 'password_based' || backend !== 'http') {
    throw badRequest(
      `Unsupported authentication type ${mechanism}${typeof backend === 'string' ? `:${backend}` : ''}: the embedded broker implements ${SUPPORTED_AUTHENTICATOR} only`,
    );
  }
  const config = checkObject(
    { mechanism: { type: 'string', required: true }, backend: { type: 'string', required: true }, ...httpRequestSpec('5s') },
    body,
    'authentication',
    { ignore: ['id'] },
  );
  withDefaultHeaders(config, 'authentication');
  return config;
}

// ---------------------------------------------------------------------------------------------
// Authorization

export const SUPPORTED_SOURCE_TYPES = ['file', 'http'] as const;
const EMQX_SOURCE_TYPES = ['file', 'http', 'built_in_database', 'redis', 'mysql', 'postgresql', 'mongodb', 'ldap', 'client_info'];

/** Validates an authorization source body and returns the stored config with defaults. */
export function checkAuthzSource(body: unknown): Record<string, unknown> {
  if (!isObject(body)) throw validationError('authorization.sources', 'not an object', { value: body });
  const type = body.type;
  if (typeof type !== 'string') throw validationError('authorization.sources.type', 'required_field');
  if (!EMQX_SOURCE_TYPES.includes(type)) throw validationError('authorization.sources.type', 'unknown authz source type', { value: type });
  if (type === 'http') {
    const config = checkObject({ type: { type: 'string', required: true }, ...httpRequestSpec('30s') }, body, 'authorization.sources.http');
    withDefaultHeaders(config, 'authorization.sources.http');
    return config;
  }
  if (type === 'file') {
    if ('path' in body && !('rules' in body)) {
      throw badRequest('The embedded broker takes the file source as inline "rules" text, not a "path"');
    }
    const config = checkObject(
      { type: { type: 'string', required: true }, enable: { type: 'boolean', default: true }, rules: { type: 'string', required: true } },
      body,
      'authorization.sources.file',
    );
    try {
      parseAclRules(config.rules as string);
    } catch (error) {
      if (error instanceof AclSyntaxError) throw badRequest(`bad_acl_file_content: ${error.message}`);
      throw error;
    }
    return config;
  }
  throw badRequest(`Unsupported authorization source type ${type}: the embedded broker implements ${SUPPORTED_SOURCE_TYPES.join(' and ')} only`);
}

const cacheSpec: ObjectSpec = {
  enable: { type: 'boolean', default: true },
  max_size: { type: 'integer', min: 1, max: 1_048_576, default: 32 },
  ttl: { type: 'duration', default: '1m' },
  excludes: { type: 'string_array', default: [], check: (value) => (isValidTopicFilter(value) ? undefined : 'invalid topic filter') },
};

export const DEFAULT_AUTHZ_SETTINGS = {
  no_match: 'allow',
  deny_action: 'ignore',
  cache: { enable: true, max_size: 32, ttl: '1m', excludes: [] as string[] },
};

/** `PUT /authorization/settings`: all three keys required. */
export function checkAuthzSettings(body: unknown): Record<string, unknown> {
  return checkObject(
    {
      no_match: { type: 'string', enum: ['allow', 'deny'], required: true },
      deny_action: { type: 'string', enum: ['ignore', 'disconnect'], required: true },
      cache: { type: 'object', fields: cacheSpec, required: true },
    },
    body,
    'authorization',
  );
}

/** EMQX 5.8's stock etc/acl.conf: the file source a fresh node starts with. */
export const DEFAULT_ACL_RULES = [
  '%% EMQX default acl.conf',
  '{allow, {username, {re, "^dashboard$"}}, subscribe, ["$SYS/#"]}.',
  '{allow, {ipaddr, "127.0.0.1"}, all, ["$SYS/#", "#"]}.',
  '{deny, all, subscribe, ["$SYS/#", {eq, "#"}, {eq, "+/#"}]}.',
  '{allow, all}.',
  '',
].join('\n');

// ---------------------------------------------------------------------------------------------
// Listeners

const listenerSpec: ObjectSpec = {
  enable: { type: 'boolean', default: true },
  bind: { type: 'string', required: true, check: (value) => (/^(.+:)?\d{1,5}$/.test(value) ? undefined : 'bad bind, expected "ip:port" or "port"') },
  acceptors: { type: 'integer', min: 1, default: 16 },
  max_connections: { type: 'integer', min: 1, infinity: true, default: 'infinity' },
  max_conn_rate: { type: 'rate', default: 'infinity' },
  messages_rate: { type: 'rate', default: 'infinity' },
  bytes_rate: { type: 'rate', default: 'infinity' },
  mountpoint: { type: 'string', default: '' },
  zone: { type: 'string', default: 'default' },
  enable_authn: { type: 'union_bool', values: ['quick_deny_anonymous'], default: true },
  access_rules: { type: 'string_array', default: ['allow all'] },
  proxy_protocol: { type: 'boolean', default: false },
  proxy_protocol_timeout: { type: 'duration', default: '3s' },
  tcp_options: {
    type: 'object',
    open: true,
    default: {
      active_n: 100,
      backlog: 1024,
      buffer: '4KB',
      high_watermark: '1MB',
      nodelay: true,
      reuseaddr: true,
      send_timeout: '15s',
      send_timeout_close: true,
    },
  },
  limiter: { type: 'object', open: true },
};

export function defaultListener(bind: string): Record<string, unknown> {
  return checkObject(listenerSpec, { bind }, 'listeners.tcp.default');
}

const LISTENER_READ_ONLY_FIELDS = ['running', 'current_connections', 'status', 'node_status', 'number'];

/**
 * `PUT /listeners/{id}`: the body (which must carry `type` and `id` or `name` matching the path)
 * is deep-merged into the stored listener, then the result is checked.
 */
export function mergeListenerUpdate(id: string, current: Record<string, unknown>, body: unknown): Record<string, unknown> {
  if (!isObject(body)) throw validationError('listeners', 'not an object', { value: body });
  const [pathType, pathName] = id.split(':');
  if (typeof body.type !== 'string') throw validationError('listeners.type', 'required_field');
  const bodyId = typeof body.id === 'string' ? body.id : typeof body.name === 'string' ? `${body.type}:${body.name}` : undefined;
  if (bodyId === undefined) throw badRequest('listener_config_invalid');
  if (body.type !== pathType || bodyId !== `${pathType}:${pathName}`) {
    throw new ApiError(400, 'BAD_LISTENER_ID', "Path and body's listener id not match");
  }
  const patch: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body)) {
    if (['id', 'type', 'name', ...LISTENER_READ_ONLY_FIELDS].includes(key)) continue;
    patch[key] = value;
  }
  return checkObject(listenerSpec, deepMerge(current, patch), `listeners.${pathType}.${pathName}`);
}

// ---------------------------------------------------------------------------------------------
// Global zone and retainer

const mqttZoneSpec: ObjectSpec = {
  idle_timeout: { type: 'duration', infinity: true, default: '15s' },
  max_packet_size: { type: 'bytesize', default: '1MB' },
  max_clientid_len: { type: 'integer', min: 23, max: 65_535, default: 65_535 },
  max_topic_levels: { type: 'integer', min: 1, max: 65_535, default: 128 },
  max_topic_alias: { type: 'integer', min: 0, max: 65_535, default: 65_535 },
  max_qos_allowed: { type: 'integer', min: 0, max: 2, default: 2 },
  retain_available: { type: 'boolean', default: true },
  wildcard_subscription: { type: 'boolean', default: true },
  shared_subscription: { type: 'boolean', default: true },
  shared_subscription_strategy: {
    type: 'string',
    enum: ['random', 'round_robin', 'round_robin_per_group', 'sticky', 'local', 'hash_topic', 'hash_clientid'],
    default: 'round_robin',
  },
  exclusive_subscription: { type: 'boolean', default: false },
  ignore_loop_deliver: { type: 'boolean', default: false },
  strict_mode: { type: 'boolean', default: false },
  response_information: { type: 'string', default: '' },
  server_keepalive: { type: 'any', default: 'disabled' },
  keepalive_multiplier: { type: 'number', min: 1, default: 1.5 },
  keepalive_check_interval: { type: 'duration', default: '30s' },
  retry_interval: { type: 'duration', infinity: true, default: 'infinity' },
  use_username_as_clientid: { type: 'boolean', default: false },
  peer_cert_as_username: { type: 'string', enum: ['disabled', 'cn', 'dn', 'crt', 'pem', 'md5'], default: 'disabled' },
  peer_cert_as_clientid: { type: 'string', enum: ['disabled', 'cn', 'dn', 'crt', 'pem', 'md5'], default: 'disabled' },
  client_attrs_init: { type: 'any', default: [] },
  session_expiry_interval: { type: 'duration', default: '2h' },
  message_expiry_interval: { type: 'duration', infinity: true, default: 'infinity' },
  max_awaiting_rel: { type: 'integer', min: 0, infinity: true, default: 100 },
  max_subscriptions: { type: 'integer', min: 0, infinity: true, default: 'infinity' },
  upgrade_qos: { type: 'boolean', default: false },
  max_inflight: { type: 'integer', min: 1, max: 65_535, default: 32 },
  await_rel_timeout: { type: 'duration', default: '300s' },
  max_mqueue_len: { type: 'integer', min: 0, infinity: true, default: 1000 },
  mqueue_priorities: { type: 'any', default: 'disabled' },
  mqueue_default_priority: { type: 'string', enum: ['highest', 'lowest'], default: 'lowest' },
  mqueue_store_qos0: { type: 'boolean', default: true },
  shared_subscription_initial_sticky_pick: { type: 'string', default: 'random' },
};

const zoneRootSpec: ObjectSpec = {
  mqtt: { type: 'object', fields: mqttZoneSpec },
  flapping_detect: { type: 'object', open: true, default: { enable: false, window_time: '1m', max_count: 15, ban_time: '5m' } },
  force_shutdown: { type: 'object', open: true, default: { enable: true, max_mailbox_size: 1000, max_heap_size: '32MB' } },
  force_gc: { type: 'object', open: true, default: { enable: true, count: 16000, bytes: '16MB' } },
  durable_sessions: { type: 'object', open: true, default: { enable: false } },
};

export function defaultGlobalZone(): Record<string, unknown> {
  return checkObject(zoneRootSpec, { mqtt: {} }, 'zone');
}

/** `PUT /configs/global_zone`: each root is shallow-merged into the stored one, then checked. */
export function mergeGlobalZoneUpdate(current: Record<string, unknown>, body: unknown): Record<string, unknown> {
  if (!isObject(body)) throw validationError('zone', 'not an object', { value: body });
  const merged: Record<string, unknown> = { ...current };
  for (const [root, value] of Object.entries(body)) {
    if (!(root in zoneRootSpec)) throw validationError('zone', 'unknown_fields', { unknown: root });
    if (!isObject(value)) throw validationError(root, 'not an object', { value });
    merged[root] = { ...(isObject(current[root]) ? current[root] : {}), ...value };
  }
  return checkObject(zoneRootSpec, merged, 'zone');
}

const retainerSpec: ObjectSpec = {
  enable: { type: 'boolean', default: true },
  msg_expiry_interval: { type: 'duration', default: '0s' },
  msg_expiry_interval_override: { type: 'duration', disabled: true, default: 'disabled' },
  allow_never_expire: { type: 'boolean', default: true },
  msg_clear_interval: { type: 'duration', default: '0s' },
  max_payload_size: { type: 'bytesize', default: '1MB' },
  stop_publish_clear_msg: { type: 'boolean', default: false },
  delivery_rate: { type: 'rate', default: 'infinity' },
  max_publish_rate: { type: 'rate', default: 'infinity' },
  backend: { type: 'object', open: true, default: { type: 'built_in_database', storage_type: 'ram', max_retained_messages: 0, enable: true } },
  flow_control: { type: 'object', open: true, default: { batch_read_number: 0, batch_deliver_number: 0, batch_deliver_limiter: {} } },
};

export function defaultRetainer(): Record<string, unknown> {
  return checkObject(retainerSpec, {}, 'retainer');
}

export function mergeRetainerUpdate(current: Record<string, unknown>, body: unknown): Record<string, unknown> {
  if (!isObject(body)) throw validationError('retainer', 'not an object', { value: body });
  return checkObject(retainerSpec, { ...current, ...body }, 'retainer');
}

// ---------------------------------------------------------------------------------------------
// Bans

export const BAN_TYPES = ['clientid', 'username', 'peerhost', 'clientid_re', 'username_re', 'peerhost_net'] as const;
export type BanType = (typeof BAN_TYPES)[number];

export interface BanRecord {
  as: BanType;
  who: string;
  by: string;
  reason: string;
  atMs: number;
  /** undefined = infinity */
  untilMs?: number;
}

/** `POST /banned` body → ban record (rejects expired bans, bad regexes, bad addresses). */
export function checkBan(body: unknown, nowMs: number): BanRecord {
  const checked = checkObject(
    {
      as: { type: 'string', enum: BAN_TYPES, required: true },
      who: { type: 'string', required: true, check: (value) => (value === '' ? 'must not be empty' : undefined) },
      by: { type: 'string', default: 'mgmt_api' },
      reason: { type: 'string', default: '' },
      at: { type: 'any' },
      until: { type: 'any' },
    },
    body,
    'ban',
  );
  const as = checked.as as BanType;
  const who = checked.who as string;
  if (as === 'clientid_re' || as === 'username_re') {
    try {
      new RegExp(who);
    } catch {
      throw badRequest(`Invalid regex: ${who}`);
    }
  }
  if (as === 'peerhost' && isIP(who) === 0) throw badRequest(`Invalid peerhost: ${who}`);
  if (as === 'peerhost_net') {
    const [address, bits] = who.split('/');
    const family = isIP(address ?? '');
    const prefix = Number(bits);
    if (family === 0 || bits === undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)) {
      throw badRequest(`Invalid CIDR: ${who}`);
    }
  }
  const atMs = checked.at === undefined ? nowMs : parseEpochSecondsOrRfc3339(checked.at);
  if (atMs === undefined) throw validationError('ban.at', 'not a RFC 3339 time or epoch seconds', { value: checked.at });
  let untilMs: number | undefined;
  if (checked.until !== undefined && checked.until !== 'infinity') {
    untilMs = parseEpochSecondsOrRfc3339(checked.until);
    if (untilMs === undefined) throw validationError('ban.until', 'not "infinity", a RFC 3339 time or epoch seconds', { value: checked.until });
    if (untilMs <= nowMs) throw badRequest('Cannot create expired banned');
  }
  return { as, who, by: checked.by as string, reason: checked.reason as string, atMs, untilMs };
}

// ---------------------------------------------------------------------------------------------

export function deepMerge(base: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const result: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    const existing = result[key];
    result[key] = isObject(existing) && isObject(value) ? deepMerge(existing, value) : value;
  }
  return result;
}
