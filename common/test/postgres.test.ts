/**
 * PostgreSQL provisioning against real servers: the machine's server on 5432 and a private
 * cluster started from Debian's binaries in a temp dir (on a free port, never 5432).
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, realpath, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import {
  PostgresSetupError,
  createDatabase,
  databaseNameOf,
  databaseUrl,
  dropDatabase,
  isValidDatabaseName,
  normalizePostgresUrl,
  redactPostgresUrl,
} from '../src/postgres.js';
import { resolvePostgres, type ResolvedPostgres } from '../src/postgres-provision.js';

const ADMIN_URL = process.env.PU_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

const createdDatabases: string[] = [];
const handles: ResolvedPostgres[] = [];
const tempDirs: string[] = [];

function throwAwayName(): string {
  const name = `pu_t_${randomBytes(6).toString('hex')}`;
  createdDatabases.push(name);
  return name;
}

async function query<T extends pg.QueryResultRow = pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

function run(command: string, args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd: '/' }, (error, stdout) => {
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout: String(stdout) });
    });
  });
}

async function pgCtlStatus(dataDirectory: string): Promise<number> {
  const majors = (await readdir('/usr/lib/postgresql')).filter((entry) => /^\d+$/.test(entry)).sort((a, b) => Number(b) - Number(a));
  const pgCtl = `/usr/lib/postgresql/${majors[0]}/bin/pg_ctl`;
  const asRoot = process.getuid?.() === 0;
  const result = asRoot
    ? await run('runuser', ['-u', 'postgres', '--', pgCtl, '-D', dataDirectory, 'status'])
    : await run(pgCtl, ['-D', dataDirectory, 'status']);
  return result.code;
}

async function processesMentioning(text: string): Promise<string[]> {
  const { stdout } = await run('ps', ['-eo', 'pid=,args=']);
  return stdout.split('\n').filter((line) => line.includes(text) && !line.includes('ps -eo'));
}

async function childrenOf(pid: number): Promise<string[]> {
  const { stdout } = await run('ps', ['-o', 'pid=', '--ppid', String(pid)]);
  return stdout.split('\n').filter((line) => line.trim() !== '');
}

/** Running (an exited process not yet reaped by init, a zombie, does not count). */
async function alive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (stat === undefined) return false;
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
}

after(async () => {
  for (const handle of handles) await handle.stop().catch(() => {});
  for (const name of createdDatabases) await dropDatabase(ADMIN_URL, name).catch(() => {});
  for (const dir of tempDirs) await rm(dir, { recursive: true, force: true });
});

describe('normalizePostgresUrl', () => {
  const accepted: Array<[string, string]> = [
    ['postgresql+psycopg2://u:p@h:5432/db', 'postgresql://u:p@h:5432/db'],
    ['postgresql+asyncpg://u:p@h:5432/db', 'postgresql://u:p@h:5432/db'],
    ['postgresql+psycopg://u:p@h/db', 'postgresql://u:p@h/db'],
    ['POSTGRESQL+ASYNCPG://u:p@h:5432/db', 'postgresql://u:p@h:5432/db'],
    ['postgres://u@h/db', 'postgresql://u@h/db'],
    ['postgresql://u@h/db', 'postgresql://u@h/db'],
    ['  postgresql+psycopg2://u:p@h:5432/db\n', 'postgresql://u:p@h:5432/db'],
    ['postgresql+asyncpg://u:p%40ss%2Fw@h:5432/db', 'postgresql://u:p%40ss%2Fw@h:5432/db'],
    ['postgresql+asyncpg://u:p@h/db?ssl=require', 'postgresql://u:p@h/db?sslmode=require'],
    ['postgresql+asyncpg://u:p@h/db?ssl=require&sslmode=verify-full', 'postgresql://u:p@h/db?sslmode=verify-full'],
    ['postgresql://u:p@h/db?ssl=true', 'postgresql://u:p@h/db?ssl=true'],
    ['postgresql+psycopg2://u@/db?host=/var/run/postgresql', 'postgresql://u@/db?host=/var/run/postgresql'],
    ['postgresql+psycopg2://u:p@[::1]:5433/db', 'postgresql://u:p@[::1]:5433/db'],
  ];
  for (const [input, expected] of accepted) {
    it(`accepts ${JSON.stringify(input)}`, () => {
      assert.equal(normalizePostgresUrl(input), expected);
    });
  }

  it('produces URLs pg reads as the intended host, port, user, password and database', () => {
    const tcp = new pg.Client({ connectionString: normalizePostgresUrl('postgresql+psycopg2://alice:p%40ss@db.example:6543/pepeunit') });
    assert.deepEqual([tcp.host, tcp.port, tcp.user, tcp.password, tcp.database], ['db.example', 6543, 'alice', 'p@ss', 'pepeunit']);
    const socket = new pg.Client({ connectionString: normalizePostgresUrl('postgresql+asyncpg://bob@/pepeunit?host=/var/run/postgresql') });
    assert.deepEqual([socket.host, socket.user, socket.database], ['/var/run/postgresql', 'bob', 'pepeunit']);
  });

  const rejected = ['', '   ', 'mysql://u:p@h/db', 'sqlite:///pepeunit.db', 'host=localhost dbname=pepeunit', 'postgresql+bad-driver!://u@h/db', 'postgresql://u:secret@h:notaport/db'];
  for (const input of rejected) {
    it(`rejects ${JSON.stringify(input)} with a clear error that hides the password`, () => {
      assert.throws(
        () => normalizePostgresUrl(input),
        (error: Error) =>
          error instanceof PostgresSetupError && /postgresql:\/\/user:password@host:5432\/database/.test(error.message) && !error.message.includes('secret'),
      );
    });
  }

  it('redacts passwords, and finds database names', () => {
    assert.equal(redactPostgresUrl('postgresql+asyncpg://u:s3cr%2Fet@h:5432/db'), 'postgresql+asyncpg://u:***@h:5432/db');
    assert.equal(redactPostgresUrl('postgresql://u@h:5432/db'), 'postgresql://u@h:5432/db');
    assert.equal(databaseNameOf('postgresql+psycopg2://u:p@h:5432/pepeunit'), 'pepeunit');
    assert.equal(databaseNameOf('postgresql://u:p@h:5432'), undefined);
  });
});

