/**
 * PostgreSQL schema migrations: numbered SQL files in backend/migrations applied by
 * postgrator and tracked in `pepeunit_schema_version`.
 *
 * Safety:
 * - The whole run is one transaction (PostgreSQL DDL is transactional): a failing migration
 *   leaves the database exactly as it was, and a migration is never recorded without its
 *   effect or the other way round. Consequence: migrations must not use statements that
 *   refuse to run in a transaction (CREATE INDEX CONCURRENTLY, ALTER TYPE ... ADD VALUE on
 *   old servers, VACUUM).
 * - A transaction-level advisory lock serialises concurrent runs (several backend replicas
 *   or the backend and the ingest starting together): the second waits, then finds nothing
 *   to do.
 * - Released files are checksummed; editing one after release fails the next run.
 * - A database newer than this build (version above the newest file) is refused instead of
 *   being silently "migrated" downwards by running undo files.
 */
import { ADVISORY_LOCKS } from '@pepeunit/common';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import Postgrator from 'postgrator';
import { normalizePostgresUrl, redactPostgresUrl, type PostgresLogger } from '@pepeunit/common/postgres';

/** Directory holding `NNN.do.<name>.sql` / `NNN.undo.<name>.sql`. */
export const postgresMigrationsDir = fileURLToPath(new URL('../../migrations/', import.meta.url));

/** Table recording applied migrations (postgrator's format: version, name, md5, run_at). */
export const POSTGRES_SCHEMA_TABLE = 'pepeunit_schema_version';

/**
 * Advisory lock key (two int4 halves) reserved for migrations. 0x50455045 spells "PEPE";
 * other advisory locks of the platform (job election...) must use another second half.
 */
export const MIGRATION_LOCK_KEY = ADVISORY_LOCKS.migrations;

export interface MigratePostgresOptions {
  logger?: PostgresLogger;
  /**
   * Version to reach; default: the newest file. A lower number runs undo files (for tests
   * and development only: undoing 001 drops every platform table).
   */
  targetVersion?: number;
}

export interface MigratePostgresResult {
  /** Versions applied by this call, in order (undo runs list the undone versions). */
  appliedVersions: number[];
  fromVersion: number;
  toVersion: number;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]*$/;
const silent: PostgresLogger = { info() {}, warn() {}, error() {}, debug() {} };

/**
 * Brings the database at `connectionString` (any form normalizePostgresUrl accepts) to the
 * newest schema version. Re-running is a no-op. Serialised across processes.
 */
export async function migratePostgres(connectionString: string, opts: MigratePostgresOptions = {}): Promise<MigratePostgresResult> {
  const logger = opts.logger ?? silent;
  const url = normalizePostgresUrl(connectionString);
  const client = new pg.Client({ connectionString: url, application_name: 'pepeunit-migrate' });
  client.on('error', () => {}); // surfaced by the pending query instead
  try {
    await client.connect();
  } catch (error) {
    throw new Error(`Cannot connect to PostgreSQL ${redactPostgresUrl(url)} to run migrations: ${messageOf(error)}`, { cause: error });
  }

  let inTransaction = false;
  try {
    await client.query('BEGIN');
    inTransaction = true;
    await client.query('SELECT pg_advisory_xact_lock($1, $2)', [...MIGRATION_LOCK_KEY]);

    // Scope the version table lookup to the schema our tables go to (postgrator would
    // otherwise match a same-named table in any schema).
    const schemaRow = await client.query<{ schema: string | null }>('SELECT current_schema() AS schema');
    const schema = schemaRow.rows[0]?.schema;
    if (!schema) {
      throw new Error('PostgreSQL has no current schema for this connection (search_path names no existing schema); create the schema or fix search_path.');
    }
    if (!SCHEMA_NAME.test(schema)) {
      throw new Error(`Unsupported schema name "${schema}" for migrations: use a lower-case identifier.`);
    }

    const postgrator = new Postgrator({
      driver: 'pg',
      migrationPattern: path.posix.join(postgresMigrationsDir.split(path.sep).join('/'), '*.sql'),
      schemaTable: POSTGRES_SCHEMA_TABLE,
      currentSchema: schema,
      validateChecksums: true,
      newline: 'LF', // checksums independent of a Windows checkout's line endings
      execQuery: (query: string) => client.query(query),
    });
    postgrator.on('migration-started', (migration) =>
      logger.info({ version: migration.version, action: migration.action, name: migration.name }, 'applying postgres migration'),
    );

    const newest = await postgrator.getMaxVersion();
    const fromVersion = await postgrator.getDatabaseVersion();
    const target = opts.targetVersion ?? newest;
    if (!Number.isInteger(target) || target < 0 || target > newest) {
      throw new Error(`Invalid target schema version ${target}: expected an integer between 0 and ${newest}.`);
    }
    if (fromVersion > newest) {
      throw new Error(
        `The database schema is at version ${fromVersion}, newer than this build knows (${newest}). Refusing to migrate downwards; run a newer Pepeunit TS release against this database.`,
      );
    }

    let applied: Postgrator.Migration[];
    try {
      applied = await postgrator.migrate(String(target));
    } catch (error) {
      const failed = (error as { appliedMigrations?: Postgrator.Migration[] }).appliedMigrations ?? [];
      throw new Error(
        `PostgreSQL migration failed after ${failed.length} step(s), nothing was changed: ${messageOf(error)}`,
        { cause: error },
      );
    }
    const toVersion = await postgrator.getDatabaseVersion();
    await client.query('COMMIT');
    inTransaction = false;

    const appliedVersions = applied.map((migration) => migration.version);
    if (appliedVersions.length > 0) {
      logger.info({ fromVersion, toVersion, appliedVersions }, 'postgres schema migrated');
    } else {
      logger.debug({ version: toVersion }, 'postgres schema up to date');
    }
    return { appliedVersions, fromVersion, toVersion };
  } catch (error) {
    if (inTransaction) await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    await client.end().catch(() => {});
  }
}

function messageOf(error: unknown): string {
  if (error instanceof Error) {
    const detail = (error as { hint?: string }).hint;
    return detail ? `${error.message} (hint: ${detail})` : error.message;
  }
  return String(error);
}
