import pg from 'pg';
import type { FastifyInstance } from 'fastify';
import { backendToken, type BackendConfig, type Logger } from '@pepeunit/common';
import { createReconnectingMqtt, type ReconnectingMqtt } from '@pepeunit/common/mqtt-connection';
import { normalizePostgresUrl } from '@pepeunit/common/postgres';
import { createClickHouse, parseClickHouseUrl, migrateClickHouse } from '@pepeunit/clickhouse-schemas';
import { migratePostgres } from './db/migrate.js';
import { buildApp } from './app.js';
import type { AppDeps } from './deps.js';
import { createEmqxControl, type EmqxControl } from './services/emqx-control.js';
import { createBrokerSessions } from './services/broker-sessions.js';
import { registerPipeRules, type PipeRules } from './services/pipe-rules.js';
import { RepoVersions, loadRepoSource } from './routes/api/v1/units/repo-versions.js';
// -- system topics (issue 5) --
import { startSystemTopicsConsumer, type SystemTopicsConsumer, type SystemTopicsOptions } from './mqtt/system-topics.js';
// -- registry sync job (issue 4) --
import { startRegistrySyncJob, type RegistrySyncJob } from './jobs/registry-sync.js';
import { startUnitsAutoUpdate, type UnitsAutoUpdate } from './jobs/units-auto-update.js';

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
  close(): Promise<void>;
}

/** Opens the backend's connections: Postgres pool, ClickHouse client, MQTT client. */
export async function connectDependencies(config: BackendConfig, logger: Logger): Promise<AppDeps & { readonly mqttConnection: ReconnectingMqtt; close(): Promise<void> }> {
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

/** Connects, migrates, builds and starts the HTTP server, then configures the broker. */
export async function startBackend(config: BackendConfig, logger: Logger, opts: { listen?: boolean; callbackBaseUrl?: string; systemTopics?: Partial<Omit<SystemTopicsOptions, 'mqtt' | 'pg' | 'clickhouse' | 'config'>> } = {}): Promise<RunningBackend> {
  const deps = await connectDependencies(config, logger);
  try {
    await migrateAll(config, deps, logger);
  } catch (err) {
    await deps.close();
    throw err;
  }
  // The EMQX control needs the listening port, the app needs a way to clear the broker's cache.
  const broker: { control?: EmqxControl } = {};
  const app = await buildApp({
    ...deps,
    clearBrokerAuthzCache: () => broker.control?.clearAuthzCache() ?? Promise.resolve(),
    brokerSessions: createBrokerSessions(() => broker.control?.client ?? null, logger),
  });
  let url = '';
  if (opts.listen !== false) {
    url = await app.listen({ host: config.host, port: config.port });
  } else {
    await app.ready();
  }
  const address = app.server.address();
  const actualPort = address && typeof address === 'object' ? address.port : config.port;
  const callbackBase = opts.callbackBaseUrl ?? (config.backendPublicUrl ? config.links.callbackBase : `http://127.0.0.1:${actualPort}${config.appPrefix}${config.apiV1Prefix}`);
  const emqx = createEmqxControl(config, logger, callbackBase);
  broker.control = emqx;
  // Broker rules forward only topics with an enabled DataPipe to the ingest (issue 6 pre-filter).
  const pipeRules = registerPipeRules(app, { client: emqx.client });
  if (opts.listen !== false) {
    // The broker calls back into this process, so configure it only once we listen.
    await emqx.apply().catch((err: unknown) => logger.error({ err }, 'EMQX configuration failed; it is retried periodically'));
  }
  const control = emqx;
  // Our own MQTT connection goes last: the broker authenticates it through the callback above.
  // Every later (re)connection may follow a broker restart that lost its configuration (the
  // embedded broker without its state file, an EMQX node replaced): re-apply and reconcile then.
  let connectedBefore = false;
  deps.mqtt.on('connect', () => {
    if (connectedBefore) {
      void emqx.apply().catch((err: unknown) => logger.warn({ err }, 'EMQX re-apply after reconnect failed; it is retried periodically'));
      void pipeRules.reconcileAll();
    }
    connectedBefore = true;
  });
  deps.mqttConnection.start();
  if (!(await deps.mqttConnection.waitForConnect(5000))) {
    const status = deps.mqttConnection.status();
    logger.warn({ broker: `${config.mqtt.host}:${config.mqtt.port}`, err: status.lastError }, 'MQTT broker not connected yet; serving anyway, readiness reports it until the connection is up');
  }
  // -- system topics (issue 5): subscribe once the broker is configured; flush before closing the stores --
  const systemTopics = await startSystemTopicsConsumer({
    mqtt: deps.mqtt,
    pg: deps.pg,
    clickhouse: deps.clickhouse,
    config,
    registry: app.metrics,
    logger,
    shareGroup: config.backendShareGroup || null,
    // Target version of a unit (§7.3) for the firmware-update status: read from the shared clone.
    resolveTargetVersion: async (unitUuid: string) => {
      const { rows } = await deps.pg.query('SELECT repo_uuid, is_auto_update_from_repo_unit, repo_branch, repo_commit FROM units WHERE uuid = $1', [unitUuid]);
      const unit = rows[0];
      if (!unit) return null;
      // A manual unit's target is its pinned commit (validated against the branch when it was set).
      if (!unit.is_auto_update_from_repo_unit) return unit.repo_commit ?? null;
      const versions = new RepoVersions(app.gitStore, await loadRepoSource(deps.pg, unit.repo_uuid));
      return (await versions.unitTarget(unit)).commit;
    },
    ...opts.systemTopics,
  });
  // -- registry sync job (issue 4): periodic sync, start-up reset of stuck syncs, clone missing copies --
  const registrySync = startRegistrySyncJob(app);
  const unitsAutoUpdate = startUnitsAutoUpdate(app);
  app.repos.setRepoChangedListener((repoUuid) => void unitsAutoUpdate.requestRepo(repoUuid, 'repo settings changed'));
  return {
    app,
    deps,
    url,
    emqx: control,
    systemTopics,
    registrySync,
    pipeRules,
    unitsAutoUpdate,
    async close() {
      await systemTopics.close();
      await registrySync.stop();
      await unitsAutoUpdate.stop();
      await app.close();
      await pipeRules.close();
      await control.close();
      await deps.close();
    },
  };
}
