/**
 * Pre-filter end to end: a device publishes on unit node topics; the broker's rules forward only
 * the nodes whose DataPipe policy is enabled to `pepeunit_ingest/<topic>`, where the ingest
 * consumes them through a shared subscription.
 *
 * Real PostgreSQL (the `units_nodes` rows), the real pipe-rules service (backend), the embedded
 * EMQX-compatible broker with its rule engine, mqtt.js clients. The ingest is represented by an
 * intake probe (`startIntakeProbe`): a plain MQTT client on `$share/<group>/pepeunit_ingest/#`
 * counting envelopes per node. To run the same scenario against the real ingest, replace
 * `startIntakeProbe` with a function that starts it in `rules` intake mode and reads its
 * per-node intake counter; the assertions only use `IntakeProbe.count`.
 *
 * Must show: a node without an enabled policy costs the ingest nothing (its counter stays 0 while
 * the device publishes); enabling starts intake, and disabling stops it for every message
 * published after the reconcile returned, through rule reconciliation only (no restart). The
 * "nothing arrives" checks use a barrier: a later message of a forwarded node has arrived, so
 * everything published before it went through the broker's rules.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import pg from 'pg';
import { ingestSubscription, originalTopicOfIngest, parsePipeTopic } from '@pepeunit/common/topics';
import { createDatabase, databaseUrl, dropDatabase } from '@pepeunit/common/postgres';
import { defaultLastValueConfig, serialiseDataPipeConfig } from '@pepeunit/common/datapipe/index';
import { EmqxManagementClient, startEmbeddedBroker, type EmbeddedBroker } from '@pepeunit/emqx-rules';
import { migratePostgres } from '@pepeunit/backend/db/migrate';
import { createPipeRules, type PipeRules } from '@pepeunit/backend/services/pipe-rules';
import { testServices } from '../src/harness.ts';
import { waitFor } from '../src/wait.ts';

let ADMIN_URL = '';
const DOMAIN = 'prefilter.pepeunit.test';

interface Envelope {
  payload: string;
  topic: string;
  clientid: string;
  ts: number;
}

/** What the test needs from the ingest: how many messages it took in per node. */
interface IntakeProbe {
  count(nodeUuid: string): number;
  /** The highest sequence number (the device's payload) taken in for a node, 0 if none. */
  highest(nodeUuid: string): number;
  readonly envelopes: Envelope[];
  close(): Promise<void>;
}

async function startIntakeProbe(mqttUrl: string, group = 'ingest'): Promise<IntakeProbe> {
  const counts = new Map<string, number>();
  const highest = new Map<string, number>();
  const envelopes: Envelope[] = [];
  const client = await mqtt.connectAsync(mqttUrl, { clientId: `ingest-probe-${randomBytes(3).toString('hex')}`, protocolVersion: 4, reconnectPeriod: 0 });
  client.on('message', (topic, payload) => {
    const original = originalTopicOfIngest(topic);
    const node = original ? parsePipeTopic(original) : null;
    if (!node) return;
    counts.set(node.nodeUuid, (counts.get(node.nodeUuid) ?? 0) + 1);
    const envelope = JSON.parse(payload.toString()) as Envelope;
    envelopes.push(envelope);
    highest.set(node.nodeUuid, Math.max(highest.get(node.nodeUuid) ?? 0, Number(envelope.payload) || 0));
  });
  await client.subscribeAsync(ingestSubscription(group), { qos: 0 });
  return {
    count: (nodeUuid) => counts.get(nodeUuid) ?? 0,
    highest: (nodeUuid) => highest.get(nodeUuid) ?? 0,
    envelopes,
    close: () => client.endAsync(true),
  };
}

let dbName = '';
let pool: pg.Pool;
let broker: EmbeddedBroker;
let client: EmqxManagementClient;
let pipeRules: PipeRules;
let probe: IntakeProbe;
let device: MqttClient;

async function insertNode(active: boolean): Promise<string> {
  const uuid = randomUUID();
  await pool.query(
    `INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, topic_name, create_datetime, is_data_pipe_active, data_pipe_yml)
     VALUES ($1, 'Output', 'Public', false, 'temperature/pepeunit', now(), $2, $3)`,
    [uuid, active, serialiseDataPipeConfig(defaultLastValueConfig())],
  );
  return uuid;
}

