/**
 * Runs the embedded ClickHouse as its own process (chdb binds one data directory per process,
 * so the other services reach it over HTTP):
 *
 *   node --import tsx clickhouse-schemas/src/server-cli.ts --port 18123 --data ./data/clickhouse [--host 127.0.0.1]
 *
 * Environment fallbacks: PU_EMBEDDED_CLICKHOUSE_PORT, PU_EMBEDDED_CLICKHOUSE_DATA,
 * PU_EMBEDDED_CLICKHOUSE_HOST. Credentials (required, every query authenticates):
 * PU_EMBEDDED_CLICKHOUSE_PASSWORD, and PU_EMBEDDED_CLICKHOUSE_USER (default `default`). They come
 * from the environment only, never the command line (which other users can read in `ps`).
 * Once listening it prints exactly one line on stdout: {"event":"ready","url":"http://127.0.0.1:PORT"}.
 * Logs go to stderr. SIGTERM/SIGINT close the server and exit with code 0.
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { startEmbeddedClickHouse, type EmbeddedClickHouse } from './embedded-server.js';
import type { ClickHouseLogger } from './logger.js';

export interface ServerCliOptions {
  host: string;
  port: number;
  dataPath: string;
  auth: { username: string; password: string };
}

/** Parses `--port`, `--host`, `--data` (also `--flag=value`) with env fallbacks. Throws on bad input. */
export function parseServerCliArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ServerCliOptions {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const m = /^--(port|host|data)(?:=(.*))?$/.exec(arg);
    if (!m) {
      if (arg === '--help' || arg === '-h') throw new Error(usage());
      throw new Error(`unknown argument '${arg}'\n${usage()}`);
    }
    const value = m[2] ?? argv[++i];
    if (value === undefined || value === '') throw new Error(`--${m[1]} needs a value\n${usage()}`);
    values.set(m[1] as string, value);
  }
  const portText = values.get('port') ?? env.PU_EMBEDDED_CLICKHOUSE_PORT ?? '0';
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) throw new Error(`invalid port '${portText}' (expected 0..65535)`);
  const dataPath = values.get('data') ?? env.PU_EMBEDDED_CLICKHOUSE_DATA;
  if (!dataPath) throw new Error(`the data directory is required: --data <dir> or PU_EMBEDDED_CLICKHOUSE_DATA\n${usage()}`);
  const host = values.get('host') ?? env.PU_EMBEDDED_CLICKHOUSE_HOST ?? '127.0.0.1';
  const username = env.PU_EMBEDDED_CLICKHOUSE_USER || 'default';
  const password = env.PU_EMBEDDED_CLICKHOUSE_PASSWORD;
  if (!password) throw new Error(`PU_EMBEDDED_CLICKHOUSE_PASSWORD is required: every query authenticates (the quick start generates one into .data/secrets.env)\n${usage()}`);
  return { host, port, dataPath, auth: { username, password } };
}

function usage(): string {
  return 'usage: PU_EMBEDDED_CLICKHOUSE_PASSWORD=... [PU_EMBEDDED_CLICKHOUSE_USER=default] server-cli.ts --data <dir> [--port <n>|0] [--host 127.0.0.1]';
}

/** Logger writing JSON lines to stderr (stdout carries only the ready line). */
function stderrLogger(level: 'debug' | 'info'): ClickHouseLogger {
  const write = (lvl: string) => (obj: object, msg?: string) => {
    const fields = Object.fromEntries(
      Object.entries(obj).map(([k, v]) => [k, v instanceof Error ? { message: v.message, stack: v.stack } : v]),
    );
    process.stderr.write(`${JSON.stringify({ level: lvl, time: new Date().toISOString(), msg, ...fields })}\n`);
  };
  const noop = () => {};
  return { debug: level === 'debug' ? write('debug') : noop, info: write('info'), warn: write('warn'), error: write('error') };
}

export async function runServerCli(argv: readonly string[]): Promise<void> {
  let options: ServerCliOptions;
  try {
    options = parseServerCliArgs(argv);
  } catch (err) {
    process.stderr.write(`embedded ClickHouse: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const logger = stderrLogger(process.env.PU_LOG_LEVEL_OVERRIDE === 'debug' ? 'debug' : 'info');
  let server: EmbeddedClickHouse;
  try {
    server = await startEmbeddedClickHouse({ ...options, logger });
  } catch (err) {
    process.stderr.write(`embedded ClickHouse failed to start: ${(err as Error).message}\n`);
    process.exit(1);
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'embedded ClickHouse: stopping');
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`embedded ClickHouse: error while stopping: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.stdout.write(`${JSON.stringify({ event: 'ready', url: server.url })}\n`);
}

const invokedPath = process.argv[1] ? realpathSync(process.argv[1]) : undefined;
if (invokedPath && import.meta.url === pathToFileURL(invokedPath).href) {
  await runServerCli(process.argv.slice(2));
}
