/**
 * The data aggregation system through the whole stack: a device publishes through the embedded
 * EMQX-compatible broker; the backend (REST API, EMQX controller, pipe-rule reconciler) turns a
 * node's policy on and off; broker rules forward only enabled nodes to the real ingest (rules
 * intake, shared subscription), which writes ClickHouse. Real PostgreSQL and ClickHouse.
 *
 * Must show: a node without an enabled policy costs the ingest nothing (its intake counter stays
 * at 0 while the device publishes); enabling a policy starts intake and disabling it stops intake
 * (rules reconciled, no restart). "Nothing arrives" is checked behind a barrier: a sentinel node
 * with a LastValue policy gets the same sequence numbers, and once the ingest has stored a
 * sentinel value later than a mark, every message the device published before the mark has
 * been through the broker's rules and the ingest.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { loadIngestConfig, unitToken } from '@pepeunit/common';
import { startEmbeddedBroker } from '@pepeunit/emqx-rules';
import type { RunningBackend } from '@pepeunit/backend';
import { startIngest, type IngestService } from '@pepeunit/ingest-go-compatible';
import { testLogger, type TestDatabases } from '../src/harness.ts';
import { waitFor } from '../src/wait.ts';
import { startTestBackend, type TestBackend } from '../src/backend.ts';

const api = '/pepeunit/api/v1';
let db: TestDatabases;
let broker: Awaited<ReturnType<typeof startEmbeddedBroker>>;
let backend: RunningBackend;
let t: TestBackend;
let ingest: IngestService;
let device: MqttClient;
let token = '';
const unit = randomUUID();
const nodeA = randomUUID();
const nodeB = randomUUID();
const sentinel = randomUUID();

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
  t = await startTestBackend({ label: 'dp_stack', emqx: true, env: { PU_FF_DATAPIPE_DEFAULT_LAST_VALUE_ENABLE: 'False' } });
  ({ db, broker, backend } = t);
  ingest = await startIngest(
    loadIngestConfig({
      PU_DP_DOMAIN: t.config.domain,
      PU_DP_SECRET_KEY: t.config.secretKey,
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
  for (const node of [nodeA, nodeB, sentinel]) {
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
  await t?.close();
});

test('only nodes with an enabled policy reach the ingest; enabling and disabling through the API take effect', async () => {
  // The sentinel: a LastValue policy, so the ingest writes its latest value to units_nodes.state.
  assert.equal((await call('PATCH', `/unit_nodes/${sentinel}`, { is_data_pipe_active: true })).status, 200);
  const lastValue = 'active_period:\n  type: Permanent\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy:\n  policy_type: LastValue\n';
  const sentinelSet = await call('POST', `/unit_nodes/set_data_pipe_config?uuid=${sentinel}`, undefined, lastValue);
  assert.equal(sentinelSet.status, 204, JSON.stringify(sentinelSet.body));
  let sequence = 0;
  const publisher = setInterval(() => {
    sequence += 1;
    device.publish(`${backend.deps.config.domain}/${nodeA}/pepeunit`, String(sequence));
    device.publish(`${backend.deps.config.domain}/${nodeB}/pepeunit`, String(sequence));
    device.publish(`${backend.deps.config.domain}/${sentinel}/pepeunit`, String(sequence));
  }, 40);
  /** Resolves once the ingest stored a sentinel value published after everything published so far (and `more` ticks). */
  const barrier = async (what: string, more = 0): Promise<void> => {
    const mark = sequence + more;
    await waitFor(
      async () => {
        await ingest.flush();
        const state = (await backend.deps.pg.query('SELECT state FROM units_nodes WHERE uuid = $1', [sentinel])).rows[0]?.state;
        return Number(state) > mark;
      },
      { what: `the sentinel past ${mark} (${what})` },
    );
  };
  try {
    await barrier('the first messages went through', 10);
    assert.ok(sequence >= 10, 'the device is publishing');
    assert.equal(ingest.nodeMessageCount(nodeA), 0, 'no policy yet: the ingest received nothing');
    assert.equal(ingest.nodeMessageCount(nodeB), 0);

    // Enable an NRecords policy on node A through the reference API.
    assert.equal((await call('PATCH', `/unit_nodes/${nodeA}`, { is_data_pipe_active: true })).status, 200);
    const config = 'active_period:\n  type: Permanent\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy:\n  policy_type: NRecords\n  n_records_count: 5\n';
    const set = await call('POST', `/unit_nodes/set_data_pipe_config?uuid=${nodeA}`, undefined, config);
    assert.equal(set.status, 204, JSON.stringify(set.body));
    await waitFor(() => ingest.nodeMessageCount(nodeA) > 0, { what: 'intake after enabling' });

    // The accepted values land in ClickHouse; reads never show more than N rows.
    await waitFor(
      async () => {
        await ingest.flush();
        const rows = await db.clickhouse.query({ query: 'SELECT count() AS n FROM n_last_entry WHERE unit_node_uuid = {node:UUID}', query_params: { node: nodeA }, format: 'JSONEachRow' });
        return Number(((await rows.json()) as Array<{ n: string }>)[0]?.n ?? 0) >= 5;
      },
      { what: 'rows in n_last_entry' },
    );
    const read = await call('GET', `/unit_nodes/get_data_pipe_data/?uuid=${nodeA}&type=NRecords`);
    assert.equal(read.status, 200, JSON.stringify(read.body));
    assert.ok(read.body.count <= 5 && read.body.count > 0, `NRecords read shows at most N rows (got ${read.body.count})`);
    await barrier('node B messages went through');
    assert.equal(ingest.nodeMessageCount(nodeB), 0, 'the node without a policy still costs nothing');

    // Disable: once the rule is gone and what was in flight went through, intake stays put while
    // the device keeps publishing.
    assert.equal((await call('PATCH', `/unit_nodes/${nodeA}`, { is_data_pipe_active: false })).status, 200);
    await waitFor(async () => (await backend.emqx.client!.getRule(`pipe-${nodeA}`)) === undefined, { what: "node A's pipe rule removed" });
    await barrier('messages in flight before the removal went through');
    const stoppedAt = ingest.nodeMessageCount(nodeA);
    const sentBefore = sequence;
    await barrier('later messages went through', 5);
    assert.ok(sequence > sentBefore + 5, 'the device kept publishing');
    assert.equal(ingest.nodeMessageCount(nodeA), stoppedAt, 'no intake after disabling');
  } finally {
    clearInterval(publisher);
  }
});