describe('databaseUrl and database names', () => {
  it('points the admin URL at another database, keeping credentials and options', () => {
    assert.equal(databaseUrl('postgresql://u:p%40@h:5432/postgres', 'pu_app'), 'postgresql://u:p%40@h:5432/pu_app');
    assert.equal(databaseUrl('postgresql+psycopg2://u@h', 'pu_app'), 'postgresql://u@h/pu_app');
    assert.equal(
      databaseUrl('postgresql://postgres@/postgres?host=%2Fvar%2Frun%2Fpostgresql', 'pu_app'),
      'postgresql://postgres@/pu_app?host=%2Fvar%2Frun%2Fpostgresql',
    );
  });

  it('accepts only plain identifiers', () => {
    for (const good of ['pepeunit', 'pu_t_0a1b', '_x', 'A'.repeat(63)]) assert.equal(isValidDatabaseName(good), true, good);
    for (const bad of ['', '1abc', 'a-b', 'x"; DROP DATABASE postgres; --', 'A'.repeat(64), 'white space']) {
      assert.equal(isValidDatabaseName(bad), false, bad);
      assert.throws(() => databaseUrl(ADMIN_URL, bad), PostgresSetupError);
    }
  });
});

describe('createDatabase / dropDatabase (machine server)', () => {
  it('creates idempotently, drops while others are connected, and validates names', async () => {
    const name = throwAwayName();
    assert.equal(await createDatabase(ADMIN_URL, name), true);
    assert.equal(await createDatabase(ADMIN_URL, name), false);
    const url = databaseUrl(ADMIN_URL, name);
    assert.deepEqual(await query(url, 'SELECT current_database() AS db'), [{ db: name }]);

    const holder = new pg.Client({ connectionString: url });
    holder.on('error', () => {});
    await holder.connect();
    try {
      assert.equal(await dropDatabase(ADMIN_URL, name), true);
    } finally {
      await holder.end().catch(() => {});
    }
    assert.deepEqual(await query(ADMIN_URL, 'SELECT datname FROM pg_database WHERE datname = $1', [name]), []);
    assert.equal(await dropDatabase(ADMIN_URL, name), false);

    await assert.rejects(createDatabase(ADMIN_URL, 'x"; DROP DATABASE postgres; --'), PostgresSetupError);
    await assert.rejects(dropDatabase(ADMIN_URL, 'template1'), /template/);
    await assert.rejects(dropDatabase(ADMIN_URL, 'postgres'), /same database/);
  });
});

