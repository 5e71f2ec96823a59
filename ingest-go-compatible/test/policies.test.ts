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
import { chCount, chRows, connectDevice, createEnv, ingestConfig, insertNode, nodeTopic, stages, startBroker, type Env } from './helpers.js';
import { waitFor } from '@pepeunit/tests/wait';

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
    await waitFor(() => ingest.nodeMessageCount(uuid) > before, { what: 'the ingest to receive the message', intervalMs: 2 });
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

test('rules intake: envelopes, broker timestamps, Aggregation window boundaries and functions', async () => {
  await ingest.close();
  const fn = async (f: string) => insertNode(env.pool, stages({ filters: '{type_input_value: Number, max_rate: 0, max_size: 0}', policy: `{policy_type: Aggregation, time_window_size: 60, aggregation_functions: ${f}}` }));
  const avg = await fn('Avg');
  const min = await fn('Min');
  const max = await fn('Max');
  const sum = await fn('Sum');
  const notForwarded = await insertNode(env.pool, stages({ policy: '{policy_type: LastValue}' }));
  const T0 = Math.floor(Date.now() / 86_400_000) * 86_400_000; // aligned to every window size
  clock = T0 + 30_000;
  ingest = await startIngest(ingestConfig(env, broker.mqttPort, { PU_DP_INTAKE_MODE: 'rules', PU_DP_BUFFER_FLUSH_INTERVAL: '3600', PU_MQTT_MAX_PAYLOAD_SIZE: '1' }), log, { now: () => clock });
  assert.equal(ingest.subscription, '$share/pepeunit_ingest/pepeunit_ingest/#');

  // What the broker's republish rule sends: the original topic, payload and receive time.
  const forward = async (node: string, payload: string, ts?: number) => {
    const before = ingest.stats().received;
    const envelope = JSON.stringify({ payload, topic: nodeTopic(node), clientid: 'device-1', ...(ts === undefined ? {} : { ts }) });
    device.publish(`pepeunit_ingest/${nodeTopic(node)}`, envelope, { qos: 0 });
    await waitFor(() => ingest.stats().received > before, { what: 'the envelope to be received', intervalMs: 2 });
  };
  for (const node of [avg, min, max, sum]) {
    await forward(node, '10', T0 + 1_000);
    await forward(node, '20'); // no ts: the ingest's clock (T0 + 30 s)
    await forward(node, '30', T0 + 59_999);
    await forward(node, '5', T0 + 60_000); // exactly on the boundary: the next window
  }
  await forward(avg, 'abc', T0 + 2_000);
  const before = ingest.stats();
  assert.equal(before.dropped.not_numeric, 1);
  assert.equal(before.accepted.Aggregation, 16);
  const open = ingest.writers.aggregation.window(avg, 60, T0);
  assert.deepEqual(
    { sum: open?.sum, count: open?.count, min: open?.min, max: open?.max },
    { sum: 60, count: 3, min: 10, max: 30 },
    'an open window holds four numbers, whatever its message count',
  );

  clock = T0 + 60_000; // the first window ends at T0 + 60 s: not closed yet (strictly before)
  assert.equal(await ingest.flush(), true);
  assert.equal(await chCount(env, 'aggregation_entry'), 0);

  clock = T0 + 60_001;
  assert.equal(await ingest.flush(), true);
  const rows = await chRows<{ uuid: string; state: number; aggregation_type: string; time_window_size: number; created: string; start: string; end: string }>(
    env,
    `SELECT toString(unit_node_uuid) AS uuid, state, aggregation_type, time_window_size,
            toUnixTimestamp64Milli(create_datetime) AS created, toUnixTimestamp64Milli(start_window_datetime) AS start, toUnixTimestamp64Milli(end_window_datetime) AS end
       FROM aggregation_entry ORDER BY aggregation_type`,
  );
  assert.deepEqual(
    rows.map((r) => [r.uuid, r.aggregation_type, r.state, r.time_window_size, Number(r.created), Number(r.start), Number(r.end)]),
    [
      [avg, 'Avg', 20, 60, T0 + 60_001, T0, T0 + 60_000],
      [min, 'Min', 10, 60, T0 + 60_001, T0, T0 + 60_000],
      [max, 'Max', 30, 60, T0 + 60_001, T0, T0 + 60_000],
      [sum, 'Sum', 60, 60, T0 + 60_001, T0, T0 + 60_000],
    ],
  );

  // A message for a window already written is refused, never a second row for it.
  await forward(sum, '1000', T0 + 10_000);
  assert.equal(ingest.stats().dropped.late_window, 1);

  clock = T0 + 120_001;
  assert.equal(await ingest.flush(), true);
  const second = await chRows<{ state: number; n: string }>(env, `SELECT any(state) AS state, count() AS n FROM aggregation_entry WHERE start_window_datetime = fromUnixTimestamp64Milli({s:Int64})`, { s: T0 + 60_000 });
  assert.equal(Number(second[0]?.n), 4);
  assert.equal(second[0]?.state, 5);

  // Envelope problems are counted, not fatal.
  device.publish('pepeunit_ingest/whatever', 'not json', { qos: 0 });
  device.publish(`pepeunit_ingest/${nodeTopic(avg)}`, JSON.stringify({ payload: 'x'.repeat(1500), topic: nodeTopic(avg), ts: T0 + 130_000 }), { qos: 0 });
  device.publish('pepeunit_ingest/a/b', JSON.stringify({ payload: '1', topic: 'a/b', ts: T0 }), { qos: 0 });
  const stats = await waitFor(
    () => {
      const s = ingest.stats();
      return s.dropped.bad_envelope === 1 && s.dropped.payload_too_large === 1 && s.dropped.bad_topic === 1 ? s : false;
    },
    { what: 'the three bad messages to be counted' },
  );
  assert.equal(stats.accepted.Aggregation, 16);

  // Per-node intake counter on the HTTP endpoint: a node the rules do not forward costs nothing.
  const debug = await (await fetch(`${ingest.metricsUrl}/debug/nodes/${avg}`)).json();
  assert.deepEqual(debug, { uuid: avg, received: 6, status: 'Active', policy: 'Aggregation', error: null });
  const quiet = (await (await fetch(`${ingest.metricsUrl}/debug/nodes/${notForwarded}`)).json()) as { received: number };
  assert.equal(quiet.received, 0);
  const metricsText = await (await fetch(`${ingest.metricsUrl}/metrics`)).text();
  assert.match(metricsText, /pepeunit_ingest_dropped_total\{reason="late_window",service="ingest"\} 1/);
  assert.match(metricsText, /pepeunit_ingest_messages_accepted_total\{policy="Aggregation",service="ingest"\} 16/);
  assert.match(metricsText, /pepeunit_ingest_rows_written_total\{table="aggregation_entry",service="ingest"\} 8/);
  assert.match(metricsText, /pepeunit_ingest_messages_received_total\{mode="rules",service="ingest"\} 21/);
});
