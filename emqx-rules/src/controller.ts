// The idempotent EMQX controller: computes the broker configuration the platform needs
// (reference/pepeunit-backend.md §3.3, with the changes listed below) and applies only the
// differences through the management API. Running it twice reports `changed: []` the second
// time; several backend replicas may run it at once.
//
// Differences from the reference backend's start-up configuration, on purpose:
// - An HTTP *authenticator* (`password_based:http`) posts every CONNECT to
//   `<callback base>/units/authn`; the reference configured none, so any client could connect
//   and only authorization guarded topics.
// - The HTTP authorization body also carries `action` and `clientid`.
// - No Redis source. The reference wrote `mqtt_acl:<backend JWT>` into Redis so the backend could
//   skip the HTTP round-trip; here the backend authenticates through the authenticator and gets
//   `is_superuser: true`, which bypasses authorization entirely. Any leftover `redis` source from a
//   reference deployment is removed, because this controller owns the whole source chain.
// - The file source holds only guards (no subscribing to `$SYS/#`, `#` or `+/#`) and sits before
//   the HTTP source; the default decision comes from `no_match: deny` instead of a trailing
//   `{deny, all}`. The reference rule "allow everything from 127.0.0.1" is off by default
//   (`trustLoopback`): on one machine every locally proxied device connection (TLS or WebSocket
//   terminated by nginx/haproxy on the same host) arrives from 127.0.0.1 and would bypass the
//   backend's topic checks, and so would any local process. The backend does not need it, being a
//   superuser.
// - Sources are created in the wanted order with explicit moves, not by relying on EMQX
//   prepending each POST.
// - With `alertWebhook`, the one HTTP connector (`http:pu-backend`) and HTTP action
//   (`http:pu-alerts`) the alert rules send to (rules/alert-webhook.ts) are created or updated
//   to match; connectors and actions the platform does not own are left alone.
import { differences } from './config-compare.js';
import type {
  ActionCreate,
  AuthenticatorConfig,
  AuthzSettings,
  AuthzSourceConfig,
  ConnectorCreate,
  FileAuthzSourceConfig,
  GlobalZoneConfig,
  HttpAuthenticatorConfig,
  HttpAuthzSourceConfig,
  ListenerConfig,
  RetainerConfig,
  SslOptions,
} from './emqx-types.js';
import { isRate, parseDuration } from './emqx-values.js';
import { isAlreadyExistsError, isMissingSourceError } from './management-client.js';
import type { EmqxManagementClient } from './management-client.js';
import { silentLogger } from './logger.js';
import type { Logger } from './logger.js';
import { buildAlertAction, buildAlertConnector } from './rules/alert-webhook.js';
import type { AlertWebhookOptions } from './rules/alert-webhook.js';

/** Backend path (under the callback base) EMQX posts every CONNECT to. */
export const BACKEND_AUTHN_PATH = '/units/authn';
/** Backend path (under the callback base) EMQX posts every publish/subscribe check to (reference endpoint). */
export const BACKEND_AUTHZ_PATH = '/units/auth';

/** JSON body EMQX sends to `BACKEND_AUTHN_PATH`; the backend answers `{result, is_superuser, client_attrs}`. */
export const AUTHN_REQUEST_BODY_TEMPLATE = Object.freeze({
  username: '${username}',
  password: '${password}',
  clientid: '${clientid}',
  peerhost: '${peerhost}',
});

/** JSON body EMQX sends to `BACKEND_AUTHZ_PATH`; `action` is `publish` or `subscribe`. */
export const AUTHZ_REQUEST_BODY_TEMPLATE = Object.freeze({
  token: '${username}',
  topic: '${topic}',
  action: '${action}',
  clientid: '${clientid}',
});

export const DEFAULT_LISTENER_ID = 'tcp:default';

/** EMQX 5.8 `mqtt.shared_subscription_strategy` values. */
export const SHARED_SUBSCRIPTION_STRATEGIES = ['random', 'round_robin', 'round_robin_per_group', 'sticky', 'local', 'hash_topic', 'hash_clientid'] as const;
export type SharedSubscriptionStrategy = (typeof SHARED_SUBSCRIPTION_STRATEGIES)[number];

