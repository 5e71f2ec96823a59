/**
 * Limits and automatic cut-off with the real backend (startBackend), embedded broker, Postgres
 * and ClickHouse: a unit publishing over its limit is cut off after the sustained-excess window
 * (ban + kick through the broker API), released on schedule, escalates on repeat, its owner gets
 * one alert per step (what reached app.alertSink), an admin extends and lifts over REST, and
 * every decision is recorded.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startBackend, type RunningBackend } from '@pepeunit/backend';
import type { PlatformAlert } from '../../src/domain/alert-sink.ts';
import type { LoadSample } from '../../src/load/sampler.ts';
import { unitBanPattern, type CutoffState } from '../../src/load/cutoff.ts';
import { createTestDatabases, testBackendConfig, testLogger, type TestDatabases } from '../../../tests/src/harness.ts';
import { waitFor } from '../../../tests/src/wait.ts';
import { PacedPublisher, insertUnit, startBroker, type TestBroker } from './helpers.ts';

const api = '/pepeunit/api/v1';
const LIMIT = 5;
const LADDER = [1, 2, 30];
let db: TestDatabases;
let broker: TestBroker;
let backend: RunningBackend;
const alerts: PlatformAlert[] = [];
const tokens = { admin: '', user: '' };
let userUuid = '';

before(async () => {
  db = await createTestDatabases('load_cutoff');
  broker = await startBroker();
  backend = await startBackend(
    testBackendConfig(db, {
      PU_MQTT_PORT: String(broker.broker.mqttPort),
      PU_EMQX_API_URL: broker.broker.apiUrl.replace(/\/api\/v5$/, ''),
      PU_EMQX_API_KEY: 'load',
      PU_EMQX_API_SECRET: 'load-secret',
      PU_LOAD_SAMPLE_INTERVAL: '1',
      PU_LOAD_UNIT_MPS_LIMIT: String(LIMIT),
      PU_LOAD_EXCESS_WINDOW: '1',
      PU_LOAD_EXCESS_FACTOR: '1',
      PU_LOAD_CUTOFF_LADDER: LADDER.join(','),
      PU_LOAD_CUTOFF_RESET: '3600',
    }),
    testLogger,
    { listen: false },
  );
  backend.app.alertSink.use({ raise: async (alert) => void alerts.push(alert) });
  for (const login of ['load_admin', 'load_owner']) {
    await backend.app.inject({ method: 'POST', url: `${api}/users`, payload: { login, password: 'Passw0rd!' } });
  }
  tokens.admin = (await backend.app.inject({ method: 'POST', url: `${api}/users/auth`, payload: { credentials: 'load_admin', password: 'Passw0rd!' } })).json().token;
  tokens.user = (await backend.app.inject({ method: 'POST', url: `${api}/users/auth`, payload: { credentials: 'load_owner', password: 'Passw0rd!' } })).json().token;
  userUuid = (await backend.deps.pg.query(`SELECT uuid::text FROM users WHERE login = 'load_owner'`)).rows[0].uuid;
});

after(async () => {
  await backend?.close();
  await broker?.close();
  await db?.drop();
});

const call = (method: 'GET' | 'POST' | 'PUT', url: string, token: string, payload?: unknown) =>
  backend.app.inject({ method, url: `${api}/load${url}`, headers: { 'x-auth-token': token }, ...(payload === undefined ? {} : { payload: payload as object }) });

test('a unit over its limit is cut off, released on schedule, escalates, alerts once per step; admins extend and lift', { timeout: 120_000 }, async () => {
  const pg = backend.deps.pg;
  const { unit, nodes } = await insertUnit(pg, userUuid, 1);
  await waitFor(async () => (await broker.client.getRule(`cnt-node-${nodes[0]}`)) !== undefined, { what: 'counting rule of the unit node' });
  await waitFor(() => backend.app.load.sampler.isLeader, { what: 'the backend samples' });
  const samples: Array<{ sample: LoadSample; cut: boolean }> = [];
  backend.app.load.sampler.onSample(async (sample) => {
    samples.push({ sample, cut: (await backend.app.load.cutoff.state(unit))?.active === true });
  });

  const device = new PacedPublisher(broker.broker.mqttUrl, unit, `${backend.app.config.domain}/${nodes[0]}/pepeunit`, 6 * LIMIT, 200);
  const state = async (): Promise<CutoffState | null> => backend.app.load.cutoff.state(unit);
  try {
    await device.connected();
    device.start();
    const seen: CutoffState[] = [];
    for (let step = 0; step < LADDER.length; step += 1) {
      const cut = await waitFor(async () => {
        const s = await state();
        return s?.active && s.step === step ? s : null;
      }, { what: `cut-off at step ${step + 1}`, timeoutMs: 30_000 });
      seen.push(cut);
      // Banned for exactly the step's duration; the broker has the ban and the device was kicked.
      assert.equal(Date.parse(cut.until) - Date.parse(cut.cut_at), LADDER[step]! * 1000);
      const bans = await broker.client.listBans();
      assert.ok(bans.data.some((ban) => ban.as === 'clientid_re' && ban.who === unitBanPattern(unit)), 'ban in the broker');
      assert.match(cut.reason, new RegExp(`over the limit of ${LIMIT} MPS \\(instance\\)`));
      if (step < LADDER.length - 1) {
        const released = await waitFor(async () => {
          const s = await state();
          return s && !s.active ? s : null;
        }, { what: `release after step ${step + 1}`, timeoutMs: 30_000 });
        assert.equal(released.release_reason, 'expired');
        assert.ok(Date.parse(released.released_at!) >= Date.parse(cut.until), 'released on schedule, not before');
        await waitFor(async () => !(await broker.client.listBans()).data.some((ban) => ban.who === unitBanPattern(unit)), { what: 'ban lifted in the broker' });
      }
    }
    // Cut off within one sampling interval plus the window: at most ceil(window / interval) + 1
    // samples over the limit before each cut-off.
    let over = 0;
    for (const { sample, cut } of samples) {
      const load = sample.loads.get(unit);
      if (cut) over = 0;
      else if (load && load.mps > LIMIT) {
        over += 1;
        assert.ok(over <= 2, `cut off after ${over} samples over the limit`);
      }
    }
    // One alert per step, to the owner. The alert is raised after the state row is written (the
    // state is what the loop above saw), so wait for the last one to arrive.
    await waitFor(() => alerts.length >= 3, { what: 'the alert of step 3' });
    assert.equal(alerts.filter((a) => a.source === 'load.cutoff').length, 3);
    assert.deepEqual(alerts.map((a) => [a.recipient, a.unitUuid, a.key]), [0, 1, 2].map((step) => [{ kind: 'user', userUuid }, unit, `load.cutoff:${unit}:${step}`]));
    assert.match(alerts[0]!.text, /cut off for 1 s \(step 1 of 3\)/);
    assert.match(alerts[2]!.text, /cut off for 30 s \(step 3 of 3\)/);

    // The owner sees the state over REST; only admins change it.
    const view = await call('GET', `/units/${unit}`, tokens.user);
    assert.equal(view.statusCode, 200, view.body);
    assert.equal(view.json().cutoff.active, true);
    assert.equal(view.json().cutoff.step, 2);
    assert.equal(view.json().limit.mps, LIMIT);
    assert.equal((await call('POST', `/units/${unit}/cutoff/lift`, tokens.user)).statusCode, 403);
    assert.equal((await call('POST', `/units/${unit}/cutoff/extend`, tokens.admin, { seconds: 60, until: new Date(Date.now() + 60_000).toISOString() })).statusCode, 422);
    assert.equal((await call('POST', `/units/${unit}/cutoff/extend`, tokens.admin, { until: '2001-01-01T00:00:00Z' })).statusCode, 422);
    assert.equal((await state())?.until, seen[2]!.until, 'bad input changed nothing');
    const extended = await call('POST', `/units/${unit}/cutoff/extend`, tokens.admin, { seconds: 600 });
    assert.equal(extended.statusCode, 200, extended.body);
    assert.ok(Date.parse(extended.json().until) > Date.parse(seen[2]!.until));
    device.stop();
    const lifted = await call('POST', `/units/${unit}/cutoff/lift`, tokens.admin);
    assert.equal(lifted.statusCode, 200, lifted.body);
    assert.equal(lifted.json().active, false);
    assert.equal(lifted.json().release_reason, 'admin');
    assert.ok(!(await broker.client.listBans()).data.some((ban) => ban.who === unitBanPattern(unit)), 'ban deleted');
    assert.equal((await call('POST', `/units/${unit}/cutoff/lift`, tokens.admin)).statusCode, 422, 'nothing to lift');

    const decisions = await call('GET', `/decisions?unit_uuid=${unit}`, tokens.admin);
    assert.deepEqual(
      decisions.json().decisions.map((d: { decision: string; actor: string }) => d.decision).reverse(),
      ['cutoff', 'release', 'cutoff', 'release', 'cutoff', 'extend', 'lift'],
    );
    assert.equal((await call('GET', '/decisions', tokens.user)).statusCode, 403);
    assert.equal(alerts.length, 3, 'no alert for releases, extensions or lifts');
  } finally {
    await device.end();
  }
});

test('limits: admin override per user, external sources only lower it; bad input is a 422', async () => {
  assert.equal((await call('PUT', `/users/${userUuid}/limit`, tokens.user, { mps_limit: 100 })).statusCode, 403);
  assert.equal((await call('PUT', `/users/${userUuid}/limit`, tokens.admin, { mps_limit: -1 })).statusCode, 422);
  assert.equal((await call('PUT', `/users/${userUuid}/limit`, tokens.admin, { mps_limit: 'x' })).statusCode, 422);
  const set = await call('PUT', `/users/${userUuid}/limit`, tokens.admin, { mps_limit: 100 });
  assert.equal(set.statusCode, 200, set.body);
  assert.deepEqual(set.json().limit, { mps: 100, source: 'user' });
  backend.app.loadPorts.addLimitSource({ name: 'billing', limitForUser: async (user) => (user === userUuid ? 20 : null) });
  backend.app.load.limits.forget();
  assert.deepEqual(await backend.app.load.limits.forUser(userUuid), { mps: 20, source: 'billing' });
  const view = await call('GET', `/users/${userUuid}`, tokens.user);
  assert.equal(view.statusCode, 200, view.body);
  assert.deepEqual(view.json().limit, { mps: 20, source: 'billing', user_override: 100, instance_default: LIMIT });
  assert.equal((await call('GET', `/users/${userUuid}?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z`, tokens.user)).statusCode, 422);
  assert.equal((await call('GET', `/users/${userUuid}?from=yesterday`, tokens.user)).statusCode, 422);
  const admin = (await backend.deps.pg.query(`SELECT uuid::text FROM users WHERE login = 'load_admin'`)).rows[0].uuid;
  assert.equal((await call('GET', `/users/${admin}`, tokens.user)).statusCode, 403);
});

test('admin views: instance, top units; users get 403', async () => {
  const instance = await call('GET', '/instance', tokens.admin);
  assert.equal(instance.statusCode, 200, instance.body);
  assert.equal(instance.json().sampler.this_replica_samples, true);
  assert.equal(instance.json().sampler.broker_api, true);
  assert.deepEqual(instance.json().limits.ladder_seconds, LADDER);
  // Minute rows are written in the background after each cycle: wait for a cycle's rows to land.
  const top = await waitFor(
    async () => {
      await backend.app.load.sampler.flushed();
      const answer = await call('GET', '/top?limit=5', tokens.admin);
      assert.equal(answer.statusCode, 200, answer.body);
      return (answer.json().units as unknown[]).length > 0 ? answer : null;
    },
    { what: 'the top units to list a unit with messages' },
  );
  const units = top.json().units as Array<{ unit_uuid: string; messages: number }>;
  assert.ok(units.length >= 1 && units[0]!.messages > 0, top.body);
  assert.equal((await call('GET', '/top?limit=0', tokens.admin)).statusCode, 422);
  assert.equal((await call('GET', '/instance', tokens.user)).statusCode, 403);
  // Which device floods: per-connection recv_msg from the broker.
  const flooder = new PacedPublisher(broker.broker.mqttUrl, 'flooding-device', 'anything/flood', 1);
  const quiet = new PacedPublisher(broker.broker.mqttUrl, 'quiet-device', 'anything/quiet', 1);
  try {
    await Promise.all([flooder.connected(), quiet.connected()]);
    await flooder.burst(20);
    await quiet.burst(1);
    const clients = await call('GET', '/clients?limit=2', tokens.admin);
    assert.equal(clients.statusCode, 200, clients.body);
    const listed = clients.json().clients as Array<{ clientid: string; recv_msg: number; recv_mps: number }>;
    assert.equal(listed[0]?.clientid, 'flooding-device', clients.body);
    assert.equal(listed[0]?.recv_msg, 20);
    assert.ok(!clients.body.includes('username'), 'no unit token is ever shown');
    assert.equal((await call('GET', '/clients', tokens.user)).statusCode, 403);
  } finally {
    await flooder.end();
    await quiet.end();
  }
  assert.equal((await call('GET', '/top', tokens.user)).statusCode, 403);
  const unit = units[0]!.unit_uuid;
  const series = await call('GET', `/units/${unit}?granularity=minute`, tokens.user);
  assert.equal(series.statusCode, 200, series.body);
  assert.equal(series.json().totals.messages, units[0]!.messages);
  assert.equal((series.json().series as Array<{ messages: number }>).reduce((sum, p) => sum + p.messages, 0), units[0]!.messages);
});
