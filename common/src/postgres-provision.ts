/**
 * PostgreSQL provisioning for the quick start and the tests (not used by production processes):
 * resolvePostgres finds a server to use, in this order: the configured URL, the machine's own
 * server, or a private cluster started from Debian's binaries (installed with apt when allowed)
 * inside the data dir. Nothing here logs a password.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { freePort } from './ports.js';
import { sleep } from './util.js';
import {
  PostgresSetupError,
  assertDatabaseName,
  createDatabase,
  databaseNameOf,
  databaseUrl,
  isValidDatabaseName,
  normalizePostgresUrl,
  pgErrorCode,
  redactPostgresUrl,
  silent,
  withClient,
  type PostgresLogger,
} from './postgres.js';

// ---------------------------------------------------------------------------------------
// resolvePostgres
// ---------------------------------------------------------------------------------------

export type PostgresSource = 'configured' | 'local' | 'private';

export interface ResolvePostgresOptions {
  /** A configured server (any form normalizePostgresUrl accepts). Used as is when set. */
  url?: string;
  /** Directory for the private cluster (`<dataDir>/postgres`), created if missing. */
  dataDir: string;
  /**
   * Application database. For 'local' and 'private' it is created if missing and `url`
   * points at it; for 'configured' it is only used when the configured URL names no database.
   */
  database?: string;
  logger?: PostgresLogger;
  /** Run `apt-get install -y postgresql` when no server binaries exist (root only). */
  allowInstall?: boolean;
  /** Skip the local-server probe and go straight to the private cluster (tests). */
  preferPrivate?: boolean;
  /** Local servers to probe, in order. Default: TCP 127.0.0.1:5432, then /var/run/postgresql. */
  localUrls?: string[];
  /** Connect timeout of each local probe (default 1500 ms). */
  probeTimeoutMs?: number;
  /** How long to keep retrying a configured server that refuses connections (default 10 s). */
  waitForConfiguredMs?: number;
  /** Directory holding initdb/pg_ctl/postgres; default: newest /usr/lib/postgresql/<major>/bin. */
  binDir?: string;
  /** Fixed port for the private cluster; default: a free port on 127.0.0.1. */
  port?: number;
}

export interface ResolvedPostgres {
  /** A URL with the right to create databases (createDatabase/dropDatabase take it). */
  adminUrl: string;
  /** The application database: `database` on that server, or adminUrl when none was asked. */
  url: string;
  source: PostgresSource;
  /** Stops the private cluster (no postgres process left); a no-op for the other sources. */
  stop(): Promise<void>;
  /** Private cluster only: its port on 127.0.0.1 and its data directory. */
  port?: number;
  dataDirectory?: string;
}

export const DEFAULT_LOCAL_POSTGRES_URLS = [
  'postgresql://postgres@127.0.0.1:5432/postgres',
  'postgresql://postgres@/postgres?host=%2Fvar%2Frun%2Fpostgresql',
];

/**
 * Finds a PostgreSQL server: (1) `opts.url` when given; (2) else a local server that lets
 * us create databases; (3) else a private cluster from Debian's binaries in
 * `<dataDir>/postgres`, reused across runs. See ResolvePostgresOptions.
 */
export async function resolvePostgres(opts: ResolvePostgresOptions): Promise<ResolvedPostgres> {
  const logger = opts.logger ?? silent;
  if (opts.database !== undefined) assertDatabaseName(opts.database);

  if (opts.url !== undefined && opts.url.trim() !== '') {
    return useConfiguredServer(opts, logger);
  }

  if (!opts.preferPrivate) {
    const local = await findLocalServer(opts.localUrls ?? DEFAULT_LOCAL_POSTGRES_URLS, opts.probeTimeoutMs ?? 1500, logger);
    if (local) {
      const url = opts.database ? await ensureDatabase(local, opts.database, logger) : local;
      logger.info({ source: 'local', url: redactPostgresUrl(url) }, 'using the local PostgreSQL server');
      return { adminUrl: local, url, source: 'local', stop: async () => {} };
    }
  }

  const cluster = await startPrivateCluster(opts, logger);
  try {
    const url = opts.database ? await ensureDatabase(cluster.adminUrl, opts.database, logger) : cluster.adminUrl;
    return { ...cluster, url, source: 'private' };
  } catch (error) {
    await cluster.stop().catch(() => {});
    throw error;
  }
}

async function ensureDatabase(adminUrl: string, name: string, logger: PostgresLogger): Promise<string> {
  if (await createDatabase(adminUrl, name)) logger.info({ database: name }, 'created PostgreSQL database');
  return databaseUrl(adminUrl, name);
}

