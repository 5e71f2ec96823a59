/**
 * A device's life, end to end from a clean database, through the public API only: register a
 * local bare repository holding a sample unit, create a Repo and a Unit, fetch env and schema with
 * the unit token, run the device simulator against the embedded broker with real authn/authz:
 * two states within the interval give one Postgres write, logs land in ClickHouse with their
 * levels, an Update command reaches the device and the status resolves to Success when it reports
 * the new version, Error after twice the interval otherwise.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { startEmbeddedBroker } from '@pepeunit/emqx-rules';
import type { RunningBackend } from '@pepeunit/backend';
import { createSampleRepository, type SampleRepository } from '../../backend/test/firmware/unit-fixture.ts';
import { UnitSimulator, type UnitEnv, type UnitSchema } from '../src/simulator.ts';
import type { TestDatabases } from '../src/harness.ts';
import { elapse, waitFor } from '../src/wait.ts';
import { startTestBackend, type TestBackend } from '../src/backend.ts';

const api = '/pepeunit/api/v1';
const interval = 3; // PU_STATE_SEND_INTERVAL in seconds
let db: TestDatabases;
let broker: Awaited<ReturnType<typeof startEmbeddedBroker>>;
let backend: RunningBackend;
let t: TestBackend;
let root = '';
let sample: SampleRepository;
let ownerToken = '';
const simulators: UnitSimulator[] = [];

async function call(method: 'GET' | 'POST' | 'PATCH', url: string, token: string, body?: unknown) {
  const res = await backend.app.inject({ method, url: api + url, headers: token ? { 'x-auth-token': token } : {}, ...(body !== undefined ? { payload: body as object } : {}) });
  return { status: res.statusCode, body: res.body && String(res.headers['content-type']).includes('json') ? res.json() : res.body };
}

const unitRow = async (uuid: string) => (await backend.deps.pg.query('SELECT * FROM units WHERE uuid = $1', [uuid])).rows[0];

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'pu-lifecycle-'));
  sample = await createSampleRepository(root);
  t = await startTestBackend({
    label: 'lifecycle',
    emqx: true,
    env: { PU_GIT_ALLOWED_PROTOCOLS: 'https,http,file', PU_SAVE_REPO_PATH: join(root, 'repos'), PU_STATE_SEND_INTERVAL: String(interval) },
  });
  ({ db, broker, backend } = t);
  await call('POST', '/users', '', { login: 'instance_admin', password: 'Passw0rd!' });
  await call('POST', '/users', '', { login: 'device_owner', password: 'Passw0rd!' });
  ownerToken = (await call('POST', '/users/auth', '', { credentials: 'device_owner', password: 'Passw0rd!' })).body.token;
});

after(async () => {
  for (const sim of simulators) await sim.close().catch(() => {});
  await t?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

test('register, create, fetch with the unit token, run the device: states, logs and a firmware update', async () => {
  // Registry entry (synchronous first clone), Repo, Unit: all through the API.
  const registry = await call('POST', '/repository_registry', ownerToken, { platform: 'Github', repository_url: sample.url, is_public_repository: true });
  assert.equal(registry.status, 201, JSON.stringify(registry.body));
  assert.equal(registry.body.sync_status, 'Updated', JSON.stringify(registry.body));
  const repo = await call('POST', '/repos', ownerToken, { repository_registry_uuid: registry.body.uuid, default_branch: 'main', visibility_level: 'Public', name: 'fan_repo', is_compilable_repo: false });
  assert.equal(repo.status, 201, JSON.stringify(repo.body));
  const unit = await call('POST', '/units', ownerToken, { repo_uuid: repo.body.uuid, visibility_level: 'Public', name: 'fan_unit', is_auto_update_from_repo_unit: true });
  assert.equal(unit.status, 201, JSON.stringify(unit.body));
  const unitUuid: string = unit.body.uuid;
  const target = await call('GET', `/repos/target_version/${repo.body.uuid}`, ownerToken);
  assert.equal(target.status, 200, JSON.stringify(target.body));
  const targetCommit: string = target.body.commit;
  assert.ok([sample.v1, sample.v2].includes(targetCommit));

  // env.json and schema.json, fetched again with the unit's own token (what a device does).
  const ownerEnv = await call('GET', `/units/env/${unitUuid}`, ownerToken);
  assert.equal(ownerEnv.status, 200, JSON.stringify(ownerEnv.body));
  const env = (typeof ownerEnv.body === 'string' ? JSON.parse(ownerEnv.body) : ownerEnv.body) as UnitEnv;
  const unitToken = String(env.PU_AUTH_TOKEN);
  assert.ok(unitToken.length > 100);
  const deviceEnv = await call('GET', `/units/env/${unitUuid}`, unitToken);
  assert.equal(deviceEnv.status, 200);
  const schemaRes = await call('GET', `/units/get_current_schema/${unitUuid}`, unitToken);
  assert.equal(schemaRes.status, 200, JSON.stringify(schemaRes.body));
  const schema = (typeof schemaRes.body === 'string' ? JSON.parse(schemaRes.body) : schemaRes.body) as UnitSchema;
  assert.deepEqual(schema.output_base_topic?.['state/pepeunit'], [`${env.PU_DOMAIN}/output_base_topic/${unitUuid}/state/pepeunit`]);

  // The device, connected with its token through the broker's authn/authz callbacks.
  const sim = await UnitSimulator.start({ env, schema, mqttUrl: broker.mqttUrl, commitVersion: 'factory-image', stateIntervalMs: 0 });
  simulators.push(sim);

  // Two states within the interval: exactly one Postgres write.
  const writesBefore = backend.systemTopics.stats.stateWriter.written;
  const throttledBefore = backend.systemTopics.stats.statesThrottled;
  await sim.publishState();
  await sim.publishState();
  const first = await waitFor(async () => (await backend.systemTopics.flush(), (await unitRow(unitUuid)).current_commit_version === 'factory-image' && (await unitRow(unitUuid))), { what: 'the first state' });
  // Barrier: the second state has been seen (and throttled), so nothing about it is still on its way.
  await waitFor(() => backend.systemTopics.stats.statesThrottled === throttledBefore + 1, { what: 'the second state to be throttled' });
  await backend.systemTopics.flush();
  assert.equal(backend.systemTopics.stats.stateWriter.written - writesBefore, 1, 'one write for two states within the interval');
  assert.ok(JSON.parse(first.unit_state_dict).millis !== undefined);

  // Logs land in ClickHouse with their levels.
  await sim.log('Info', 'booted');
  await sim.log('Error', 'sensor missing');
  const levels = await waitFor(
    async () => {
      await backend.systemTopics.flush();
      const result = await db.clickhouse.query({ query: 'SELECT level, text FROM unit_logs WHERE unit_uuid = {u:UUID} ORDER BY create_datetime', query_params: { u: unitUuid }, format: 'JSONEachRow' });
      const rows = (await result.json()) as Array<{ level: string; text: string }>;
      return rows.length >= 2 && rows;
    },
    { what: 'the logs' },
  );
  assert.deepEqual(levels.map((r) => [r.level, r.text]), [['Info', 'booted'], ['Error', 'sensor missing']]);
  // ... and are listed by GET /units/log_list/ for the owner and the unit itself, filtered by level.
  const listed = await call('GET', `/units/log_list/?uuid=${unitUuid}&level=Error`, unitToken);
  assert.equal(listed.status, 200, JSON.stringify(listed.body));
  assert.equal(listed.body.count, 1);
  assert.equal(listed.body.unit_logs[0].text, 'sensor missing');
  const all = await call('GET', `/units/log_list/?uuid=${unitUuid}&order_by_create_date=asc`, ownerToken);
  assert.deepEqual(all.body.unit_logs.map((l: { level: string }) => l.level), ['Info', 'Error']);
  const adminToken = (await call('POST', '/users/auth', '', { credentials: 'instance_admin', password: 'Passw0rd!' })).body.token;
  assert.equal((await call('GET', `/units/log_list/?uuid=${unitUuid}`, adminToken)).status, 403, 'another user cannot read the logs');
  assert.equal((await call('GET', `/units/log_list/?uuid=${unitUuid}&level=Fatal`, ownerToken)).status, 422);

  // Update: the command reaches the device, which reports the target version -> Success.
  await elapse((interval - 1) * 1000, 'past the state throttle (PU_STATE_SEND_INTERVAL - 1 s), so the post-update state is saved');
  const updated = sim.waitFor<{ to: string }>('updated');
  const command = await call('POST', `/units/send_command_to_input_base_topic/${unitUuid}?command=Update`, ownerToken);
  assert.equal(command.status, 204, JSON.stringify(command.body));
  assert.equal((await unitRow(unitUuid)).firmware_update_status, 'RequestSent');
  assert.equal((await updated).to, targetCommit);
  const success = await waitFor(async () => (await backend.systemTopics.flush(), (await unitRow(unitUuid)).firmware_update_status === 'Success' && (await unitRow(unitUuid))), { what: 'Success' });
  assert.equal(success.current_commit_version, targetCommit);
});

test('a device that keeps its old version ends in Error after twice the interval', async () => {
  const unit = await call('POST', '/units', ownerToken, {
    repo_uuid: (await backend.deps.pg.query(`SELECT uuid FROM repos WHERE name = 'fan_repo'`)).rows[0].uuid,
    visibility_level: 'Public',
    name: 'stale_unit',
    is_auto_update_from_repo_unit: true,
  });
  assert.equal(unit.status, 201, JSON.stringify(unit.body));
  const uuid: string = unit.body.uuid;
  const env = (await call('GET', `/units/env/${uuid}`, ownerToken)).body as UnitEnv;
  const envObject = typeof env === 'string' ? JSON.parse(env) : env;
  // A device that ignores commands: a plain client with the unit token publishing its old version.
  const device = await mqtt.connectAsync(broker.mqttUrl, { clientId: uuid, username: String(envObject.PU_AUTH_TOKEN), password: '', protocolVersion: 4, reconnectPeriod: 0 });
  const stateTopic = `${envObject.PU_DOMAIN}/output_base_topic/${uuid}/state/pepeunit`;
  try {
    assert.equal((await call('POST', `/units/send_command_to_input_base_topic/${uuid}?command=Update`, ownerToken)).status, 204);
    await device.publishAsync(stateTopic, JSON.stringify({ pu_commit_version: 'old-version', millis: 1 }));
    // Barrier: that state has been processed (stored), so its firmware check has run.
    await waitFor(async () => (await backend.systemTopics.flush(), JSON.parse((await unitRow(uuid)).unit_state_dict ?? '{}').millis === 1), { what: 'the first state to be stored' });
    assert.equal((await unitRow(uuid)).firmware_update_status, 'RequestSent', 'still waiting within 2 x interval');
    await elapse(2 * interval * 1000, 'the firmware update timeout (2 x PU_STATE_SEND_INTERVAL)');
    await device.publishAsync(stateTopic, JSON.stringify({ pu_commit_version: 'old-version', millis: 2 }));
    const row = await waitFor(async () => (await backend.systemTopics.flush(), (await unitRow(uuid)).firmware_update_status === 'Error' && (await unitRow(uuid))), { what: 'Error' });
    assert.equal(row.firmware_update_error, `422: 11: Update Error: Device firmware update time is twice as fast as ${interval}s times`);
  } finally {
    await device.endAsync(true);
  }
});
