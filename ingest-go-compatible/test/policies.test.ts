/**
 * Each policy end to end through a real broker, Postgres and ClickHouse: devices publish to
 * `<domain>/<node>/pepeunit` (go-compatible intake) or the rules intake receives envelopes;
 * the ingest writes the reference tables.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { createLogger, silentLogger } from '@pepeunit/common';
const log = process.env.TEST_LOG ? createLogger('ingest-test', { level: 'debug' }) : silentLogger;
import type { EmbeddedBroker } from '@pepeunit/emqx-rules';
import { startIngest, type IngestService } from '@pepeunit/ingest-go-compatible';
import { chCount, chRows, connectDevice, createEnv, ingestConfig, insertNode, nodeTopic, stages, startBroker, waitFor, type Env } from './helpers.js';

let env: Env;
let broker: EmbeddedBroker;
let device: MqttClient;
let ingest: IngestService;
let clock = Date.now();

before(async () => {
  env = await createEnv('ing_policies');
  broker = await startBroker();
  device = await connectDevice(broker.mqttPort);
});

after(async () => {
  await ingest?.close();
  device?.end(true);
  await broker?.close();
  await env?.close();
});

/** Publishes one message at a time; the ingest's clock moves 1 ms after each is received. */
async function publishAll(uuid: string, payloads: readonly string[]): Promise<void> {
  for (const p of payloads) {
    const before = ingest.nodeMessageCount(uuid);
    device.publish(nodeTopic(uuid), p, { qos: 0 });
    await waitFor('the ingest to receive the message', () => ingest.nodeMessageCount(uuid) > before, 5000, 2);
    clock += 1;
  }
}