const RETRYABLE_CONNECT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EAI_AGAIN', '57P03']);

async function useConfiguredServer(opts: ResolvePostgresOptions, logger: PostgresLogger): Promise<ResolvedPostgres> {
  let url = normalizePostgresUrl(opts.url ?? '');
  if (databaseNameOf(url) === undefined && opts.database) url = databaseUrl(url, opts.database);
  const shown = redactPostgresUrl(url);
  const deadline = Date.now() + (opts.waitForConfiguredMs ?? 10_000);
  for (;;) {
    try {
      await withClient(url, (client) => client.query('SELECT 1'), 5000);
      break;
    } catch (error) {
      const code = pgErrorCode(error);
      const name = databaseNameOf(url);
      if (code === '3D000' && name && isValidDatabaseName(name)) {
        // The server is there but the database is not: create it through the maintenance db.
        try {
          await createDatabase(databaseUrl(url, 'postgres'), name);
          logger.info({ database: name }, 'created the configured PostgreSQL database');
          continue;
        } catch (createError) {
          throw new PostgresSetupError(
            `Database "${name}" does not exist on ${shown} and could not be created (${errorMessage(createError)}). Create it (CREATE DATABASE "${name}") or grant CREATEDB to the configured user.`,
          );
        }
      }
      if (code !== undefined && RETRYABLE_CONNECT_CODES.has(code) && Date.now() < deadline) {
        logger.debug({ url: shown, code }, 'configured PostgreSQL not reachable yet, retrying');
        await sleep(250);
        continue;
      }
      throw new PostgresSetupError(
        `Cannot connect to the configured PostgreSQL server ${shown}: ${errorMessage(error)}. Check the URL, the credentials and that the server is running.`,
      );
    }
  }
  logger.info({ source: 'configured', url: shown }, 'using the configured PostgreSQL server');
  return { adminUrl: url, url, source: 'configured', stop: async () => {} };
}

