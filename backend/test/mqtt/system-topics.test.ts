/**
 * The system-topic consumer against real PostgreSQL and ClickHouse. Messages are handed to
 * `handleMessage` exactly as the MQTT subscription does (the broker path is covered end to end
 * in tests/e2e/system-topics.test.ts).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import pg from 'pg';
import mqtt from 'mqtt';
import { Registry } from 'prom-client';
import { migrateClickHouse, createClickHouse } from '@pepeunit/clickhouse-schemas';
import { migratePostgres } from '../../src/db/migrate.js';
import { startSystemTopicsConsumer, type SystemTopicsConsumer, type SystemTopicsOptions } from '../../src/mqtt/system-topics.js';
import { UnitLogWriter } from '../../src/mqtt/unit-log-writer.js';
import { firmwareUpdateTimeoutMessage } from '../../src/mqtt/unit-state-writer.js';
import { buildLogRows } from '../../src/mqtt/log-payload.js';
import { createTestDatabases, testServices, type TestDatabases } from '@pepeunit/tests/harness';
import { elapse } from '@pepeunit/tests/wait';

const domain = 'test.pepeunit.local';
let db: TestDatabases;
let pool: pg.Pool;
// A client that is never connected: consumers here are driven through handleMessage.
const idleMqtt = mqtt.connect({ host: '127.0.0.1', port: 1, manualConnect: true });
const consumers: SystemTopicsConsumer[] = [];

const config = (interval = 2, maxPayloadSizeKb = 1) => ({ domain, stateSendInterval: interval, unitLogExpiration: 3600, mqtt: { maxPayloadSizeKb } });

async function consumer(overrides: Partial<SystemTopicsOptions> = {}): Promise<SystemTopicsConsumer> {
  const c = await startSystemTopicsConsumer({ mqtt: idleMqtt, pg: pool, clickhouse: db.clickhouse, config: config(), subscribe: false, stateGuard: false, logger: process.env.DBG ? { debug() {}, info() {}, warn: (o: unknown, m?: string) => console.error('WARN', m, o), error: (o: unknown, m?: string) => console.error('ERROR', m, o) } : undefined, ...overrides });
  consumers.push(c);
  return c;
}

async function unit(fields: Record<string, unknown> = {}): Promise<string> {
  const uuid = randomUUID();
  const row: Record<string, unknown> = {
    uuid,
    visibility_level: 'Public',
    name: `unit_${uuid.slice(0, 8)}`,
    create_datetime: '2000-01-01T00:00:00',
    last_update_datetime: '2000-01-01T00:00:00',
    is_auto_update_from_repo_unit: true,
    ...fields,
  };
  const keys = Object.keys(row);
  await pool.query(`INSERT INTO units (${keys.join(', ')}) VALUES (${keys.map((_, i) => `$${i + 1}`).join(', ')})`, Object.values(row));
  return uuid;
}

const stateTopic = (u: string) => `${domain}/output_base_topic/${u}/state/pepeunit`;
const logTopic = (u: string) => `${domain}/output_base_topic/${u}/log/pepeunit`;
const json = (v: unknown) => Buffer.from(JSON.stringify(v));

async function unitRow(u: string) {
  const { rows } = await pool.query('SELECT * FROM units WHERE uuid = $1', [u]);
  return rows[0];
}

async function logRows(u: string): Promise<Array<{ level: string; text: string; create_datetime: string }>> {
  const result = await db.clickhouse.query({ query: 'SELECT level, text, toString(create_datetime) AS create_datetime FROM unit_logs WHERE unit_uuid = {u:UUID} ORDER BY create_datetime', query_params: { u }, format: 'JSONEachRow' });
  return result.json();
}

// Started at the top level so the harness registers its `after` cleanup on the file, not on a hook.
await testServices();

before(async () => {
  db = await createTestDatabases('systopics');
  await migratePostgres(db.pgUrl);
  await migrateClickHouse(db.clickhouse, { database: db.name });
  pool = new pg.Pool({ connectionString: db.pgUrl, max: 4 });
});

after(async () => {
  for (const c of consumers) await c.close();
  await pool?.end();
  await db?.drop();
});

test('two states within the interval give one Postgres write; the next interval writes again', async () => {
  const c = await consumer();
  const u = await unit();
  c.handleMessage(stateTopic(u), json({ millis: 1000, mem_free: 12368, freq: 80000000, pu_commit_version: 'v1', junk: 1 }));
  c.handleMessage(stateTopic(u), json({ millis: 2000, pu_commit_version: 'v2' }));
  await c.flush();
  assert.equal(c.stats.statesAccepted, 1);
  assert.equal(c.stats.statesThrottled, 1);
  assert.equal(c.stats.stateWriter.written, 1);
  let row = await unitRow(u);
  assert.equal(row.unit_state_dict, '{"ifconfig": [], "millis": 1000.0, "mem_free": 12368.0, "mem_alloc": null, "freq": 80000000.0, "statvfs": [], "pu_commit_version": "v1"}');
  assert.equal(row.current_commit_version, 'v1');
  assert.ok(row.last_update_datetime.getTime() > Date.UTC(2020, 0, 1), 'last_update_datetime bumped');

  await elapse(1050, 'the state throttle interval (PU_STATE_SEND_INTERVAL - 1 = 1 s)');
  c.handleMessage(stateTopic(u), json({ millis: 3000, pu_commit_version: 'v3' }));
  await c.flush();
  assert.equal(c.stats.stateWriter.written, 2);
  row = await unitRow(u);
  assert.equal(row.current_commit_version, 'v3');
  assert.equal(JSON.parse(row.unit_state_dict).millis, 3000);
});

test('malformed states are counted drops and do not consume the interval', async () => {
  const c = await consumer();
  const u = await unit();
  c.handleMessage(stateTopic(u), Buffer.from('{"millis": '));
  c.handleMessage(stateTopic(u), json([1, 2]));
  c.handleMessage(stateTopic(u), Buffer.from([0x7b, 0xff, 0x7d]));
  c.handleMessage(stateTopic(u), json({ pu_commit_version: 'ok' }));
  await c.flush();
  assert.equal(c.stats.dropped.malformed_json, 1);
  assert.equal(c.stats.dropped.invalid_state, 1);
  assert.equal(c.stats.dropped.invalid_utf8, 1);
  assert.equal(c.stats.stateWriter.written, 1);
  assert.equal((await unitRow(u)).current_commit_version, 'ok');
});

test('with units.last_state_update_datetime (migration 004), two replicas write a unit state once per interval', async () => {
  await pool.query('ALTER TABLE units ADD COLUMN IF NOT EXISTS last_state_update_datetime timestamp');
  {
    const replicaA = await consumer({ stateGuard: 'auto' });
    const replicaB = await consumer({ stateGuard: 'auto' });
    assert.equal(replicaA.guarded, true);
    const u = await unit();
    replicaA.handleMessage(stateTopic(u), json({ pu_commit_version: 'from-a' }));
    await replicaA.flush();
    replicaB.handleMessage(stateTopic(u), json({ pu_commit_version: 'from-b' }));
    await replicaB.flush();
    assert.equal(replicaA.stats.stateWriter.written, 1);
    assert.equal(replicaB.stats.statesAccepted, 1, 'B accepted it in memory (it never saw A\'s state)');
    assert.equal(replicaB.stats.stateWriter.written, 0);
    assert.equal(replicaB.stats.stateWriter.guardSkipped, 1);
    assert.equal((await unitRow(u)).current_commit_version, 'from-a');

    // A log bump does not block the next state (it touches last_update_datetime only).
    await pool.query(`UPDATE units SET last_update_datetime = (now() AT TIME ZONE 'utc') WHERE uuid = $1`, [u]);
    await elapse(1050, 'the state throttle interval (PU_STATE_SEND_INTERVAL - 1 = 1 s)');
    replicaB.handleMessage(stateTopic(u), json({ pu_commit_version: 'from-b-later' }));
    await replicaB.flush();
    assert.equal(replicaB.stats.stateWriter.written, 1);
    assert.equal((await unitRow(u)).current_commit_version, 'from-b-later');

    const ghost = randomUUID();
    replicaA.handleMessage(stateTopic(ghost), json({}));
    await replicaA.flush();
    assert.equal(replicaA.stats.stateWriter.unknownUnits, 1);
  }
});

test('firmware status: Success on the target version, Error after twice the interval, unchanged before', async () => {
  const c = await consumer();
  const requested = { is_auto_update_from_repo_unit: false, repo_branch: 'main', repo_commit: 'target-sha', firmware_update_status: 'RequestSent' };
  const success = await unit({ ...requested, last_firmware_update_datetime: new Date(Date.now() - 1000) });
  const pending = await unit({ ...requested, last_firmware_update_datetime: new Date() });
  const late = await unit({ ...requested, last_firmware_update_datetime: new Date(Date.now() - 10_000), firmware_update_error: null });
  c.handleMessage(stateTopic(success), json({ pu_commit_version: 'target-sha' }));
  c.handleMessage(stateTopic(pending), json({ pu_commit_version: 'old-sha' }));
  c.handleMessage(stateTopic(late), json({ pu_commit_version: 'old-sha' }));
  await c.flush();

  const s = await unitRow(success);
  assert.equal(s.firmware_update_status, 'Success');
  assert.equal(s.firmware_update_error, null);
  assert.equal(s.last_firmware_update_datetime, null);
  const p = await unitRow(pending);
  assert.equal(p.firmware_update_status, 'RequestSent', 'within 2 x 2 s nothing changes');
  assert.notEqual(p.last_firmware_update_datetime, null);
  const l = await unitRow(late);
  assert.equal(l.firmware_update_status, 'Error');
  assert.equal(l.firmware_update_error, '422: 11: Update Error: Device firmware update time is twice as fast as 2s times');
  assert.equal(l.firmware_update_error, firmwareUpdateTimeoutMessage(2));
  assert.equal(l.last_firmware_update_datetime, null);
  assert.equal(c.stats.stateWriter.firmwareSuccess, 1);
  assert.equal(c.stats.stateWriter.firmwareError, 1);
});

test('an injected target resolver decides for auto-updated units', async () => {
  const asked: string[] = [];
  const c = await consumer({ resolveTargetVersion: async (u) => (asked.push(u), 'repo-target') });
  const u = await unit({ firmware_update_status: 'RequestSent', last_firmware_update_datetime: new Date() });
  const idle = await unit({ firmware_update_status: 'Success' });
  c.handleMessage(stateTopic(u), json({ pu_commit_version: 'repo-target' }));
  c.handleMessage(stateTopic(idle), json({ pu_commit_version: 'x' }));
  await c.flush();
  assert.deepEqual(asked, [u], 'only units with a pending request are resolved');
  assert.equal((await unitRow(u)).firmware_update_status, 'Success');
});

test('logs: one object and arrays land in unit_logs with normalised levels; bad entries are counted', async () => {
  const c = await consumer();
  const u = await unit();
  c.handleMessage(logTopic(u), json({ level: 'info', text: 'booted' }));
  c.handleMessage(logTopic(u), json([
    { level: 'WARNING', text: 'hot', create_datetime: '2030-01-01T00:00:00' },
    { level: 'Loud', text: 'x' },
    { level: 'Error', text: 'oops' },
    { text: 'no level' },
    { level: 'Debug', text: { nested: true } },
  ]));
  c.handleMessage(logTopic(u), json('just text'));
  await c.flush();
  const rows = await logRows(u);
  assert.deepEqual(rows.map((r) => [r.level, r.text]).sort(), [['Error', 'oops'], ['Info', 'booted'], ['Warning', 'hot']]);
  assert.ok(rows.some((r) => r.create_datetime === '2030-01-01 00:00:00.000'), JSON.stringify(rows));
  assert.equal(c.stats.logRowsAccepted, 3);
  assert.equal(c.stats.logWriter.written, 3);
  assert.equal(c.stats.dropped.unknown_level, 2);
  assert.equal(c.stats.dropped.invalid_log_entry, 1);
  assert.equal(c.stats.dropped.invalid_log_payload, 1);
  const row = await unitRow(u);
  assert.ok(row.last_update_datetime.getTime() > Date.UTC(2020, 0, 1), 'logs bump units.last_update_datetime');
  const expiry = await db.clickhouse.query({ query: 'SELECT min(expiration_datetime) > now() + 3000 AS ok FROM unit_logs WHERE unit_uuid = {u:UUID}', query_params: { u }, format: 'JSONEachRow' });
  assert.equal(((await expiry.json()) as Array<{ ok: number }>)[0]?.ok, 1, 'expiration = now + PU_UNIT_LOG_EXPIRATION');
});

test('bad topics and payloads are counted per reason and never throw; other topics are ignored', async () => {
  const registry = new Registry();
  const c = await consumer({ registry });
  const u = await unit();
  const big = Buffer.alloc(1025, 0x61);
  c.handleMessage(logTopic(u), big);
  c.handleMessage(stateTopic(u), big);
  c.handleMessage(logTopic(u), Buffer.from([0x5b, 0xc3, 0x28, 0x5d]));
  c.handleMessage(logTopic(u), Buffer.from('[{"level":'));
  c.handleMessage(`${domain}/output_base_topic/${u}/reboot/pepeunit`, json({}));
  c.handleMessage(`${domain}/output_base_topic/not-a-uuid/state/pepeunit`, json({}));
  c.handleMessage(`${domain}/sideways_topic/${u}/state/pepeunit`, json({}));
  c.handleMessage(`${domain}/input_base_topic/${u}/update/pepeunit`, json({ COMMAND: 'Update' }));
  c.handleMessage(`other.domain/output_base_topic/${u}/log/pepeunit`, json({ level: 'Info', text: 'x' }));
  c.handleMessage(`${domain}/${u}/pepeunit`, Buffer.from('21.5'));
  assert.equal(c.stats.dropped.payload_too_large, 2);
  assert.equal(c.stats.dropped.invalid_utf8, 1);
  assert.equal(c.stats.dropped.malformed_json, 1);
  assert.equal(c.stats.dropped.unknown_purpose, 1);
  assert.equal(c.stats.dropped.invalid_unit_uuid, 1);
  assert.equal(c.stats.dropped.invalid_topic, 1);
  assert.equal(c.stats.ignored, 1);
  assert.equal(c.stats.received, 8, 'the foreign domain and the 3-level topic are not ours');
  // Still working after all of that.
  c.handleMessage(logTopic(u), json({ level: 'Info', text: 'still alive' }));
  await c.flush();
  assert.deepEqual((await logRows(u)).map((r) => r.text), ['still alive']);
  const text = await registry.metrics();
  assert.match(text, /pepeunit_system_topic_dropped_total\{reason="payload_too_large"\} 2/);
  assert.match(text, /pepeunit_system_topic_dropped_total\{reason="invalid_utf8"\} 1/);
  assert.match(text, /pepeunit_unit_logs_total\{outcome="written"\} 1/);
  assert.match(text, /pepeunit_system_topic_messages_total\{purpose="log"\} 4/);
});

test('close() flushes log rows that were only buffered', async () => {
  const c = await startSystemTopicsConsumer({ mqtt: idleMqtt, pg: pool, clickhouse: db.clickhouse, config: config(), subscribe: false, stateGuard: false, logWriter: { flushIntervalMs: 60_000, flushRows: 1_000_000 } });
  const u = await unit();
  for (let i = 0; i < 20; i++) c.handleMessage(logTopic(u), json([{ level: 'Info', text: `a${i}` }, { level: 'Debug', text: `b${i}` }]));
  c.handleMessage(stateTopic(u), json({ pu_commit_version: 'at-close' }));
  assert.equal(c.stats.logWriter.written, 0, 'nothing written yet');
  await c.close();
  assert.equal((await logRows(u)).length, 40);
  assert.equal((await unitRow(u)).current_commit_version, 'at-close');
});

/** A TCP proxy in front of the real ClickHouse that can be switched off, to simulate an outage. */
async function toggleableProxy(target: URL) {
  let up = true;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    if (!up) return client.destroy();
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream).pipe(client);
    upstream.on('close', () => client.destroy());
    client.on('close', () => upstream.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://${target.username ? `${target.username}:${target.password}@` : ''}127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    set(value: boolean) {
      up = value;
      if (!up) for (const s of sockets) s.destroy();
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

test('while ClickHouse is down rows are kept (bounded, overflow counted) and written once it is back', async () => {
  const services = await testServices();
  const proxy = await toggleableProxy(new URL(services.clickhouseUrl));
  const client = createClickHouse(proxy.url, db.name, { requestTimeoutMs: 2_000 });
  const writer = new UnitLogWriter({ clickhouse: client, flushIntervalMs: 50, retryBaseMs: 50, retryMaxMs: 100, maxBufferedRows: 250, closeTimeoutMs: 5_000 });
  const u = randomUUID();
  try {
    proxy.set(false);
    const rows = buildLogRows(Array.from({ length: 300 }, (_, i) => ({ level: 'Info', text: `row ${i}` })), u, Date.now(), 3600, () => {});
    assert.ok(rows);
    assert.equal(writer.enqueue(rows), 250, 'the buffer holds at most 250 rows; the rest is refused');
    assert.equal(await writer.flush(400), false, 'cannot be written while down');
    assert.ok(writer.stats.insertFailures >= 1);
    assert.equal(writer.stats.buffered, 250);
    proxy.set(true);
    assert.equal(await writer.flush(5_000), true);
    assert.equal(writer.stats.written, 250);
    assert.equal((await logRows(u)).length, 250, 'every accepted row landed exactly once');
  } finally {
    await writer.close();
    await client.close();
    await proxy.close();
  }
});
