/**
 * The ingest's MQTT connection (MQTT 3.1.1, QoS 0, Backend JWT as username like the Go
 * service). Two modes (PU_DP_INTAKE_MODE):
 *
 * - `go-compatible`: subscribes `<domain>/+/pepeunit` (optionally `$share/<PU_DP_SHARE_GROUP>/...`),
 *   exactly what the Go DataPipe consumed, so it drops into an existing deployment; the message
 *   time is the receive time.
 * - `rules` (default of our stack): consumes only what the broker's rules forward for nodes with
 *   an enabled policy: `$share/<group>/pepeunit_ingest/#` (group: PU_DP_SHARE_GROUP, default
 *   `pepeunit_ingest`), each message a JSON envelope `{"payload","topic","clientid","ts"}`;
 *   the broker's `publish_received_at` (`ts`, ms) is the message time. Several ingest processes
 *   share the load; per-node ordering needs the broker to route one topic to one member
 *   (EMQX `shared_subscription_strategy = hash_topic`, set and verified by the EMQX controller).
 *
 * Each message is handed synchronously to the dispatcher: no await per message.
 */
import { randomBytes } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { createReconnectingMqtt } from '@pepeunit/common/mqtt-connection';
import {
  backendToken,
  ingestSubscription,
  originalTopicOfIngest,
  sharedFilter,
  unitNodePipeFilter,
  type IngestConfig,
  type Logger,
} from '@pepeunit/common';
import type { IngestMetrics } from './metrics.js';

export const DEFAULT_RULES_SHARE_GROUP = 'pepeunit_ingest';

export interface Envelope {
  /** The device's original topic. */
  topic: string;
  payload: Buffer;
  /** Broker receive time (ms), when the envelope carries a usable one. */
  ts: number | null;
}

/**
 * Reads a rules-intake envelope. `payload` is the device payload as text (a JSON value other
 * than a string, from a rule that decoded it, is re-serialised); `topic` falls back to the
 * intake topic without its prefix. Null when the envelope is unusable.
 */
