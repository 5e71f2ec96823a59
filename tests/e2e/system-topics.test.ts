/**
 * System topics end to end: simulated units (tests/src/simulator.ts) → embedded EMQX-compatible
 * broker with the controller applied (real HTTP authn/authz callbacks) → the backend's
 * system-topic consumer → PostgreSQL `units` and ClickHouse `unit_logs`.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { sharedFilter, unitToken } from '@pepeunit/common';
import { startEmbeddedBroker } from '@pepeunit/emqx-rules';
import type { RunningBackend } from '@pepeunit/backend';
import { testServices, type TestDatabases } from '../src/harness.ts';
import { UnitSimulator, systemSchema, type UnitEnv } from '../src/simulator.ts';
import { elapse, waitFor } from '../src/wait.ts';
import { startTestBackend, type TestBackend } from '../src/backend.ts';

const domain = 'test.pepeunit.local';
const interval = 3; // PU_STATE_SEND_INTERVAL: states saved at most once per 2 s, firmware timeout 6 s
let db: TestDatabases;
let broker: Awaited<ReturnType<typeof startEmbeddedBroker>>;
let backend: RunningBackend;
let t: TestBackend;
const sims: UnitSimulator[] = [];

// At the top level so the harness registers its cleanup on the file rather than on a hook.
await testServices();

const backendEnv = { PU_STATE_SEND_INTERVAL: String(interval), PU_MQTT_MAX_PAYLOAD_SIZE: '1', PU_UNIT_LOG_EXPIRATION: '3600' };

async function createUnit(fields: Record<string, unknown> = {}): Promise<string> {
  const uuid = randomUUID();
  const row: Record<string, unknown> = {
    uuid,
    visibility_level: 'Private',
    name: `sim_${uuid.slice(0, 8)}`,
    create_datetime: '2000-01-01T00:00:00',
    last_update_datetime: '2000-01-01T00:00:00',
    is_auto_update_from_repo_unit: true,
    ...fields,
  };
  const keys = Object.keys(row);
  await backend.deps.pg.query(`INSERT INTO units (${keys.join(', ')}) VALUES (${keys.map((_, i) => `$${i + 1}`).join(', ')})`, Object.values(row));
  return uuid;
}

function envOf(unit: string, mqttPort: number, extra: Partial<UnitEnv> = {}): UnitEnv {
  return {
    PU_DOMAIN: domain,
    PU_HTTP_TYPE: 'http',
    PU_APP_PREFIX: '/pepeunit',
    PU_API_ACTUAL_PREFIX: '/api/v1',
    PU_MQTT_HOST: '127.0.0.1',
    PU_MQTT_PORT: mqttPort,
    PU_AUTH_TOKEN: unitToken(unit, backend.deps.config.secretKey),
    PU_STATE_SEND_INTERVAL: interval,
    PU_COMMIT_VERSION: 'old-sha',
    ...extra,
  };
}

async function simulator(unit: string, opts: { mqttPort?: number; stateIntervalMs?: number; backendUrl?: string } = {}): Promise<UnitSimulator> {
  const port = opts.mqttPort ?? broker.mqttPort;
  const sim = await UnitSimulator.start({ env: envOf(unit, port), schema: systemSchema(domain, unit), stateIntervalMs: opts.stateIntervalMs ?? 0, backendUrl: opts.backendUrl });
  sims.push(sim);
  return sim;
}

async function unitRow(uuid: string) {
  return (await backend.deps.pg.query('SELECT * FROM units WHERE uuid = $1', [uuid])).rows[0];
}

async function logRows(unit: string): Promise<Array<{ level: string; text: string }>> {
  const result = await db.clickhouse.query({ query: 'SELECT level, text FROM unit_logs WHERE unit_uuid = {u:UUID} ORDER BY create_datetime, text', query_params: { u: unit }, format: 'JSONEachRow' });
  return result.json();
}

before(async () => {
  t = await startTestBackend({ label: 'systopics_e2e', emqx: true, env: backendEnv });
  ({ db, broker, backend } = t);
  await backend.systemTopics.ready();
});

after(async () => {
  for (const sim of sims) await sim.close();
  await t?.close();
});

test('the controller is applied and the backend subscribed <domain>/+/+/+/pepeunit (shared)', async () => {
  const sources = await backend.emqx.client!.listAuthorizationSources();
  assert.ok(sources.some((s) => s.type === 'http'), 'real authz callbacks are in force');
  // A shared subscription (PU_BACKEND_SHARE_GROUP, default pepeunit-backend) so replicas split the load.
  const group = backend.deps.config.backendShareGroup;
  assert.equal(backend.systemTopics.subscription, group ? sharedFilter(group, `${domain}/+/+/+/pepeunit`) : `${domain}/+/+/+/pepeunit`);
  // A token of a unit that does not exist is refused at CONNECT, so nothing reaches the consumer.
  await assert.rejects(UnitSimulator.start({ env: envOf(randomUUID(), broker.mqttPort), schema: systemSchema(domain, randomUUID()), stateIntervalMs: 0 }));
});

test('two states within the interval give exactly one Postgres write', async () => {
  const unit = await createUnit();
  const sim = await simulator(unit);
  const stats = backend.systemTopics.stats;
  const written = stats.stateWriter.written;
  const throttled = stats.statesThrottled;
  await sim.publishState();
  await sim.publishState();
  await waitFor(() => stats.statesThrottled === throttled + 1, { what: 'both states to arrive' });
  await backend.systemTopics.flush();
  assert.equal(stats.stateWriter.written - written, 1);
  const row = await unitRow(unit);
  const state = JSON.parse(row.unit_state_dict);
  assert.deepEqual(Object.keys(state), ['ifconfig', 'millis', 'mem_free', 'mem_alloc', 'freq', 'statvfs', 'pu_commit_version']);
  assert.equal(state.pu_commit_version, 'old-sha');
  assert.equal(row.current_commit_version, 'old-sha');
  assert.ok(Date.now() - row.last_update_datetime.getTime() < 60_000, 'last_update_datetime is now (UTC)');
  assert.match(row.unit_state_dict, /"freq": 80000000\.0/, 'reference text format');

  // After PU_STATE_SEND_INTERVAL - 1 seconds the next state is saved again.
  await elapse((interval - 1) * 1000 + 50, 'the state throttle interval (PU_STATE_SEND_INTERVAL - 1 s)');
  await sim.publishState();
  await waitFor(async () => (await backend.systemTopics.flush(), stats.stateWriter.written - written === 2), { what: 'the third state to be written' });
});

test('logs: one object and arrays land in unit_logs with normalised levels; invalid entries are counted drops', async () => {
  const unit = await createUnit();
  const sim = await simulator(unit);
  const stats = backend.systemTopics.stats;
  const before = { rows: stats.logRowsAccepted, level: stats.dropped.unknown_level, entry: stats.dropped.invalid_log_entry };
  await sim.log('Info', 'booted');
  await sim.sendLogs([
    { level: 'warning', text: 'temperature high' },
    { level: 'ERROR', text: 'sensor lost', create_datetime: '2030-01-01T00:00:00.000' },
    { level: 'Chatty', text: 'not a level' },
    { level: 'Debug' },
    { level: 'critical', text: 'reboot' },
  ]);
  await waitFor(() => stats.logRowsAccepted - before.rows === 4, { what: '4 rows to be accepted' });
  await backend.systemTopics.flush();
  const rows = await logRows(unit);
  assert.deepEqual(rows.map((r) => `${r.level}:${r.text}`).sort(), ['Critical:reboot', 'Error:sensor lost', 'Info:booted', 'Warning:temperature high']);
  assert.equal(stats.dropped.unknown_level - before.level, 1);
  assert.equal(stats.dropped.invalid_log_entry - before.entry, 1);
  assert.ok((await unitRow(unit)).last_update_datetime.getTime() > Date.UTC(2020, 0, 1), 'logs bump units.last_update_datetime');

  // LogSync: the device resends its whole local log.
  await backend.deps.mqtt.publishAsync(`${domain}/input_base_topic/${unit}/log_sync/pepeunit`, JSON.stringify({ COMMAND: 'LogSync' }));
  await waitFor(async () => (await backend.systemTopics.flush(), (await logRows(unit)).filter((r) => r.text === 'booted').length === 2), { what: 'the resent log to land' });
});

test('oversized, malformed and invalid UTF-8 payloads are counted drops; the consumer keeps working', async () => {
  // The broker enforces PU_MQTT_MAX_PAYLOAD_SIZE too; raise its limit so the backend's own check is what drops.
  await backend.emqx.client!.updateGlobalZone({ mqtt: { max_packet_size: '64KB' } });
  const unit = await createUnit();
  const sim = await simulator(unit);
  const dropped = backend.systemTopics.stats.dropped;
  const before = { ...dropped };
  await sim.sendLogs(Buffer.from(JSON.stringify({ level: 'Info', text: 'x'.repeat(2048) })));
  await sim.sendLogs('{"level": "Info", "text": ');
  await sim.sendLogs(Buffer.from([0x7b, 0x22, 0x74, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d]));
  await sim.sendLogs('"just a string"');
  await sim.log('Info', 'still alive');
  await waitFor(() => dropped.invalid_log_payload === before.invalid_log_payload + 1 && backend.systemTopics.stats.logRowsAccepted > 0, { what: 'the valid line to be accepted after the bad ones' });
  await waitFor(async () => (await backend.systemTopics.flush(), (await logRows(unit)).length === 1), { what: 'the valid line to land' });
  assert.equal(dropped.payload_too_large - before.payload_too_large, 1);
  assert.equal(dropped.malformed_json - before.malformed_json, 1);
  assert.equal(dropped.invalid_utf8 - before.invalid_utf8, 1);
  assert.deepEqual((await logRows(unit)).map((r) => r.text), ['still alive']);
  const metrics = await backend.app.inject({ method: 'GET', url: '/pepeunit/metrics' });
  assert.match(metrics.body, /pepeunit_system_topic_dropped_total\{reason="payload_too_large"[^}]*\} [1-9]/);
  assert.match(metrics.body, /pepeunit_system_topic_dropped_total\{reason="invalid_utf8"[^}]*\} [1-9]/);
});

test('firmware status: Success when the device reports the target version after Update', async () => {
  const unit = await createUnit({
    is_auto_update_from_repo_unit: false,
    repo_branch: 'main',
    repo_commit: 'target-sha',
    firmware_update_status: 'RequestSent',
    last_firmware_update_datetime: new Date(),
  });
  const sim = await simulator(unit);
  const updated = sim.waitFor<{ from: string; to: string }>('updated');
  await backend.deps.mqtt.publishAsync(`${domain}/input_base_topic/${unit}/update/pepeunit`, JSON.stringify({ COMMAND: 'Update', PU_COMMIT_VERSION: 'target-sha' }));
  assert.deepEqual(await updated, { from: 'old-sha', to: 'target-sha', firmwareBytes: 0 });
  const row = await waitFor(
    async () => {
      await backend.systemTopics.flush();
      const r = await unitRow(unit);
      return r.firmware_update_status === 'Success' ? r : null;
    },
    { what: 'Success' },
  );
  assert.equal(row.current_commit_version, 'target-sha');
  assert.equal(row.firmware_update_error, null);
  assert.equal(row.last_firmware_update_datetime, null);
});

test('firmware status: Error after twice the interval when the device keeps its old version', async () => {
  const requestedAt = new Date(Date.now() - (interval + 1) * 1000); // the 2 × interval timeout is reached interval - 1 s from now
  const unit = await createUnit({ is_auto_update_from_repo_unit: false, repo_branch: 'main', repo_commit: 'target-sha', firmware_update_status: 'RequestSent', last_firmware_update_datetime: requestedAt });
  const sim = await simulator(unit);
  await sim.publishState();
  await waitFor(async () => (await backend.systemTopics.flush(), (await unitRow(unit)).current_commit_version === 'old-sha'), { what: 'the first state to be written' });
  const firstStateSeen = Date.now(); // later than the consumer's accept time of that state
  assert.equal((await unitRow(unit)).firmware_update_status, 'RequestSent', 'not yet: less than 2 × interval');
  // Past both the timeout and the state throttle (PU_STATE_SEND_INTERVAL - 1 s after the first state).
  const secondStateAt = Math.max(requestedAt.getTime() + 2 * interval * 1000, firstStateSeen + (interval - 1) * 1000) + 100;
  await elapse(secondStateAt - Date.now(), 'past the 2 x interval firmware timeout and the state throttle');
  await sim.publishState();
  const row = await waitFor(
    async () => {
      await backend.systemTopics.flush();
      const r = await unitRow(unit);
      return r.firmware_update_status === 'Error' ? r : null;
    },
    { what: 'Error' },
  );
  assert.equal(row.firmware_update_error, `422: 11: Update Error: Device firmware update time is twice as fast as ${interval}s times`);
  assert.equal(row.last_firmware_update_datetime, null);
});

test('the simulator downloads env and schema with its token on EnvUpdate/SchemaUpdate', async () => {
  // A stand-in for the units REST endpoints (built by another module), checking the device contract.
  const unit = await createUnit();
  const token = unitToken(unit, backend.deps.config.secretKey);
  const seen: string[] = [];
  const api = http.createServer((req, res) => {
    seen.push(`${req.url} ${req.headers['x-auth-token'] === token ? 'token-ok' : 'token-missing'}`);
    res.setHeader('content-type', 'application/json');
    if (req.url === `/pepeunit/api/v1/units/env/${unit}`) return res.end(JSON.stringify({ ...envOf(unit, broker.mqttPort), CUSTOM: 'new-value' }));
    if (req.url === `/pepeunit/api/v1/units/get_current_schema/${unit}`) {
      return res.end(JSON.stringify(systemSchema(domain, unit, { input: { 'set_fan/pepeunit': [`${domain}/${randomUUID()}/pepeunit`] } })));
    }
    res.statusCode = 404;
    res.end('{}');
  });
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
  try {
    const sim = await simulator(unit, { backendUrl: `http://127.0.0.1:${(api.address() as AddressInfo).port}` });
    const env = sim.waitFor<UnitEnv>('env');
    await backend.deps.mqtt.publishAsync(`${domain}/input_base_topic/${unit}/env_update/pepeunit`, JSON.stringify({ COMMAND: 'EnvUpdate' }));
    assert.equal((await env).CUSTOM, 'new-value');
    const schema = sim.waitFor('schema');
    await backend.deps.mqtt.publishAsync(`${domain}/input_base_topic/${unit}/schema_update/pepeunit`, JSON.stringify({ COMMAND: 'SchemaUpdate' }));
    await schema;
    assert.ok(sim.schema.input_topic?.['set_fan/pepeunit']);
    assert.deepEqual(seen, [`/pepeunit/api/v1/units/env/${unit} token-ok`, `/pepeunit/api/v1/units/get_current_schema/${unit} token-ok`]);
  } finally {
    await new Promise<void>((r) => api.close(() => r()));
  }
});

test('two backend replicas split the shared subscription; every log line is stored once', async () => {
  const replica = (await t.another()).backend;
  try {
    await replica.systemTopics.ready();
    // hash_topic (set by the controller) sends one unit's topic to one replica: the load splits
    // by unit. 16 units make "all on one replica" a 1-in-32768 event.
    const units = await Promise.all(Array.from({ length: 16 }, () => createUnit()));
    const sims = await Promise.all(units.map((unit) => simulator(unit)));
    const a = backend.systemTopics.stats;
    const b = replica.systemTopics.stats;
    const before = { a: a.logRowsAccepted, b: b.logRowsAccepted };
    for (let i = 0; i < 5; i++) for (const sim of sims) await sim.sendLogs({ level: 'Info', text: `shared ${i}` });
    await waitFor(() => a.logRowsAccepted - before.a + (b.logRowsAccepted - before.b) === 80, { what: '80 lines accepted across both replicas' });
    assert.ok(a.logRowsAccepted > before.a && b.logRowsAccepted > before.b, `both replicas got messages (${a.logRowsAccepted - before.a} / ${b.logRowsAccepted - before.b})`);
    await Promise.all([backend.systemTopics.flush(), replica.systemTopics.flush()]);
    for (const unit of units) {
      const rows = await logRows(unit);
      assert.equal(rows.length, 5);
      assert.equal(new Set(rows.map((r) => r.text)).size, 5, 'no line twice');
    }
  } finally {
    await replica.close();
    // The replica pointed the broker's callbacks at itself; point them back.
    await backend.emqx.apply();
  }
});

test('shutdown flushes buffered logs: every accepted row is in ClickHouse after close()', async () => {
  // Its own broker and backend, with a flush interval far beyond the test, so only close() can write.
  const ownBroker = await startEmbeddedBroker({ mqttPort: 0, apiPort: 0, apiKeys: [{ key: 'backend', secret: 'backend-secret' }] });
  const own = (await t.another({}, { broker: ownBroker, start: { systemTopics: { logWriter: { flushIntervalMs: 600_000, flushRows: 1_000_000 } } } })).backend;
  let closed = false;
  try {
    await own.systemTopics.ready();
    const unit = await createUnit();
    const sim = await simulator(unit, { mqttPort: ownBroker.mqttPort });
    for (let i = 0; i < 50; i++) await sim.sendLogs([{ level: 'Info', text: `line ${i}a` }, { level: 'Debug', text: `line ${i}b` }]);
    await waitFor(() => own.systemTopics.stats.logRowsAccepted === 100, { what: '100 rows accepted' });
    assert.equal(own.systemTopics.stats.logWriter.written, 0, 'still buffered');
    assert.equal((await logRows(unit)).length, 0);
    await own.close();
    closed = true;
    assert.equal((await logRows(unit)).length, 100);
  } finally {
    if (!closed) await own.close();
    await ownBroker.close();
  }
});
