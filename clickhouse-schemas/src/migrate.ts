/**
 * ClickHouse migration runner: numbered SQL files (`001_unit_logs.sql`, …), applied once, in
 * numeric order, tracked in `<database>.pepeunit_schema_migrations`, never edited afterwards.
 *
 * The database comes from `opts.database`, not from the client: every request carries the
 * `X-ClickHouse-Database` header, which ClickHouse ranks above the client's `database` URL
 * parameter. So the client the service already has (bound to a database that may not exist
 * yet) can create that database and migrate it.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClickHouseClient } from '@clickhouse/client';
import { splitSqlStatements } from './sql-lexer.js';
import type { ClickHouseLogger } from './logger.js';
import { silentClickHouseLogger } from './logger.js';
import { REFERENCE_CLICKHOUSE_TABLES } from './reference-schema.js';
import {
  ClusterRenderError,
  checkClusterLayout,
  clusterTrackingTableDdl,
  newClusterRenderState,
  renderMigrationForCluster,
  type ClickHouseClusterLayout,
} from './cluster.js';

/** Absolute path of the migrations shipped with this package. */
export const clickHouseMigrationsDir: string = path.resolve(fileURLToPath(new URL('../migrations', import.meta.url)));

/** Name of the tracking table (in the migrated database). */
export const CLICKHOUSE_MIGRATIONS_TABLE = 'pepeunit_schema_migrations';

/** A migration problem that needs a human: edited or duplicated files, bad names, failed statements. */
export class ClickHouseMigrationError extends Error {
  constructor(
    message: string,
    /** The migration file concerned, when there is one. */
    readonly file?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ClickHouseMigrationError';
  }
}

export interface ClickHouseMigrationFile {
  readonly version: number;
  /** File name, e.g. `001_unit_logs.sql`. */
  readonly name: string;
  readonly path: string;
  readonly sql: string;
  /** sha256 (hex) of the file bytes. */
  readonly checksum: string;
}

export interface MigrateClickHouseOptions {
  /** Database to create (if missing) and migrate. */
  database: string;
  /** Directory of numbered `.sql` files. Default: this package's migrations. */
  dir?: string;
  logger?: ClickHouseLogger;
  /**
   * Name of the ClickHouse cluster (`remote_servers`) to migrate with the cluster variant of the
   * files (src/cluster.ts); empty = one server. Default: the `PU_CLICKHOUSE_CLUSTER` variable,
   * so every process that migrates (backend start, the deploy's migration step) agrees.
   */
  cluster?: string;
  /** Seconds the cluster DDL waits for every host (`distributed_ddl_task_timeout`; default 180). Keep it below the client's request timeout. */
  clusterDdlTimeoutSeconds?: number;
}

export interface MigrateClickHouseResult {
  /** Files applied by this run, in order. */
  applied: string[];
  /** Files that were already applied (by an earlier run or a concurrent process). */
  skipped: string[];
  /** The cluster the files were rendered for; undefined on a single server. */
  cluster?: ClickHouseClusterLayout;
}

const FILE_NAME = /^(\d+)_([A-Za-z0-9][A-Za-z0-9_.-]*)\.sql$/;
const MAX_UINT32 = 0xffffffff;

/** Reads and validates the migration files of `dir`, sorted by version. */
export async function readClickHouseMigrations(dir: string = clickHouseMigrationsDir): Promise<ClickHouseMigrationFile[]> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    throw new ClickHouseMigrationError(`Cannot read the ClickHouse migrations directory '${dir}': ${(err as Error).message}`, undefined, { cause: err });
  }
  const files: ClickHouseMigrationFile[] = [];
  const byVersion = new Map<number, string>();
  for (const name of entries.sort()) {
    if (!name.endsWith('.sql')) continue;
    const m = FILE_NAME.exec(name);
    if (!m) {
      throw new ClickHouseMigrationError(
        `Unexpected file '${name}' in ${dir}: migration files must be named <number>_<description>.sql, e.g. 005_load_history.sql`,
        name,
      );
    }
    const version = Number(m[1]);
    if (!Number.isSafeInteger(version) || version < 1 || version > MAX_UINT32) {
      throw new ClickHouseMigrationError(`Migration '${name}' has an invalid version number (expected 1..${MAX_UINT32})`, name);
    }
    const other = byVersion.get(version);
    if (other !== undefined) {
      throw new ClickHouseMigrationError(
        `Duplicate ClickHouse migration version ${version}: '${other}' and '${name}'. Each migration needs its own number; renumber the newer file.`,
        name,
      );
    }
    byVersion.set(version, name);
    const filePath = path.join(dir, name);
    const bytes = await readFile(filePath);
    files.push({ version, name, path: filePath, sql: bytes.toString('utf8'), checksum: createHash('sha256').update(bytes).digest('hex') });
  }
  return files.sort((a, b) => a.version - b.version);
}

