/**
 * The one test helper: real services on free ports, an isolated Postgres database and ClickHouse
 * database per test context, the real app. No mocks of our own code.
 *
 * Under `npm test` the runner provides PostgreSQL and one embedded ClickHouse server through
 * PU_TEST_PG_ADMIN_URL / PU_TEST_CLICKHOUSE_URL (with the server's credentials in it, like
 * PU_CLICKHOUSE_DATABASE_URL in production). A test file run on its own
 * (`node --import tsx --test <file>`) starts what it needs itself.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import type { ClickHouseClient } from '@clickhouse/client';
import { freePort, loadBackendConfig, silentLogger, startService, type BackendConfig, type Logger } from '@pepeunit/common';
import { createDatabase, dropDatabase, databaseUrl } from '@pepeunit/common/postgres';
import { resolvePostgres } from '@pepeunit/common/postgres-provision';
import pg from 'pg';
import { startEmbeddedClickHouse, createClickHouse, migrateClickHouse } from '@pepeunit/clickhouse-schemas';
import { migratePostgres } from '@pepeunit/backend/db/migrate';

interface Services {
  readonly pgAdminUrl: string;
  /** `http://default:<password>@127.0.0.1:<port>`: never print it. */
  readonly clickhouseUrl: string;
}

let servicesPromise: Promise<Services> | undefined;
const cleanups: Array<() => Promise<void>> = [];

// One root-level hook per test file: services started on demand are stopped after all its tests.
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** PostgreSQL and ClickHouse for this test process (shared by every context in the file). */
export function testServices(): Promise<Services> {
  servicesPromise ??= (async (): Promise<Services> => {
    let pgAdminUrl = process.env.PU_TEST_PG_ADMIN_URL;
    if (!pgAdminUrl) {
      const pg = await resolvePostgres({ dataDir: join(tmpdir(), 'pepeunit-test-pg'), allowInstall: false });
      pgAdminUrl = pg.adminUrl;
      cleanups.push(() => pg.stop());
    }
    let clickhouseUrl = process.env.PU_TEST_CLICKHOUSE_URL ?? '';
    if (!clickhouseUrl) {
      const dataPath = mkdtempSync(join(tmpdir(), 'pepeunit-test-ch-'));
      const server = await startEmbeddedClickHouse({ port: 0, dataPath, auth: { username: 'default', password: randomBytes(18).toString('base64url') } });
      clickhouseUrl = server.authenticatedUrl;
      cleanups.push(async () => {
        await server.close();
        rmSync(dataPath, { recursive: true, force: true });
      });
    }
    return { pgAdminUrl, clickhouseUrl };
  })();
  return servicesPromise;
}

let redisPromise: Promise<string> | undefined;

/**
 * A Redis for this test process: the runner's private one (PU_TEST_REDIS_URL), or a private
 * `redis-server` started here on a free port (nothing on disk). Never a Redis that happens to
 * run on 6379, and never skipped: a missing redis-server is an error naming the package.
 */
export function testRedisUrl(): Promise<string> {
  redisPromise ??= (async (): Promise<string> => {
    if (process.env.PU_TEST_REDIS_URL) return process.env.PU_TEST_REDIS_URL;
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'pepeunit-test-redis-'));
    const redis = await startService({
      name: 'redis',
      command: 'redis-server',
      args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
      logFile: join(dir, 'redis.log'),
      readyPattern: /Ready to accept connections/,
      timeoutMs: 30_000,
    }).catch((err: Error) => {
      throw new Error(`cannot start redis-server (Debian package redis-server; scripts/bootstrap.sh installs it): ${err.message}`);
    });
    cleanups.push(async () => {
      await redis.stop(5000);
      rmSync(dir, { recursive: true, force: true });
    });
    return `redis://127.0.0.1:${port}`;
  })();
  return redisPromise;
}

export interface TestDatabases {
  readonly name: string;
  readonly pgUrl: string;
  readonly clickhouseUrl: string;
  readonly clickhouseDatabase: string;
  readonly clickhouse: ClickHouseClient;
  drop(): Promise<void>;
}

/** A fresh, empty Postgres database and ClickHouse database, dropped by `drop()`. */
export async function createTestDatabases(label = 't'): Promise<TestDatabases> {
  const services = await testServices();
  const name = `pu_t_${label.replace(/[^a-z0-9_]/gi, '').toLowerCase().slice(0, 20)}_${randomBytes(4).toString('hex')}`;
  await createDatabase(services.pgAdminUrl, name);
  const admin = createClickHouse(services.clickhouseUrl, 'default');
  await admin.command({ query: `CREATE DATABASE IF NOT EXISTS ${name}` });
  await admin.close();
  const clickhouse = createClickHouse(services.clickhouseUrl, name);
  return {
    name,
    pgUrl: databaseUrl(services.pgAdminUrl, name),
    clickhouseUrl: `${services.clickhouseUrl}/${name}`,
    clickhouseDatabase: name,
    clickhouse,
    async drop() {
      await clickhouse.command({ query: `DROP DATABASE IF EXISTS ${name}` }).catch(() => {});
      await clickhouse.close();
      await dropDatabase(services.pgAdminUrl, name);
    },
  };
}

/** Test databases with both schemas migrated, and a small Postgres pool on them (closed by `close`). */
export interface MigratedTestDatabases {
  readonly db: TestDatabases;
  readonly pool: pg.Pool;
  close(): Promise<void>;
}

export async function createMigratedTestDatabases(label: string, options: { poolMax?: number } = {}): Promise<MigratedTestDatabases> {
  const db = await createTestDatabases(label);
  await migratePostgres(db.pgUrl);
  await migrateClickHouse(db.clickhouse, { database: db.clickhouseDatabase });
  const pool = new pg.Pool({ connectionString: db.pgUrl, max: options.poolMax ?? 5 });
  pool.on('error', () => undefined);
  return {
    db,
    pool,
    async close() {
      await pool.end();
      await db.drop();
    },
  };
}

/** A fixed AES key for tests (32 distinct-enough bytes; all-equal keys are refused at start). */
export const TEST_ENCRYPT_KEY = Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 37 + 11) % 256)).toString('base64');

/** Environment for a backend under test (fixed test secrets; every value overridable). */
export function testBackendEnv(db: TestDatabases, overrides: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    PU_DOMAIN: 'test.pepeunit.local',
    PU_SECURE: 'False',
    PU_MQTT_SECURE: 'False',
    PU_SECRET_KEY: 'test-secret-key-0123456789abcdefghij',
    PU_ENCRYPT_KEY: TEST_ENCRYPT_KEY,
    PU_STATIC_SALT: 'test-static-salt',
    PU_SQLALCHEMY_DATABASE_URL: db.pgUrl,
    PU_CLICKHOUSE_DATABASE_URL: db.clickhouseUrl,
    PU_MQTT_HOST: '127.0.0.1',
    PU_MQTT_PORT: '1',
    PU_FF_TELEGRAM_BOT_ENABLE: 'False',
    PU_FF_GRAFANA_INTEGRATION_ENABLE: 'False',
    PU_BACKEND_HOST: '127.0.0.1',
    PU_BACKEND_PORT: '0',
    PU_SAVE_REPO_PATH: mkdtempSync(join(tmpdir(), 'pepeunit-test-repos-')),
    ...overrides,
  };
}

export function testBackendConfig(db: TestDatabases, overrides: NodeJS.ProcessEnv = {}): BackendConfig {
  return loadBackendConfig(testBackendEnv(db, overrides));
}

export const testLogger: Logger = silentLogger;
