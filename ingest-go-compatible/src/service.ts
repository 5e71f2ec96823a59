import http from 'node:http';
import pg from 'pg';
import mqtt, { type MqttClient } from 'mqtt';
import { Registry, Counter, collectDefaultMetrics } from 'prom-client';
import { backendToken, sharedFilter, unitNodePipeFilter, type IngestConfig, type Logger } from '@pepeunit/common';
import { normalizePostgresUrl } from '@pepeunit/common/postgres';
import { createClickHouse, parseClickHouseUrl } from '@pepeunit/clickhouse-schemas';

export interface IngestService {
  readonly metricsUrl: string;
  readonly metrics: Registry;
  close(): Promise<void>;
}

/**
 * The ingest process: connections, intake subscription, health and metrics endpoint.
 * (The per-policy pipeline is wired in by the data aggregation work.)
 */
export async function startIngest(config: IngestConfig, logger: Logger): Promise<IngestService> {
  const registry = new Registry();
  registry.setDefaultLabels({ service: 'ingest' });
  collectDefaultMetrics({ register: registry });
  const received = new Counter({ name: 'pepeunit_ingest_messages_received_total', help: 'MQTT messages received by the intake', registers: [registry] });

  const pool = new pg.Pool({ connectionString: normalizePostgresUrl(config.postgresUrl), max: 4 });
  pool.on('error', (err) => logger.warn({ err }, 'idle Postgres client error'));
  const ch = parseClickHouseUrl(config.clickhouseUrl);
  const clickhouse = createClickHouse(ch.url, config.clickhouseDatabase || ch.database || 'default', { username: ch.username, password: ch.password });

  const filter = unitNodePipeFilter(config.domain);
  const subscription = config.shareGroup ? sharedFilter(config.shareGroup, filter) : filter;
  const client: MqttClient = mqtt.connect({
    host: config.mqttHost,
    port: config.mqttPort,
    protocolVersion: 4,
    clientId: `${config.domain}-ingest-${process.pid}`,
    username: backendToken(config.domain, config.secretKey),
    password: '',
    keepalive: config.mqttKeepalive,
    reconnectPeriod: 2000,
    clean: true,
  });
  client.on('connect', () => {
    client.subscribe(subscription, { qos: 0 }, (err) => {
      if (err) logger.error({ err: err.message, subscription }, 'subscribe failed');
      else logger.info({ subscription }, 'ingest subscribed');
    });
  });
  client.on('error', (err) => logger.warn({ err: err.message }, 'MQTT client error'));
  client.on('message', () => received.inc());

  const server = http.createServer(async (req, res) => {
    if (req.url === '/metrics') {
      res.setHeader('content-type', registry.contentType);
      res.end(await registry.metrics());
      return;
    }
    if (req.url === '/health/live') {
      res.setHeader('content-type', 'application/json');
      res.end('{"status":"ok"}');
      return;
    }
    if (req.url === '/health/ready') {
      const checks = {
        postgres: await pool.query('SELECT 1').then(() => true, () => false),
        clickhouse: await clickhouse.ping().then((r) => r.success, () => false),
        broker: client.connected,
      };
      const ready = checks.postgres && checks.clickhouse && checks.broker;
      res.statusCode = ready ? 200 : 503;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ status: ready ? 'ready' : 'not_ready', checks }));
      return;
    }
    res.statusCode = 404;
    res.end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.metricsPort, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = address && typeof address === 'object' ? address.port : 0;

  return {
    metricsUrl: `http://127.0.0.1:${port}`,
    metrics: registry,
    async close() {
      await new Promise<void>((resolve) => client.end(false, {}, () => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await clickhouse.close();
      await pool.end();
    },
  };
}
