/**
 * README command 1, end to end, as a new user runs it:
 * - the launcher brings the platform up, GET /pepeunit answers, readiness reports every dependency
 *   up, and Ctrl-C (SIGINT) leaves no process behind;
 * - a device created through the quick start, configured only from its env.json the way the
 *   reference clients read it (REST base `PU_HTTP_TYPE://PU_DOMAIN` + prefixes, MQTT at
 *   `PU_MQTT_HOST:PU_MQTT_PORT`), fetches its env and schema and publishes state;
 * - the second start in the same checkout is ready again with the same ports, and the same device
 *   still works;
 * - two fresh checkouts started at the same moment both come up, each with its own database and
 *   ports.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createSampleRepository, type SampleRepository } from '../../backend/test/firmware/unit-fixture.ts';
import { UnitSimulator, type UnitEnv } from '../src/simulator.ts';
import { waitFor } from '../src/wait.ts';

const root = resolve(import.meta.dirname, '../..');
const api = '/pepeunit/api/v1';
let scratch = '';
let registryDir = '';
let sample: SampleRepository;
const launchers: Launcher[] = [];

/** PIDs of live processes started by the launcher (they carry PU_PARENT_PID=<launcher pid>). */
function descendants(launcherPid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const environ = readFileSync(`/proc/${entry}/environ`, 'utf8');
      if (environ.split('\0').includes(`PU_PARENT_PID=${launcherPid}`)) found.push(Number(entry));
    } catch {
      /* process ended or not readable */
    }
  }
  return found;
}

interface Launcher {
  readonly child: ChildProcess;
  readonly dataDir: string;
  output(): string;
  /** `http://127.0.0.1:<port>/pepeunit` once up. */
  base: string;
  mqttUrl: string;
  readyAfterMs: number;
  exited: Promise<number | null>;
}

async function launch(dataDir: string): Promise<Launcher> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PU_DATA_DIR: dataDir,
    PU_PORT_REGISTRY_DIR: registryDir,
    PU_GIT_ALLOWED_PROTOCOLS: 'https,http,file', // the sample repository is a local bare repo
    PU_STATE_SEND_INTERVAL: '2', // states of the two phases are seconds apart, not a minute
  };
  // The launcher's own discovery is under test: no configured database, broker or ClickHouse.
  for (const name of ['PU_SQLALCHEMY_DATABASE_URL', 'PU_CLICKHOUSE_DATABASE_URL', 'PU_MQTT_HOST', 'PU_BACKEND_PORT']) delete env[name];
  const started = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'scripts/platform.ts')], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const launcher: Launcher = {
    child,
    dataDir,
    output: () => output,
    base: '',
    mqttUrl: '',
    readyAfterMs: 0,
    exited: new Promise((r) => child.once('exit', (code) => r(code))),
  };
  launchers.push(launcher);
  await waitFor(() => output.includes('Press Ctrl-C to stop.') || child.exitCode !== null, { timeoutMs: 120_000, what: 'the launcher to come up' });
  assert.ok(output.includes('Press Ctrl-C to stop.'), `launcher did not come up:\n${output}`);
  launcher.base = /Instance info\s+(\S+)/.exec(output)?.[1] ?? '';
  launcher.mqttUrl = /MQTT\s+(mqtt:\/\/\S+)/.exec(output)?.[1] ?? '';
  assert.ok(launcher.base && launcher.mqttUrl, output);
  // Readiness: ready within 60 s of the start.
  await waitFor(async () => (await fetch(`${launcher.base}/health/ready`).catch(() => null))?.status === 200, { timeoutMs: Math.max(1, 60_000 - (Date.now() - started)), what: 'readiness ready within 60 s' });
  launcher.readyAfterMs = Date.now() - started;
  return launcher;
}

/**
 * The embedded ClickHouse requires the password the launcher generated into secrets.env, and
 * neither it nor the logs are readable by other users or hold the password (docs/SECURITY.md).
 */
