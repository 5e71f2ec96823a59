/**
 * Quick start: brings the whole platform up on embedded defaults and stops it on Ctrl-C.
 *
 *   PostgreSQL  PU_SQLALCHEMY_DATABASE_URL, else the local server, else a private cluster in .data/
 *   ClickHouse  PU_CLICKHOUSE_DATABASE_URL, else the embedded chdb engine served over HTTP
 *   Broker      PU_MQTT_HOST, else the embedded EMQX-compatible broker (aedes)
 *   Backend     backend/src/server.ts     Ingest  ingest-go-compatible/src/main.ts
 *
 * Ports are chosen at the first start (the standard one when free, else the next free one) and
 * recorded in <data>/platform.json with this checkout's own Postgres database; later starts reuse
 * them, and a recorded port that another program holds stops the start with a clear message
 * (`--move-ports` re-chooses). See scripts/quickstart/.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startService, type RunningService } from '@pepeunit/common';
import { createDatabase, databaseUrl, normalizePostgresUrl } from '@pepeunit/common/postgres';
import { resolvePostgres } from '@pepeunit/common/postgres-provision';
import { loadOrCreateSecrets } from '@pepeunit/common/secrets-file';
import { writeTrackedErrors } from '@pepeunit/common/error-tracker';
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import pg from 'pg';
import { PortTakenError, planPorts, type PortPlan } from './quickstart/ports.ts';
import { initialDatabase, readPlatformState, writePlatformState, type QuickstartService } from './quickstart/state.ts';

const root = resolve(import.meta.dirname, '..');
const dataDir = resolve(process.env.PU_DATA_DIR ?? join(root, '.data'));
const logDir = join(dataDir, 'logs');
// Secrets, logs and databases live here: not readable by other users. A private Postgres run as
// root needs others to traverse (not list) the data directory, so only read/write bits go.
mkdirSync(dataDir, { recursive: true, mode: 0o700 });
chmodSync(dataDir, statSync(dataDir).mode & 0o711);
for (const dir of [logDir, join(dataDir, 'repo_cache')]) {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}
const tsx = ['--import', 'tsx'];
const movePorts = process.argv.includes('--move-ports');
const started: RunningService[] = [];
let stopPostgres: () => Promise<void> = async () => {};
let stopping = false;

function say(line: string): void {
  process.stdout.write(line + '\n');
}

/** Secrets generated once per data directory and reused, so tokens and encrypted data survive restarts. */
function platformSecrets(): Record<string, string> {
  const file = join(dataDir, 'secrets.env');
  const before = existsSync(file) ? readFileSync(file, 'utf8') : null;
  const secrets = loadOrCreateSecrets(file, {
    PU_SECRET_KEY: () => randomBytes(32).toString('base64'),
    PU_ENCRYPT_KEY: () => randomBytes(32).toString('base64'),
    PU_STATIC_SALT: () => randomBytes(32).toString('base64'),
    PU_EMQX_API_KEY: () => 'pepeunit-backend',
    PU_EMQX_API_SECRET: () => randomBytes(24).toString('base64url'),
    // The embedded ClickHouse's password (user `default`); URL-safe, it goes into PU_CLICKHOUSE_DATABASE_URL.
    PU_EMBEDDED_CLICKHOUSE_PASSWORD: () => randomBytes(24).toString('base64url'),
  });
  // Say it when secrets are made: losing the file loses every token and encrypted value.
  const added = Object.keys(secrets).filter((name) => !(before ?? '').includes(`${name}=`));
  if (added.length > 0) {
    say(`  Generated ${before === null ? 'the instance secrets' : `missing secrets (${added.join(', ')})`} in ${file} (mode 600).`);
    say('  Keep this file: JWTs, encrypted data and passwords depend on it. Set PU_SECRET_KEY, PU_ENCRYPT_KEY and');
    say('  PU_STATIC_SALT in the environment to use your own instead.');
  }
  return secrets;
}

async function shutdown(code: number): Promise<never> {
  if (stopping) return new Promise<never>(() => {});
  stopping = true;
  say('\nStopping Pepeunit TS ...');
  for (const service of [...started].reverse()) {
    const exit = await service.stop();
    say(`  ${service.name} stopped${exit ? ` (exit ${exit})` : ''}`);
  }
  await stopPostgres();
  say('All processes stopped.');
  process.exit(code);
}