describe('resolvePostgres: configured and local servers', () => {
  it('uses an explicit SQLAlchemy URL as is, and stop() leaves the server running', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'pu-pg-cfg-'));
    tempDirs.push(dataDir);
    const configured = ADMIN_URL.replace(/^postgres(ql)?:\/\//, 'postgresql+psycopg2://');
    const resolved = await resolvePostgres({ url: configured, dataDir });
    assert.equal(resolved.source, 'configured');
    assert.equal(resolved.adminUrl, normalizePostgresUrl(configured));
    assert.equal(resolved.url, resolved.adminUrl);
    await resolved.stop();
    assert.deepEqual(await query(resolved.url, 'SELECT 1 AS one'), [{ one: 1 }]);
    assert.deepEqual(await readdir(dataDir), [], 'no private cluster for a configured server');
  });

  it('creates the database a configured URL names when it is missing', async () => {
    const name = throwAwayName();
    const configured = databaseUrl(ADMIN_URL, name).replace('postgresql://', 'postgresql+asyncpg://');
    const resolved = await resolvePostgres({ url: configured, dataDir: os.tmpdir() });
    assert.equal(resolved.source, 'configured');
    assert.deepEqual(await query(resolved.url, 'SELECT current_database() AS db'), [{ db: name }]);
  });

  it('reports an unreachable configured server clearly without the password', async () => {
    await assert.rejects(
      resolvePostgres({ url: 'postgresql+psycopg2://u:topsecret@127.0.0.1:1/db', dataDir: os.tmpdir(), waitForConfiguredMs: 0 }),
      (error: Error) =>
        error instanceof PostgresSetupError && /Cannot connect to the configured PostgreSQL server/.test(error.message) && !error.message.includes('topsecret'),
    );
  });

  it('falls back to a reachable local server and creates the application database there', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'pu-pg-local-'));
    tempDirs.push(dataDir);
    const name = throwAwayName();
    const resolved = await resolvePostgres({
      dataDir,
      database: name,
      localUrls: ['postgresql://postgres@127.0.0.1:1/postgres', ADMIN_URL],
      probeTimeoutMs: 1000,
    });
    assert.equal(resolved.source, 'local');
    assert.equal(resolved.adminUrl, normalizePostgresUrl(ADMIN_URL));
    assert.deepEqual(await query(resolved.url, 'SELECT current_database() AS db'), [{ db: name }]);
    assert.deepEqual(await readdir(dataDir), [], 'no private cluster when a local server works');
  });
});

describe('resolvePostgres: private cluster from Debian binaries', () => {
  it('initialises, serves, stops without leftovers, and restarts on the same data dir', async () => {
    const dataDir = await realpath(await mkdtemp(path.join(os.tmpdir(), 'pu-pg-private-')));
    tempDirs.push(dataDir);
    const dataDirectory = path.join(dataDir, 'postgres', 'data');

    const first = await resolvePostgres({ dataDir, preferPrivate: true, database: 'pepeunit_app' });
    handles.push(first);
    assert.equal(first.source, 'private');
    assert.equal(first.dataDirectory, dataDirectory);
    assert.ok(first.port && first.port !== 5432);
    assert.match(first.adminUrl, new RegExp(`^postgresql://postgres@127\\.0\\.0\\.1:${first.port}/postgres$`));

    const settings = await query(
      first.adminUrl,
      `SELECT current_setting('data_directory') AS dir, current_setting('fsync') AS fsync, current_setting('listen_addresses') AS listen`,
    );
    assert.deepEqual(settings, [{ dir: dataDirectory, fsync: 'off', listen: '127.0.0.1' }]);
    assert.equal(databaseNameOf(first.url), 'pepeunit_app');
    await query(first.url, 'CREATE TABLE survives_restart (v text); INSERT INTO survives_restart VALUES ($$kept$$)');
    assert.equal(await createDatabase(first.adminUrl, 'second_db'), true);

    // a second resolve while it runs adopts the running cluster instead of starting another
    const adopted = await resolvePostgres({ dataDir, preferPrivate: true });
    assert.equal(adopted.port, first.port);

    const postmasterPid = Number.parseInt((await readFile(path.join(dataDirectory, 'postmaster.pid'), 'utf8')).split('\n')[0] ?? '', 10);
    assert.ok(await alive(postmasterPid));
    assert.ok((await processesMentioning(dataDirectory)).length > 0, 'postgres runs with this data dir');

    await first.stop();
    await first.stop(); // idempotent
    await adopted.stop(); // already stopped: still fine
    assert.equal(await pgCtlStatus(dataDirectory), 3, 'pg_ctl status: no server running');
    assert.equal(await alive(postmasterPid), false);
    assert.deepEqual(await childrenOf(postmasterPid), []);
    assert.deepEqual(await processesMentioning(dataDirectory), []);
    await assert.rejects(query(first.adminUrl, 'SELECT 1'));

    const second = await resolvePostgres({ dataDir, preferPrivate: true, database: 'pepeunit_app' });
    handles.push(second);
    assert.equal(second.source, 'private');
    assert.deepEqual(await query(second.url, 'SELECT v FROM survives_restart'), [{ v: 'kept' }], 'data dir reused, not re-initialised');
    await second.stop();
    assert.equal(await pgCtlStatus(dataDirectory), 3);
    assert.deepEqual(await processesMentioning(dataDirectory), []);
  });

  it('explains missing server binaries', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'pu-pg-nobin-'));
    tempDirs.push(dataDir);
    await assert.rejects(
      resolvePostgres({ dataDir, preferPrivate: true, binDir: path.join(dataDir, 'no-such-bin') }),
      (error: Error) => error instanceof PostgresSetupError && /initdb, pg_ctl, postgres not found in/.test(error.message),
    );
  });
});