test('go-compatible intake: the four policies land in their tables with per-node parameters', async () => {
  const lastValue = await insertNode(env.pool, stages({ filters: '{type_input_value: Text, max_rate: 0, max_size: 0}', policy: '{policy_type: LastValue}' }));
  const limited = await insertNode(env.pool, stages({ filters: '{type_input_value: Text, max_rate: 60, max_size: 0}', policy: '{policy_type: LastValue}' }));
  const nSmall = await insertNode(env.pool, stages({ filters: '{type_input_value: Number, max_rate: 0, max_size: 0}', policy: '{policy_type: NRecords, n_records_count: 3}' }));
  const nLarge = await insertNode(env.pool, stages({ policy: '{policy_type: NRecords, n_records_count: 50}' }));
  const window = await insertNode(env.pool, stages({ policy: '{policy_type: TimeWindow, time_window_size: 86400}' }));
  const broken = await insertNode(env.pool, '{"active_period": {"type": "Permanent"}');
  const unchanged = await insertNode(env.pool, stages({ policy: '{policy_type: LastValue}' }), { active: false });
  await env.pool.query(`UPDATE units_nodes SET data_pipe_status = 'Active' WHERE uuid = $1`, [unchanged]);

  // Today 00:00:00.250 UTC: TimeWindow rows (1 day) must not be expired already (ClickHouse
  // drops expired rows at insert time).
  const day = new Date(Math.floor(Date.now() / 86_400_000) * 86_400_000).toISOString().slice(0, 10);
  clock = Date.parse(`${day}T00:00:00.250Z`);
  ingest = await startIngest(ingestConfig(env, broker.mqttPort, { PU_DP_BUFFER_FLUSH_INTERVAL: '3600' }), log, { now: () => clock });
  assert.equal(ingest.subscription, `${'ingest.test.local'}/+/pepeunit`);

  // Statuses: Active for compiled configs, Error with the reason, Inactive for a turned-off node.
  const statuses = await env.pool.query<{ uuid: string; data_pipe_status: string; data_pipe_error: string | null }>(
    'SELECT uuid::text, data_pipe_status, data_pipe_error FROM units_nodes',
  );
  const status = new Map(statuses.rows.map((r) => [r.uuid, r]));
  assert.equal(status.get(lastValue)?.data_pipe_status, 'Active');
  assert.equal(status.get(lastValue)?.data_pipe_error, null);
  assert.equal(status.get(broken)?.data_pipe_status, 'Error');
  assert.match(status.get(broken)?.data_pipe_error ?? '', /DataPipe config is not valid JSON/);
  assert.equal(status.get(unchanged)?.data_pipe_status, 'Inactive');

  await publishAll(lastValue, ['one', 'two', 'three']);
  await publishAll(limited, ['first', 'second']);
  await publishAll(nSmall, ['1', '2', '3', '4', '5', '6']);
  await publishAll(nLarge, ['a', 'b']);
  await publishAll(window, ['open', 'closed']);
  await publishAll(broken, ['ignored']);
  assert.equal(await ingest.flush(), true);

  const stats = ingest.stats();
  assert.equal(stats.accepted.LastValue, 4, 'max_rate 60 s lets only the first message of `limited` through');
  assert.equal(stats.dropped.filter_rate, 1);
  assert.equal(stats.accepted.NRecords, 8);
  assert.equal(stats.accepted.TimeWindow, 2);
  assert.equal(stats.dropped.unknown_node, 1, 'a node whose config does not compile is skipped');

  // LastValue: the newest value per node, UTC whole seconds.
  const lv = await env.pool.query<{ uuid: string; state: string; ts: string }>(
    `SELECT uuid::text, state, to_char(last_update_datetime, 'YYYY-MM-DD HH24:MI:SS.MS') AS ts FROM units_nodes WHERE uuid = ANY($1::uuid[])`,
    [[lastValue, limited]],
  );
  const lvBy = new Map(lv.rows.map((r) => [r.uuid, r]));
  assert.equal(lvBy.get(lastValue)?.state, 'three');
  assert.equal(lvBy.get(lastValue)?.ts, `${day} 00:00:00.000`, 'whole seconds, UTC');
  assert.equal(lvBy.get(limited)?.state, 'first');

  // NRecords: one row per message with the node's own max_count (no cross-node contamination).
  const nRows = await chRows<{ uuid: string; max_count: number; n: string; state_type: string }>(
    env,
    `SELECT toString(unit_node_uuid) AS uuid, max_count, any(state_type) AS state_type, count() AS n FROM n_last_entry GROUP BY uuid, max_count ORDER BY uuid`,
  );
  const byNode = new Map(nRows.map((r) => [r.uuid, r]));
  assert.equal(Number(byNode.get(nSmall)?.n), 6);
  assert.equal(byNode.get(nSmall)?.max_count, 3);
  assert.equal(byNode.get(nSmall)?.state_type, 'Number');
  assert.equal(Number(byNode.get(nLarge)?.n), 2);
  assert.equal(byNode.get(nLarge)?.max_count, 50);
  assert.equal(byNode.get(nLarge)?.state_type, 'Text');

  // The trim keeps the newest N of each node.
  assert.equal(await ingest.trimNRecords(), 1, 'only nSmall is over its N');
  const kept = await chRows<{ state: string }>(env, `SELECT state FROM n_last_entry WHERE unit_node_uuid = {u:UUID} ORDER BY state`, { u: nSmall });
  assert.deepEqual(kept.map((r) => r.state), ['4', '5', '6']);
  assert.equal(await chCount(env, 'n_last_entry', 'unit_node_uuid = {u:UUID}', { u: nLarge }), 2);

  // TimeWindow: expiration = receive time + window, whole seconds.
  const tomorrow = new Date(clock + 86_400_000).toISOString().slice(0, 10);
  const tw = await chRows<{ state: string; created: string; expires: string; size: number }>(
    env,
    `SELECT state, toString(create_datetime) AS created, toString(expiration_datetime) AS expires, size FROM window_entry WHERE unit_node_uuid = {u:UUID} ORDER BY state`,
    { u: window },
  );
  assert.deepEqual(tw, [
    { state: 'closed', created: `${day} 00:00:00.264`, expires: `${tomorrow} 00:00:00`, size: 6 },
    { state: 'open', created: `${day} 00:00:00.263`, expires: `${tomorrow} 00:00:00`, size: 4 },
  ]);
  assert.ok(stats.received >= 15);
});