async function findLocalServer(candidates: string[], timeoutMs: number, logger: PostgresLogger): Promise<string | undefined> {
  for (const candidate of candidates) {
    const url = normalizePostgresUrl(candidate);
    try {
      const mayCreate = await withClient(
        url,
        async (client) => {
          const result = await client.query<{ ok: boolean }>(
            'SELECT (rolsuper OR rolcreatedb) AS ok FROM pg_roles WHERE rolname = current_user',
          );
          return result.rows[0]?.ok === true;
        },
        timeoutMs,
      );
      if (mayCreate) return url;
      logger.debug({ url: redactPostgresUrl(url) }, 'local PostgreSQL reachable but may not create databases');
    } catch (error) {
      logger.debug({ url: redactPostgresUrl(url), err: errorMessage(error) }, 'no usable local PostgreSQL here');
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------
// Private cluster from Debian's binaries
// ---------------------------------------------------------------------------------------

const DEBIAN_POSTGRES_ROOT = '/usr/lib/postgresql';
const REQUIRED_BINARIES = ['initdb', 'pg_ctl', 'postgres'];
/** sun_path is 108 bytes; keep a margin for `.s.PGSQL.<port>.lock`. */
const MAX_SOCKET_PATH = 100;

interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runCommand(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { cwd: options.cwd, env: options.env ?? process.env, timeout: options.timeoutMs ?? 120_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') {
          // spawn failure (ENOENT...) or timeout kill: not an exit status
          reject(error);
          return;
        }
        resolve({ code: error ? Number(error.code) : 0, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

async function fileExists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

async function listInstalledMajors(): Promise<Array<{ major: string; binDir: string }>> {
  let entries: string[];
  try {
    entries = await fs.readdir(DEBIAN_POSTGRES_ROOT);
  } catch {
    return [];
  }
  const found: Array<{ major: string; binDir: string }> = [];
  for (const entry of entries) {
    if (!/^\d+(\.\d+)?$/.test(entry)) continue;
    const binDir = path.join(DEBIAN_POSTGRES_ROOT, entry, 'bin');
    const complete = await Promise.all(REQUIRED_BINARIES.map((bin) => fileExists(path.join(binDir, bin))));
    if (complete.every(Boolean)) found.push({ major: entry, binDir });
  }
  return found.sort((a, b) => Number.parseFloat(b.major) - Number.parseFloat(a.major));
}

async function installPostgresPackage(logger: PostgresLogger): Promise<void> {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  logger.info({}, 'PostgreSQL binaries not found: running apt-get install -y postgresql');
  let result = await runCommand('apt-get', ['install', '-y', 'postgresql'], { env, timeoutMs: 600_000 });
  if (result.code !== 0) {
    logger.info({}, 'apt-get install failed; refreshing the package lists and retrying');
    await runCommand('apt-get', ['update'], { env, timeoutMs: 600_000 });
    result = await runCommand('apt-get', ['install', '-y', 'postgresql'], { env, timeoutMs: 600_000 });
  }
  if (result.code !== 0) {
    throw new PostgresSetupError(
      `apt-get install -y postgresql failed (exit ${result.code}): ${lastLines(result.stderr || result.stdout, 5)}. Install PostgreSQL by hand or configure a server URL.`,
    );
  }
}

async function chooseBinDir(opts: ResolvePostgresOptions, initialisedMajor: string | undefined, logger: PostgresLogger): Promise<string> {
  if (opts.binDir) {
    const missing = [];
    for (const bin of REQUIRED_BINARIES) if (!(await fileExists(path.join(opts.binDir, bin)))) missing.push(bin);
    if (missing.length) throw new PostgresSetupError(`PostgreSQL binaries ${missing.join(', ')} not found in ${opts.binDir}.`);
    return opts.binDir;
  }
  let installed = await listInstalledMajors();
  if (installed.length === 0) {
    if (opts.allowInstall && isRoot()) {
      await installPostgresPackage(logger);
      installed = await listInstalledMajors();
    }
    if (installed.length === 0) {
      throw new PostgresSetupError(
        `No PostgreSQL server found: nothing reachable on this machine and no server binaries in ${DEBIAN_POSTGRES_ROOT}/<version>/bin. ` +
          (isRoot()
            ? 'Run "apt-get install -y postgresql" (or allow the installer to do it), or configure the URL of an existing server.'
            : 'Ask an administrator to run "sudo apt-get install -y postgresql", or configure the URL of an existing server.'),
      );
    }
  }
  if (initialisedMajor !== undefined) {
    const same = installed.find((candidate) => candidate.major === initialisedMajor);
    if (!same) {
      throw new PostgresSetupError(
        `The private PostgreSQL data directory was created by PostgreSQL ${initialisedMajor}, but only ${installed.map((c) => c.major).join(', ')} is installed. Install postgresql-${initialisedMajor}, or move the data directory away to start a fresh cluster.`,
      );
    }
    return same.binDir;
  }
  const newest = installed[0];
  if (!newest) throw new PostgresSetupError('No PostgreSQL binaries found.');
  return newest.binDir;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function lastLines(text: string, count: number): string {
  return text.trim().split('\n').slice(-count).join(' | ');
}

/** Single-quotes a value for the /bin/sh command line pg_ctl builds from `-o`. */
function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return pgErrorCode(error) === 'EPERM';
  }
}

/** True while `pid` runs; an exited process waiting to be reaped (zombie) counts as gone. */
async function processRunning(pid: number): Promise<boolean> {
  if (!processAlive(pid)) return false;
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (stat === undefined) return processAlive(pid);
  // "pid (comm) S ...": the state follows the last ')' since comm may contain spaces
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
}

async function readPostmasterPid(dataDirectory: string): Promise<number | undefined> {
  const text = await fs.readFile(path.join(dataDirectory, 'postmaster.pid'), 'utf8').catch(() => undefined);
  const pid = Number.parseInt(text?.split('\n')[0] ?? '', 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/**
 * A lock file serialising provisioning of one data directory across processes (initdb and
 * start must not run twice at once). A lock whose holder process is gone is taken over.
 */
async function acquireFileLock(lockPath: string, timeoutMs: number): Promise<() => Promise<void>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const handle = await fs.open(lockPath, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      return () => fs.rm(lockPath, { force: true });
    } catch (error) {
      if (pgErrorCode(error) !== 'EEXIST') throw error;
    }
    const holder = Number.parseInt(await fs.readFile(lockPath, 'utf8').catch(() => ''), 10);
    const stat = await fs.stat(lockPath).catch(() => undefined);
    const stale = Number.isFinite(holder) && holder > 0 ? !processAlive(holder) : stat !== undefined && Date.now() - stat.mtimeMs > 5000;
    if (stale) {
      await fs.rm(lockPath, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new PostgresSetupError(`Timed out waiting for ${lockPath} (held by process ${holder || 'unknown'}) while provisioning PostgreSQL.`);
    }
    await sleep(100);
  }
}

interface PrivateCluster {
  adminUrl: string;
  port: number;
  dataDirectory: string;
  stop(): Promise<void>;
}

async function startPrivateCluster(opts: ResolvePostgresOptions, logger: PostgresLogger): Promise<PrivateCluster> {
  const baseDir = path.resolve(opts.dataDir);
  const clusterRoot = path.join(baseDir, 'postgres');
  const dataDirectory = path.join(clusterRoot, 'data');
  const logFile = path.join(clusterRoot, 'postgres.log');
  await fs.mkdir(clusterRoot, { recursive: true });

  const release = await acquireFileLock(path.join(clusterRoot, 'provision.lock'), 120_000);
  try {
    const versionFile = path.join(dataDirectory, 'PG_VERSION');
    const initialisedMajor = (await fs.readFile(versionFile, 'utf8').catch(() => undefined))?.trim();
    const binDir = await chooseBinDir(opts, initialisedMajor, logger);
    const asRoot = isRoot();

    if (asRoot) await prepareForPostgresUser(baseDir, clusterRoot);

    // initdb refuses to run as root, so as root every server binary runs as `postgres`.
    const run = (binary: string, args: string[], timeoutMs?: number) =>
      asRoot
        ? runCommand('runuser', ['-u', 'postgres', '--', path.join(binDir, binary), ...args], { cwd: clusterRoot, timeoutMs })
        : runCommand(path.join(binDir, binary), args, { cwd: clusterRoot, timeoutMs });

    if (initialisedMajor === undefined) {
      const leftovers = await fs.readdir(dataDirectory).catch(() => [] as string[]);
      if (leftovers.length > 0) {
        throw new PostgresSetupError(
          `${dataDirectory} exists but is not a PostgreSQL data directory (no PG_VERSION). Move it away so a fresh cluster can be created there.`,
        );
      }
      logger.info({ dataDirectory, binDir }, 'initialising a private PostgreSQL cluster');
      const init = await run('initdb', ['-D', dataDirectory, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-locale', '--no-sync']);
      if (init.code !== 0) {
        throw new PostgresSetupError(`initdb failed (exit ${init.code}): ${lastLines(init.stderr || init.stdout, 6)}`);
      }
    }

    const status = await run('pg_ctl', ['-D', dataDirectory, 'status']);
    if (status.code === 0) {
      // Left running by an earlier process (or a crashed one): adopt it.
      const port = await runningPort(dataDirectory);
      const adminUrl = `postgresql://postgres@127.0.0.1:${port}/postgres`;
      await withClient(adminUrl, (client) => client.query('SELECT 1'), 5000).catch((error: unknown) => {
        throw new PostgresSetupError(`A private PostgreSQL cluster is already running in ${dataDirectory} on port ${port} but refuses connections (${errorMessage(error)}). Stop it with pg_ctl -D ${dataDirectory} stop.`);
      });
      logger.info({ port, dataDirectory }, 'reusing the running private PostgreSQL cluster');
      return makeHandle(adminUrl, port, dataDirectory, await readPostmasterPid(dataDirectory), run, logger);
    }

    const socketDir = Buffer.byteLength(path.join(clusterRoot, '.s.PGSQL.65535.lock')) <= MAX_SOCKET_PATH ? clusterRoot : '';
    for (let attempt = 1; ; attempt++) {
      const port = opts.port ?? (await freePort());
      const serverOptions = [
        `-p ${port}`,
        '-c listen_addresses=127.0.0.1',
        `-c unix_socket_directories=${shellQuote(socketDir)}`,
        '-c fsync=off',
        '-c synchronous_commit=off',
        '-c full_page_writes=off',
      ].join(' ');
      const started = await run('pg_ctl', ['-D', dataDirectory, '-l', logFile, '-w', '-t', '60', '-o', serverOptions, 'start'], 90_000);
      if (started.code === 0) {
        const adminUrl = `postgresql://postgres@127.0.0.1:${port}/postgres`;
        await withClient(adminUrl, (client) => client.query('SELECT 1'), 5000);
        logger.info({ port, dataDirectory }, 'started a private PostgreSQL cluster');
        return makeHandle(adminUrl, port, dataDirectory, await readPostmasterPid(dataDirectory), run, logger);
      }
      const serverLog = await fs.readFile(logFile, 'utf8').catch(() => '');
      const portTaken = /could not bind|address already in use|could not create any TCP\/IP sockets/i.test(serverLog);
      if (portTaken && opts.port === undefined && attempt < 3) {
        logger.warn({ port }, 'port taken while starting the private PostgreSQL cluster, trying another');
        continue;
      }
      throw new PostgresSetupError(
        `Could not start the private PostgreSQL cluster in ${dataDirectory} on port ${port} (pg_ctl exit ${started.code}): ${lastLines(serverLog || started.stderr, 6)}. Full log: ${logFile}`,
      );
    }
  } finally {
    await release();
  }
}

/** As root: hand the cluster directory to `postgres` and make sure that user can reach it. */
async function prepareForPostgresUser(baseDir: string, clusterRoot: string): Promise<void> {
  const userCheck = await runCommand('id', ['-u', 'postgres']);
  if (userCheck.code !== 0) {
    throw new PostgresSetupError('There is no "postgres" system user to run the private cluster as (initdb refuses root). Install the postgresql package, which creates it.');
  }
  const chown = await runCommand('chown', ['-R', 'postgres:postgres', clusterRoot]);
  if (chown.code !== 0) throw new PostgresSetupError(`chown of ${clusterRoot} failed: ${lastLines(chown.stderr, 3)}`);
  // The data dir is ours: allow traversal (not listing) so `postgres` can reach the cluster.
  const stat = await fs.stat(baseDir);
  if ((stat.mode & 0o001) === 0) await fs.chmod(baseDir, (stat.mode & 0o7777) | 0o011);
  const reach = await runCommand('runuser', ['-u', 'postgres', '--', 'test', '-w', clusterRoot], { cwd: '/' });
  if (reach.code !== 0) {
    let blocking = path.dirname(clusterRoot);
    for (let dir = path.parse(clusterRoot).root, rest = path.relative(dir, clusterRoot).split(path.sep); rest.length; ) {
      dir = path.join(dir, rest.shift() ?? '');
      const step = await runCommand('runuser', ['-u', 'postgres', '--', 'test', '-x', dir], { cwd: '/' });
      if (step.code !== 0) {
        blocking = dir;
        break;
      }
    }
    throw new PostgresSetupError(
      `The postgres user (which runs the private cluster, since initdb refuses root) cannot reach ${clusterRoot}: ${blocking} is not traversable by other users. Run "chmod o+x ${blocking}" or choose a data directory outside /root.`,
    );
  }
}

async function runningPort(dataDirectory: string): Promise<number> {
  // postmaster.pid: line 1 pid, 2 data dir, 3 start time, 4 port, 5 socket dir, 6 listen addr
  const lines = (await fs.readFile(path.join(dataDirectory, 'postmaster.pid'), 'utf8')).split('\n');
  const port = Number.parseInt(lines[3] ?? '', 10);
  if (!Number.isInteger(port) || port <= 0) {
    throw new PostgresSetupError(`Cannot read the port of the running cluster from ${dataDirectory}/postmaster.pid.`);
  }
  return port;
}

function makeHandle(
  adminUrl: string,
  port: number,
  dataDirectory: string,
  postmasterPid: number | undefined,
  run: (binary: string, args: string[], timeoutMs?: number) => Promise<CommandResult>,
  logger: PostgresLogger,
): PrivateCluster {
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      const fast = await run('pg_ctl', ['-D', dataDirectory, '-m', 'fast', '-w', '-t', '60', 'stop'], 90_000);
      let status = await run('pg_ctl', ['-D', dataDirectory, 'status']);
      if (fast.code !== 0 && status.code === 0) {
        logger.warn({ dataDirectory, err: lastLines(fast.stderr, 3) }, 'fast shutdown failed, forcing an immediate shutdown');
        await run('pg_ctl', ['-D', dataDirectory, '-m', 'immediate', '-w', '-t', '30', 'stop'], 60_000);
        status = await run('pg_ctl', ['-D', dataDirectory, 'status']);
      }
      if (status.code === 0) {
        throw new PostgresSetupError(`The private PostgreSQL cluster in ${dataDirectory} is still running after pg_ctl stop.`);
      }
      // pg_ctl returns once postmaster.pid is gone, which the postmaster removes just before
      // it exits (after its children): wait for the process itself so nothing is left behind.
      if (postmasterPid !== undefined) {
        const deadline = Date.now() + 15_000;
        while (await processRunning(postmasterPid)) {
          if (Date.now() > deadline) {
            throw new PostgresSetupError(`The postmaster (pid ${postmasterPid}) of ${dataDirectory} did not exit after pg_ctl stop.`);
          }
          await sleep(20);
        }
      }
      logger.info({ port, dataDirectory }, 'stopped the private PostgreSQL cluster');
    })();
    // a failed stop may be retried; a successful one is remembered (stop() is idempotent)
    stopping.catch(() => {
      stopping = undefined;
    });
    return stopping;
  };
  return { adminUrl, port, dataDirectory, stop };
}
