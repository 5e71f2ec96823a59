/**
 * Fixtures of the ingest service tests: real PostgreSQL and ClickHouse (the shared test harness,
 * migrated), the embedded broker without authn/authz (accepts everyone), units_nodes rows with
 * DataPipe configs, a TCP proxy that can cut a connection like an outage, and small waits.
 */
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import pg from 'pg';
import mqtt, { type MqttClient } from 'mqtt';
import { loadIngestConfig, type IngestConfig } from '@pepeunit/common';
import { checkDataPipeYaml } from '@pepeunit/common/datapipe/index';
import { startEmbeddedBroker, type EmbeddedBroker } from '@pepeunit/emqx-rules';
import { createMigratedTestDatabases, type MigratedTestDatabases } from '@pepeunit/tests/harness';

export const DOMAIN = 'ingest.test.local';
export const SECRET = 'ingest-test-secret-0123456789abcdefghij';

export type Env = MigratedTestDatabases;

/** A migrated Postgres database and ClickHouse database. */
export function createEnv(label: string): Promise<Env> {
  return createMigratedTestDatabases(label, { poolMax: 3 });
}

export async function startBroker(): Promise<EmbeddedBroker> {
  return startEmbeddedBroker({ mqttPort: 0, apiPort: 0, apiKeys: [{ key: 'test', secret: 'test-secret' }] });
}

/** PU_DP_* variables for an ingest against `env` and a broker port. */
export function ingestEnv(env: Env, mqttPort: number, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    PU_DP_DOMAIN: DOMAIN,
    PU_DP_SECRET_KEY: SECRET,
    PU_DP_SQLALCHEMY_DATABASE_URL: env.db.pgUrl,
    PU_DP_CLICKHOUSE_DATABASE_URL: env.db.clickhouseUrl,
    PU_DP_MQTT_HOST: '127.0.0.1',
    PU_DP_MQTT_PORT: String(mqttPort),
    PU_DP_METRICS_PORT: '0',
    ...overrides,
  };
}

export function ingestConfig(env: Env, mqttPort: number, overrides: Record<string, string> = {}): IngestConfig {
  return loadIngestConfig(ingestEnv(env, mqttPort, overrides));
}

/** The stored JSON of a config written as YAML (validated like the backend does). */
export function configJson(yaml: string): string {
  const checked = checkDataPipeYaml(yaml, { maxPayloadSizeKb: 256 });
  if (!checked.ok) throw new Error(`test config is invalid: ${JSON.stringify(checked.errors)}`);
  return checked.json;
}

/** A config from one-line stage snippets (flow YAML), with harmless defaults. */
export function stages(parts: { active?: string; filters?: string; transformations?: string; policy: string }): string {
  return configJson(
    [
      `active_period: ${parts.active ?? '{type: Permanent}'}`,
      `filters: ${parts.filters ?? '{type_input_value: Text, max_rate: 0, max_size: 0}'}`,
      parts.transformations ? `transformations: ${parts.transformations}` : '',
      `processing_policy: ${parts.policy}`,
    ]
      .filter(Boolean)
      .join('\n') + '\n',
  );
}

/** Inserts a unit node (`/pepeunit` topic) with a DataPipe config text; returns its uuid. */
export async function insertNode(pool: pg.Pool, configText: string | null, opts: { active?: boolean; uuid?: string } = {}): Promise<string> {
  const uuid = opts.uuid ?? randomUUID();
  await pool.query(
    `INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, topic_name, create_datetime, is_data_pipe_active, data_pipe_yml, data_pipe_status)
     VALUES ($1, 'Output', 'Public', false, 'value/pepeunit', now() AT TIME ZONE 'utc', $2, $3, 'Inactive')`,
    [uuid, opts.active ?? true, configText],
  );
  return uuid;
}