export interface EmqxBaseOptions {
  /** Backend URL prefix EMQX calls back, e.g. `http://127.0.0.1:5000/pepeunit/api/v1`. */
  callbackBaseUrl: string;
  /** TLS towards the callbacks; defaults to `https:` in the URL. An https URL requires it. */
  callbackTls?: boolean;
  /** Certificate verification for TLS callbacks (the reference used `verify_none`). */
  callbackTlsVerify?: 'verify_peer' | 'verify_none';
  /** Extra headers on every callback (e.g. a shared secret); EMQX may show them redacted on read. */
  callbackHeaders?: Record<string, string>;
  /** PU_MQTT_MAX_CLIENTS → listener `max_connections` (default 10000). */
  maxClients?: number | 'infinity';
  /** PU_MQTT_MAX_CLIENT_CONNECTION_RATE → listener `max_conn_rate` (default "20/s"). */
  maxClientConnectionRate?: string;
  /** PU_MQTT_CLIENT_MAX_MESSAGES_RATE → listener `messages_rate` (default "30/s"). */
  clientMaxMessagesRate?: string;
  /** PU_MQTT_CLIENT_MAX_BYTES_RATE → listener `bytes_rate` (default "1MB/s"). */
  clientMaxBytesRate?: string;
  /** PU_MQTT_MAX_PAYLOAD_SIZE in KB → zone `max_packet_size` (default 256). */
  maxPayloadSizeKb?: number;
  /** PU_MQTT_MAX_QOS → zone `max_qos_allowed` (default 2). */
  maxQos?: number;
  /** PU_MQTT_MAX_TOPIC_LEVELS → zone `max_topic_levels` (default 5). */
  maxTopicLevels?: number;
  /** PU_MQTT_MAX_LEN_MESSAGE_QUEUE → zone `max_mqueue_len` (default 128). */
  maxLenMessageQueue?: number;
  /** PU_MQTT_MAX_TOPIC_ALIAS → zone `max_topic_alias` (default 128). */
  maxTopicAlias?: number;
  /** PU_MQTT_MAX_CLIENT_ID_LEN → zone `max_clientid_len` (default 512). */
  maxClientIdLen?: number;
  /**
   * Zone `shared_subscription_strategy` (default `hash_topic`): one topic always reaches the same
   * member of a `$share` group, so an ingest keeps the whole per-node state (Aggregation windows,
   * NRecords, LastValue interval) and a backend replica the per-unit state throttle.
   */
  sharedSubscriptionStrategy?: SharedSubscriptionStrategy;
  /** Listener the limits apply to (default `tcp:default`). */
  listenerId?: string;
  /** Listener bind, e.g. `0.0.0.0:1883`; left as configured when omitted. */
  listenerBind?: string;
  /** Reference rule "allow everything from 127.0.0.1" (default false, see module comment). */
  trustLoopback?: boolean;
  /** Authorization cache size per client (default 64) and entry lifetime (default "10m"). */
  authzCacheMaxSize?: number;
  authzCacheTtl?: string;
  /** Callback timeouts (defaults "5s" for authn, "30s" for authz — EMQX's and the reference's). */
  authnRequestTimeout?: string;
  authzRequestTimeout?: string;
  /** The backend's webhook for alerts: adds the HTTP connector + action alert rules send to. */
  alertWebhook?: AlertWebhookOptions;
}

/** Everything the controller manages. Chains are complete and ordered; other fragments are partial. */
export interface EmqxBaseConfig {
  /** The whole global authentication chain, in order (others are removed). */
  authentication: AuthenticatorConfig[];
  /** The whole authorization source chain, in order (others are removed). */
  authorizationSources: AuthzSourceConfig[];
  authorizationSettings: AuthzSettings;
  /** Keys to set on existing listeners (EMQX deep-merges them). */
  listeners: Array<{ id: string; config: ListenerConfig }>;
  /** Keys to set in the global zone, per root (`mqtt`); shallow-merged by EMQX. */
  globalZone?: GlobalZoneConfig;
  /** Keys to set on the retainer. */
  retainer?: RetainerConfig;
  /** Connectors the platform owns (created or updated to match; others are left alone). */
  connectors?: ConnectorCreate[];
  /** Actions the platform owns (created or updated to match, after the connectors). */
  actions?: ActionCreate[];
}