function portOverride(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${name}=${JSON.stringify(raw)} is not a port (1-65535)`);
  return port;
}

/** This checkout's database and ports: recorded at the first start, reused afterwards. */
async function platformState(): Promise<{ database: string; plan: PortPlan }> {
  const previous = readPlatformState(dataDir);
  const initial = previous ? undefined : initialDatabase(dataDir);
  const database = previous?.database ?? initial!.database;
  if (initial?.legacy) {
    say(`  Note: this data folder predates per-checkout databases and keeps using the shared database "pepeunit".`);
    say(`        Other checkouts made before this version may share it; start from an empty PU_DATA_DIR to get a private one.`);
  }
  const services: QuickstartService[] = ['backend'];
  if (!process.env.PU_MQTT_HOST) services.push('mqtt', 'emqx_api');
  if (!process.env.PU_CLICKHOUSE_DATABASE_URL) services.push('clickhouse');
  const plan = await planPorts({
    dataDir,
    services,
    recorded: previous?.ports ?? {},
    overrides: {
      backend: portOverride('PU_BACKEND_PORT'),
      mqtt: portOverride('PU_EMBEDDED_MQTT_PORT'),
      emqx_api: portOverride('PU_EMBEDDED_EMQX_API_PORT'),
      clickhouse: portOverride('PU_EMBEDDED_CLICKHOUSE_PORT'),
    },
    movePorts,
    commit: (chosen) => writePlatformState(dataDir, { version: 1, database, ports: { ...previous?.ports, ...chosen.ports } }),
  });
  for (const move of plan.moved) say(`  Moved the ${move.service} port ${move.from} -> ${move.to} (recorded in ${join(dataDir, 'platform.json')}).`);
  if (plan.moved.some((m) => m.service === 'backend' || m.service === 'mqtt')) {
    say('  Units set up before this move have the old port in their env.json: download it again (GET /pepeunit/api/v1/units/env/{uuid}).');
  }
  return { database, plan };
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const { database, plan } = await platformState();
  const ports = plan.ports;
  const { PU_EMBEDDED_CLICKHOUSE_PASSWORD: clickhousePassword, ...secrets } = platformSecrets();
  const env: NodeJS.ProcessEnv = {
    PU_DOMAIN: 'localhost',
    PU_SECURE: 'False',
    PU_MQTT_SECURE: 'False',
    PU_FF_TELEGRAM_BOT_ENABLE: 'False',
    PU_FF_GRAFANA_INTEGRATION_ENABLE: 'False',
    PU_SAVE_REPO_PATH: join(dataDir, 'repo_cache'),
    PU_BACKEND_HOST: '127.0.0.1',
    // Devices on this machine reach REST at http://localhost:<port>: the port goes into the
    // PU_DOMAIN of their env.json (topics and tokens keep the bare domain).
    PU_PUBLIC_PORT: String(ports.backend),
    ...secrets,
    ...process.env, // what the operator sets always wins
  };

  // PostgreSQL
  say('Preparing PostgreSQL ...');
  const postgres = await resolvePostgres({
    url: process.env.PU_SQLALCHEMY_DATABASE_URL,
    dataDir,
    allowInstall: true,
  });
  stopPostgres = postgres.stop;
  if (!process.env.PU_SQLALCHEMY_DATABASE_URL) {
    await createDatabase(postgres.adminUrl, database);
    env.PU_SQLALCHEMY_DATABASE_URL = databaseUrl(postgres.adminUrl, database);
  }
  say(`  PostgreSQL: ${postgres.source}${process.env.PU_SQLALCHEMY_DATABASE_URL ? '' : `, database ${database}`}`);

  // ClickHouse
  if (!process.env.PU_CLICKHOUSE_DATABASE_URL) {
    say('Starting embedded ClickHouse (chdb) ...');
    const port = ports.clickhouse;
    const clickhouse = await startService({
      name: 'clickhouse',
      command: process.execPath,
      args: [...tsx, join(root, 'clickhouse-schemas/src/server-cli.ts'), '--port', String(port), '--data', join(dataDir, 'clickhouse')],
      // In the environment, not the arguments: other users can read a command line.
      env: { PU_EMBEDDED_CLICKHOUSE_USER: 'default', PU_EMBEDDED_CLICKHOUSE_PASSWORD: clickhousePassword },
      logFile: join(logDir, 'clickhouse.log'),
      readyLine: true,
      timeoutMs: 60_000,
    });
    started.push(clickhouse);
    const url = new URL(String(clickhouse.ready.url));
    url.username = 'default';
    url.password = String(clickhousePassword);
    url.pathname = '/pepeunit';
    env.PU_CLICKHOUSE_DATABASE_URL = url.toString();
  }

  // MQTT broker
  if (!process.env.PU_MQTT_HOST) {
    say('Starting embedded MQTT broker (EMQX-compatible) ...');
    const mqttPort = ports.mqtt;
    const apiPort = ports.emqx_api;
    const broker = await startService({
      name: 'broker',
      command: process.execPath,
      args: [...tsx, join(root, 'emqx-rules/src/embedded/cli.ts'), '--mqtt-port', String(mqttPort), '--api-port', String(apiPort), '--state-file', join(dataDir, 'broker-state.json')],
      env: { EMQX_API_KEY: env.PU_EMQX_API_KEY, EMQX_API_SECRET: env.PU_EMQX_API_SECRET },
      logFile: join(logDir, 'broker.log'),
      readyLine: true,
      timeoutMs: 30_000,
    });
    started.push(broker);
    env.PU_MQTT_HOST = '127.0.0.1';
    env.PU_MQTT_PORT = String(mqttPort);
    env.PU_MQTT_API_PORT = String(apiPort);
    env.PU_EMQX_API_URL = `http://127.0.0.1:${apiPort}`;
  }

  // Backend
  say('Starting backend (migrations run at start) ...');
  const backendPort = ports.backend;
  env.PU_BACKEND_PORT = String(backendPort);
  const prefix = env.PU_APP_PREFIX ?? '/pepeunit';
  const base = `http://127.0.0.1:${backendPort}`;
  const backend = await startService({
    name: 'backend',
    command: process.execPath,
    args: [...tsx, join(root, 'backend/src/server.ts')],
    env,
    logFile: join(logDir, 'backend.log'),
    readyLine: true,
    timeoutMs: 90_000,
  });
  started.push(backend);

  // Ingest (configured only by PU_DP_* like the Go DataPipe)
  say('Starting ingest ...');
  const ingest = await startService({
    name: 'ingest',
    command: process.execPath,
    args: [...tsx, join(root, 'ingest-go-compatible/src/main.ts')],
    env: {
      PU_DP_DOMAIN: env.PU_DOMAIN,
      PU_DP_SECRET_KEY: env.PU_SECRET_KEY,
      PU_DP_SQLALCHEMY_DATABASE_URL: env.PU_SQLALCHEMY_DATABASE_URL,
      PU_DP_CLICKHOUSE_DATABASE_URL: env.PU_CLICKHOUSE_DATABASE_URL,
      PU_DP_MQTT_HOST: env.PU_MQTT_HOST,
      PU_DP_MQTT_PORT: env.PU_MQTT_PORT,
      PU_DP_REDIS_URL: env.PU_DP_REDIS_URL ?? '',
      PU_DP_INTAKE_MODE: env.PU_DP_INTAKE_MODE ?? 'rules',
      PU_DP_SHARE_GROUP: env.PU_DP_SHARE_GROUP ?? 'pepeunit-ingest',
    },
    logFile: join(logDir, 'ingest.log'),
    readyLine: true,
    timeoutMs: 60_000,
  });
  started.push(ingest);

  // Wait for readiness of the backend's dependencies.
  let readiness: unknown = null;
  for (let i = 0; i < 60; i++) {
    const res = await fetch(`${base}${prefix}/health/ready`).catch(() => null);
    readiness = res ? await res.json().catch(() => null) : null;
    if (res?.ok) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  const seconds = ((Date.now() - t0) / 1000).toFixed(1);
  say('');
  say(`Pepeunit TS is up (${seconds} s)`);
  say(`  Instance info   ${base}${prefix}`);
  say(`  API docs        ${base}${prefix}/docs`);
  say(`  OpenAPI         ${base}${prefix}${env.PU_API_V1_PREFIX ?? '/api/v1'}/openapi.json`);
  say(`  Readiness       ${base}${prefix}/health/ready  ${JSON.stringify((readiness as { status?: string } | null)?.status ?? 'unknown')}`);
  say(`  Metrics         ${base}${prefix}/metrics   ingest: ${String(ingest.ready.metricsUrl)}/metrics`);
  say(`  MQTT            mqtt://${env.PU_MQTT_HOST}:${env.PU_MQTT_PORT}`);
  if (env.PU_EMQX_API_URL) say(`  EMQX API        ${env.PU_EMQX_API_URL}/api/v5`);
  say(`  ClickHouse      ${String(env.PU_CLICKHOUSE_DATABASE_URL).replace(/\/\/[^@/]*@/, '//')}`);
  say(`  PostgreSQL      ${postgres.source}`);
  say(`  Logs            ${logDir}`);
  say('Press Ctrl-C to stop.');

  for (const service of started) {
    service.child.once('exit', (code) => {
      if (!stopping) {
        say(`\n${service.name} exited unexpectedly (code ${String(code)}); see ${join(logDir, service.name + '.log')}`);
        void recordChildCrash(String(env.PU_SQLALCHEMY_DATABASE_URL ?? ''), service.name, code).finally(() => void shutdown(1));
      }
    });
  }
}

/** A child that died is a crash of that process (error tracker, issue 13); the backend alerts the admin when it runs again. */
async function recordChildCrash(postgresUrl: string, name: string, code: number | null): Promise<void> {
  if (!postgresUrl) return;
  const pool = new pg.Pool({ connectionString: normalizePostgresUrl(postgresUrl), max: 1 });
  pool.on('error', () => {});
  const message = `${name} exited unexpectedly with code ${String(code)}`;
  const now = Date.now();
  try {
    await writeTrackedErrors(pool, `${name}@${hostname()}`, [
      { fingerprint: createHash('sha1').update(`crash\n${name} exited unexpectedly`).digest('hex'), kind: 'crash', level: 'fatal', message: `${name} exited unexpectedly`, sample: message, frames: '', count: 1, first: now, last: now },
    ]);
  } catch {
    // Best effort: the database may be what failed.
  } finally {
    await pool.end().catch(() => {});
  }
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => void shutdown(0));
}

main().catch(async (err: unknown) => {
  if (err instanceof PortTakenError) process.stderr.write(`\n${err.message}\n`);
  else process.stderr.write(`\nPepeunit TS failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  await shutdown(1);
});
