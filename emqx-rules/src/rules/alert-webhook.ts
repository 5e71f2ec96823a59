// The one HTTP connector + one HTTP action every alert rule sends to (reference/emqx-5.md §4.3,
// wave2-integrations.md §4.5): connector `http:pu-backend` (the backend's webhook base URL and
// a shared secret), action `http:pu-alerts` (POST `<url>/alerts/${kind}` with the whole rule
// output as JSON). A small fixed set: EMQX turns connector/action names into atoms.
//
// The secret travels as `authorization: Bearer <secret>`. EMQX shows that header as `******`
// when read back, so a rotated secret could not be seen as a difference; the connector's
// description carries a short SHA-256 fingerprint of the secret instead, and a changed
// fingerprint makes the controller update the connector. The backend answers 2xx quickly, or
// 429/503 to make EMQX retry (any other status is a final failure).
import { createHash } from 'node:crypto';
import type { ActionCreate, ConnectorCreate } from '../emqx-types.js';
import { parseByteSize, parseDuration } from '../emqx-values.js';

export const ALERT_CONNECTOR_NAME = 'pu-backend';
export const ALERT_ACTION_NAME = 'pu-alerts';
/** What alert rules list in `actions`. */
export const ALERT_ACTION_REF = `http:${ALERT_ACTION_NAME}`;
/** Path under the backend's callback base (`.../pepeunit/api/v1`) the connector points at. */
export const BACKEND_EMQX_WEBHOOK_PATH = '/emqx';
/** Action path template: `<connector url>/alerts/<kind>`. */
export const ALERT_ACTION_PATH = 'alerts/${kind}';

export interface AlertWebhookOptions {
  /** Base URL of the backend's EMQX webhooks, e.g. `http://127.0.0.1:5000/pepeunit/api/v1/emqx`. */
  url: string;
  /** Shared secret (16+ printable characters, no spaces), sent as `authorization: Bearer <secret>`. */
  secret: string;
  /** Connections to the backend (default 4). */
  poolSize?: number;
  /** Default "5s". */
  connectTimeout?: string;
  /** How long an alert may wait and take (default "30s"). */
  requestTtl?: string;
  /** Retries on 429/503 (default 2). */
  maxRetries?: number;
  /** Requests in flight per buffer worker (default 100). */
  inflightWindow?: number;
  /** Buffer workers (default 4). */
  workerPoolSize?: number;
  /** Buffered alerts at most (default "64MB"). */
  maxBufferBytes?: string;
  /** Certificate check for an https URL (default verify_peer). */
  tlsVerify?: 'verify_peer' | 'verify_none';
}

function integer(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  const result = value ?? fallback;
  if (!Number.isInteger(result) || result < min || result > max) throw new Error(`alert webhook option ${name} must be an integer between ${min} and ${max}, got ${String(value)}`);
  return result;
}

function duration(name: string, value: string | undefined, fallback: string): string {
  const result = value ?? fallback;
  if (parseDuration(result) === undefined) throw new Error(`alert webhook option ${name} must be a duration like "5s", got ${JSON.stringify(value)}`);
  return result;
}

function checkUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`alert webhook url is not a valid URL: ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`alert webhook url must be http(s), got ${url.protocol}`);
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') throw new Error('alert webhook url must not carry a query, fragment or credentials');
  if (raw.includes('${')) throw new Error('alert webhook url must not contain placeholders');
  return url;
}

function checkSecret(secret: string): string {
  if (typeof secret !== 'string' || secret.length < 16 || !/^[\x21-\x7e]+$/.test(secret)) {
    throw new Error('alert webhook secret must be at least 16 printable ASCII characters without spaces');
  }
  return secret;
}

/** A short fingerprint of the secret (never the secret), so a rotation shows as a change. */
export function secretFingerprint(secret: string): string {
  return createHash('sha256').update(`pepeunit-webhook:${secret}`).digest('hex').slice(0, 12);
}

/** `POST /api/v5/connectors` body of `http:pu-backend`. */
export function buildAlertConnector(options: AlertWebhookOptions): ConnectorCreate {
  const url = checkUrl(options.url);
  const secret = checkSecret(options.secret);
  const tls = url.protocol === 'https:';
  return {
    type: 'http',
    name: ALERT_CONNECTOR_NAME,
    enable: true,
    description: `Pepeunit backend webhooks (managed by the Pepeunit controller; secret fingerprint ${secretFingerprint(secret)})`,
    url: url.toString().replace(/\/+$/, ''),
    headers: { authorization: `Bearer ${secret}` },
    connect_timeout: duration('connectTimeout', options.connectTimeout, '5s'),
    pool_type: 'random',
    pool_size: integer('poolSize', options.poolSize, 4, 1, 1024),
    enable_pipelining: 100,
    ssl: tls ? { enable: true, verify: options.tlsVerify ?? 'verify_peer' } : { enable: false },
  };
}

/** `POST /api/v5/actions` body of `http:pu-alerts`. */
export function buildAlertAction(options: AlertWebhookOptions): ActionCreate {
  const maxBufferBytes = options.maxBufferBytes ?? '64MB';
  if (parseByteSize(maxBufferBytes) === undefined) throw new Error(`alert webhook option maxBufferBytes must be a size like "64MB", got ${JSON.stringify(maxBufferBytes)}`);
  return {
    type: 'http',
    name: ALERT_ACTION_NAME,
    connector: ALERT_CONNECTOR_NAME,
    enable: true,
    description: 'Pepeunit alerts: one POST per alert rule output to <backend>/emqx/alerts/<kind> (managed by the Pepeunit controller)',
    parameters: {
      method: 'post',
      path: ALERT_ACTION_PATH,
      headers: { 'content-type': 'application/json' },
      body: '${.}',
      max_retries: integer('maxRetries', options.maxRetries, 2, 0, 100),
    },
    resource_opts: {
      query_mode: 'async',
      inflight_window: integer('inflightWindow', options.inflightWindow, 100, 1, 2048),
      worker_pool_size: integer('workerPoolSize', options.workerPoolSize, 4, 1, 1024),
      request_ttl: duration('requestTtl', options.requestTtl, '30s'),
      max_buffer_bytes: maxBufferBytes,
    },
  };
}