export interface ReconcileResult {
  /** One entry per write, e.g. `authentication/password_based:http created`; empty when nothing changed. */
  changed: string[];
}

function integerOption(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  const result = value ?? fallback;
  if (!Number.isInteger(result) || result < min || result > max) {
    throw new Error(`EMQX option ${name} must be an integer between ${min} and ${max}, got ${String(value)}`);
  }
  return result;
}

function positiveInteger(name: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  return integerOption(name, value, fallback, 1, max);
}

function rate(name: string, value: string | undefined, fallback: string): string {
  const result = value ?? fallback;
  if (!isRate(result)) {
    throw new Error(`EMQX option ${name} must be a rate like "30/s", "1MB/s", "100/10s" or "infinity", got ${JSON.stringify(value)}`);
  }
  return result;
}

function duration(name: string, value: string | undefined, fallback: string): string {
  const result = value ?? fallback;
  if (parseDuration(result) === undefined) throw new Error(`EMQX option ${name} must be a duration like "5s" or "10m", got ${JSON.stringify(value)}`);
  return result;
}

/** acl.conf text of the file source. */
export function buildFileSourceRules(trustLoopback: boolean): string {
  const lines = [
    '%% Managed by the Pepeunit EMQX controller; edits are overwritten.',
    ...(trustLoopback ? ['{allow, {ipaddr, "127.0.0.1"}, all, ["$SYS/#", "#"]}.'] : []),
    '{deny, all, subscribe, ["$SYS/#", {eq, "#"}, {eq, "+/#"}]}.',
  ];
  return `${lines.join('\n')}\n`;
}

