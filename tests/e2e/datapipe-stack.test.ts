/**
 * The data aggregation system through the whole stack: a device publishes through the embedded
 * EMQX-compatible broker; the backend (REST API, EMQX controller, pipe-rule reconciler) turns a
 * node's policy on and off; broker rules forward only enabled nodes to the real ingest (rules
 * intake, shared subscription), which writes ClickHouse. Real PostgreSQL and ClickHouse.
 *
 * Must show: a node without an enabled policy costs the ingest nothing (its intake counter stays
 * at 0 while the device publishes); enabling a policy takes effect within 2 s and disabling it
 * stops intake within 2 s (rules reconciled, no restart).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { loadIngestConfig, unitToken } from '@pepeunit/common';
import { startEmbeddedBroker } from '@pepeunit/emqx-rules';
import { startBackend, type RunningBackend } from '@pepeunit/backend';
import { startIngest, type IngestService } from '@pepeunit/ingest-go-compatible';
import { createTestDatabases, testBackendEnv, testLogger, type TestDatabases } from '../src/harness.ts';
import { loadBackendConfig } from '@pepeunit/common';

const api = '/pepeunit/api/v1';
const WITHIN_MS = 2000;
let db: TestDatabases;
let broker: Awaited<ReturnType<typeof startEmbeddedBroker>>;
let backend: RunningBackend;
let ingest: IngestService;
let device: MqttClient;
let token = '';
const unit = randomUUID();
const nodeA = randomUUID();
const nodeB = randomUUID();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
  return Date.now() - started;
}

async function call(method: 'GET' | 'POST' | 'PATCH', url: string, body?: unknown, yaml?: string) {
  const headers: Record<string, string> = { 'x-auth-token': token };
  let payload: string | Buffer | undefined;
  if (yaml !== undefined) {
    const boundary = 'pepeunit-test-boundary';
    headers['content-type'] = `multipart/form-data; boundary=${boundary}`;
    payload = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="data"; filename="config.yml"\r\nContent-Type: application/x-yaml\r\n\r\n${yaml}\r\n--${boundary}--\r\n`);
  } else if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const res = await backend.app.inject({ method, url: api + url, headers, ...(payload !== undefined ? { payload } : {}) });
  return { status: res.statusCode, body: res.body ? res.json() : null };
}

before(async () => {
  db = await createTestDatabases('dp_stack');
  broker = await startEmbeddedBroker({ mqttPort: 0, apiPort: 0, apiKeys: [{ key: 'backend', secret: 'backend-secret' }] });
  const env = testBackendEnv(db, {
    PU_MQTT_PORT: String(broker.mqttPort),
    PU_EMQX_API_URL: broker.apiUrl,
    PU_EMQX_API_KEY: 'backend',
    PU_EMQX_API_SECRET: 'backend-secret',
    PU_FF_DATAPIPE_DEFAULT_LAST_VALUE_ENABLE: 'False',
  });
  backend = await startBackend(loadBackendConfig(env), testLogger);
  ingest = await startIngest(
    loadIngestConfig({
      PU_DP_DOMAIN: String(env.PU_DOMAIN),
      PU_DP_SECRET_KEY: String(env.PU_SECRET_KEY),
      PU_DP_SQLALCHEMY_DATABASE_URL: db.pgUrl,
      PU_DP_CLICKHOUSE_DATABASE_URL: db.clickhouseUrl,
      PU_DP_MQTT_HOST: '127.0.0.1',
      PU_DP_MQTT_PORT: String(broker.mqttPort),
      PU_DP_INTAKE_MODE: 'rules',
      PU_DP_SHARE_GROUP: 'pepeunit-ingest',
      PU_DP_BUFFER_FLUSH_INTERVAL: '1',
    }),
    testLogger,
  );
  await call('POST', '/users', { login: 'first_admin', password: 'Passw0rd!' }); // the first user is the admin
  await backend.app.inject({ method: 'POST', url: `${api}/users`, payload: { login: 'pipe_owner', password: 'Passw0rd!' } });
  const login = await backend.app.inject({ method: 'POST', url: `${api}/users/auth`, payload: { credentials: 'pipe_owner', password: 'Passw0rd!' } });
  token = login.json().token;
  const owner = (await backend.deps.pg.query(`SELECT uuid FROM users WHERE login = 'pipe_owner'`)).rows[0].uuid;
  const pg = backend.deps.pg;
  await pg.query(`INSERT INTO units (uuid, visibility_level, name, create_datetime, last_update_datetime, is_auto_update_from_repo_unit, creator_uuid) VALUES ($1, 'Private', 'pipe_unit', now(), now(), true, $2)`, [unit, owner]);
  for (const node of [nodeA, nodeB]) {
    await pg.query(
      `INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, topic_name, create_datetime, unit_uuid, creator_uuid) VALUES ($1, 'Output', 'Private', false, 'temp/pepeunit', now(), $2, $3)`,
      [node, unit, owner],
    );
    await pg.query(`INSERT INTO permissions (uuid, agent_type, agent_unit_uuid, resource_type, resource_unit_node_uuid) VALUES (gen_random_uuid(), 'Unit', $1, 'UnitNode', $2)`, [unit, node]);
  }
  device = await mqtt.connectAsync({ host: '127.0.0.1', port: broker.mqttPort, clientId: unit, username: unitToken(unit, backend.deps.config.secretKey), password: '', protocolVersion: 4, reconnectPeriod: 0 });
});

after(async () => {
  await device?.endAsync(true).catch(() => {});
  await ingest?.close();
  await backend?.close();
  await broker?.close();
  await db?.drop();
});

test('only nodes with an enabled policy reach the ingest; enabling and disabling through the API take effect within 2 s', async (t) => {
  let sequence = 0;
  const publisher = setInterval(() => {
    sequence += 1;
    device.publish(`${backend.deps.config.domain}/${nodeA}/pepeunit`, String(sequence));
    device.publish(`${backend.deps.config.domain}/${nodeB}/pepeunit`, String(sequence));
  }, 40);
  try {
    await sleep(800);
    assert.ok(sequence >= 10, 'the device is publishing');
    assert.equal(ingest.nodeMessageCount(nodeA), 0, 'no policy yet: the ingest received nothing');
    assert.equal(ingest.nodeMessageCount(nodeB), 0);

    // Enable an NRecords policy on node A through the reference API.
    assert.equal((await call('PATCH', `/unit_nodes/${nodeA}`, { is_data_pipe_active: true })).status, 200);
    const config = 'active_period:\n  type: Permanent\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy:\n  policy_type: NRecords\n  n_records_count: 5\n';
    const set = await call('POST', `/unit_nodes/set_data_pipe_config?uuid=${nodeA}`, undefined, config);
    assert.equal(set.status, 204, JSON.stringify(set.body));
    const enableMs = await waitFor(() => ingest.nodeMessageCount(nodeA) > 0, WITHIN_MS, 'intake after enabling');
    t.diagnostic(`enabling took effect after ${enableMs} ms`);

    // The accepted values land in ClickHouse; reads never show more than N rows.
    await waitFor(async () => {
      await ingest.flush();
      const rows = await db.clickhouse.query({ query: 'SELECT count() AS n FROM n_last_entry WHERE unit_node_uuid = {node:UUID}', query_params: { node: nodeA }, format: 'JSONEachRow' });
      return Number(((await rows.json()) as Array<{ n: string }>)[0]?.n ?? 0) >= 5;
    }, 10_000, 'rows in n_last_entry');
    const read = await call('GET', `/unit_nodes/get_data_pipe_data/?uuid=${nodeA}&type=NRecords`);
    assert.equal(read.status, 200, JSON.stringify(read.body));
    assert.ok(read.body.count <= 5 && read.body.count > 0, `NRecords read shows at most N rows (got ${read.body.count})`);
    assert.equal(ingest.nodeMessageCount(nodeB), 0, 'the node without a policy still costs nothing');

    // Disable: intake stops within 2 s while the device keeps publishing.
    assert.equal((await call('PATCH', `/unit_nodes/${nodeA}`, { is_data_pipe_active: false })).status, 200);
    const disabledAt = Date.now();
    let last = ingest.nodeMessageCount(nodeA);
    let stableSince = Date.now();
    while (Date.now() - stableSince < 600) {
      await sleep(50);
      const now = ingest.nodeMessageCount(nodeA);
      if (now !== last) {
        last = now;
        stableSince = Date.now();
      }
      assert.ok(Date.now() - disabledAt < WITHIN_MS + 600, 'intake did not stop within 2 s');
    }
    const disableMs = stableSince - disabledAt;
    t.diagnostic(`disabling stopped intake after ${disableMs} ms`);
    assert.ok(disableMs <= WITHIN_MS);
    const sentBefore = sequence;
    await sleep(500);
    assert.ok(sequence > sentBefore + 5, 'the device kept publishing');
    assert.equal(ingest.nodeMessageCount(nodeA), last, 'no intake after disabling');
  } finally {
    clearInterval(publisher);
  }
});
