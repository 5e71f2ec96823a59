import pg from 'pg';
import type { FastifyInstance } from 'fastify';
import { backendToken, type BackendConfig, type Logger } from '@pepeunit/common';
import { createReconnectingMqtt, type ReconnectingMqtt } from '@pepeunit/common/mqtt-connection';
import { normalizePostgresUrl, usePostgresUtcTimestamps } from '@pepeunit/common/postgres';
import { createClickHouse, parseClickHouseUrl, migrateClickHouse } from '@pepeunit/clickhouse-schemas';
import { migratePostgres } from './db/migrate.js';
import { buildApp } from './app.js';
import type { AppDeps } from './deps.js';
import { createEmqxControl, type EmqxControl } from './services/emqx-control.js';
import { createBrokerSessions } from './services/broker-sessions.js';
import type { PipeRules } from './services/pipe-rules.js';
import type { SystemTopicsConsumer } from './mqtt/system-topics.js';
import type { SystemTopicsPluginOptions } from './plugins/background/system-topics.js';
import type { RegistrySyncJob } from './jobs/registry-sync.js';
import type { UnitsAutoUpdate } from './jobs/units-auto-update.js';
import type { AlertRules } from './alerts/rules.js';

export interface RunningBackend {
  readonly app: FastifyInstance;
  readonly deps: AppDeps;
  readonly url: string;
  readonly emqx: EmqxControl;
  /** The system-topic consumer (state/log of units). */
  readonly systemTopics: SystemTopicsConsumer;
  /** Periodic registry sync (PU_REGISTRY_SYNC_INTERVAL_HOURS; 0 = none) and its start-up tasks. */
  readonly registrySync: RegistrySyncJob;
  /** The `pipe-` rule reconciler (DataPipe pre-filter rules in the broker). */
  readonly pipeRules: PipeRules;
  /** Automatic firmware updates of units that follow their Repo (after syncs, repo changes, periodically). */
  readonly unitsAutoUpdate: UnitsAutoUpdate;
  /** The `alert-` rule reconciler (unit log alert rules and the instance alert rules). */
  readonly alertRules: AlertRules;
  close(): Promise<void>;
}

/** Opens the backend's connections: Postgres pool, ClickHouse client, MQTT client. */
export async function connectDependencies(config: BackendConfig, logger: Logger): Promise<AppDeps & { readonly mqttConnection: ReconnectingMqtt; close(): Promise<void> }> {
  usePostgresUtcTimestamps(); // naive timestamps are UTC whatever the host's time zone
  const pool = new pg.Pool({
    connectionString: normalizePostgresUrl(config.postgresUrl),
    max: Math.max(5, 2 * config.workerCount),
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
    // Short OLTP statements: JIT compilation costs more than it saves (9 ms for a 15 ms count).
    options: '-c jit=off',
  });
  pool.on('error', (err) => logger.warn({ err }, 'idle Postgres client error'));

  const ch = parseClickHouseUrl(config.clickhouseUrl);
  const database = config.clickhouseDatabase || ch.database || 'default';
  const clickhouse = createClickHouse(ch.url, database, { username: ch.username, password: ch.password });

  // Created now, connected only after the HTTP server listens (startBackend): the broker's
  // authentication callback for this very connection is served by this process, so connecting
  // first would be refused whenever the broker already points at us (a restart).
  const connection = createReconnectingMqtt({
    name: 'backend',
    logger,
    clientOptions: {
      host: config.mqtt.host,
      port: config.mqtt.port,
      protocolVersion: 4,
      clientId: `pepeunit-backend-${process.pid}-${Math.random().toString(16).slice(2, 8)}`,
      username: backendToken(config.domain, config.secretKey),
      password: '',
      keepalive: config.mqtt.keepalive,
      connectTimeout: 10_000,
      clean: true,
    },
  });
  const client = connection.client;

  return {
    config,
    logger,
    pg: pool,
    clickhouse,
    mqtt: client,
    mqttConnection: connection,
    mqttStatus: () => connection.status(),
    async close() {
      await connection.end();
      await clickhouse.close();
      await pool.end();
    },
  };
}