before(async () => {
  ADMIN_URL = (await testServices()).pgAdminUrl;
  dbName = `pu_t_prefilter_${randomBytes(4).toString('hex')}`;
  await createDatabase(ADMIN_URL, dbName);
  const url = databaseUrl(ADMIN_URL, dbName);
  await migratePostgres(url);
  pool = new pg.Pool({ connectionString: url, max: 4 });
  broker = await startEmbeddedBroker({ apiKeys: [{ key: 'backend', secret: 'backend-secret' }] });
  client = new EmqxManagementClient({ baseUrl: broker.apiUrl, apiKey: 'backend', apiSecret: 'backend-secret', maxRetries: 0 });
  pipeRules = createPipeRules({ pg: pool, client, domain: DOMAIN, intervalMs: 0, initialDelayMs: -1 });
  probe = await startIntakeProbe(broker.mqttUrl);
  device = await mqtt.connectAsync(broker.mqttUrl, { clientId: 'prefilter-device', protocolVersion: 4, reconnectPeriod: 0 });
});

after(async () => {
  await device?.endAsync(true).catch(() => undefined);
  await probe?.close().catch(() => undefined);
  await pipeRules?.close();
  await client?.close();
  await broker?.close();
  await pool?.end();
  if (dbName) await dropDatabase(ADMIN_URL, dbName);
});

test('only nodes with an enabled policy reach the ingest; enabling and disabling take effect through reconciliation', async () => {
  const withPolicy = await insertNode(true);
  const withoutPolicy = await insertNode(false);
  const initial = await pipeRules.reconcileAll();
  assert.equal(initial.status, 'done');

  // The device publishes on both nodes every 50 ms for the whole test.
  const published = new Map<string, number>([[withPolicy, 0], [withoutPolicy, 0]]);
  let sequence = 0;
  const publisher = setInterval(() => {
    sequence += 1;
    for (const node of [withPolicy, withoutPolicy]) {
      device.publish(`${DOMAIN}/${node}/pepeunit`, `${sequence}`, { qos: 0 });
      published.set(node, (published.get(node) ?? 0) + 1);
    }
  }, 50);
  try {
    // 1. Without a policy: the node's intake stays at 0 while the device publishes.
    await waitFor(() => probe.count(withPolicy) >= 5 && (published.get(withoutPolicy) ?? 0) >= 10, { what: 'intake of the node with a policy' });
    // Barrier: a message of the forwarded node published after these has arrived, so each message
    // on the node without a policy so far went through the broker's rules.
    const mark = sequence;
    await waitFor(() => probe.highest(withPolicy) > mark, { what: 'a later message of the node with a policy (barrier)' });
    assert.equal(probe.count(withoutPolicy), 0, 'a node without an enabled policy costs the ingest nothing');

    // The envelope the ingest receives.
    const envelope = probe.envelopes[0];
    assert.ok(envelope);
    assert.equal(envelope.topic, `${DOMAIN}/${withPolicy}/pepeunit`);
    assert.equal(envelope.clientid, 'prefilter-device');
    assert.match(envelope.payload, /^\d+$/);
    assert.ok(typeof envelope.ts === 'number' && Math.abs(Date.now() - envelope.ts) < 60_000);

    // 2. Enabling a policy (Postgres change + the backend's per-node reconcile): intake starts.
    await pool.query('UPDATE units_nodes SET is_data_pipe_active = true WHERE uuid = $1', [withoutPolicy]);
    assert.equal(await pipeRules.reconcileNode(withoutPolicy), 'created');
    await waitFor(() => probe.count(withoutPolicy) > 0, { what: 'intake after enabling' });

    // 3. Disabling: no message published after the reconcile returned is taken in, while the
    // device keeps publishing and the other node is still forwarded.
    await pool.query('UPDATE units_nodes SET is_data_pipe_active = false WHERE uuid = $1', [withPolicy]);
    assert.equal(await pipeRules.reconcileNode(withPolicy), 'deleted');
    const deletedAt = sequence; // later sequence numbers are published after the rule was deleted
    // Barrier: ten later messages of the other node arrived, so the later ones of this node went through the rules too.
    await waitFor(() => probe.highest(withoutPolicy) > deletedAt + 10, { what: 'ten later messages of the other node (barrier)' });
    assert.ok((published.get(withPolicy) ?? 0) > deletedAt + 10, 'the device kept publishing');
    assert.ok(probe.highest(withPolicy) <= deletedAt, `no intake after the policy was disabled (got sequence ${probe.highest(withPolicy)} > ${deletedAt})`);

    // The periodic full reconcile agrees with the per-node changes.
    const full = await pipeRules.reconcileAll();
    assert.ok(full.status === 'done' && full.result.created.length === 0 && full.result.deleted.length === 0 && full.result.unchanged.length === 1);
  } finally {
    clearInterval(publisher);
  }
});
