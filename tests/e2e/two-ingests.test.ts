/**
 * Two ingest processes behind the shared subscription, 1,000 nodes under load (issue 9): the EMQX
 * controller sets `shared_subscription_strategy = hash_topic`, so every node's messages reach one
 * ingest, which holds the node's whole state. Checked: each node was seen by exactly one ingest
 * (and both ingests worked); every Aggregation window is written once with the values of all its
 * messages; NRecords keeps exactly N, the newest; LastValue ends with the newest value.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { loadIngestConfig, unitToken } from '@pepeunit/common';
import { normaliseDataPipeConfig, parseDataPipeYaml, serialiseDataPipeConfig } from '@pepeunit/common/datapipe';
import { startEmbeddedBroker } from '@pepeunit/emqx-rules';
import type { RunningBackend } from '@pepeunit/backend';
import { startIngest, type IngestService } from '@pepeunit/ingest-go-compatible';
import { testLogger, type TestDatabases } from '../src/harness.ts';
import { waitFor } from '../src/wait.ts';
import { startTestBackend, type TestBackend } from '../src/backend.ts';

// Units with 10 nodes each: a unit's topics fit the broker's per-client authorization cache.
const UNITS = 100;
const NODES_PER_UNIT = 10;
const MESSAGES_PER_NODE = 12;
const N_RECORDS = 5;

let db: TestDatabases;
let broker: Awaited<ReturnType<typeof startEmbeddedBroker>>;
let backend: RunningBackend;
let t: TestBackend;
const ingests: IngestService[] = [];
const devices: MqttClient[] = [];
/** Added to the ingests' clock once everything is accepted, so every window has closed. */
let skewMs = 0;

type Policy = 'Aggregation' | 'NRecords' | 'LastValue';
const nodes: Array<{ uuid: string; unit: string; policy: Policy }> = [];

function configText(policy: Policy): string {
  const processing = {
    Aggregation: 'policy_type: Aggregation\n  time_window_size: 60\n  aggregation_functions: Sum\n',
    NRecords: `policy_type: NRecords\n  n_records_count: ${N_RECORDS}\n`,
    LastValue: 'policy_type: LastValue\n',
  }[policy];
  const yaml = `active_period:\n  type: Permanent\nfilters:\n  type_input_value: Number\n  max_rate: 0\n  max_size: 0\nprocessing_policy:\n  ${processing}`;
  const parsed = parseDataPipeYaml(yaml);
  assert.ok(parsed.ok);
  return serialiseDataPipeConfig(normaliseDataPipeConfig(parsed.document));
}

async function query<T>(sql: string, params: Record<string, unknown> = {}): Promise<T[]> {
  const result = await db.clickhouse.query({ query: sql, query_params: params, format: 'JSONEachRow' });
  return (await result.json()) as T[];
}

before(async () => {
  t = await startTestBackend({
    label: 'two_ingests',
    emqx: true,
    env: {
      PU_FF_DATAPIPE_DEFAULT_LAST_VALUE_ENABLE: 'False',
      // The load is ours: the listener's per-client rate limit must not slow it.
      PU_MQTT_CLIENT_MAX_MESSAGES_RATE: '100000/s',
      PU_MQTT_CLIENT_MAX_BYTES_RATE: '100MB/s',
    },
  });
  ({ db, broker, backend } = t);
  const zone = await (await fetch(`${broker.apiUrl}/api/v5/configs/global_zone`, { headers: { authorization: `Basic ${Buffer.from('backend:backend-secret').toString('base64')}` } })).json();
  assert.equal((zone as { mqtt: { shared_subscription_strategy: string } }).mqtt.shared_subscription_strategy, 'hash_topic', 'set by the controller');

  const pg = backend.deps.pg;
  const owner = randomUUID();
  await pg.query(`INSERT INTO users (uuid, role, status, login, hashed_password, cipher_dynamic_salt, create_datetime) VALUES ($1, 'User', 'Verified', 'ingest_owner', 'x', 'x', now())`, [owner]);
  const policies: Policy[] = ['Aggregation', 'NRecords', 'LastValue'];
  const configs = Object.fromEntries(policies.map((p) => [p, configText(p)])) as Record<Policy, string>;
  for (let u = 0; u < UNITS; u++) {
    const unit = randomUUID();
    await pg.query(`INSERT INTO units (uuid, visibility_level, name, create_datetime, last_update_datetime, is_auto_update_from_repo_unit, creator_uuid) VALUES ($1, 'Private', $2, now(), now(), true, $3)`, [unit, `load_unit_${u}`, owner]);
    const batch = Array.from({ length: NODES_PER_UNIT }, (_, i) => ({ uuid: randomUUID(), unit, policy: policies[(u * NODES_PER_UNIT + i) % 3]! }));
    nodes.push(...batch);
    await pg.query(
      `INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, topic_name, create_datetime, unit_uuid, creator_uuid, is_data_pipe_active, data_pipe_yml)
       SELECT n, 'Output', 'Private', false, 'value/pepeunit', now(), $2, $3, true, c FROM unnest($1::uuid[], $4::text[]) AS t(n, c)`,
      [batch.map((n) => n.uuid), unit, owner, batch.map((n) => configs[n.policy])],
    );
    await pg.query(
      `INSERT INTO permissions (uuid, agent_type, agent_unit_uuid, resource_type, resource_unit_node_uuid)
       SELECT gen_random_uuid(), 'Unit', $2, 'UnitNode', n FROM unnest($1::uuid[]) AS n`,
      [batch.map((n) => n.uuid), unit],
    );
  }
  const reconciled = await backend.pipeRules.reconcileAll();
  assert.equal(reconciled.status, 'done', JSON.stringify(reconciled));

  for (let i = 0; i < 2; i++) {
    ingests.push(
      await startIngest(
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
        { now: () => Date.now() + skewMs },
      ),
    );
  }
  for (const unit of new Set(nodes.map((n) => n.unit))) {
    devices.push(await mqtt.connectAsync({ host: '127.0.0.1', port: broker.mqttPort, clientId: unit, username: unitToken(unit, backend.deps.config.secretKey), password: '', protocolVersion: 4, reconnectPeriod: 0 }));
  }
});