/** Computes the wanted EMQX configuration from plain options (throws a clear error on bad input). */
export function buildEmqxBaseConfig(options: EmqxBaseOptions): EmqxBaseConfig {
  let callbackUrl: URL;
  try {
    callbackUrl = new URL(options.callbackBaseUrl);
  } catch {
    throw new Error(`EMQX option callbackBaseUrl is not a valid URL: ${JSON.stringify(options.callbackBaseUrl)}`);
  }
  if (callbackUrl.protocol !== 'http:' && callbackUrl.protocol !== 'https:') {
    throw new Error(`EMQX option callbackBaseUrl must be http(s), got ${callbackUrl.protocol}`);
  }
  const https = callbackUrl.protocol === 'https:';
  const tls = options.callbackTls ?? https;
  if (https && !tls) throw new Error('EMQX option callbackTls cannot be false for an https callbackBaseUrl');
  if (!https && tls) throw new Error('EMQX option callbackTls needs an https callbackBaseUrl');
  const base = callbackUrl.toString().replace(/\/+$/, '');
  const ssl: SslOptions = tls
    ? { enable: true, verify: options.callbackTlsVerify ?? 'verify_none', versions: ['tlsv1.3', 'tlsv1.2'] }
    : { enable: false };
  const headers = { 'content-type': 'application/json', ...lowerCaseHeaders(options.callbackHeaders) };

  const maxClients = options.maxClients ?? 10_000;
  if (maxClients !== 'infinity') positiveInteger('maxClients', maxClients, 10_000);
  const maxQos = options.maxQos ?? 2;
  if (![0, 1, 2].includes(maxQos)) throw new Error(`EMQX option maxQos must be 0, 1 or 2, got ${String(options.maxQos)}`);
  const maxPayloadSizeKb = positiveInteger('maxPayloadSizeKb', options.maxPayloadSizeKb, 256, 262_143);

  const authenticator: HttpAuthenticatorConfig = {
    mechanism: 'password_based',
    backend: 'http',
    enable: true,
    method: 'post',
    url: `${base}${BACKEND_AUTHN_PATH}`,
    headers,
    body: { ...AUTHN_REQUEST_BODY_TEMPLATE },
    request_timeout: duration('authnRequestTimeout', options.authnRequestTimeout, '5s'),
    connect_timeout: '15s',
    pool_size: 8,
    enable_pipelining: 100,
    ssl,
  };
  const fileSource: FileAuthzSourceConfig = {
    type: 'file',
    enable: true,
    rules: buildFileSourceRules(options.trustLoopback ?? false),
  };
  const httpSource: HttpAuthzSourceConfig = {
    type: 'http',
    enable: true,
    method: 'post',
    url: `${base}${BACKEND_AUTHZ_PATH}`,
    headers,
    body: { ...AUTHZ_REQUEST_BODY_TEMPLATE },
    request_timeout: duration('authzRequestTimeout', options.authzRequestTimeout, '30s'),
    connect_timeout: '15s',
    pool_size: 8,
    enable_pipelining: 100,
    ssl,
  };
  const listener: ListenerConfig = {
    enable_authn: true,
    max_connections: maxClients,
    max_conn_rate: rate('maxClientConnectionRate', options.maxClientConnectionRate, '20/s'),
    messages_rate: rate('clientMaxMessagesRate', options.clientMaxMessagesRate, '30/s'),
    bytes_rate: rate('clientMaxBytesRate', options.clientMaxBytesRate, '1MB/s'),
  };
  if (options.listenerBind !== undefined) {
    if (!/^(.+):(\d{1,5})$/.test(options.listenerBind)) {
      throw new Error(`EMQX option listenerBind must look like "0.0.0.0:1883", got ${JSON.stringify(options.listenerBind)}`);
    }
    listener.bind = options.listenerBind;
  }
  const listenerId = options.listenerId ?? DEFAULT_LISTENER_ID;
  if (!/^[a-z]+:[A-Za-z0-9_-]+$/.test(listenerId)) throw new Error(`EMQX option listenerId must look like "tcp:default", got ${JSON.stringify(listenerId)}`);

  return {
    authentication: [authenticator],
    authorizationSources: [fileSource, httpSource],
    authorizationSettings: {
      no_match: 'deny',
      deny_action: 'ignore',
      cache: {
        enable: true,
        max_size: positiveInteger('authzCacheMaxSize', options.authzCacheMaxSize, 64, 1_048_576),
        ttl: duration('authzCacheTtl', options.authzCacheTtl, '10m'),
        excludes: [],
      },
    },
    listeners: [{ id: listenerId, config: listener }],
    globalZone: {
      mqtt: {
        // Ranges are EMQX's schema bounds (max_clientid_len 23..65535, max_topic_alias 0..65535).
        max_clientid_len: integerOption('maxClientIdLen', options.maxClientIdLen, 512, 23, 65_535),
        max_topic_alias: integerOption('maxTopicAlias', options.maxTopicAlias, 128, 0, 65_535),
        max_qos_allowed: maxQos,
        max_mqueue_len: integerOption('maxLenMessageQueue', options.maxLenMessageQueue, 128, 0, Number.MAX_SAFE_INTEGER),
        max_topic_levels: positiveInteger('maxTopicLevels', options.maxTopicLevels, 5, 65_535),
        max_packet_size: `${maxPayloadSizeKb}KB`,
        shared_subscription_strategy: sharedSubscriptionStrategy(options.sharedSubscriptionStrategy),
      },
    },
    retainer: { enable: false },
    ...(options.alertWebhook ? { connectors: [buildAlertConnector(options.alertWebhook)], actions: [buildAlertAction(options.alertWebhook)] } : {}),
  };
}

function sharedSubscriptionStrategy(value: SharedSubscriptionStrategy | undefined): SharedSubscriptionStrategy {
  const strategy = value ?? 'hash_topic';
  if (!SHARED_SUBSCRIPTION_STRATEGIES.includes(strategy)) throw new Error(`sharedSubscriptionStrategy must be one of ${SHARED_SUBSCRIPTION_STRATEGIES.join(', ')}`);
  return strategy;
}

function lowerCaseHeaders(headers: Record<string, string> | undefined): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [key, value] of Object.entries(headers ?? {})) result[key.toLowerCase()] = value;
  return result;
}

