/**
 * Restarts on an existing data folder with devices connected (issue 9): the broker alone, the
 * backend alone, both with the backend first (broker down while it starts), and both with the
 * broker first (it restores an authenticator pointing at a backend that is not listening yet —
 * the order that left the backend disconnected forever). After each, readiness returns by itself,
 * the devices reconnect, and every state and log line published after the restart is stored
 * (counted, none silently dropped); the ingest's connection comes back too and a DataPipe value
 * published after the restart lands in Postgres.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { freePort, loadBackendConfig, loadIngestConfig, systemTopic, unitToken, type BackendConfig } from '@pepeunit/common';
import { startEmbeddedBroker } from '@pepeunit/emqx-rules';
import { startBackend, type RunningBackend } from '@pepeunit/backend';
import { startIngest, type IngestService } from '@pepeunit/ingest-go-compatible';
import { createTestDatabases, testBackendEnv, testLogger, type TestDatabases } from '../src/harness.ts';
import { waitFor } from '../src/wait.ts';

const api = '/pepeunit/api/v1';
const DEVICES = 4;
const LOGS_PER_DEVICE = 25;

let db: TestDatabases;
let dataDir = '';
let brokerState = '';
let mqttPort = 0;
let apiPort = 0;
let backendPort = 0;
let config: BackendConfig;
let broker: Awaited<ReturnType<typeof startEmbeddedBroker>> | undefined;
let backend: RunningBackend | undefined;
let ingest: IngestService | undefined;
let ownerToken = '';
const units: Array<{ uuid: string; node: string; input: string; client: MqttClient; received: string[] }> = [];

const startBroker = async () => {
  broker = await startEmbeddedBroker({ mqttPort, apiPort, stateFile: brokerState, apiKeys: [{ key: 'backend', secret: 'backend-secret' }] });
};
const stopBroker = async () => {
  await broker?.close();
  broker = undefined;
};
const startTheBackend = async () => {
  backend = await startBackend(config, testLogger);
};
const stopBackend = async () => {
  await backend?.close();
  backend = undefined;
};

async function readiness(): Promise<{ status: number; body: { status: string; checks: Record<string, { up: boolean; error?: string }> } | null }> {
  try {
    const res = await fetch(`http://127.0.0.1:${backendPort}/pepeunit/health/ready`);
    return { status: res.status, body: (await res.json()) as never };
  } catch {
    return { status: 0, body: null };
  }
}

async function waitReady(what: string): Promise<void> {
  await waitFor(async () => (await readiness()).status === 200, { timeoutMs: 60_000, what: `readiness after ${what}` });
}

async function countLogs(marker: string): Promise<number> {
  const rows = await db.clickhouse.query({
    query: 'SELECT count() AS n FROM unit_logs WHERE startsWith(text, {marker:String})',
    query_params: { marker },
    format: 'JSONEachRow',
  });
  return Number(((await rows.json()) as Array<{ n: string }>)[0]?.n ?? 0);
}

/** Devices whose stored state is the one carrying `millis` (only reserved state keys are kept). */
async function storedStates(millis: number): Promise<number> {
  const { rows } = await backend!.deps.pg.query<{ state: string | null }>('SELECT unit_state_dict AS state FROM units WHERE uuid = ANY($1::uuid[])', [units.map((u) => u.uuid)]);
  return rows.filter((row) => row.state !== null && Number((JSON.parse(row.state) as { millis?: unknown }).millis) === millis).length;
}

/**
 * Publishes a state and LOGS_PER_DEVICE log lines from every device once they are connected,
 * then waits until all of them are stored: none silently dropped.
 */