interface AppliedRow {
  version: number;
  name: string;
  checksum: string;
}

/** ClickHouse error code of a client error, if any (the client keeps it as a string). */
function errorCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  const n = typeof code === 'string' ? Number(code) : typeof code === 'number' ? code : NaN;
  return Number.isFinite(n) ? n : undefined;
}

const TABLE_ALREADY_EXISTS = 57;
const DATABASE_ALREADY_EXISTS = 82;

function isIfNotExistsCreate(statement: string): boolean {
  return /^\s*(?:--[^\n]*\n\s*|\/\*[\s\S]*?\*\/\s*)*CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMPORARY\s+)?(?:TABLE|DATABASE|VIEW|MATERIALIZED\s+VIEW|DICTIONARY)\s+IF\s+NOT\s+EXISTS\b/i.test(statement);
}

function quoteIdentifier(name: string): string {
  return '`' + name.replace(/\\/g, '\\\\').replace(/`/g, '\\`') + '`';
}

function verifyApplied(applied: AppliedRow, local: ClickHouseMigrationFile | undefined, database: string): void {
  if (local && local.checksum !== applied.checksum) {
    throw new ClickHouseMigrationError(
      `ClickHouse migration '${local.name}' was edited after being applied to database '${database}' ` +
        `(checksum ${local.checksum.slice(0, 12)}… differs from the applied ${applied.checksum.slice(0, 12)}…). ` +
        `Applied migrations must never change: restore the file and add a new numbered migration instead.`,
      local.name,
    );
  }
}

/**
 * Creates `opts.database` if missing and applies the pending migration files in numeric order.
 * Re-running changes nothing. Refuses (ClickHouseMigrationError) when an applied file was
 * edited or when two files share a version. Safe to run from several processes at once: DDL is
 * idempotent (`IF NOT EXISTS`) and each file is re-checked before it is applied and recorded.
 */
export async function migrateClickHouse(
  client: ClickHouseClient,
  opts: MigrateClickHouseOptions,
): Promise<MigrateClickHouseResult> {
  const logger = opts.logger ?? silentClickHouseLogger;
  const { database } = opts;
  if (!database || [...database].some((ch) => ch.charCodeAt(0) < 0x20)) {
    throw new ClickHouseMigrationError(`Invalid ClickHouse database name ${JSON.stringify(database)}`);
  }
  const files = await readClickHouseMigrations(opts.dir ?? clickHouseMigrationsDir);
  const inDatabase = { 'X-ClickHouse-Database': database };
  const table = CLICKHOUSE_MIGRATIONS_TABLE;

  const clusterName = (opts.cluster ?? process.env.PU_CLICKHOUSE_CLUSTER ?? '').trim();
  const layout = clusterName ? await readClusterLayout(client, clusterName) : undefined;
  // ON CLUSTER statements wait for every host; 'throw' turns a failure or timeout on any host into an error here.
  const clusterSettings = layout
    ? { distributed_ddl_task_timeout: String(opts.clusterDdlTimeoutSeconds ?? 180), distributed_ddl_output_mode: 'throw' as const }
    : undefined;

  const run = async (query: string, what: string, file?: string) => {
    try {
      await client.command({ query, http_headers: inDatabase, ...(clusterSettings ? { clickhouse_settings: clusterSettings } : {}) });
    } catch (err) {
      const code = errorCode(err);
      if ((code === TABLE_ALREADY_EXISTS || code === DATABASE_ALREADY_EXISTS) && isIfNotExistsCreate(query)) return; // lost a race with another runner
      throw new ClickHouseMigrationError(`ClickHouse ${what} failed in database '${database}': ${(err as Error).message}`, file, { cause: err });
    }
  };

  if (!layout) {
    try {
      // `system` always exists, so this works even when the client is bound to the missing database.
      await client.command({ query: `CREATE DATABASE IF NOT EXISTS ${quoteIdentifier(database)}`, http_headers: { 'X-ClickHouse-Database': 'system' } });
    } catch (err) {
      if (errorCode(err) !== DATABASE_ALREADY_EXISTS) {
        throw new ClickHouseMigrationError(`Cannot create ClickHouse database '${database}': ${(err as Error).message}`, undefined, { cause: err });
      }
    }
  } else if (!(await databaseExists(client, database))) {
    // Checked locally first: an ON CLUSTER statement waits for every host, even when there is nothing to do.
    try {
      await client.command({
        query: `CREATE DATABASE IF NOT EXISTS ${quoteIdentifier(database)} ON CLUSTER ${checkClusterLayout(layout)}`,
        http_headers: { 'X-ClickHouse-Database': 'system' },
        clickhouse_settings: clusterSettings,
      });
    } catch (err) {
      throw new ClickHouseMigrationError(`Cannot create ClickHouse database '${database}' on cluster '${layout.cluster}': ${(err as Error).message}`, undefined, { cause: err });
    }
  }
  const trackingEngine = await tableEngine(client, database, table);
  if (trackingEngine !== undefined) assertSameMode(trackingEngine, layout, database);
  if (trackingEngine === undefined || !layout) {
    await run(
      layout
        ? clusterTrackingTableDdl(table, layout)
        : `CREATE TABLE IF NOT EXISTS ${table} (version UInt32, name String, checksum String, applied_at DateTime64(3)) ` +
            `ENGINE = ReplacingMergeTree ORDER BY version`,
      `creation of the ${table} table`,
    );
  }
  // Cluster statements are rendered for every file in order: later files may alter tables earlier ones created.
  const statementsOf = renderStatements(files, layout, database);

  const readApplied = async (version?: number): Promise<AppliedRow[]> => {
    const rs = await client.query({
      query:
        `SELECT version, name, checksum FROM ${table} FINAL` +
        (version === undefined ? '' : ' WHERE version = {version:UInt32}') +
        ' ORDER BY version',
      format: 'JSONEachRow',
      http_headers: inDatabase,
      ...(version === undefined ? {} : { query_params: { version } }),
    });
    return (await rs.json<{ version: number | string; name: string; checksum: string }>()).map((r) => ({ ...r, version: Number(r.version) }));
  };

  const byVersion = new Map(files.map((f) => [f.version, f]));
  const appliedRows = await readApplied();
  for (const row of appliedRows) {
    const local = byVersion.get(row.version);
    verifyApplied(row, local, database);
    if (!local) {
      logger.warn({ database, version: row.version, name: row.name }, 'ClickHouse database has a migration this release does not know (applied by a newer version?)');
    }
  }
  if (appliedRows.length === 0) {
    const legacy = await client.query({
      query: "SELECT count() AS n FROM system.tables WHERE database = {db:String} AND name = 'schema_versions'",
      format: 'JSONEachRow',
      query_params: { db: database },
      http_headers: inDatabase,
    });
    const [row] = await legacy.json<{ n: number | string }>();
    if (Number(row?.n ?? 0) > 0) {
      logger.info({ database }, 'adopting a ClickHouse database migrated by the reference backend (schema_versions found); existing tables are kept');
    }
  }

  const appliedVersions = new Set(appliedRows.map((r) => r.version));
  const result: MigrateClickHouseResult = { applied: [], skipped: [] };
  for (const file of files) {
    if (appliedVersions.has(file.version)) {
      result.skipped.push(file.name);
      continue;
    }
    // Another process may have applied it since we looked.
    const [concurrent] = await readApplied(file.version);
    if (concurrent) {
      verifyApplied(concurrent, file, database);
      result.skipped.push(file.name);
      continue;
    }
    const statements = statementsOf.get(file.version) ?? [];
    const started = Date.now();
    for (const [index, statement] of statements.entries()) {
      logger.debug({ database, file: file.name, statement: index + 1 }, 'applying ClickHouse migration statement');
      await run(statement, `migration '${file.name}' (statement ${index + 1} of ${statements.length})`, file.name);
    }
    const [recorded] = await readApplied(file.version);
    if (recorded) {
      verifyApplied(recorded, file, database);
      result.skipped.push(file.name);
      continue;
    }
    try {
      await client.command({
        query: `INSERT INTO ${table} (version, name, checksum, applied_at) SELECT {version:UInt32}, {name:String}, {checksum:String}, now64(3)`,
        query_params: { version: file.version, name: file.name, checksum: file.checksum },
        http_headers: inDatabase,
      });
    } catch (err) {
      throw new ClickHouseMigrationError(`ClickHouse migration '${file.name}' was applied but could not be recorded: ${(err as Error).message}`, file.name, { cause: err });
    }
    result.applied.push(file.name);
    logger.info({ database, file: file.name, ms: Date.now() - started }, 'applied ClickHouse migration');
  }

  await warnAboutDrift(client, database, logger);
  return layout ? { ...result, cluster: layout } : result;
}

/** Statements of every file: the file's own for one server, the cluster rendering otherwise. */
function renderStatements(files: readonly ClickHouseMigrationFile[], layout: ClickHouseClusterLayout | undefined, database: string): Map<number, string[]> {
  const state = newClusterRenderState();
  const out = new Map<number, string[]>();
  for (const file of files) {
    try {
      out.set(file.version, layout ? renderMigrationForCluster(file.sql, layout, database, state, file.name) : splitSqlStatements(file.sql));
    } catch (err) {
      const why = err instanceof ClusterRenderError ? `has no cluster variant: ${err.message}` : `cannot be split into statements: ${(err as Error).message}`;
      throw new ClickHouseMigrationError(`ClickHouse migration '${file.name}' ${why}`, file.name, { cause: err });
    }
  }
  return out;
}

/**
 * Shards of `cluster` as this server sees it in `system.clusters`. Throws when the cluster is
 * unknown: creating single-node tables on one host of a cluster would be silently wrong.
 */
export async function readClusterLayout(client: ClickHouseClient, cluster: string): Promise<ClickHouseClusterLayout> {
  try {
    checkClusterLayout({ cluster, shards: 1 });
  } catch (err) {
    throw new ClickHouseMigrationError((err as Error).message);
  }
  const rs = await client.query({
    query: 'SELECT count(DISTINCT shard_num) AS shards, count() AS hosts FROM system.clusters WHERE cluster = {cluster:String}',
    format: 'JSONEachRow',
    query_params: { cluster },
    http_headers: { 'X-ClickHouse-Database': 'system' },
  });
  const [row] = await rs.json<{ shards: number | string; hosts: number | string }>();
  const shards = Number(row?.shards ?? 0);
  if (shards < 1) {
    throw new ClickHouseMigrationError(
      `ClickHouse cluster '${cluster}' (PU_CLICKHOUSE_CLUSTER) is not defined on this server (system.clusters has no such cluster); ` +
        `define it in remote_servers or unset PU_CLICKHOUSE_CLUSTER for a single server`,
    );
  }
  return { cluster, shards };
}

async function databaseExists(client: ClickHouseClient, database: string): Promise<boolean> {
  const rs = await client.query({
    query: 'SELECT count() AS n FROM system.databases WHERE name = {db:String}',
    format: 'JSONEachRow',
    query_params: { db: database },
    http_headers: { 'X-ClickHouse-Database': 'system' },
  });
  const [row] = await rs.json<{ n: number | string }>();
  return Number(row?.n ?? 0) > 0;
}

async function tableEngine(client: ClickHouseClient, database: string, table: string): Promise<string | undefined> {
  const rs = await client.query({
    query: 'SELECT engine FROM system.tables WHERE database = {db:String} AND name = {table:String}',
    format: 'JSONEachRow',
    query_params: { db: database, table },
    http_headers: { 'X-ClickHouse-Database': 'system' },
  });
  const [row] = await rs.json<{ engine: string }>();
  return row?.engine;
}

/** Refuses to mix modes: cluster DDL on a single-server database (or the reverse) would leave half-replicated tables. */
function assertSameMode(trackingEngine: string, layout: ClickHouseClusterLayout | undefined, database: string): void {
  const replicated = trackingEngine.startsWith('Replicated');
  if (replicated && !layout) {
    throw new ClickHouseMigrationError(
      `ClickHouse database '${database}' was migrated on a cluster (${CLICKHOUSE_MIGRATIONS_TABLE} is ${trackingEngine}) ` +
        `but PU_CLICKHOUSE_CLUSTER is not set; set it to the cluster name so new migrations are replicated`,
    );
  }
  if (!replicated && layout) {
    throw new ClickHouseMigrationError(
      `ClickHouse database '${database}' was migrated on a single server (${CLICKHOUSE_MIGRATIONS_TABLE} is ${trackingEngine}) ` +
        `but PU_CLICKHOUSE_CLUSTER is '${layout.cluster}'; moving existing tables to replicated engines is a manual step (docs/INSTALL.md)`,
    );
  }
}

/** Logs a warning for every reference table whose columns differ from the reference (e.g. an adopted, half-migrated database). */
async function warnAboutDrift(client: ClickHouseClient, database: string, logger: ClickHouseLogger): Promise<void> {
  const inDatabase = { 'X-ClickHouse-Database': database };
  const names = REFERENCE_CLICKHOUSE_TABLES.map((t) => t.name);
  const rs = await client.query({
    query: 'SELECT table, name, type FROM system.columns WHERE database = {db:String} AND table IN {tables:Array(String)} ORDER BY table, position',
    format: 'JSONEachRow',
    query_params: { db: database, tables: names },
    http_headers: inDatabase,
  });
  const rows = await rs.json<{ table: string; name: string; type: string }>();
  for (const reference of REFERENCE_CLICKHOUSE_TABLES) {
    const actual = rows.filter((r) => r.table === reference.name).map((r) => `${r.name} ${r.type}`);
    if (actual.length === 0) continue; // dropped on purpose or a custom migration set
    const expected = reference.columns.map(([n, t]) => `${n} ${t}`);
    if (actual.join(', ') !== expected.join(', ')) {
      logger.warn(
        { database, table: reference.name, expected, actual },
        'ClickHouse table differs from the reference schema; positional inserts may fail (was an existing database adopted mid-migration?)',
      );
    }
  }
}