async function assertSecretsKept(launcher: Launcher): Promise<void> {
  const { dataDir } = launcher;
  const output = launcher.output();
  const secretsFile = join(dataDir, 'secrets.env');
  assert.equal(statSync(secretsFile).mode & 0o777, 0o600);
  assert.equal(statSync(dataDir).mode & 0o066, 0, 'the data directory is not readable or writable by others');
  const password = /^PU_EMBEDDED_CLICKHOUSE_PASSWORD=(.+)$/m.exec(readFileSync(secretsFile, 'utf8'))?.[1];
  assert.ok(password && password.length >= 24, 'a generated ClickHouse password');
  const clickhouseUrl = /ClickHouse\s+(http\S+)/.exec(output)?.[1];
  assert.ok(clickhouseUrl && !clickhouseUrl.includes('@'), `the ClickHouse URL is printed without credentials: ${clickhouseUrl}`);
  const clickhouseBase = new URL(clickhouseUrl).origin;
  const anonymous = await fetch(`${clickhouseBase}/?query=SELECT%201`);
  assert.equal(anonymous.status, 403);
  assert.equal(anonymous.headers.get('x-clickhouse-exception-code'), '516');
  const authorised = await fetch(`${clickhouseBase}/?query=SELECT%201`, { headers: { 'X-ClickHouse-User': 'default', 'X-ClickHouse-Key': password } });
  assert.equal(await authorised.text(), '1\n');
  assert.equal(statSync(join(dataDir, 'logs')).mode & 0o777, 0o700);
  for (const log of readdirSync(join(dataDir, 'logs'))) {
    assert.equal(statSync(join(dataDir, 'logs', log)).mode & 0o777, 0o600, log);
    assert.ok(!readFileSync(join(dataDir, 'logs', log), 'utf8').includes(password), `${log} does not hold the ClickHouse password`);
  }
  assert.ok(!output.includes(password), 'the launcher does not print the password');
}

async function stop(launcher: Launcher): Promise<void> {
  launcher.child.kill('SIGINT');
  const code = await launcher.exited;
  assert.equal(code, 0, launcher.output());
  assert.match(launcher.output(), /All processes stopped\./);
  await waitFor(() => descendants(launcher.child.pid!).length === 0, { what: 'no process left behind' });
  await assert.rejects(fetch(launcher.base), 'the backend port is closed');
}