after(async () => {
  for (const device of devices) await device.endAsync(true).catch(() => {});
  for (const ingest of ingests) await ingest.close();
  await t?.close();
});

test('1,000 nodes under load through two ingests: one ingest per node, windows written once, exactly N records, newest LastValue', { timeout: 300_000 }, async () => {
  const domain = backend.deps.config.domain;
  const byUnit = new Map(devices.map((d) => [d.options.clientId, d]));
  // Every node gets the values 1..12, interleaved across nodes so both ingests work at once.
  for (let value = 1; value <= MESSAGES_PER_NODE; value++) {
    await Promise.all(nodes.map((node) => byUnit.get(node.unit)!.publishAsync(`${domain}/${node.uuid}/pepeunit`, String(value), { qos: 1 })));
  }
  const expected = nodes.length * MESSAGES_PER_NODE;
  await waitFor(() => ingests.reduce((sum, i) => sum + i.stats().received, 0) >= expected, { timeoutMs: 120_000, what: `${expected} messages received by the ingests` }).catch((err: Error) => {
    throw new Error(`${err.message}; received ${ingests.map((i) => i.stats().received).join(' + ')}, dropped ${JSON.stringify(ingests.map((i) => i.stats().dropped))}`);
  });
  assert.equal(ingests.reduce((sum, i) => sum + i.stats().received, 0), expected, 'nothing received twice');

  // One owner per node, and both ingests took part.
  const owners = nodes.map((node) => ingests.filter((i) => i.nodeMessageCount(node.uuid) > 0).length);
  assert.deepEqual([...new Set(owners)], [1], 'every node reached exactly one ingest');
  for (const node of nodes) assert.equal(ingests.reduce((s, i) => s + i.nodeMessageCount(node.uuid), 0), MESSAGES_PER_NODE);
  for (const [index, ingest] of ingests.entries()) assert.ok(ingest.stats().received > expected / 10, `ingest ${index} carried a share of the load`);

  // Close every window and write everything.
  skewMs = 600_000;
  for (const ingest of ingests) assert.ok(await ingest.flush(60_000), 'everything written');
  let trimmed = 0;
  for (const ingest of ingests) trimmed += await ingest.trimNRecords();
  assert.ok(trimmed > 0, 'the trim found nodes over N');
  const aggregation = nodes.filter((n) => n.policy === 'Aggregation').map((n) => n.uuid);
  const windows = await query<{ node: string; fn: string; windows: string; rows: string; total: number }>(
    `SELECT toString(unit_node_uuid) AS node, toString(aggregation_type) AS fn, uniqExact(start_window_datetime) AS windows, count() AS rows, sum(state) AS total
       FROM aggregation_entry WHERE unit_node_uuid IN {nodes:Array(UUID)} GROUP BY node, fn`,
    { nodes: aggregation },
  );
  assert.equal(windows.length, aggregation.length, 'Sum rows for every Aggregation node');
  const valueSum = (MESSAGES_PER_NODE * (MESSAGES_PER_NODE + 1)) / 2;
  for (const w of windows) {
    assert.equal(Number(w.rows), Number(w.windows), `${w.node} ${w.fn}: each window written once`);
    if (w.fn === 'Sum') assert.equal(Number(w.total), valueSum, `${w.node}: the windows hold the values of all its messages`);
  }

  const nRecords = nodes.filter((n) => n.policy === 'NRecords').map((n) => n.uuid);
  const kept = await query<{ node: string; n: string; values: string[] }>(
    `SELECT toString(unit_node_uuid) AS node, count() AS n, arraySort(groupArray(state)) AS values FROM n_last_entry
      WHERE unit_node_uuid IN {nodes:Array(UUID)} GROUP BY node`,
    { nodes: nRecords },
  );
  assert.equal(kept.length, nRecords.length);
  const newest = Array.from({ length: N_RECORDS }, (_, i) => String(MESSAGES_PER_NODE - N_RECORDS + 1 + i)).sort();
  for (const k of kept) {
    assert.equal(Number(k.n), N_RECORDS, `${k.node}: exactly N records`);
    assert.deepEqual(k.values, newest, `${k.node}: the newest N`);
  }

  const lastValue = nodes.filter((n) => n.policy === 'LastValue').map((n) => n.uuid);
  const { rows } = await backend.deps.pg.query<{ state: string | null }>('SELECT state FROM units_nodes WHERE uuid = ANY($1::uuid[])', [lastValue]);
  assert.equal(rows.length, lastValue.length);
  assert.ok(rows.every((r) => r.state === String(MESSAGES_PER_NODE)), 'LastValue holds the newest value of every node');
});
