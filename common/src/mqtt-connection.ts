/**
 * A broker connection that never gives up: the backend's and the ingest's MQTT client.
 *
 * mqtt.js reconnects after a lost TCP connection, but not after a refused CONNACK (EMQX or the
 * embedded broker answering "Not authorized" because the authentication callback was not
 * reachable yet, a broker that restarts with an authenticator pointing at a backend that is
 * still starting, ...): it stops for good and the process stays disconnected while looking
 * healthy. Here every end of a connection — refused, lost, timed out — schedules the next attempt
 * with exponential backoff and jitter, and every attempt and outcome is logged once, so an
 * operator sees why a process is not ready and when it recovers.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';

export interface ReconnectingMqttOptions {
  /** What this connection is for, in log lines (`backend`, `ingest`). */
  readonly name: string;
  /** mqtt.js options; `reconnectPeriod` and `manualConnect` are managed here. */
  readonly clientOptions: IClientOptions & { host: string; port: number };
  readonly logger: Logger;
  /** First retry delay (default 500 ms); doubles per failed attempt up to `maxDelayMs`. */
  readonly minDelayMs?: number;
  /** Upper bound of the retry delay (default 15 s). */
  readonly maxDelayMs?: number;
}

export interface MqttConnectionStatus {
  readonly connected: boolean;
  /** Failed attempts since the last successful connection. */
  readonly failedAttempts: number;
  /** Successful connections after the first one. */
  readonly reconnects: number;
  /** Why the last attempt ended (refusal reason or socket error), when it failed. */
  readonly lastError?: string;
  /** Epoch ms since which the connection is down (undefined while connected). */
  readonly downSince?: number;
}

export interface ReconnectingMqtt {
  readonly client: MqttClient;
  /** Starts the first attempt (idempotent). */
  start(): void;
  /** Resolves true once connected, false after `timeoutMs` (the attempts go on). */
  waitForConnect(timeoutMs: number): Promise<boolean>;
  status(): MqttConnectionStatus;
  /** Stops reconnecting and closes the connection (DISCONNECT when connected). */
  end(force?: boolean): Promise<void>;
}

/** Delay before attempt `failures + 1`: min * 2^(failures - 1), capped, with ±20 % jitter. */
export function reconnectDelayMs(failures: number, minDelayMs: number, maxDelayMs: number, random: () => number = Math.random): number {
  const base = Math.min(maxDelayMs, minDelayMs * 2 ** Math.max(0, Math.min(30, failures - 1)));
  return Math.max(minDelayMs, Math.round(base * (0.8 + 0.4 * random())));
}

export function createReconnectingMqtt(options: ReconnectingMqttOptions): ReconnectingMqtt {
  const { name, logger } = options;
  const minDelayMs = options.minDelayMs ?? 500;
  const maxDelayMs = options.maxDelayMs ?? 15_000;
  const where = `${options.clientOptions.host}:${options.clientOptions.port}`;
  const client = mqtt.connect({
    ...options.clientOptions,
    manualConnect: true,
    // Reconnection is ours: mqtt.js's own timer neither backs off nor survives a refused CONNACK.
    reconnectPeriod: 0,
  });
  let started = false;
  let ending = false;
  let everConnected = false;
  let failedAttempts = 0;
  let reconnects = 0;
  let lastError: string | undefined;
  let downSince: number | undefined = Date.now();
  let retryTimer: NodeJS.Timeout | undefined;
  // The error that ended the current attempt, reported once with its close.
  let attemptError: string | undefined;

  client.on('connect', () => {
    if (everConnected) reconnects += 1;
    const after = failedAttempts;
    logger.info({ broker: where, failedAttempts: after, reconnect: everConnected }, `${name}: MQTT connected${after ? ` after ${after} failed attempt${after === 1 ? '' : 's'}` : ''}`);
    everConnected = true;
    failedAttempts = 0;
    lastError = undefined;
    attemptError = undefined;
    downSince = undefined;
  });
  client.on('error', (err: Error) => {
    // Refusals ("Connection refused: Not authorized") and socket errors (ECONNREFUSED) end the
    // attempt; the close that follows schedules the next one.
    attemptError = err.message || String(err);
  });
  client.on('close', () => {
    if (ending) return;
    const wasConnected = downSince === undefined;
    if (wasConnected) {
      downSince = Date.now();
      logger.warn({ broker: where, err: attemptError }, `${name}: MQTT connection lost`);
    } else {
      failedAttempts += 1;
    }
    lastError = attemptError ?? (wasConnected ? 'connection closed by the broker' : 'no CONNACK before the connect timeout');
    attemptError = undefined;
    scheduleRetry(wasConnected);
  });

  function scheduleRetry(immediateAfterLoss: boolean): void {
    if (ending || retryTimer) return;
    const delay = immediateAfterLoss ? minDelayMs : reconnectDelayMs(failedAttempts, minDelayMs, maxDelayMs);
    if (!immediateAfterLoss) {
      logger.warn({ broker: where, attempt: failedAttempts, err: lastError, retryInMs: delay }, `${name}: MQTT connection attempt ${failedAttempts} failed (${lastError}); retrying in ${(delay / 1000).toFixed(1)} s`);
    }
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      if (ending) return;
      client.reconnect();
    }, delay);
    retryTimer.unref();
  }

  return {
    client,
    start() {
      if (started) return;
      started = true;
      logger.info({ broker: where }, `${name}: MQTT connecting`);
      client.connect();
    },
    waitForConnect(timeoutMs) {
      if (client.connected) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          client.off('connect', onConnect);
          resolve(false);
        }, timeoutMs);
        const onConnect = (): void => {
          clearTimeout(timer);
          resolve(true);
        };
        client.once('connect', onConnect);
      });
    },
    status() {
      return { connected: client.connected, failedAttempts, reconnects, lastError, downSince };
    },
    async end(force = false) {
      ending = true;
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = undefined;
      await new Promise<void>((resolve) => client.end(force || !client.connected, {}, () => resolve()));
    },
  };
}