/**
 * Reads the PU_MQTT_* variables of reference/pepeunit-backend.md §10 into `EmqxBaseOptions`
 * (defaults as in the reference). Throws an error naming the variable on a bad value.
 */
export function emqxBaseOptionsFromEnv(env: Record<string, string | undefined>, callbackBaseUrl: string): EmqxBaseOptions {
  const integer = (name: string): number | undefined => {
    const raw = env[name];
    if (raw === undefined || raw.trim() === '') return undefined;
    if (!/^\d+$/.test(raw.trim())) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
    return Number(raw.trim());
  };
  const text = (name: string): string | undefined => {
    const raw = env[name];
    if (raw === undefined || raw.trim() === '') return undefined;
    return raw.trim();
  };
  const checkedRate = (name: string): string | undefined => {
    const value = text(name);
    if (value !== undefined && !isRate(value)) throw new Error(`${name} must be a rate like "30/s" or "1MB/s", got ${JSON.stringify(value)}`);
    return value;
  };
  const maxClientsRaw = text('PU_MQTT_MAX_CLIENTS');
  return {
    callbackBaseUrl,
    maxClients: maxClientsRaw === 'infinity' ? 'infinity' : integer('PU_MQTT_MAX_CLIENTS'),
    maxClientConnectionRate: checkedRate('PU_MQTT_MAX_CLIENT_CONNECTION_RATE'),
    clientMaxMessagesRate: checkedRate('PU_MQTT_CLIENT_MAX_MESSAGES_RATE'),
    clientMaxBytesRate: checkedRate('PU_MQTT_CLIENT_MAX_BYTES_RATE'),
    maxPayloadSizeKb: integer('PU_MQTT_MAX_PAYLOAD_SIZE'),
    maxQos: integer('PU_MQTT_MAX_QOS'),
    maxTopicLevels: integer('PU_MQTT_MAX_TOPIC_LEVELS'),
    maxLenMessageQueue: integer('PU_MQTT_MAX_LEN_MESSAGE_QUEUE'),
    maxTopicAlias: integer('PU_MQTT_MAX_TOPIC_ALIAS'),
    maxClientIdLen: integer('PU_MQTT_MAX_CLIENT_ID_LEN'),
  };
}

// ---------------------------------------------------------------------------------------------
// Reconciliation

export function authenticatorId(config: AuthenticatorConfig): string {
  return config.backend ? `${config.mechanism}:${config.backend}` : config.mechanism;
}

/**
 * Brings EMQX to `desired`, writing only what differs. Order: authorization settings first
 * (`no_match: deny` fails closed while the chain is rebuilt), then sources, authenticators,
 * listeners, zone, retainer, connectors and actions.
 */
export async function reconcileEmqxBase(client: EmqxManagementClient, desired: EmqxBaseConfig, logger: Logger = silentLogger): Promise<ReconcileResult> {
  const changed: string[] = [];
  const note = (entry: string, detail?: Record<string, unknown>): void => {
    changed.push(entry);
    logger.info({ change: entry, ...detail }, 'EMQX configuration changed');
  };

  await reconcileAuthorizationSettings(client, desired.authorizationSettings, note);
  await reconcileAuthorizationSources(client, desired.authorizationSources, note);
  await reconcileAuthentication(client, desired.authentication, note);
  for (const listener of desired.listeners) await reconcileListener(client, listener.id, listener.config, note);
  if (desired.globalZone) await reconcileGlobalZone(client, desired.globalZone, note);
  if (desired.retainer) await reconcileRetainer(client, desired.retainer, note);
  for (const connector of desired.connectors ?? []) await reconcileConnector(client, connector, note);
  for (const action of desired.actions ?? []) await reconcileAction(client, action, note);

  logger.debug({ changed: changed.length }, 'EMQX reconcile finished');
  return { changed };
}

type Note = (entry: string, detail?: Record<string, unknown>) => void;

async function reconcileAuthorizationSettings(client: EmqxManagementClient, desired: AuthzSettings, note: Note): Promise<void> {
  const current = await client.getAuthorizationSettings();
  const diff = differences(desired, current);
  if (diff.length === 0) return;
  await client.updateAuthorizationSettings(desired);
  note('authorization/settings updated', { fields: diff });
}

