/**
 * PostgreSQL URLs and databases, used at runtime by every process:
 *
 * - normalizePostgresUrl: turns the reference's SQLAlchemy URLs into URLs `pg` accepts.
 * - createDatabase / dropDatabase / databaseUrl: application and throw-away databases.
 *
 * Finding or starting a server for the quick start and the tests (apt, initdb, pg_ctl) is
 * provisioning, kept apart in `postgres-provision.ts`. Nothing here logs a password: URLs are
 * passed through redactPostgresUrl before logging or being put into error messages.
 */
import { redactUrlPassword, sleep } from './util.js';
import type { LogSink } from './logger.js';
import pg from 'pg';

/** The logger this module takes (LogSink; pino's Logger satisfies it). */
export type PostgresLogger = LogSink;

/** @internal shared with postgres-provision.ts */
export const silent: PostgresLogger = { info() {}, warn() {}, error() {}, debug() {} };

/** An error meant for the operator: the message says what went wrong and what to do. */
export class PostgresSetupError extends Error {
  override name = 'PostgresSetupError';
}

// ---------------------------------------------------------------------------------------
// Naive timestamps are UTC
// ---------------------------------------------------------------------------------------

/** OID of `timestamp without time zone`. */
const TIMESTAMP_OID = 1114;
const NAIVE_TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$/;
const defaultTimestampParser = pg.types.getTypeParser(TIMESTAMP_OID);

/**
 * Parses a `timestamp without time zone` value as UTC wall time, which is what the platform
 * stores there (the reference writes `datetime.utcnow()`, our SQL `now() AT TIME ZONE 'utc'`).
 * `pg` alone reads it as the process's local time: on a host whose time zone is not UTC every
 * timestamp would come out shifted. The usual form takes a fast path; `infinity`, BC dates and
 * years before 100 go through pg's own parser with the UTC offset added.
 */
export function parsePostgresTimestamp(value: string): Date | number | null {
  const m = NAIVE_TIMESTAMP.exec(value);
  if (m && m[1]! >= '0100') {
    const ms = m[7] ? Number(m[7].padEnd(3, '0').slice(0, 3)) : 0;
    return new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]), ms));
  }
  if (value === 'infinity' || value === '-infinity') return defaultTimestampParser(value) as number;
  const bc = value.endsWith(' BC');
  return defaultTimestampParser(bc ? `${value.slice(0, -3)}+00 BC` : `${value}+00`) as Date | null;
}

/**
 * Makes every `pg` client of this process treat `timestamp without time zone` as UTC both ways:
 * values read are parsed with parsePostgresTimestamp, `Date` parameters are sent as UTC
 * (`parseInputDatesAsUTC`) instead of local time. A no-op in effect where the process time zone
 * is UTC; called by every process before it opens a pool (pg's settings are process-wide).
 */
export function usePostgresUtcTimestamps(): void {
  pg.defaults.parseInputDatesAsUTC = true;
  pg.types.setTypeParser(TIMESTAMP_OID, parsePostgresTimestamp);
}

// ---------------------------------------------------------------------------------------
// URLs
// ---------------------------------------------------------------------------------------

const URL_SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/s;
const DRIVER_NAME = /^[a-z][a-z0-9_]*$/;
/** asyncpg spells libpq's `sslmode` as `ssl`; these values are libpq modes, not booleans. */
const SSL_MODES = new Set(['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']);
/** Stands in for an empty host (`user@/db?host=/socket`) so WHATWG URL can parse it. */
const NO_HOST = 'pepeunit-no-host.invalid';

/** Replaces the password of a PostgreSQL URL with `***` (for logs and error messages). */
export function redactPostgresUrl(url: string): string {
  return redactUrlPassword(url);
}

const EXPECTED_FORM =
  'expected postgresql://user:password@host:5432/database (SQLAlchemy forms such as postgresql+psycopg2://… and postgresql+asyncpg://… are accepted too)';

function parsePostgresUrl(url: string): URL {
  try {
    return new URL(url);
  } catch {
    // `postgresql://user@/db?host=/var/run/postgresql` (socket, no host) is valid for libpq
    // and pg but not for WHATWG URL.
    try {
      return new URL(url.replace('@/', `@${NO_HOST}/`));
    } catch {
      throw new PostgresSetupError(`Invalid PostgreSQL URL "${redactPostgresUrl(url)}": ${EXPECTED_FORM}.`);
    }
  }
}

function formatPostgresUrl(parsed: URL): string {
  return parsed.toString().replace(`@${NO_HOST}/`, '@/');
}

/**
 * Accepts a PostgreSQL URL in any form the reference deployment uses and returns one that
 * `pg` accepts:
 * - `postgresql+psycopg2://`, `postgresql+asyncpg://`, `postgresql+<driver>://` and
 *   `postgres://` become `postgresql://` (user, password, host, port, database, query kept);
 * - asyncpg's `?ssl=require` (a libpq mode) becomes `?sslmode=require`.
 * Throws PostgresSetupError for anything that is not a PostgreSQL URL.
 */
