// The embedded EMQX-compatible broker: a real MQTT 3.1.1 server (aedes) whose access control and
// management API follow the EMQX 5.8 contract the platform uses (reference/emqx-5.md). It is how
// the platform runs and is tested on one machine; everything it accepts is valid for real EMQX.
//
// Implemented: the HTTP authenticator chain (allow/deny/ignore, is_superuser, client_attrs,
// expire_at, acl), file + http authorization sources with no_match / deny_action / per-client
// cache, bans (checked at CONNECT; clientid bans kick), kick, listener max_connections,
// max_conn_rate (connection-rate.ts), messages_rate / bytes_rate (the reader is throttled,
// inbound-limits.ts) and enable/enable_authn, zone idle_timeout (no CONNECT in time: closed),
// max_packet_size (checked on the fixed header, before anything is buffered; a smaller limit
// before CONNACK), max_clientid_len / max_topic_levels / max_qos_allowed (publish) /
// retain_available / wildcard_subscription / shared_subscription, retainer on/off, shared
// subscriptions, and the rule engine (rule-engine/: the Rules API, SQL SELECT/FOREACH, the
// republish and HTTP actions, connectors/actions, Prometheus data integration) applied to every
// publish and to the `client_check_authz_complete` / `client_disconnected` events.
// Stored but not enforced (documented gaps): max_qos_allowed downgrade of SUBACK, max_mqueue_len,
// max_topic_alias (MQTT 5 only), mqtt.client_attrs_init. MQTT 5 clients are refused (aedes).
// Credentials never reach the log: a refused CONNECT is logged with its client id, the reason and
// a fingerprint of the username (which is a token for Pepeunit's units).
import { EventEmitter } from 'node:events';
import { isIP, createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { Aedes } from 'aedes';
import type { AedesPublishPacket, AuthenticateError, Client, ConnectPacket, PublishPacket, Subscription } from 'aedes';
import type { FastifyInstance } from 'fastify';
import { parseByteSize, parseDuration, parseRate } from '../emqx-values.js';
import { silentLogger } from '../logger.js';
import type { Logger } from '../logger.js';
import { authenticate } from './access/authn.js';
import { Authorizer } from './access/authz.js';
import type { AuthorizationResult } from './access/authz.js';
import type { AccessRequest } from './access/acl-file.js';
import { parseSharedSubscription, topicLevels } from './access/topic-match.js';
import { ConfigStore } from './config-store.js';
import { buildManagementApi } from './http-api.js';
import type { ApiKey, ManagementContext, ManagementRoutes } from './http-api.js';
import { ClientSession, SessionRegistry } from './sessions.js';
import { SharedSubscriptions } from './shared-subscriptions.js';
import { useFastBacklog } from './fast-queue.js';
import { coalesceWrites } from './write-coalescing.js';
import { FastPublish } from './fast-publish.js';
import type { FastPublishStats, TopicHookCache } from './fast-publish.js';
import { limitInbound } from './inbound-limits.js';
import type { InboundLimits, InboundLimitStats } from './inbound-limits.js';
import { ConnectionRateGate } from './connection-rate.js';
import { fingerprint } from './fingerprint.js';
import { RuleEngine } from './rule-engine/index.js';
import type { RepublishMessage, RulePublishEvent } from './rule-engine/index.js';
import { AUTHZ_COMPLETE_EVENT, DISCONNECTED_EVENT, authzCompleteColumns, disconnectedColumns } from './rule-engine/events.js';

export interface EmbeddedBrokerOptions {
  /** MQTT listener address (default 127.0.0.1). */
  mqttHost?: string;
  /** MQTT port; 0 (the default) picks a free one. */
  mqttPort?: number;
  /** Management API address (default 127.0.0.1). */
  apiHost?: string;
  /** Management API port; 0 (the default) picks a free one. */
  apiPort?: number;
  /** Accepted API keys (Basic auth), like EMQX's api_key.bootstrap_file. */
  apiKeys: ApiKey[];
  logger?: Logger;
  /** Keeps the configuration (authn, authz, listeners, zone, retainer, bans) across restarts. */
  stateFile?: string;
  /** Node name reported by the API (default `emqx@127.0.0.1`). */
  nodeName?: string;
  /** Extra management routes, registered under /api/v5 (the Rules, connectors, actions and Prometheus APIs are built in). */
  extraRoutes?: ManagementRoutes[];
  /**
   * Where the rule engine keeps its rules (default: `<stateFile>.rules.json` when `stateFile` is
   * set, else rules live in memory only).
   */
  rulesStateFile?: string;
  /**
   * Routes QoS 0 publishes whose authorization is known through the fast path (default true;
   * false leaves every packet to aedes, e.g. to compare both paths).
   */
  fastPublish?: boolean;
}

/** A publish that passed authorization, with EMQX's rule-engine column names (what the rule engine consumes). */
export type PublishedMessage = RulePublishEvent;

export interface ClientEvent {
  clientid: string;
  username: string | null;
  peerhost: string;
  client_attrs: Record<string, string>;
  reason?: string;
}

/**
 * Broker events for the rule engine and tests: `message.publish` (PublishedMessage),
 * `client.connected` and `client.disconnected` (ClientEvent).
 */
export interface EmbeddedBrokerHooks extends EventEmitter {
  on(event: 'message.publish', listener: (message: PublishedMessage) => void): this;
  on(event: 'client.connected' | 'client.disconnected', listener: (event: ClientEvent) => void): this;
}

export interface EmbeddedBroker {
  mqttUrl: string;
  mqttPort: number;
  apiUrl: string;
  apiPort: number;
  aedes: Aedes;
  hooks: EmbeddedBrokerHooks;
  store: ConfigStore;
  sessions: SessionRegistry;
  /** The rule engine (rules are managed through `/api/v5/rules`). */
  rules: RuleEngine;
  /** How many publishes took the QoS 0 fast path, and how many reads went to aedes' parser. */
  fastPublishStats: FastPublishStats;
  /** What the connection limits did (packet size, rates, idle timeout). */
  limitStats: BrokerLimitStats;
  close(): Promise<void>;
}

export interface BrokerLimitStats extends InboundLimitStats {
  /** Sockets closed because no CONNECT arrived within the zone's idle_timeout. */
  closedIdle: number;
  /** Connections that waited for their turn under the listener's max_conn_rate. */
  delayedConnections: number;
}

const LISTENER_ID = 'tcp:default';
const MAX_TIMER_MS = 2 ** 31 - 1;
/** EMQX's defaults: zone `mqtt.idle_timeout` and listener `tcp_options.backlog`. */
const DEFAULT_IDLE_TIMEOUT = '15s';
const DEFAULT_BACKLOG = 1024;

/** Parses a configuration value once per distinct value (limits are read per read, not per change). */
function parsedOnce<T>(parse: (value: unknown) => T): (value: unknown) => T {
  let last: unknown = Symbol('unset');
  let result!: T;
  return (value) => {
    if (value !== last) {
      last = value;
      result = parse(value);
    }
    return result;
  };
}

function normaliseIp(address: string | undefined): string {
  if (!address) return '';
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

function refusal(returnCode: 2 | 3 | 4 | 5, message: string): AuthenticateError {
  const error = new Error(message) as AuthenticateError;
  error.returnCode = returnCode as AuthenticateError['returnCode'];
  return error;
}

async function listenTcp(server: Server, host: string, port: number, what: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      if (error.code === 'EADDRINUSE') reject(new Error(`${what} port ${port} on ${host} is already in use; pick another port (0 chooses a free one)`));
      else if (error.code === 'EACCES') reject(new Error(`${what} port ${port} on ${host} needs privileges; pick a port above 1023`));
      else reject(new Error(`${what} could not listen on ${host}:${port}: ${error.message}`));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function urlHost(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}

export async function startEmbeddedBroker(options: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const logger = options.logger ?? silentLogger;
  const mqttHost = options.mqttHost ?? '127.0.0.1';
  const apiHost = options.apiHost ?? '127.0.0.1';
  const nodeName = options.nodeName ?? 'emqx@127.0.0.1';
  if (!Array.isArray(options.apiKeys) || options.apiKeys.length === 0 || options.apiKeys.some((key) => !key.key || !key.secret)) {
    throw new Error('startEmbeddedBroker: apiKeys needs at least one {key, secret} (the management API always requires one)');
  }

  const sessions = new SessionRegistry();
  const hooks = new EventEmitter() as EmbeddedBrokerHooks;
  const deniedPackets = new WeakSet<object>();
  const pendingConnects = new WeakMap<Client, { keepalive: number; clean: boolean; protocolVersion: number }>();
  const peers = new WeakMap<object, { host: string; port: number }>();
  const sockets = new Set<Socket>();
  const idleTimers = new WeakMap<Client, NodeJS.Timeout>();
  const limitStats: BrokerLimitStats = { closedOversized: 0, throttledReads: 0, closedIdle: 0, delayedConnections: 0 };
  let store!: ConfigStore;
  let ruleEngineRef: RuleEngine | undefined;
  /** PUBLISH packets received from clients (EMQX `messages.received`), for `/api/v5/metrics`. */
  let messagesReceived = 0;
  let authorizer!: Authorizer;

  const kick = (session: ClientSession, reason = 'kicked'): void => {
    logger.info({ clientid: session.clientid, reason }, 'client disconnected by the broker');
    (session.client as unknown as { _disconnectReason?: string })._disconnectReason = reason;
    session.client.close();
  };
  /** The reason the `client_disconnected` event reports, unless one was set first. */
  const markDisconnectReason = (client: Client, reason: string): void => {
    const internals = client as unknown as { _disconnectReason?: string };
    internals._disconnectReason ??= reason;
  };

  const scheduleExpiry = (session: ClientSession): void => {
    if (session.expireAt === undefined) return;
    const delay = session.expireAt * 1000 - Date.now();
    session.expireTimer = setTimeout(
      () => {
        if (session.expireAt !== undefined && session.expireAt * 1000 <= Date.now()) kick(session, 'expired');
        else scheduleExpiry(session);
      },
      Math.max(0, Math.min(delay, MAX_TIMER_MS)),
    );
    session.expireTimer.unref();
  };

  // ---- MQTT hooks --------------------------------------------------------------------------

  const preConnect = (client: Client, packet: ConnectPacket, callback: (error: Error | null, success: boolean) => void): void => {
    clearTimeout(idleTimers.get(client));
    pendingConnects.set(client, { keepalive: packet.keepalive ?? 0, clean: packet.clean !== false, protocolVersion: packet.protocolVersion ?? 4 });
    callback(null, true);
  };

  const authenticateHook = (
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    done: (error: AuthenticateError | null, success: boolean | null) => void,
  ): void => {
    const peer = peers.get(client.conn) ?? { host: '', port: 0 };
    const connect = pendingConnects.get(client) ?? { keepalive: 0, clean: true, protocolVersion: 4 };
    const clientid = client.id;
    const user = username === undefined ? null : username;
    void (async () => {
      const zone = store.mqttZone();
      const maxClientidLength = typeof zone.max_clientid_len === 'number' ? zone.max_clientid_len : 65_535;
      if (clientid.length > maxClientidLength) return done(refusal(2, 'client id too long'), false);
      const ban = store.findBan(clientid, user, peer.host);
      if (ban) {
        logger.info({ clientid, as: ban.as }, 'banned client refused');
        return done(refusal(5, 'banned'), false);
      }
      const session = new ClientSession(client, clientid, user, peer.host, peer.port, connect.protocolVersion, connect.clean, connect.keepalive, LISTENER_ID);
      const listener = store.listener(LISTENER_ID) ?? {};
      if (listener.enable_authn === 'quick_deny_anonymous' && !user) return done(refusal(5, 'anonymous not allowed'), false);
      if (listener.enable_authn !== false) {
        const decision = await authenticate(
          store.authenticators(),
          { clientid, username: user, password: password === undefined ? null : password.toString('utf8'), peerhost: peer.host, peerport: peer.port },
          logger,
        );
        if (decision.outcome === 'deny') {
          logger.info({ clientid, username_fingerprint: fingerprint(user), reason: decision.reason }, 'client refused by authentication');
          return done(refusal(decision.returnCode, decision.reason), false);
        }
        session.isSuperuser = decision.isSuperuser;
        session.clientAttrs = decision.clientAttrs;
        session.acl = decision.acl;
        session.expireAt = decision.expireAt;
        // A clientid ban created while the callout ran found no session to kick: check again.
        if (store.findBan(clientid, user, peer.host)) {
          logger.info({ clientid }, 'banned client refused (ban created during authentication)');
          return done(refusal(5, 'banned'), false);
        }
      }
      const previous = sessions.find(clientid);
      if (previous) markDisconnectReason(previous.client, 'takenover');
      sessions.attach(session);
      done(null, true);
    })().catch((error: unknown) => {
      logger.error({ err: error, clientid }, 'authentication failed unexpectedly');
      done(refusal(3, 'server unavailable'), false);
    });
  };

  type Verdict = 'allow' | 'drop' | 'disconnect';

  // `max_packet_size` is a byte-size string; parse it once per distinct value, not per publish.
  let packetSizeSetting: unknown = Symbol('unset');
  let packetSizeLimit = 1024 * 1024;
  const maxPacketSizeOf = (value: unknown): number => {
    if (value !== packetSizeSetting) {
      packetSizeSetting = value;
      packetSizeLimit = parseByteSize(value) ?? 1024 * 1024;
    }
    return packetSizeLimit;
  };

  /** Zone limits of a client publish (protocol errors close the connection, as EMQX does for MQTT 3.1.1); counts it when it passes. */
  const publishWithinLimits = (session: ClientSession, packet: PublishPacket, qos: number): boolean => {
    const zone = store.mqttZone();
    const payloadBytes = packet.payload ? Buffer.byteLength(packet.payload as Buffer) : 0;
    const maxPacketSize = maxPacketSizeOf(zone.max_packet_size);
    const maxLevels = typeof zone.max_topic_levels === 'number' ? zone.max_topic_levels : 128;
    const maxQos = typeof zone.max_qos_allowed === 'number' ? zone.max_qos_allowed : 2;
    if (payloadBytes + Buffer.byteLength(packet.topic) + 4 > maxPacketSize) return false;
    if (qos > maxQos || topicLevels(packet.topic) > maxLevels) return false;
    if (packet.retain && zone.retain_available === false) return false;
    if (packet.topic.startsWith('$share/') || packet.topic.startsWith('$queue/')) return false;
    const counters = session.counters;
    counters.recv_msg += 1;
    if (qos === 0) counters['recv_msg.qos0'] += 1;
    else if (qos === 1) counters['recv_msg.qos1'] += 1;
    else counters['recv_msg.qos2'] += 1;
    return true;
  };

  const verdictOf = (session: ClientSession, packet: PublishPacket, isWill: boolean, result: AuthorizationResult): Verdict => {
    if (result.decision === 'allow') return 'allow';
    logger.debug({ clientid: session.clientid, topic: packet.topic, source: result.source }, 'publish denied');
    if (store.authorizationSettings().deny_action === 'disconnect') {
      markDisconnectReason(session.client, 'not_authorized');
      return 'disconnect';
    }
    if (!isWill) session.counters['recv_msg.dropped'] += 1;
    return 'drop';
  };

  const checkPublish = async (session: ClientSession, packet: PublishPacket, isWill: boolean): Promise<Verdict> => {
    const qos = packet.qos ?? 0;
    if (!isWill && !publishWithinLimits(session, packet, qos)) return 'disconnect';
    const request: AccessRequest = { action: 'publish', topic: packet.topic, qos, retain: packet.retain === true };
    return verdictOf(session, packet, isWill, await authorizer.authorize(session, request));
  };

  const settlePublish = (packet: PublishPacket, callback: (error?: Error | null) => void, verdict: Verdict): void => {
    if (verdict === 'allow') return callback(null);
    if (verdict === 'drop') {
      deniedPackets.add(packet);
      return callback(null);
    }
    return callback(new Error('publish refused (not authorized or protocol limit)'));
  };

  const authorizePublish = (client: Client | null, packet: PublishPacket, callback: (error?: Error | null) => void): void => {
    if (!client) return callback(null);
    const session = sessions.of(client);
    if (!session) return callback(new Error('client is not authenticated'));
    const isWill = packet === (client as unknown as { will?: unknown }).will;
    // Fast path: nothing of this client is waiting for an authorization callout, and the decision
    // is known without one (superuser, ACL from authn, cached decision): settle synchronously.
    if (session.pendingPublishes === 0) {
      const qos = packet.qos ?? 0;
      const request: AccessRequest = { action: 'publish', topic: packet.topic, qos, retain: packet.retain === true };
      const known = authorizer.authorizeKnown(session, request);
      if (known) {
        if (!isWill && !publishWithinLimits(session, packet, qos)) return settlePublish(packet, callback, 'disconnect');
        return settlePublish(packet, callback, verdictOf(session, packet, isWill, known));
      }
    }
    const settle = (verdict: Verdict): void => settlePublish(packet, callback, verdict);
    // Slow path: publishes are authorised one after another so a client's messages keep their order.
    session.pendingPublishes += 1;
    session.publishQueue = session.publishQueue.then(() =>
      checkPublish(session, packet, isWill).then(
        (verdict) => {
          session.pendingPublishes -= 1;
          settle(verdict);
        },
        (error: unknown) => {
          session.pendingPublishes -= 1;
          logger.error({ err: error, clientid: session.clientid }, 'publish authorization failed unexpectedly');
          callback(error instanceof Error ? error : new Error(String(error)));
        },
      ),
    );
  };

  const authorizeSubscribe = (client: Client, subscription: Subscription, callback: (error: Error | null, subscription?: Subscription | null) => void): void => {
    const session = sessions.of(client);
    if (!session) return callback(new Error('client is not authenticated'));
    const zone = store.mqttZone();
    const shared = parseSharedSubscription(subscription.topic);
    if (shared === 'invalid' || (shared && zone.shared_subscription === false)) return callback(null, null);
    // Shared subscriptions are authorized against the real filter.
    const filter = shared ? shared.filter : subscription.topic;
    const maxLevels = typeof zone.max_topic_levels === 'number' ? zone.max_topic_levels : 128;
    if (topicLevels(filter) > maxLevels) return callback(null, null);
    if (zone.wildcard_subscription === false && /[+#]/.test(filter)) return callback(null, null);
    const request: AccessRequest = { action: 'subscribe', topic: filter, qos: subscription.qos ?? 0, retain: false };
    authorizer.authorize(session, request).then(
      ({ decision, source }) => {
        if (decision === 'allow') return callback(null, subscription);
        logger.debug({ clientid: session.clientid, topic: subscription.topic, source }, 'subscribe denied');
        if (store.authorizationSettings().deny_action === 'disconnect') return callback(new Error('subscribe not authorized'));
        return callback(null, null); // SUBACK 0x80
      },
      (error: unknown) => {
        logger.error({ err: error, clientid: session.clientid }, 'subscribe authorization failed unexpectedly');
        callback(null, null);
      },
    );
  };

  const countForward = (client: Client, qos: number): void => {
    const session = sessions.of(client);
    if (!session) return;
    const counters = session.counters;
    counters.send_msg += 1;
    if (qos === 0) counters['send_msg.qos0'] += 1;
    else if (qos === 1) counters['send_msg.qos1'] += 1;
    else counters['send_msg.qos2'] += 1;
  };

  const authorizeForward = (client: Client, packet: AedesPublishPacket): AedesPublishPacket => {
    countForward(client, packet.qos ?? 0);
    return packet;
  };

  const aedes = await Aedes.createBroker({
    id: nodeName,
    maxClientsIdLength: 65_535,
    // The zone's idle_timeout closes sockets without a CONNECT (below); aedes' own fixed 30 s
    // timer would override an `infinity` or a longer setting.
    connectTimeout: MAX_TIMER_MS,
    preConnect,
    authenticate: authenticateHook,
    authorizePublish,
    authorizeSubscribe,
    authorizeForward,
  });
  // mqemitter's backlog (messages beyond `concurrency` in flight) is an array it `shift`s; under
  // load that is O(backlog) per message. A ring buffer keeps it O(1).
  useFastBacklog((aedes as unknown as { mq?: unknown }).mq);

  /**
   * The `message.publish` event of a client's publish, built only when a rule can select the
   * topic or someone else listens (otherwise a publish costs one topic-index lookup here).
   */
  const emitClientPublish = (
    session: ClientSession,
    topic: string,
    qos: number,
    retain: boolean,
    dup: boolean,
    body: PublishPacket['payload'] | undefined,
    topicCache?: TopicHookCache,
  ): void => {
    messagesReceived += 1;
    if (topic.startsWith('$SYS/')) return;
    // Counting rules are served here without building the message; only rules that read it
    // (or hook listeners) need the event below.
    const pending = ruleEngineRef?.beginPublish(topic, topicCache);
    if (pending === undefined && hooks.listenerCount('message.publish') === 0) return;
    const payload = Buffer.isBuffer(body) ? body : Buffer.from(body ?? '');
    const message: PublishedMessage = {
      id: `${Date.now().toString(16)}${Math.random().toString(16).slice(2, 10)}`,
      clientid: session.clientid,
      username: session.username,
      peerhost: session.peerhost,
      topic,
      qos,
      flags: { retain, dup },
      payload,
      publish_received_at: Date.now(),
      client_attrs: { ...session.clientAttrs },
    };
    try {
      if (pending) ruleEngineRef?.handlePublish(message, pending);
      hooks.emit('message.publish', message);
    } catch (error) {
      logger.error({ err: error }, 'message.publish hook failed');
    }
  };

  // Denied publishes with `deny_action: ignore` are acknowledged but never routed; with the
  // retainer disabled, retained publishes are routed without being stored.
  const routePublish = aedes.publish.bind(aedes) as unknown as (packet: PublishPacket, client: Client | null, done: (error?: Error) => void) => void;
  (aedes as unknown as { publish: unknown }).publish = (
    packet: PublishPacket,
    clientOrDone?: Client | null | ((error?: Error) => void),
    maybeDone?: (error?: Error) => void,
  ): void => {
    const client = typeof clientOrDone === 'function' ? null : (clientOrDone ?? null);
    const done = (typeof clientOrDone === 'function' ? clientOrDone : maybeDone) ?? (() => {});
    if (deniedPackets.has(packet)) {
      deniedPackets.delete(packet);
      done();
      return;
    }
    let routed = packet;
    const session = sessions.of(client);
    if (client && session) {
      if (packet.retain && !store.retainerEnabled()) routed = { ...packet, retain: false };
      emitClientPublish(session, packet.topic, packet.qos ?? 0, packet.retain === true, packet.dup === true, packet.payload);
    }
    routePublish(routed, client, done);
  };

  // QoS 0 publishes of connected MQTT 3.1.1 clients whose authorization is known take the fast
  // path (fast-publish.ts); it makes the same decisions and counts, and emits the same events.
  const fastPublish = new FastPublish(aedes, {
    admit(client, topic, payload) {
      const session = sessions.of(client);
      if (!session || session.pendingPublishes !== 0) return undefined;
      const known = authorizer.authorizeKnown(session, { action: 'publish', topic, qos: 0, retain: false });
      if (!known) return undefined;
      // A denial that disconnects, and any limit violation (which disconnects), keep aedes' path.
      if (known.decision !== 'allow' && store.authorizationSettings().deny_action === 'disconnect') return undefined;
      const packet = { cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false } as PublishPacket;
      if (!publishWithinLimits(session, packet, 0)) return undefined;
      return verdictOf(session, packet, false, known) === 'allow' ? 'allow' : 'drop';
    },
    published(client, topic, payload, topicCache) {
      const session = sessions.of(client);
      if (session) emitClientPublish(session, topic, 0, false, false, payload, topicCache);
    },
    forwarded(client) {
      countForward(client, 0);
    },
  });
  if (options.fastPublish === false) fastPublish.disable();

  // Messages published by a rule's republish action go through the `message.publish` hook (so
  // rules on the output topic fire, unless direct_dispatch) and normal routing, like EMQX's
  // `emqx_broker:safe_publish`; their `clientid` column is the rule id.
  const publishFromRule = (message: RepublishMessage): void => {
    const retain = message.retain && store.retainerEnabled();
    const pending = message.directDispatch || message.topic.startsWith('$SYS/') ? undefined : ruleEngineRef?.beginPublish(message.topic);
    if (!message.directDispatch && !message.topic.startsWith('$SYS/') && (pending !== undefined || hooks.listenerCount('message.publish') > 0)) {
      const event: PublishedMessage = {
        id: `${Date.now().toString(16)}${Math.random().toString(16).slice(2, 10)}`,
        clientid: message.ruleId,
        username: null,
        peerhost: '',
        topic: message.topic,
        qos: message.qos,
        flags: { retain, dup: false },
        payload: message.payload,
        publish_received_at: Date.now(),
        client_attrs: {},
        republish_by: message.ruleId,
      };
      if (pending) ruleEngineRef?.handlePublish(event, pending);
      hooks.emit('message.publish', event);
    }
    const packet = { cmd: 'publish', topic: message.topic, payload: message.payload, qos: message.qos, retain, dup: false } as PublishPacket;
    routePublish(packet, null, (error) => {
      if (error) logger.warn({ rule: message.ruleId, topic: message.topic, err: error.message }, 'republished message could not be routed');
    });
  };

  const sharedSubscriptions = new SharedSubscriptions(
    aedes,
    () => String(store.mqttZone().shared_subscription_strategy ?? 'round_robin'),
    logger,
  );
  aedes.on('subscribe', (subscriptions, client) => {
    fastPublish.learnSubscriptions(client);
    for (const subscription of subscriptions) {
      // aedes reports a refused subscription with qos 128.
      if ((subscription.qos as number) !== 128) sharedSubscriptions.add(client, subscription.topic, subscription.qos);
    }
  });
  aedes.on('unsubscribe', (topics, client) => {
    for (const topic of topics) sharedSubscriptions.remove(client, topic);
  });

  aedes.on('client', (client) => {
    const session = sessions.of(client);
    if (!session) return;
    // Subscriptions restored from a persistent session are already in place here.
    const restored = (client as unknown as { subscriptions?: Record<string, { qos?: number }> }).subscriptions ?? {};
    fastPublish.learnSubscriptions(client);
    for (const [topic, subscription] of Object.entries(restored)) sharedSubscriptions.add(client, topic, subscription.qos ?? 0);
    sessions.markConnected(session);
    scheduleExpiry(session);
    hooks.emit('client.connected', { clientid: session.clientid, username: session.username, peerhost: session.peerhost, client_attrs: session.clientAttrs });
  });
  aedes.on('clientDisconnect', (client) => {
    sharedSubscriptions.removeClient(client);
    const session = sessions.of(client);
    if (!session) return;
    sessions.markDisconnected(session);
    // EMQX's reasons: an explicit one (kicked, takenover, not_authorized, keepalive_timeout...),
    // else `normal` after a DISCONNECT packet and `tcp_closed` when the socket just closed.
    const internals = client as unknown as { _disconnectReason?: string; _disconnected?: boolean; conn?: { localAddress?: string; localPort?: number } };
    const reason = internals._disconnectReason ?? (internals._disconnected ? 'normal' : 'tcp_closed');
    hooks.emit('client.disconnected', { clientid: session.clientid, username: session.username, peerhost: session.peerhost, client_attrs: session.clientAttrs, reason });
    if (ruleEngineRef?.wantsEvent(DISCONNECTED_EVENT)) {
      const disconnectedAt = Date.now();
      ruleEngineRef.handleEvent(DISCONNECTED_EVENT, () =>
        disconnectedColumns(
          {
            clientid: session.clientid,
            username: session.username,
            peerhost: session.peerhost,
            peerport: session.peerport,
            sockname: `${internals.conn?.localAddress ?? ''}:${internals.conn?.localPort ?? 0}`,
            protoVer: session.protoVer,
            reason,
            connectedAt: session.connectedAt ?? session.createdAt,
            disconnectedAt,
            clientAttrs: session.clientAttrs,
          },
          nodeName,
        ),
      );
    }
  });
  aedes.on('keepaliveTimeout', (client) => markDisconnectReason(client, 'keepalive_timeout'));
  aedes.on('clientError', (client, error) => logger.debug({ clientid: client.id, err: error.message }, 'client error'));
  aedes.on('connectionError', (_client, error) => logger.debug({ err: error.message }, 'connection error'));

  // ---- MQTT listener -----------------------------------------------------------------------

  const messagesRateSetting = parsedOnce((value) => parseRate(value) ?? Number.POSITIVE_INFINITY);
  const bytesRateSetting = parsedOnce((value) => parseRate(value) ?? Number.POSITIVE_INFINITY);
  const connectionRateSetting = parsedOnce((value) => parseRate(value) ?? Number.POSITIVE_INFINITY);
  const idleTimeoutSetting = parsedOnce((value) => parseDuration(value ?? DEFAULT_IDLE_TIMEOUT));
  const inboundLimits = (): InboundLimits => {
    const listener = store.listener(LISTENER_ID) ?? {};
    return {
      maxPacketSize: maxPacketSizeOf(store.mqttZone().max_packet_size),
      messagesPerSecond: messagesRateSetting(listener.messages_rate),
      bytesPerSecond: bytesRateSetting(listener.bytes_rate),
    };
  };

  const handleConnection = (socket: Socket): void => {
    if (socket.destroyed) return; // closed while it waited for its max_conn_rate turn
    const maxConnections = store.listener(LISTENER_ID)?.max_connections;
    if (typeof maxConnections === 'number' && sockets.size >= maxConnections) {
      logger.warn({ peer: socket.remoteAddress, maxConnections }, 'connection refused: max_connections reached');
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const peer = { host: normaliseIp(socket.remoteAddress), port: socket.remotePort ?? 0 };
    peers.set(socket, peer);
    coalesceWrites(socket);
    const client = aedes.handle(socket) as unknown as Client;
    fastPublish.install(client);
    // Last, so every byte is checked before the fast path or aedes' parser buffers it.
    limitInbound(client, {
      limits: inboundLimits,
      stats: limitStats,
      onViolation(violation) {
        const clientid = (client as unknown as { id?: string | null }).id ?? undefined;
        const what = violation.reason === 'packet_too_large' ? 'packet over the size limit' : 'malformed packet length';
        logger.info({ peer: peer.host, clientid, ...violation }, `connection closed: ${what}`);
      },
    });
    // EMQX's idle_timeout: a socket that sends no CONNECT in time is closed (preConnect stops the timer).
    const idleMs = idleTimeoutSetting(store.mqttZone().idle_timeout);
    if (idleMs !== undefined) {
      const timer = setTimeout(() => {
        limitStats.closedIdle += 1;
        logger.debug({ peer: peer.host, idleMs }, 'connection closed: no CONNECT within idle_timeout');
        socket.destroy();
      }, Math.min(idleMs, MAX_TIMER_MS));
      idleTimers.set(client, timer);
      socket.once('close', () => clearTimeout(timer));
    }
  };

  const connectionGate = new ConnectionRateGate({
    rate: () => connectionRateSetting(store.listener(LISTENER_ID)?.max_conn_rate),
    maxWaiting: () => {
      const backlog = (store.listener(LISTENER_ID)?.tcp_options as { backlog?: unknown } | undefined)?.backlog;
      return typeof backlog === 'number' ? backlog : DEFAULT_BACKLOG;
    },
    accept: handleConnection,
    refuse(socket) {
      logger.debug({ peer: socket.remoteAddress }, 'connection refused: max_conn_rate backlog full');
      socket.destroy();
    },
  });

  // Sockets are accepted paused: one waiting for its max_conn_rate turn reads nothing.
  const mqttServer = createServer({ pauseOnConnect: true }, (socket) => {
    if (!store || store.listener(LISTENER_ID)?.enable === false) {
      logger.warn({ peer: socket.remoteAddress }, 'connection refused: listener disabled');
      socket.destroy();
      return;
    }
    connectionGate.admit(socket);
    limitStats.delayedConnections = connectionGate.delayed;
  });

  let api: FastifyInstance | undefined;
  let rules: RuleEngine | undefined;
  try {
    const mqttPort = await listenTcp(mqttServer, mqttHost, options.mqttPort ?? 0, 'MQTT');
    store = await ConfigStore.open({ stateFile: options.stateFile, listenerBind: `${mqttHost}:${mqttPort}`, logger });
    authorizer = new Authorizer(
      () => store.sources(),
      () => store.authorizationSettings(),
      (session, request, result) => {
        if (!ruleEngineRef?.wantsEvent(AUTHZ_COMPLETE_EVENT)) return;
        ruleEngineRef.handleEvent(AUTHZ_COMPLETE_EVENT, () =>
          authzCompleteColumns(
            {
              clientid: session.clientid,
              username: session.username,
              peerhost: session.peerhost,
              peerport: session.peerport,
              topic: request.topic,
              action: request.action,
              result: result.decision,
              // An ACL from the authentication answer is reported as `http`, as EMQX does.
              authzSource: result.source === 'acl' ? 'http' : result.source,
              clientAttrs: session.clientAttrs,
            },
            nodeName,
          ),
        );
      },
    );
    // Like EMQX, changing sources or settings drains every client's authorization cache.
    store.onChange((sections) => {
      if (sections.has('authorization')) sessions.clearAllAuthzCaches();
    });

    const rulesStateFile = options.rulesStateFile ?? (options.stateFile ? `${options.stateFile}.rules.json` : undefined);
    const ruleEngine = await RuleEngine.open({ nodeName, logger, republish: publishFromRule, stateFile: rulesStateFile });
    rules = ruleEngine;
    // The rule engine runs first on every `message.publish` event (before hooks listeners).
    ruleEngineRef = ruleEngine;
    const context: ManagementContext = {
      store,
      sessions,
      rules: ruleEngine,
      nodeName,
      logger,
      kick: (session) => kick(session),
      listenerConnections: (id) => (id === LISTENER_ID ? sockets.size : 0),
      messagesReceived: () => messagesReceived,
    };
    api = await buildManagementApi(context, options.apiKeys, options.extraRoutes ?? []);
    let apiPort: number;
    try {
      await api.listen({ host: apiHost, port: options.apiPort ?? 0 });
      apiPort = (api.server.address() as AddressInfo).port;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE') throw new Error(`Management API port ${options.apiPort ?? 0} on ${apiHost} is already in use; pick another port (0 chooses a free one)`);
      throw error;
    }

    const banSweep = setInterval(() => void store.purgeExpiredBans().catch(() => undefined), 60_000);
    banSweep.unref();

    const mqttUrl = `mqtt://${urlHost(mqttHost)}:${mqttPort}`;
    const apiUrl = `http://${urlHost(apiHost)}:${apiPort}`;
    logger.info({ mqttUrl, apiUrl }, 'embedded EMQX-compatible broker started');

    let closing: Promise<void> | undefined;
    const close = (): Promise<void> => {
      closing ??= (async () => {
        clearInterval(banSweep);
        connectionGate.stop();
        await api?.close();
        await new Promise<void>((resolve) => aedes.close(() => resolve()));
        const serverClosed = new Promise<void>((resolve) => mqttServer.close(() => resolve()));
        for (const socket of sockets) socket.destroy();
        await serverClosed;
        await ruleEngine.close();
        await store.close();
        logger.info('embedded broker stopped');
      })();
      return closing;
    };

    return { mqttUrl, mqttPort, apiUrl, apiPort, aedes, hooks, store, sessions, rules: ruleEngine, fastPublishStats: fastPublish.stats, limitStats, close };
  } catch (error) {
    connectionGate.stop();
    await api?.close().catch(() => undefined);
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    if (mqttServer.listening) await new Promise<void>((resolve) => mqttServer.close(() => resolve()));
    await rules?.close().catch(() => undefined);
    await store?.close().catch(() => undefined);
    throw error;
  }
}