async function reconcileAuthorizationSources(client: EmqxManagementClient, desired: AuthzSourceConfig[], note: Note): Promise<void> {
  assertUnique(desired.map((source) => source.type), 'authorization source type');
  let current = await client.listAuthorizationSources();
  for (const wanted of desired) {
    const have = current.find((source) => source.type === wanted.type);
    if (!have) {
      try {
        await client.createAuthorizationSource(wanted);
        note(`authorization/sources/${wanted.type} created`);
        continue;
      } catch (error) {
        if (!isAlreadyExistsError(error)) throw error;
        // Another replica created it meanwhile: fall through to the update check.
      }
      const now = await client.getAuthorizationSource(wanted.type);
      if (now && differences(wanted, now).length === 0) continue;
      await client.updateAuthorizationSource(wanted.type, wanted);
      note(`authorization/sources/${wanted.type} updated`);
      continue;
    }
    const diff = differences(wanted, have);
    if (diff.length > 0) {
      await client.updateAuthorizationSource(wanted.type, wanted);
      note(`authorization/sources/${wanted.type} updated`, { fields: diff });
    }
  }
  const wantedTypes = new Set(desired.map((source) => source.type));
  for (const extra of current.filter((source) => !wantedTypes.has(source.type))) {
    if (await client.deleteAuthorizationSource(extra.type)) note(`authorization/sources/${extra.type} deleted`);
  }
  current = await client.listAuthorizationSources();
  await reorder(
    current.map((source) => source.type),
    desired.map((source) => source.type),
    (type, position) => client.moveAuthorizationSource(type, position),
    () => note('authorization/sources reordered'),
  );
}

async function reconcileAuthentication(client: EmqxManagementClient, desired: AuthenticatorConfig[], note: Note): Promise<void> {
  assertUnique(desired.map(authenticatorId), 'authenticator id');
  const current = await client.listAuthenticators();
  for (const wanted of desired) {
    const id = authenticatorId(wanted);
    const have = current.find((authenticator) => authenticator.id === id);
    if (!have) {
      try {
        await client.createAuthenticator(wanted);
        note(`authentication/${id} created`);
        continue;
      } catch (error) {
        if (!isAlreadyExistsError(error)) throw error;
      }
      const now = await client.getAuthenticator(id);
      if (now && differences(wanted, now).length === 0) continue;
      await client.updateAuthenticator(id, wanted);
      note(`authentication/${id} updated`);
      continue;
    }
    const diff = differences(wanted, have);
    if (diff.length > 0) {
      await client.updateAuthenticator(id, wanted);
      note(`authentication/${id} updated`, { fields: diff });
    }
  }
  const wantedIds = new Set(desired.map(authenticatorId));
  for (const extra of current.filter((authenticator) => !wantedIds.has(authenticator.id))) {
    if (await client.deleteAuthenticator(extra.id)) note(`authentication/${extra.id} deleted`);
  }
  const after = await client.listAuthenticators();
  await reorder(
    after.map((authenticator) => authenticator.id),
    desired.map(authenticatorId),
    (id, position) => client.moveAuthenticator(id, position),
    () => note('authentication reordered'),
  );
}

/**
 * Moves entries until `current` starts with `wanted` (entries not in `wanted` were deleted
 * already). Each move is absolute ("front" / "after:<previous>"), so concurrent runs converge.
 */
async function reorder(
  current: string[],
  wanted: string[],
  move: (id: string, position: 'front' | `after:${string}`) => Promise<void>,
  onChanged: () => void,
): Promise<void> {
  const order = current.filter((id) => wanted.includes(id));
  let moved = false;
  for (let index = 0; index < wanted.length; index += 1) {
    const id = wanted[index] as string;
    if (order[index] === id) continue;
    const from = order.indexOf(id);
    if (from === -1) continue; // vanished concurrently; the next run recreates it
    const previous = index === 0 ? undefined : wanted[index - 1];
    try {
      await move(id, previous === undefined ? 'front' : `after:${previous}`);
    } catch (error) {
      if (isMissingSourceError(error)) continue;
      throw error;
    }
    order.splice(from, 1);
    order.splice(index, 0, id);
    moved = true;
  }
  if (moved) onChanged();
}

