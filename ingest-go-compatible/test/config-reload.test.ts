/**
 * Config distribution: Postgres NOTIFY (one node, or everything on an empty payload), the
 * reference Redis stream `backend_data_pipe_nodes` (a real redis-server), statuses written
 * back, runtime state kept while a config text is unchanged.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort, silentLogger } from '@pepeunit/common';
import type { EmbeddedBroker } from '@pepeunit/emqx-rules';
import { nodeUuidOfStreamEntry, nodesOfNotification, startIngest, type IngestService } from '@pepeunit/ingest-go-compatible';
import { createEnv, ingestConfig, insertNode, nodeTopic, stages, startBroker, type Env } from './helpers.js';
import { waitFor } from '@pepeunit/tests/wait';

let env: Env;
let broker: EmbeddedBroker;
let ingest: IngestService;
let redisProcess: ChildProcess;
let redisPort: number;
let redis: Redis;

before(async () => {
  env = await createEnv('ing_reload');
  broker = await startBroker();
  redisPort = await freePort();
  redisProcess = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  redis = new Redis({ host: '127.0.0.1', port: redisPort, lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 100 });
  redis.on('error', () => {}); // refused until redis-server listens
  await waitFor(async () => (await redis.connect().then(() => true, () => false)) || redis.status === 'ready', { what: 'redis-server to accept connections' });
  ingest = await startIngest(
    ingestConfig(env, broker.mqttPort, { PU_DP_INTAKE_MODE: 'rules', PU_DP_REDIS_URL: `redis://127.0.0.1:${redisPort}/0`, PU_DP_CONFIG_SYNC_INTERVAL: '3600' }),
    silentLogger,
  );
});

after(async () => {
  await ingest?.close();
  redis?.disconnect();
  redisProcess?.kill('SIGTERM');
  await broker?.close();
  await env?.close();
});

const status = async (uuid: string) =>
  (await env.pool.query<{ data_pipe_status: string | null; data_pipe_error: string | null }>('SELECT data_pipe_status, data_pipe_error FROM units_nodes WHERE uuid = $1', [uuid])).rows[0];

const notify = (payload: string) => env.pool.query(`SELECT pg_notify('pepeunit_datapipe_changed', $1)`, [payload]);

function send(uuid: string, payload: string): void {
  ingest.injectMessage(`pepeunit_ingest/${nodeTopic(uuid)}`, Buffer.from(JSON.stringify({ payload, topic: nodeTopic(uuid), ts: Date.now() })));
}

test('notification payloads and stream entries name nodes', () => {
  const a = '0f8fad5b-d9cb-469f-a165-70867728950e';
  const b = '7c9e6679-7425-40de-944b-e07fc1f90ae7';
  assert.deepEqual(nodesOfNotification(a.toUpperCase()), [a]);
  assert.deepEqual(nodesOfNotification(`${a}, ${b}`), [a, b]);
  assert.equal(nodesOfNotification(''), null);
  assert.equal(nodesOfNotification('not-a-uuid'), null);
  assert.equal(nodeUuidOfStreamEntry(['action', 'Update', 'unit_node_data', JSON.stringify({ uuid: a, topic_name: 'x/pepeunit' })]), a);
  assert.equal(nodeUuidOfStreamEntry(['action', 'Update', 'unit_node_data', '{broken']), null);
  assert.equal(nodeUuidOfStreamEntry(['action', 'Delete']), null);
});

test('NOTIFY <uuid> applies a new, broken, changed and disabled config, with statuses', async () => {
  const uuid = await insertNode(env.pool, null, { active: false });
  send(uuid, 'ignored');
  assert.equal(ingest.stats().dropped.unknown_node, 1);

  // Enabled with a config: running after the NOTIFY (no periodic sync runs within the test).
  await env.pool.query('UPDATE units_nodes SET is_data_pipe_active = true, data_pipe_yml = $2 WHERE uuid = $1', [
    uuid,
    stages({ filters: '{type_input_value: Text, max_rate: 60, max_size: 0}', policy: '{policy_type: LastValue}' }),
  ]);
  await notify(uuid);
  await waitFor(() => ingest.configStore.get(uuid), { what: 'the node to be loaded' });
  await waitFor(async () => (await status(uuid))?.data_pipe_status === 'Active', { what: 'status Active' });
  send(uuid, 'first');
  assert.equal(ingest.stats().accepted.LastValue, 1);

  // Same text reloaded: the node's state (max_rate memory) survives, so the next one is rate-limited.
  await notify(uuid);
  await ingest.configStore.whenIdle();
  send(uuid, 'second');
  assert.equal(ingest.stats().dropped.filter_rate, 1);

  // A config that does not compile: the node stops, status Error with a clear message.
  await env.pool.query('UPDATE units_nodes SET data_pipe_yml = $2 WHERE uuid = $1', [uuid, JSON.stringify({ active_period: { type: 'Permanent' }, filters: { type_input_value: 'Text' }, processing_policy: { policy_type: 'LastValue' } })]);
  await notify(uuid);
  const broken = await waitFor(async () => ((await status(uuid))?.data_pipe_status === 'Error' ? status(uuid) : false), { what: 'status Error' });
  assert.match(broken?.data_pipe_error ?? '', /^DataPipe config is invalid: Filters: Field required/);
  assert.equal(ingest.configStore.get(uuid), undefined);
  const debug = (await (await fetch(`${ingest.metricsUrl}/debug/nodes/${uuid}`)).json()) as { status: string };
  assert.equal(debug.status, 'Error');

  // A changed valid config: running again, with fresh state (no rate limit memory).
  await env.pool.query('UPDATE units_nodes SET data_pipe_yml = $2 WHERE uuid = $1', [uuid, stages({ filters: '{type_input_value: Text, max_rate: 30, max_size: 0}', policy: '{policy_type: LastValue}' })]);
  await notify(uuid);
  await waitFor(async () => (await status(uuid))?.data_pipe_status === 'Active' && (await status(uuid))?.data_pipe_error === null, { what: 'status Active again' });
  send(uuid, 'third');
  assert.equal(ingest.stats().accepted.LastValue, 2);

  // Turned off: dropped from the ingest, status Inactive.
  await env.pool.query('UPDATE units_nodes SET is_data_pipe_active = false WHERE uuid = $1', [uuid]);
  await notify(uuid);
  await waitFor(async () => (await status(uuid))?.data_pipe_status === 'Inactive', { what: 'status Inactive' });
  assert.equal(ingest.configStore.get(uuid), undefined);
});

test('an empty NOTIFY reloads everything; statuses are written only when they change', async () => {
  const a = await insertNode(env.pool, stages({ policy: '{policy_type: NRecords, n_records_count: 5}' }));
  const b = await insertNode(env.pool, stages({ policy: '{policy_type: TimeWindow, time_window_size: 60}' }));
  await notify('');
  await waitFor(() => ingest.configStore.get(a) && ingest.configStore.get(b), { what: 'both nodes loaded' });
  await ingest.configStore.whenIdle(); // statuses are written at the end of the reload
  assert.equal((await status(a))?.data_pipe_status, 'Active');
  // A status someone else wrote is corrected, and an unchanged one is not rewritten.
  const xminBefore = (await env.pool.query<{ xmin: string }>('SELECT xmin::text FROM units_nodes WHERE uuid = $1', [b])).rows[0]?.xmin;
  await env.pool.query(`UPDATE units_nodes SET data_pipe_status = 'Inactive' WHERE uuid = $1`, [a]);
  await ingest.configStore.loadAll('manual');
  assert.equal((await status(a))?.data_pipe_status, 'Active');
  const xminAfter = (await env.pool.query<{ xmin: string }>('SELECT xmin::text FROM units_nodes WHERE uuid = $1', [b])).rows[0]?.xmin;
  assert.equal(xminAfter, xminBefore, 'a row whose status did not change is not updated');
});

test('the Redis stream backend_data_pipe_nodes reloads the node it names', async () => {
  const uuid = await insertNode(env.pool, stages({ policy: '{policy_type: LastValue}' }));
  assert.equal(ingest.configStore.get(uuid), undefined, 'not loaded yet: no NOTIFY, no periodic sync within the test');
  await redis.xadd('backend_data_pipe_nodes', '*', 'action', 'Update', 'unit_node_data', JSON.stringify({ uuid, topic_name: 'value/pepeunit', is_data_pipe_active: true }));
  await waitFor(() => ingest.configStore.get(uuid), { what: 'the node to be loaded from the stream entry' });

  // An entry without a usable uuid: a full reload.
  const other = await insertNode(env.pool, stages({ policy: '{policy_type: LastValue}' }));
  await redis.xadd('backend_data_pipe_nodes', '*', 'action', 'Update', 'unit_node_data', '{}');
  await waitFor(() => ingest.configStore.get(other), { what: 'the full reload' });
});