export function normalizePostgresUrl(raw: string): string {
  if (typeof raw !== 'string' || raw.trim() === '') {
    throw new PostgresSetupError(`The PostgreSQL URL is empty: ${EXPECTED_FORM}.`);
  }
  const trimmed = raw.trim();
  const match = URL_SCHEME.exec(trimmed);
  if (!match) {
    throw new PostgresSetupError(`"${redactPostgresUrl(trimmed)}" is not a PostgreSQL URL: ${EXPECTED_FORM}.`);
  }
  const scheme = (match[1] ?? '').toLowerCase();
  const rest = match[2] ?? '';
  const plusAt = scheme.indexOf('+');
  const dialect = plusAt === -1 ? scheme : scheme.slice(0, plusAt);
  const driver = plusAt === -1 ? undefined : scheme.slice(plusAt + 1);
  if ((dialect !== 'postgresql' && dialect !== 'postgres') || (driver !== undefined && !DRIVER_NAME.test(driver))) {
    throw new PostgresSetupError(
      `Unsupported database URL scheme "${match[1]}://" in "${redactPostgresUrl(trimmed)}": ${EXPECTED_FORM}.`,
    );
  }

  let authorityAndPath = rest;
  let query: string | undefined;
  const questionAt = rest.indexOf('?');
  if (questionAt !== -1) {
    authorityAndPath = rest.slice(0, questionAt);
    query = rest.slice(questionAt + 1);
  }
  if (query !== undefined) {
    const params = new URLSearchParams(query);
    const ssl = params.get('ssl');
    if (ssl !== null && SSL_MODES.has(ssl.toLowerCase())) {
      params.delete('ssl');
      if (!params.has('sslmode')) params.set('sslmode', ssl.toLowerCase());
      query = params.toString();
    }
  }
  const normalized = `postgresql://${authorityAndPath}${query ? `?${query}` : ''}`;
  parsePostgresUrl(normalized); // throws a clear error for malformed host/port
  return normalized;
}

/** The database name in a PostgreSQL URL, or undefined when the URL names none. */
export function databaseNameOf(url: string): string | undefined {
  const parsed = parsePostgresUrl(normalizePostgresUrl(url));
  const name = decodeURIComponent(parsed.pathname.replace(/^\//, ''));
  return name === '' ? undefined : name;
}

/** The same server and credentials as `adminUrl`, pointed at database `name`. */
export function databaseUrl(adminUrl: string, name: string): string {
  assertDatabaseName(name);
  const parsed = parsePostgresUrl(normalizePostgresUrl(adminUrl));
  parsed.pathname = `/${name}`;
  return formatPostgresUrl(parsed);
}

// ---------------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------------

const DATABASE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** True for names createDatabase/dropDatabase accept: a plain SQL identifier, ≤ 63 chars. */
export function isValidDatabaseName(name: string): boolean {
  return typeof name === 'string' && DATABASE_NAME.test(name);
}

/** @internal shared with postgres-provision.ts */
export function assertDatabaseName(name: string): void {
  if (!isValidDatabaseName(name)) {
    throw new PostgresSetupError(
      `Invalid database name ${JSON.stringify(name)}: use 1-63 letters, digits or underscores, not starting with a digit.`,
    );
  }
}

/** @internal shared with postgres-provision.ts */
export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>, connectTimeoutMs = 10_000): Promise<T> {
  const client = new pg.Client({
    connectionString: normalizePostgresUrl(url),
    connectionTimeoutMillis: connectTimeoutMs,
    application_name: 'pepeunit-provision',
  });
  client.on('error', () => {}); // a server going away mid-call surfaces through the query
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** @internal shared with postgres-provision.ts */
export function pgErrorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String((error as { code: unknown }).code) : undefined;
}

/**
 * Creates database `name` (a validated identifier, always quoted) unless it exists.
 * Returns true when this call created it. Safe when several processes race.
 */
export async function createDatabase(adminUrl: string, name: string): Promise<boolean> {
  assertDatabaseName(name);
  return withClient(adminUrl, async (client) => {
    const existing = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (existing.rowCount) return false;
    try {
      await client.query(`CREATE DATABASE "${name}"`);
      return true;
    } catch (error) {
      // 42P04 duplicate_database; 23505 when two CREATEs race on the catalog's unique index
      if (pgErrorCode(error) === '42P04' || pgErrorCode(error) === '23505') return false;
      throw error;
    }
  });
}

/**
 * Drops database `name` if it exists, terminating other sessions connected to it first.
 * Returns true when this call dropped it. Refuses the template databases and the database
 * `adminUrl` itself is connected to.
 */
export async function dropDatabase(adminUrl: string, name: string): Promise<boolean> {
  assertDatabaseName(name);
  if (name === 'template0' || name === 'template1') {
    throw new PostgresSetupError(`Refusing to drop the template database "${name}".`);
  }
  return withClient(adminUrl, async (client) => {
    const current = await client.query<{ db: string }>('SELECT current_database() AS db');
    if (current.rows[0]?.db === name) {
      throw new PostgresSetupError(`Cannot drop database "${name}" through a connection to that same database; use an admin URL pointing at another database (e.g. postgres).`);
    }
    for (let attempt = 0; ; attempt++) {
      await client.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
        [name],
      );
      const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      if (!exists.rowCount) return false;
      try {
        await client.query(`DROP DATABASE IF EXISTS "${name}"`);
        return true;
      } catch (error) {
        // 55006 object_in_use: a client reconnected between terminate and drop
        if (pgErrorCode(error) !== '55006' || attempt >= 5) throw error;
        await sleep(100 * (attempt + 1));
      }
    }
  });
}

