/**
 * The deploy's migration step: applies this release's PostgreSQL and ClickHouse migrations once,
 * before any service restarts, so a failing migration stops the deploy while the old replicas
 * keep serving (the backend would also migrate at start, but then the first restarted replica
 * would discover the failure).
 *
 *   node --import tsx ansible/bin/migrate.ts        (with the backend's PU_* variables)
 *
 * Reads the backend's configuration (the whole environment is validated, so a bad environment
 * file fails here too), PU_CLICKHOUSE_CLUSTER selects the cluster variant of the ClickHouse
 * migrations. Prints one JSON line with what was applied; exit code 1 and a message on stderr
 * when something fails. The `pepeunit` Ansible role runs it with `run_once`.
 */
import { createLogger, loadBackendConfig, loadOrExit } from '@pepeunit/common';
import { normalizePostgresUrl } from '@pepeunit/common/postgres';
import { createClickHouse, migrateClickHouse, parseClickHouseUrl } from '@pepeunit/clickhouse-schemas';
import { migratePostgres } from '@pepeunit/backend/db/migrate';

/** ON CLUSTER statements wait up to this long for every host; the HTTP request must outlive them. */
const CLUSTER_DDL_TIMEOUT_SECONDS = 180;

const config = loadOrExit(() => loadBackendConfig());
// Logs go to stderr: stdout carries only the JSON result the role reads.
const logger = createLogger('migrate', { level: config.logLevel, destination: process.stderr });

try {
  const postgres = await migratePostgres(normalizePostgresUrl(config.postgresUrl), { logger });
  const ch = parseClickHouseUrl(config.clickhouseUrl);
  const database = config.clickhouseDatabase || ch.database || 'default';
  const clickhouse = createClickHouse(ch.url, database, {
    username: ch.username,
    password: ch.password,
    requestTimeoutMs: (CLUSTER_DDL_TIMEOUT_SECONDS + 60) * 1000,
    application: 'pepeunit-migrate',
  });
  try {
    const result = await migrateClickHouse(clickhouse, {
      database,
      cluster: config.clickhouseCluster,
      clusterDdlTimeoutSeconds: CLUSTER_DDL_TIMEOUT_SECONDS,
      logger,
    });
    process.stdout.write(
      JSON.stringify({
        postgres: { from: postgres.fromVersion, to: postgres.toVersion, applied: postgres.appliedVersions },
        clickhouse: { database, cluster: result.cluster ?? null, applied: result.applied, skipped: result.skipped.length },
        changed: postgres.appliedVersions.length + result.applied.length > 0,
      }) + '\n',
    );
  } finally {
    await clickhouse.close();
  }
} catch (err) {
  process.stderr.write(`Migrations failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