export function decodeEnvelope(intakeTopic: string, raw: Buffer): Envelope | null {
  let doc: unknown;
  try {
    doc = JSON.parse(raw.toString('utf8'));
  } catch {
    return null;
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return null;
  const e = doc as { payload?: unknown; topic?: unknown; ts?: unknown };
  const topic = typeof e.topic === 'string' && e.topic !== '' ? e.topic : originalTopicOfIngest(intakeTopic);
  if (!topic) return null;
  let payload: Buffer;
  if (typeof e.payload === 'string') payload = Buffer.from(e.payload, 'utf8');
  else if (e.payload === undefined || e.payload === null) return null;
  else payload = Buffer.from(JSON.stringify(e.payload), 'utf8');
  const tsRaw = typeof e.ts === 'string' && e.ts.trim() !== '' ? Number(e.ts) : e.ts;
  const ts = typeof tsRaw === 'number' && Number.isFinite(tsRaw) && tsRaw > 0 ? Math.trunc(tsRaw) : null;
  return { topic, payload, ts };
}

/** The subscription of a mode. */
export function intakeSubscription(config: Pick<IngestConfig, 'intakeMode' | 'domain' | 'shareGroup'>): string {
  if (config.intakeMode === 'rules') return ingestSubscription(config.shareGroup || DEFAULT_RULES_SHARE_GROUP);
  const filter = unitNodePipeFilter(config.domain);
  return config.shareGroup ? sharedFilter(config.shareGroup, filter) : filter;
}

export interface IntakeOptions {
  config: IngestConfig;
  logger: Logger;
  metrics: IngestMetrics;
  now: () => number;
  /** Receives each message: the device topic, its payload and its time. */
  deliver: (topic: string, payload: Buffer, atMs: number) => void;
  /** How long start-up waits for the broker and the subscription. Default 30 s. */
  connectTimeoutMs?: number;
}

export interface Intake {
  readonly subscription: string;
  readonly connected: boolean;
  /** The same path as a message from the broker (intake topic and raw payload). */
  inject(topic: string, payload: Buffer): void;
  /** Unsubscribes and disconnects; no message is delivered afterwards. */
  close(): Promise<void>;
}

/** The message handler of a mode, shared by the MQTT client and `inject`. */
export function createMessageHandler(options: Pick<IntakeOptions, 'config' | 'metrics' | 'now' | 'deliver'>): (topic: string, payload: Buffer) => void {
  const { metrics, now, deliver } = options;
  if (options.config.intakeMode === 'rules') {
    return (topic, payload) => {
      metrics.received += 1;
      const envelope = decodeEnvelope(topic, payload);
      if (envelope === null) {
        metrics.dropped.bad_envelope += 1;
        return;
      }
      deliver(envelope.topic, envelope.payload, envelope.ts ?? now());
    };
  }
  return (topic, payload) => {
    metrics.received += 1;
    deliver(topic, payload, now());
  };
}

/** A client id no other process uses (the Go service used the bare domain: one instance only). */
function clientId(domain: string): string {
  return `${domain}-ingest-${randomBytes(6).toString('hex')}`;
}

export async function startIntake(options: IntakeOptions): Promise<Intake> {
  const { config, logger } = options;
  const subscription = intakeSubscription(config);
  const handler = createMessageHandler(options);
  let closing = false;
  let subscribed = false;
  let resubscribeTimer: NodeJS.Timeout | null = null;

  const connection = createReconnectingMqtt({
    name: 'ingest',
    logger,
    clientOptions: {
      host: config.mqttHost,
      port: config.mqttPort,
      protocolVersion: 4,
      clientId: clientId(config.domain),
      username: backendToken(config.domain, config.secretKey),
      keepalive: config.mqttKeepalive,
      connectTimeout: 10_000,
      clean: true,
      resubscribe: false,
      // mqtt.js traces every packet through `debug` unless given a logger; a no-op saves ~5% CPU.
      log: () => {},
    },
  });
  const client: MqttClient = connection.client;

  let markSubscribed!: () => void;
  const firstSubscription = new Promise<void>((resolve) => (markSubscribed = resolve));

  const subscribe = (): void => {
    if (closing || !client.connected) return;
    client.subscribe(subscription, { qos: 0 }, (err, granted) => {
      if (closing) return;
      const refused = !err && (granted ?? []).some((g) => g.qos === 128);
      if (err || refused) {
        logger.error(
          { subscription, err: err?.message ?? 'SUBACK 0x80 (not authorized)' },
          'intake subscription refused; retrying in 10 s (check PU_DP_DOMAIN and PU_DP_SECRET_KEY against the backend)',
        );
        resubscribeTimer = setTimeout(subscribe, 10_000);
        resubscribeTimer.unref();
        return;
      }
      subscribed = true;
      logger.info({ subscription, mode: config.intakeMode }, 'intake subscribed');
      markSubscribed();
    });
  };
  client.on('connect', () => {
    subscribed = false;
    subscribe();
  });
  client.on('message', handler);
  connection.start();

  const timeoutMs = options.connectTimeoutMs ?? 30_000;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const outcome = await Promise.race([firstSubscription.then(() => 'ok' as const), timedOut]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    closing = true;
    const reason = connection.status().lastError;
    await connection.end(true);
    throw new Error(
      `The ingest could not ${client.connected ? `subscribe to ${subscription}` : `connect to the MQTT broker at ${config.mqttHost}:${config.mqttPort}`} within ${Math.round(timeoutMs / 1000)} s${reason ? ` (${reason})` : ''}. Check PU_DP_MQTT_HOST/PU_DP_MQTT_PORT and that the broker accepts the Backend token (PU_DP_DOMAIN, PU_DP_SECRET_KEY).`,
    );
  }

  return {
    subscription,
    get connected() {
      return client.connected && subscribed;
    },
    inject: handler,
    async close() {
      if (closing) return;
      closing = true;
      if (resubscribeTimer) clearTimeout(resubscribeTimer);
      if (client.connected) {
        await Promise.race([client.unsubscribeAsync(subscription).catch(() => undefined), new Promise((r) => setTimeout(r, 2000))]);
      }
      client.removeListener('message', handler);
      await connection.end();
    },
  };
}
