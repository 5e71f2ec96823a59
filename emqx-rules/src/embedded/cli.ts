// Runs the embedded EMQX-compatible broker as a process.
//
//   node --import tsx emqx-rules/src/embedded/cli.ts --mqtt-port 1884 --api-port 18084
//
// Options: --mqtt-host (127.0.0.1), --mqtt-port (1883; 0 = free), --api-host (127.0.0.1),
// --api-port (18083; 0 = free), --state-file <path>, --api-key-file <path>, --log-level.
// API credentials: EMQX_API_KEY + EMQX_API_SECRET, and/or --api-key-file in EMQX's
// api_key.bootstrap_file format (one `key:secret[:role]` per line).
// Rules created through /api/v5/rules are kept in `<state-file>.rules.json` when --state-file is set.
// Prints one JSON line {"event":"ready","mqttUrl":...,"apiUrl":...} on stdout when listening;
// SIGTERM/SIGINT close it and exit 0. Logs go to stderr as JSON lines.
// First: makes the disabled `debug` calls of mqtt-packet/mqtt.js free (see common/src/quiet-debug.ts).
import '@pepeunit/common/quiet-debug';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Logger } from '../logger.js';
import { startEmbeddedBroker } from './broker.js';
import type { ApiKey } from './http-api.js';

const LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
type Level = (typeof LEVELS)[number];

function stderrLogger(minimum: Level): Logger {
  const rank = (level: Level): number => LEVELS.indexOf(level);
  const write = (level: Exclude<Level, 'silent'>) => (obj: unknown, msg?: string) => {
    if (rank(level) < rank(minimum)) return;
    const fields: Record<string, unknown> = typeof obj === 'string' ? { msg: obj } : { ...(obj as Record<string, unknown>), msg };
    if (fields.err instanceof Error) fields.err = { message: fields.err.message, stack: fields.err.stack };
    process.stderr.write(`${JSON.stringify({ level, time: new Date().toISOString(), ...fields })}\n`);
  };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}

function parsePort(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) > 65_535) throw new Error(`--${name} must be a port number 0..65535, got ${JSON.stringify(value)}`);
  return Number(value);
}

function readApiKeyFile(path: string): ApiKey[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new Error(`Cannot read --api-key-file ${path}: ${(error as Error).message}`);
  }
  const keys: ApiKey[] = [];
  text.split(/\r?\n/).forEach((line, index) => {
    const trimmed = line.trim();
    if (trimmed === '') return;
    const match = /^([^:]+):(.+?)(?::(administrator|viewer|publisher))?$/.exec(trimmed);
    if (!match) throw new Error(`--api-key-file ${path} line ${index + 1}: expected "key:secret" or "key:secret:role"`);
    keys.push({ key: match[1] as string, secret: match[2] as string });
  });
  return keys;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'mqtt-host': { type: 'string' },
      'mqtt-port': { type: 'string' },
      'api-host': { type: 'string' },
      'api-port': { type: 'string' },
      'state-file': { type: 'string' },
      'api-key-file': { type: 'string' },
      'log-level': { type: 'string' },
    },
    strict: true,
  });
  const level = (values['log-level'] ?? 'info') as Level;
  if (!LEVELS.includes(level)) throw new Error(`--log-level must be one of ${LEVELS.join(', ')}`);
  const logger = stderrLogger(level);

  const apiKeys: ApiKey[] = [];
  const envKey = process.env.EMQX_API_KEY;
  const envSecret = process.env.EMQX_API_SECRET;
  if (envKey || envSecret) {
    if (!envKey || !envSecret) throw new Error('Set both EMQX_API_KEY and EMQX_API_SECRET (or neither)');
    apiKeys.push({ key: envKey, secret: envSecret });
  }
  if (values['api-key-file']) apiKeys.push(...readApiKeyFile(values['api-key-file']));
  if (apiKeys.length === 0) throw new Error('No API key: set EMQX_API_KEY and EMQX_API_SECRET, or pass --api-key-file');

  const broker = await startEmbeddedBroker({
    mqttHost: values['mqtt-host'],
    mqttPort: parsePort('mqtt-port', values['mqtt-port'], 1883),
    apiHost: values['api-host'],
    apiPort: parsePort('api-port', values['api-port'], 18083),
    apiKeys,
    stateFile: values['state-file'],
    logger,
  });
  process.stdout.write(`${JSON.stringify({ event: 'ready', mqttUrl: broker.mqttUrl, apiUrl: broker.apiUrl, pid: process.pid })}\n`);

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping embedded broker');
    const force = setTimeout(() => {
      logger.error('shutdown took longer than 10 s, exiting');
      process.exit(1);
    }, 10_000);
    force.unref();
    broker.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((error: unknown) => {
  process.stderr.write(`embedded broker: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