async function reconcileListener(client: EmqxManagementClient, id: string, desired: ListenerConfig, note: Note): Promise<void> {
  const current = await client.getListener(id);
  if (!current) throw new Error(`EMQX listener ${id} does not exist; create it in emqx.conf or pick another listenerId`);
  const diff = differences(desired, current);
  if (diff.length === 0) return;
  await client.updateListener(id, desired);
  note(`listeners/${id} updated`, { fields: diff });
}

async function reconcileGlobalZone(client: EmqxManagementClient, desired: GlobalZoneConfig, note: Note): Promise<void> {
  const current = await client.getGlobalZone();
  const diff = differences(desired, current);
  if (diff.length === 0) return;
  // Only roots with differences are sent; EMQX shallow-merges each root into the stored one.
  const roots = new Set(diff.map((path) => path.split(/[.[]/)[0] ?? ''));
  const body: GlobalZoneConfig = {};
  for (const root of roots) if (root in desired) body[root] = desired[root];
  await client.updateGlobalZone(body);
  note('configs/global_zone updated', { fields: diff });
  // The ingests depend on the strategy (a node split over two ingests is aggregated in halves and
  // written twice): read it back rather than trust the write.
  const wanted = desired.mqtt?.shared_subscription_strategy;
  if (wanted !== undefined) {
    const applied = (await client.getGlobalZone()).mqtt?.shared_subscription_strategy;
    if (applied !== wanted) {
      throw new Error(`EMQX did not apply mqtt.shared_subscription_strategy = ${String(wanted)} in the global zone (it reads ${String(applied)}); several ingests would split one node's messages`);
    }
  }
}

async function reconcileRetainer(client: EmqxManagementClient, desired: RetainerConfig, note: Note): Promise<void> {
  const current = await client.getRetainer();
  const diff = differences(desired, current);
  if (diff.length === 0) return;
  await client.updateRetainer(desired);
  note('mqtt/retainer updated', { fields: diff });
}

/** The part of a connector/action body compared with what EMQX returns (`type`/`name` are the id). */
function configOf<T extends { type: string; name: string }>(body: T): Omit<T, 'type' | 'name'> {
  const { type: _type, name: _name, ...config } = body;
  return config;
}

/**
 * Creates the connector, or updates it when a field we set differs (secrets read back as
 * `******` count as equal; the description carries the secret's fingerprint, so a rotation is
 * still seen).
 */
async function reconcileConnector(client: EmqxManagementClient, desired: ConnectorCreate, note: Note): Promise<void> {
  const id = `${desired.type}:${desired.name}`;
  let current = await client.getConnector(id);
  if (!current) {
    try {
      await client.createConnector(desired);
      note(`connectors/${id} created`);
      return;
    } catch (error) {
      if (!isAlreadyExistsError(error)) throw error;
      current = await client.getConnector(id); // created meanwhile by another replica
    }
  }
  const diff = differences(configOf(desired), current);
  if (diff.length === 0) return;
  await client.updateConnector(id, configOf(desired));
  note(`connectors/${id} updated`, { fields: diff });
}

async function reconcileAction(client: EmqxManagementClient, desired: ActionCreate, note: Note): Promise<void> {
  const id = `${desired.type}:${desired.name}`;
  let current = await client.getAction(id);
  if (!current) {
    try {
      await client.createAction(desired);
      note(`actions/${id} created`);
      return;
    } catch (error) {
      if (!isAlreadyExistsError(error)) throw error;
      current = await client.getAction(id);
    }
  }
  const diff = differences(configOf(desired), current);
  if (diff.length === 0) return;
  await client.updateAction(id, configOf(desired));
  note(`actions/${id} updated`, { fields: diff });
}

function assertUnique(values: string[], what: string): void {
  const seen = new Set<string>();
  for (const value of values) {
    if (seen.has(value)) throw new Error(`EMQX desired configuration lists ${what} ${value} twice`);
    seen.add(value);
  }
}