async function call(base: string, method: string, path: string, token: string, body?: unknown) {
  const res = await fetch(`${base}${api}${path}`, {
    method,
    headers: { ...(token ? { 'x-auth-token': token } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let parsed: any = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body: parsed };
}

before(() => {
  scratch = mkdtempSync(join(tmpdir(), 'pepeunit-launcher-'));
  registryDir = join(scratch, 'port-registry');
});

after(() => {
  for (const launcher of launchers) {
    if (launcher.child.exitCode === null) launcher.child.kill('SIGKILL');
    for (const pid of descendants(launcher.child.pid!)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

test('up, a device configured from its env.json, Ctrl-C, up again: same ports, the device still works', { timeout: 600_000 }, async (t) => {
  sample = await createSampleRepository(join(scratch, 'sample'));
  const dataDir = join(scratch, 'checkout-a');
  const first = await launch(dataDir);
  t.diagnostic(`first start ready after ${first.readyAfterMs} ms`);
  const info = await fetch(first.base);
  assert.equal(info.status, 200);
  assert.equal(((await info.json()) as { name: string }).name, 'pepeunit-ts');
  const readiness = (await (await fetch(`${first.base}/health/ready`)).json()) as { checks: Record<string, { up: boolean }> };
  assert.equal(readiness.checks.postgres?.up, true);
  assert.equal(readiness.checks.clickhouse?.up, true);
  assert.equal(readiness.checks.broker?.up, true);
  assert.ok(descendants(first.child.pid!).length >= 4, 'clickhouse, broker, backend and ingest processes');
  await assertSecretsKept(first);
  const state = JSON.parse(readFileSync(join(dataDir, 'platform.json'), 'utf8')) as { database: string; ports: Record<string, number> };
  assert.match(state.database, /^pepeunit_[0-9a-f]{8}$/, 'a database of its own');
  assert.equal(first.base, `http://127.0.0.1:${state.ports.backend}/pepeunit`);

  // A user, a repo and a unit through the public API.
  const base = new URL(first.base).origin;
  assert.equal((await call(base, 'POST', '/users', '', { login: 'quick_admin', password: 'Passw0rd!' })).status, 201);
  assert.equal((await call(base, 'POST', '/users', '', { login: 'quick_owner', password: 'Passw0rd!' })).status, 201);
  const token = (await call(base, 'POST', '/users/auth', '', { credentials: 'quick_owner', password: 'Passw0rd!' })).body.token as string;
  const registry = await call(base, 'POST', '/repository_registry', token, { platform: 'Github', repository_url: sample.url, is_public_repository: true });
  assert.equal(registry.status, 201, JSON.stringify(registry.body));
  const repo = await call(base, 'POST', '/repos', token, { repository_registry_uuid: registry.body.uuid, default_branch: 'main', visibility_level: 'Public', name: 'quick_repo', is_compilable_repo: false });
  assert.equal(repo.status, 201, JSON.stringify(repo.body));
  const unit = await call(base, 'POST', '/units', token, { repo_uuid: repo.body.uuid, visibility_level: 'Public', name: 'quick_unit', is_auto_update_from_repo_unit: true });
  assert.equal(unit.status, 201, JSON.stringify(unit.body));
  const envBody = (await call(base, 'GET', `/units/env/${unit.body.uuid}`, token)).body;
  const env = (typeof envBody === 'string' ? JSON.parse(envBody) : envBody) as UnitEnv;

  // What the reference clients compute from env.json must point at this platform.
  const restBase = `${String(env.PU_HTTP_TYPE)}://${env.PU_DOMAIN}${String(env.PU_APP_PREFIX)}${String(env.PU_API_ACTUAL_PREFIX)}`;
  assert.equal(restBase, `${base}${api}`.replace('127.0.0.1', 'localhost'));
  assert.equal(`mqtt://${String(env.PU_MQTT_HOST)}:${String(env.PU_MQTT_PORT)}`, first.mqttUrl);

  const runDevice = async (phase: string) => {
    const device = await UnitSimulator.start({ env, schema: { input_base_topic: {}, output_base_topic: {} }, restFromEnv: true, stateIntervalMs: 0, commitVersion: `image-${phase}` });
    try {
      const fetchedEnv = await device.downloadEnv();
      assert.equal(fetchedEnv.PU_DOMAIN, env.PU_DOMAIN, 'env.json fetched over REST from the env.json address');
      const schema = await device.downloadSchema();
      assert.ok(schema.output_base_topic?.['state/pepeunit']?.[0], 'schema fetched');
      await device.publishState();
      await waitFor(
        async () => {
          const read = await call(base, 'GET', `/units/${unit.body.uuid}`, token);
          return read.body?.current_commit_version === `image-${phase}`;
        },
        { timeoutMs: 30_000, what: `the state of ${phase} stored` },
      );
    } finally {
      await device.close();
    }
  };
  await runDevice('first');
  await stop(first);

  // Second start in the same checkout: same ports, same database, and the same env.json works.
  const second = await launch(dataDir);
  t.diagnostic(`second start ready after ${second.readyAfterMs} ms`);
  assert.equal(second.base, first.base, 'same REST port');
  assert.equal(second.mqttUrl, first.mqttUrl, 'same MQTT port');
  assert.deepEqual(JSON.parse(readFileSync(join(dataDir, 'platform.json'), 'utf8')), state, 'nothing re-chosen');
  await runDevice('second');
  await stop(second);
});

test('two fresh checkouts started at the same moment both come up, each with its own database and ports', { timeout: 600_000 }, async () => {
  const [b, c] = await Promise.all([launch(join(scratch, 'checkout-b')), launch(join(scratch, 'checkout-c'))]);
  const stateOf = (l: Launcher) => JSON.parse(readFileSync(join(l.dataDir, 'platform.json'), 'utf8')) as { database: string; ports: Record<string, number> };
  const [sb, sc] = [stateOf(b), stateOf(c)];
  assert.notEqual(sb.database, sc.database);
  for (const service of ['backend', 'mqtt', 'emqx_api', 'clickhouse']) assert.notEqual(sb.ports[service], sc.ports[service], `${service} ports differ`);
  for (const l of [b, c]) assert.equal(((await (await fetch(l.base)).json()) as { name: string }).name, 'pepeunit-ts');
  await Promise.all([stop(b), stop(c)]);
});