/** Many nodes in one statement. */
export async function insertNodes(pool: pg.Pool, nodes: readonly { uuid: string; config: string }[]): Promise<void> {
  for (let i = 0; i < nodes.length; i += 1000) {
    const chunk = nodes.slice(i, i + 1000);
    await pool.query(
      `INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, topic_name, create_datetime, is_data_pipe_active, data_pipe_yml, data_pipe_status)
       SELECT u, 'Output', 'Public', false, 'value/pepeunit', now() AT TIME ZONE 'utc', true, c, 'Inactive'
         FROM unnest($1::uuid[], $2::varchar[]) AS t(u, c)`,
      [chunk.map((n) => n.uuid), chunk.map((n) => n.config)],
    );
  }
}

export function nodeTopic(uuid: string): string {
  return `${DOMAIN}/${uuid}/pepeunit`;
}

export async function connectDevice(port: number): Promise<MqttClient> {
  const client = mqtt.connect({ host: '127.0.0.1', port, protocolVersion: 4, clientId: `dev-${randomUUID()}`, reconnectPeriod: 0 });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return client;
}

export async function chCount(env: Env, table: string, where = '1', params: Record<string, unknown> = {}): Promise<number> {
  const result = await env.db.clickhouse.query({ query: `SELECT count() AS n FROM ${table} WHERE ${where}`, query_params: params, format: 'JSONEachRow' });
  const rows = await result.json<{ n: string | number }>();
  return Number(rows[0]?.n ?? 0);
}

export async function chRows<T>(env: Env, query: string, params: Record<string, unknown> = {}): Promise<T[]> {
  const result = await env.db.clickhouse.query({ query, query_params: params, format: 'JSONEachRow' });
  return result.json<T>();
}

/**
 * A TCP proxy in front of a server that can be cut like an outage: `cut()` closes every
 * connection and refuses new ones until `restore()`. The cut waits (up to 3 s) for a quiet
 * moment (no request waiting for its response, no byte for 20 ms), so an insert the server
 * already committed is never reported as failed: a response lost after the commit makes any
 * client retry and write twice (an HTTP-level ambiguity no client can resolve without
 * server-side deduplication), which is not what these tests measure.
 */
export interface CuttableProxy {
  readonly port: number;
  readonly url: string;
  cut(): Promise<void>;
  restore(): void;
  close(): Promise<void>;
}

export async function startProxy(targetUrl: string): Promise<CuttableProxy> {
  const target = new URL(targetUrl);
  const targetPort = Number(target.port);
  let down = false;
  interface Pair {
    client: net.Socket;
    upstream: net.Socket;
    lastClientByte: number;
    lastServerByte: number;
    lastActivityAt: number;
  }
  const pairs = new Set<Pair>();
  const server = net.createServer((client) => {
    if (down) {
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, target.hostname);
    const pair: Pair = { client, upstream, lastClientByte: 0, lastServerByte: 0, lastActivityAt: Date.now() };
    pairs.add(pair);
    let seq = 0;
    client.on('data', (d) => {
      pair.lastClientByte = ++seq;
      pair.lastActivityAt = Date.now();
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      pair.lastServerByte = ++seq;
      pair.lastActivityAt = Date.now();
      client.write(d);
    });
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  const busy = () => [...pairs].some((p) => p.lastClientByte > p.lastServerByte || Date.now() - p.lastActivityAt < 20);
  return {
    port,
    // The target's credentials carry over: the proxy forwards bytes, the server still authenticates.
    url: `http://${target.username ? `${target.username}:${target.password}@` : ''}127.0.0.1:${port}`,
    async cut() {
      const deadline = Date.now() + 3000;
      while (busy() && Date.now() < deadline) await new Promise((r) => setImmediate(r));
      down = true;
      for (const p of [...pairs]) {
        p.client.destroy();
        p.upstream.destroy();
      }
      pairs.clear();
    },
    restore() {
      down = false;
    },
    async close() {
      down = true;
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The last line of a JSON-lines text that has `"event":"<name>"`. */
export function eventLine(text: string, name: string): Record<string, unknown> | undefined {
  const lines = text.split('\n').filter((l) => l.startsWith('{') && l.includes(`"event":"${name}"`));
  const last = lines.at(-1);
  return last ? (JSON.parse(last) as Record<string, unknown>) : undefined;
}