/** Applies the Postgres and ClickHouse migrations (idempotent; safe from several replicas). */
export async function migrateAll(config: BackendConfig, deps: AppDeps, logger: Logger): Promise<void> {
  const pgResult = await migratePostgres(normalizePostgresUrl(config.postgresUrl), { logger });
  logger.info({ from: pgResult.fromVersion, to: pgResult.toVersion }, 'Postgres schema ready');
  const ch = parseClickHouseUrl(config.clickhouseUrl);
  const database = config.clickhouseDatabase || ch.database || 'default';
  const chResult = await migrateClickHouse(deps.clickhouse, { database, logger });
  logger.info({ applied: chResult.applied.length }, 'ClickHouse schema ready');
}

/**
 * Connects, migrates, builds, listens, configures the broker, then starts our MQTT connection and
 * the background components (plugins/background). The order is what makes restarts safe
 * (issue 9): the broker calls back into this process (authentication, authorization, webhooks),
 * so the HTTP server listens before the broker is configured and before our own MQTT connection
 * starts (the broker authenticates it through that callback).
 */
export async function startBackend(config: BackendConfig, logger: Logger, opts: { listen?: boolean; callbackBaseUrl?: string; systemTopics?: SystemTopicsPluginOptions } = {}): Promise<RunningBackend> {
  const deps = await connectDependencies(config, logger);
  try {
    await migrateAll(config, deps, logger);
  } catch (err) {
    await deps.close();
    throw err;
  }
  const listen = opts.listen !== false;
  // The EMQX control needs the listening port; the app reads it lazily through these.
  const broker: { control?: EmqxControl } = {};
  const app = await buildApp(
    {
      ...deps,
      clearBrokerAuthzCache: () => broker.control?.clearAuthzCache() ?? Promise.resolve(),
      brokerSessions: createBrokerSessions(() => broker.control?.client ?? null, logger),
      emqxClient: () => broker.control?.client ?? null,
      brokerControl: () => broker.control ?? null,
    },
    // Without a listening server (tests), no start-up full reconcile of alert rules.
    { alertRules: { initialDelayMs: listen ? 1000 : -1 }, systemTopics: opts.systemTopics },
  );
  let url = '';
  if (listen) {
    url = await app.listen({ host: config.host, port: config.port });
  } else {
    await app.ready();
  }
  const address = app.server.address();
  const actualPort = address && typeof address === 'object' ? address.port : config.port;
  const callbackBase = opts.callbackBaseUrl ?? (config.backendPublicUrl ? config.links.callbackBase : `http://127.0.0.1:${actualPort}${config.appPrefix}${config.apiV1Prefix}`);
  const emqx = createEmqxControl(config, logger, callbackBase);
  broker.control = emqx;
  if (listen) {
    // The broker calls back into this process, so configure it only once we listen.
    await emqx.apply().catch((err: unknown) => logger.error({ err }, 'EMQX configuration failed; it is retried periodically'));
  }
  // Our own MQTT connection goes after: the broker authenticates it through the callback above.
  // Later reconnections re-apply and reconcile (plugins/background/broker-resync.ts).
  deps.mqttConnection.start();
  if (!(await deps.mqttConnection.waitForConnect(5000))) {
    const status = deps.mqttConnection.status();
    logger.warn({ broker: `${config.mqtt.host}:${config.mqtt.port}`, err: status.lastError }, 'MQTT broker not connected yet; serving anyway, readiness reports it until the connection is up');
  }
  // Rule reconcilers, the system-topic consumer, the registry sync and auto-update jobs.
  try {
    await app.background.start();
  } catch (err) {
    await app.close().catch(() => {});
    await emqx.close().catch(() => {});
    await deps.close().catch(() => {});
    throw err;
  }
  return {
    app,
    deps,
    url,
    emqx,
    systemTopics: app.systemTopics,
    registrySync: app.registrySyncJob,
    pipeRules: app.pipeRules,
    unitsAutoUpdate: app.unitsAutoUpdate,
    alertRules: app.alertRules,
    async close() {
      // Background components stop in app.close(): the consumer and the jobs first (preClose),
      // the rule reconcilers with the plugins (onClose); the broker control and the connections last.
      await app.close();
      await emqx.close();
      await deps.close();
    },
  };
}
