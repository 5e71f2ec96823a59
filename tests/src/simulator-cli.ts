/**
 * Runs one simulated unit by hand from its env.json and schema.json (downloaded from the
 * instance, or from a firmware archive).
 *
 *   node --import tsx tests/src/simulator-cli.ts --env ./env.json --schema ./schema.json \
 *     [--mqtt mqtt://127.0.0.1:1883] [--backend http://127.0.0.1:5000] [--commit <sha>] \
 *     [--state-interval <seconds>] [--log-every <seconds>] [--firmware tgz|tar|zip]
 *
 * --mqtt     broker URL (default mqtt://PU_MQTT_HOST:PU_MQTT_PORT from env.json)
 * --backend  backend origin for EnvUpdate/SchemaUpdate/firmware downloads (default none:
 *            commands are acknowledged, nothing is downloaded)
 * --commit   running version reported as pu_commit_version (default PU_COMMIT_VERSION)
 * --state-interval  seconds between states (default PU_STATE_SEND_INTERVAL)
 * --log-every       also publish an Info log line every N seconds (default off)
 * --firmware        download the archive in this format on Update
 *
 * Prints one JSON line per event (state, command, updated, env, schema, input) on stdout.
 * Ctrl-C (SIGINT) or SIGTERM disconnects and exits 0.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { UnitSimulator, type UnitEnv, type UnitSchema } from './simulator.ts';

function readJson<T>(path: string, what: string): T {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${what} ${path}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new Error(`${what} ${path} is not valid JSON: ${(err as Error).message}`);
  }
}

function seconds(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number of seconds >= 0, got ${JSON.stringify(value)}`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      env: { type: 'string' },
      schema: { type: 'string' },
      mqtt: { type: 'string' },
      backend: { type: 'string' },
      commit: { type: 'string' },
      'state-interval': { type: 'string' },
      'log-every': { type: 'string' },
      firmware: { type: 'string' },
    },
    strict: true,
  });
  if (!values.env || !values.schema) throw new Error('usage: simulator-cli.ts --env env.json --schema schema.json [--mqtt URL] [--backend URL] [--commit SHA] [--state-interval S] [--log-every S] [--firmware tgz|tar|zip]');
  const firmware = values.firmware;
  if (firmware !== undefined && !['tgz', 'tar', 'zip'].includes(firmware)) throw new Error('--firmware must be tgz, tar or zip');
  const env = readJson<UnitEnv>(values.env, 'env.json');
  const schema = readJson<UnitSchema>(values.schema, 'schema.json');
  const stateInterval = seconds('state-interval', values['state-interval']);
  const logEvery = seconds('log-every', values['log-every']);
  const print = (event: string, data: unknown) => process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), event, data })}\n`);

  const sim = await UnitSimulator.start({
    env,
    schema,
    mqttUrl: values.mqtt,
    backendUrl: values.backend,
    commitVersion: values.commit,
    stateIntervalMs: stateInterval === undefined ? undefined : stateInterval * 1000,
    fetchFirmware: (firmware as 'tgz' | 'tar' | 'zip' | undefined) ?? false,
    reconnectPeriodMs: 5_000,
    logger: { info: (o, m) => print('info', { m, o }), warn: (o, m) => print('warning', { m, o }) },
  });
  sim.on('error', (err: Error) => print('error', err.message));
  for (const name of ['state', 'command', 'updated', 'env', 'schema']) sim.on(name, (data: unknown) => print(name, data));
  sim.on('input', ({ topic, payload }: { topic: string; payload: Buffer }) => print('input', { topic, payload: payload.toString('utf8') }));
  print('connected', { unit: sim.unitUuid, commit: sim.commitVersion });
  await sim.publishState();
  await sim.log('Info', 'simulator started');
  let counter = 0;
  const logTimer = logEvery ? setInterval(() => void sim.log('Info', `tick ${++counter}`).catch(() => {}), logEvery * 1000) : null;

  const stop = (signal: string) => {
    print('stopping', { signal });
    if (logTimer) clearInterval(logTimer);
    void sim.close().then(() => process.exit(0));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((err: unknown) => {
  process.stderr.write(`simulator: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