async function publishAndCount(phase: string): Promise<void> {
  await waitFor(() => units.every((u) => u.client.connected), { timeoutMs: 60_000, what: `devices reconnected (${phase})` });
  // A state within PU_STATE_SEND_INTERVAL - 1 s of the last one saved is throttled by design,
  // across replicas and restarts too (units.last_state_update_datetime): a restart can now be
  // faster than that, so publish once the previous phase's states are out of the window.
  await waitFor(
    async () => {
      const { rows } = await backend!.deps.pg.query<{ ok: boolean }>(
        `SELECT bool_and(last_state_update_datetime IS NULL OR last_state_update_datetime < (now() AT TIME ZONE 'utc') - make_interval(secs => $2::float8)) AS ok
           FROM units WHERE uuid = ANY($1::uuid[])`,
        [units.map((u) => u.uuid), Number(config.stateSendInterval) - 1],
      );
      return rows[0]?.ok === true;
    },
    { timeoutMs: 30_000, what: `the previous states out of the throttle window (${phase})` },
  );
  const marker = `${phase}-${randomUUID().slice(0, 8)}`;
  const millis = Math.floor(Math.random() * 1e12);
  for (const unit of units) {
    const state = { millis, mem_free: 1, mem_alloc: 2, freq: 3, pu_commit_version: null };
    await unit.client.publishAsync(systemTopic(config.domain, 'output_base_topic', unit.uuid, 'state'), JSON.stringify(state), { qos: 1 });
    const lines = Array.from({ length: LOGS_PER_DEVICE }, (_, i) => ({ level: 'Info', text: `${marker} line ${i}`, create_datetime: new Date().toISOString() }));
    await unit.client.publishAsync(systemTopic(config.domain, 'output_base_topic', unit.uuid, 'log'), JSON.stringify(lines), { qos: 1 });
  }
  await waitFor(async () => (await countLogs(marker)) === DEVICES * LOGS_PER_DEVICE, { timeoutMs: 30_000, what: `${DEVICES * LOGS_PER_DEVICE} log lines stored (${phase})` });
  await waitFor(async () => (await storedStates(millis)) === DEVICES, { timeoutMs: 30_000, what: `${DEVICES} states stored (${phase})` });
  assert.equal(await countLogs(marker), DEVICES * LOGS_PER_DEVICE, `every log line of ${phase} is stored once`);
  // Commands: the backend publishes to a unit's input node through its own MQTT connection.
  const target = units[DEVICES - 1]!;
  await waitFor(
    async () => {
      const sent = await backend!.app.inject({ method: 'PATCH', url: `${api}/unit_nodes/set_state_input/${target.input}`, headers: { 'x-auth-token': ownerToken }, payload: { state: marker } });
      assert.equal(sent.statusCode, 200, sent.body);
      return target.received.includes(marker);
    },
    { timeoutMs: 30_000, intervalMs: 500, what: `a command reaches the device (${phase})` },
  );
  // The DataPipe path: a value published now reaches the ingest (its own MQTT connection) and
  // lands in units_nodes.state through the LastValue policy.
  const value = String(Math.floor(Math.random() * 1e9));
  const unit = units[0]!;
  await waitFor(
    async () => {
      await unit.client.publishAsync(`${config.domain}/${unit.node}/pepeunit`, value, { qos: 1 });
      await ingest!.flush();
      const { rows } = await backend!.deps.pg.query<{ state: string | null }>('SELECT state FROM units_nodes WHERE uuid = $1', [unit.node]);
      return rows[0]?.state === value;
    },
    { timeoutMs: 30_000, intervalMs: 300, what: `DataPipe value stored (${phase})` },
  );
}

before(async () => {
  db = await createTestDatabases('restart');
  dataDir = await mkdtemp(join(tmpdir(), 'pu-restart-'));
  brokerState = join(dataDir, 'broker-state.json');
  [mqttPort, apiPort, backendPort] = [await freePort(), await freePort(), await freePort()];
  config = loadBackendConfig(
    testBackendEnv(db, {
      PU_MQTT_PORT: String(mqttPort),
      PU_EMQX_API_URL: `http://127.0.0.1:${apiPort}`,
      PU_EMQX_API_KEY: 'backend',
      PU_EMQX_API_SECRET: 'backend-secret',
      PU_BACKEND_PORT: String(backendPort),
      PU_STATE_SEND_INTERVAL: '2',
      PU_FF_DATAPIPE_DEFAULT_LAST_VALUE_ENABLE: 'False',
    }),
  );
  await startBroker();
  await startTheBackend();
  ingest = await startIngest(
    loadIngestConfig({
      PU_DP_DOMAIN: config.domain,
      PU_DP_SECRET_KEY: config.secretKey,
      PU_DP_SQLALCHEMY_DATABASE_URL: db.pgUrl,
      PU_DP_CLICKHOUSE_DATABASE_URL: db.clickhouseUrl,
      PU_DP_MQTT_HOST: '127.0.0.1',
      PU_DP_MQTT_PORT: String(mqttPort),
      PU_DP_INTAKE_MODE: 'rules',
      PU_DP_SHARE_GROUP: 'pepeunit-ingest',
      PU_DP_BUFFER_FLUSH_INTERVAL: '1',
    }),
    testLogger,
  );
  const inject = (method: 'POST' | 'PATCH', url: string, payload: unknown, token = '') =>
    backend!.app.inject({ method, url: api + url, payload: payload as object, headers: token ? { 'x-auth-token': token } : {} });
  await inject('POST', '/users', { login: 'restart_admin', password: 'Passw0rd!' });
  await inject('POST', '/users', { login: 'restart_owner', password: 'Passw0rd!' });
  ownerToken = (await inject('POST', '/users/auth', { credentials: 'restart_owner', password: 'Passw0rd!' })).json().token;
  const owner = (await backend!.deps.pg.query(`SELECT uuid FROM users WHERE login = 'restart_owner'`)).rows[0].uuid;
  for (let i = 0; i < DEVICES; i++) {
    const uuid = randomUUID();
    const node = randomUUID();
    const input = randomUUID();
    const pg = backend!.deps.pg;
    await pg.query(`INSERT INTO units (uuid, visibility_level, name, create_datetime, last_update_datetime, is_auto_update_from_repo_unit, creator_uuid) VALUES ($1, 'Private', $2, now(), now(), true, $3)`, [uuid, `restart_unit_${i}`, owner]);
    await pg.query(`INSERT INTO permissions (uuid, agent_type, agent_user_uuid, resource_type, resource_unit_uuid) VALUES (gen_random_uuid(), 'User', $1, 'Unit', $2)`, [owner, uuid]);
    await pg.query(
      `INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, topic_name, create_datetime, unit_uuid, creator_uuid) VALUES ($1, 'Output', 'Private', false, 'value/pepeunit', now(), $2, $3)`,
      [node, uuid, owner],
    );
    await pg.query(`INSERT INTO permissions (uuid, agent_type, agent_unit_uuid, resource_type, resource_unit_node_uuid) VALUES (gen_random_uuid(), 'Unit', $1, 'UnitNode', $2)`, [uuid, node]);
    await pg.query(`INSERT INTO permissions (uuid, agent_type, agent_user_uuid, resource_type, resource_unit_node_uuid) VALUES (gen_random_uuid(), 'User', $1, 'UnitNode', $2)`, [owner, node]);
    // An input node: commands from the backend reach the device through it.
    await pg.query(
      `INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, topic_name, create_datetime, unit_uuid, creator_uuid) VALUES ($1, 'Input', 'Private', true, 'command/pepeunit', now(), $2, $3)`,
      [input, uuid, owner],
    );
    await pg.query(`INSERT INTO permissions (uuid, agent_type, agent_unit_uuid, resource_type, resource_unit_node_uuid) VALUES (gen_random_uuid(), 'Unit', $1, 'UnitNode', $2)`, [uuid, input]);
    await pg.query(`INSERT INTO permissions (uuid, agent_type, agent_user_uuid, resource_type, resource_unit_node_uuid) VALUES (gen_random_uuid(), 'User', $1, 'UnitNode', $2)`, [owner, input]);
    // Devices behave like the reference clients: they reconnect whatever ended the connection.
    const client = await mqtt.connectAsync({
      host: '127.0.0.1',
      port: mqttPort,
      clientId: uuid,
      username: unitToken(uuid, config.secretKey),
      password: '',
      protocolVersion: 4,
      reconnectPeriod: 300,
      reconnectOnConnackError: true,
    });
    client.on('error', () => {}); // refusals while the backend is down are expected
    const received: string[] = [];
    client.on('message', (topic, payload) => {
      if (topic === `${config.domain}/${input}/pepeunit`) received.push(payload.toString());
    });
    // mqtt.js subscribes again after every reconnection (clean sessions), like the reference clients.
    await client.subscribeAsync(`${config.domain}/${input}/pepeunit`, { qos: 0 });
    units.push({ uuid, node, input, client, received });
  }
  // A LastValue DataPipe on the first unit's node (the ingest path).
  const first = units[0]!;
  assert.equal((await inject('PATCH', `/unit_nodes/${first.node}`, { is_data_pipe_active: true }, ownerToken)).statusCode, 200);
  const boundary = 'restart-boundary';
  const yaml = 'active_period:\n  type: Permanent\nfilters:\n  type_input_value: Text\n  max_rate: 0\n  max_size: 0\nprocessing_policy:\n  policy_type: LastValue\n';
  const set = await backend!.app.inject({
    method: 'POST',
    url: `${api}/unit_nodes/set_data_pipe_config?uuid=${first.node}`,
    headers: { 'x-auth-token': ownerToken, 'content-type': `multipart/form-data; boundary=${boundary}` },
    payload: Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="data"; filename="c.yml"\r\nContent-Type: application/x-yaml\r\n\r\n${yaml}\r\n--${boundary}--\r\n`),
  });
  assert.equal(set.statusCode, 204, set.body);
  await waitReady('first start');
});

after(async () => {
  for (const unit of units) await unit.client.endAsync(true).catch(() => {});
  await ingest?.close();
  await stopBackend();
  await stopBroker();
  await db?.drop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

test('before any restart: states, logs and DataPipe values are stored', async () => {
  await publishAndCount('initial');
});

test('broker restart (state file kept): readiness returns, nothing published afterwards is lost', async () => {
  await stopBroker();
  await waitFor(async () => (await readiness()).status === 503, { timeoutMs: 30_000, what: 'readiness reports the broker down' });
  const down = await readiness();
  assert.equal(down.body?.checks.broker?.up, false);
  assert.match(String(down.body?.checks.broker?.error), /MQTT connection is down/);
  await startBroker();
  await waitReady('broker restart');
  await publishAndCount('broker-restart');
});

test('backend restart: readiness returns on the same port, nothing published afterwards is lost', async () => {
  await stopBackend();
  await startTheBackend();
  await waitReady('backend restart');
  await publishAndCount('backend-restart');
});

test('both restarted, backend first (broker down while it starts): it connects when the broker comes', async () => {
  await stopBackend();
  await stopBroker();
  await startTheBackend();
  const waiting = await readiness();
  assert.equal(waiting.status, 503, 'not ready while the broker is down');
  assert.equal(waiting.body?.checks.broker?.up, false);
  await startBroker();
  await waitReady('backend first, then broker');
  await publishAndCount('backend-then-broker');
});

test('both restarted, broker first (its saved authenticator points at a backend not listening yet)', async () => {
  await stopBackend();
  await stopBroker();
  await startBroker();
  // Devices are refused meanwhile (the callback is unreachable: default deny) and keep retrying.
  await waitFor(() => units.every((u) => !u.client.connected), { timeoutMs: 30_000, what: 'devices refused while the backend is down' });
  await startTheBackend();
  await waitReady('broker first, then backend');
  await publishAndCount('broker-then-backend');
});
