/**
 * Identity and the EMQX contract end to end: real backend (HTTP callbacks, controller), embedded
 * EMQX-compatible broker, real PostgreSQL, mqtt.js devices.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import mqtt, { type MqttClient } from 'mqtt';
import { BROKER_CALLBACK_SECRET_HEADER, backendToken, signToken, unitToken } from '@pepeunit/common';
import { startEmbeddedBroker } from '@pepeunit/emqx-rules';
import type { RunningBackend } from '@pepeunit/backend';
import { startTestBackend, type TestBackend } from '../src/backend.ts';
import { waitForEvent } from '../src/wait.ts';

let broker: Awaited<ReturnType<typeof startEmbeddedBroker>>;
let backend: RunningBackend;
let t: TestBackend;
const clients: MqttClient[] = [];
const domain = 'test.pepeunit.local';
const api = '/pepeunit/api/v1';
// The heap test below forces collections to measure what is retained.
setFlagsFromString('--expose-gc');

const ids = {
  userA: '', userB: '', tokenA: '', tokenB: '',
  unitA: randomUUID(), unitB: randomUUID(),
  outA: randomUUID(), outB: randomUUID(), privOutB: randomUUID(), inB: randomUUID(),
};

async function call(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, token?: string, body?: unknown) {
  // Broker callbacks carry the shared secret the controller gave the broker.
  const brokerHeader: Record<string, string> = url.startsWith('/units/auth') ? { [BROKER_CALLBACK_SECRET_HEADER]: backend.deps.config.brokerCallbacks.secret ?? '' } : {};
  const res = await backend.app.inject({ method, url: api + url, headers: { ...brokerHeader, ...(token ? { 'x-auth-token': token } : {}) }, ...(body ? { payload: body as object } : {}) });
  return { status: res.statusCode, body: res.body ? res.json() : null };
}

function connect(username: string, clientId = `c-${randomUUID()}`): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect({ host: '127.0.0.1', port: broker.mqttPort, username, password: '', clientId, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000 });
    clients.push(client);
    client.once('connect', () => resolve(client));
    client.once('error', (err) => reject(err));
  });
}

async function trySubscribe(client: MqttClient, topic: string): Promise<boolean> {
  try {
    const granted = await client.subscribeAsync(topic, { qos: 0 });
    return granted.every((g) => g.qos !== 128);
  } catch {
    return false;
  }
}

function receives(client: MqttClient, topic: string, within = 700): Promise<string | null> {
  return new Promise((resolve) => {
    const onMessage = (t: string, payload: Buffer) => {
      if (t === topic) {
        client.off('message', onMessage);
        clearTimeout(timer);
        resolve(payload.toString());
      }
    };
    const timer = setTimeout(() => {
      client.off('message', onMessage);
      resolve(null);
    }, within);
    client.on('message', onMessage);
  });
}

before(async () => {
  t = await startTestBackend({ label: 'mqtt_access', emqx: true });
  ({ broker, backend } = t);
  // The first user of an instance becomes Admin; the owners below are plain users.
  await call('POST', '/users', undefined, { login: 'instance_admin', password: 'Passw0rd!' });
  for (const [login, key] of [['owner_a', 'A'], ['owner_b', 'B']] as const) {
    await call('POST', '/users', undefined, { login, password: 'Passw0rd!' });
    const token = (await call('POST', '/users/auth', undefined, { credentials: login, password: 'Passw0rd!' })).body.token;
    const me = await backend.deps.pg.query('SELECT uuid FROM users WHERE login = $1', [login]);
    ids[`user${key}`] = me.rows[0].uuid;
    ids[`token${key}`] = token;
  }
  // Units and nodes as the unit service creates them (with the automatic permissions of reference §4.5).
  const pg = backend.deps.pg;
  for (const [unit, owner, name] of [[ids.unitA, ids.userA, 'unit_a'], [ids.unitB, ids.userB, 'unit_b']] as const) {
    await pg.query(`INSERT INTO units (uuid, visibility_level, name, create_datetime, last_update_datetime, is_auto_update_from_repo_unit, creator_uuid) VALUES ($1, 'Public', $2, now(), now(), true, $3)`, [unit, name, owner]);
  }
  const nodes: Array<[string, string, 'Input' | 'Output', string, string, string]> = [
    [ids.outA, ids.unitA, 'Output', 'Public', 'temp/pepeunit', ids.userA],
    [ids.outB, ids.unitB, 'Output', 'Public', 'temp/pepeunit', ids.userB],
    [ids.privOutB, ids.unitB, 'Output', 'Private', 'secret_temp/pepeunit', ids.userB],
    [ids.inB, ids.unitB, 'Input', 'Private', 'set_fan', ids.userB],
  ];
  for (const [uuid, unit, type, visibility, topic, owner] of nodes) {
    await pg.query(
      `INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, topic_name, create_datetime, unit_uuid, creator_uuid) VALUES ($1, $2, $3, false, $4, now(), $5, $6)`,
      [uuid, type, visibility, topic, unit, owner],
    );
    await pg.query(`INSERT INTO permissions (uuid, agent_type, agent_unit_uuid, resource_type, resource_unit_node_uuid) VALUES (gen_random_uuid(), 'Unit', $1, 'UnitNode', $2)`, [unit, uuid]);
    await pg.query(`INSERT INTO permissions (uuid, agent_type, agent_user_uuid, resource_type, resource_unit_node_uuid) VALUES (gen_random_uuid(), 'User', $1, 'UnitNode', $2)`, [owner, uuid]);
  }
});

after(async () => {
  for (const c of clients) c.end(true);
  await t?.close();
});

test('the controller configured the broker; a second run reports no change', async () => {
  const second = await backend.emqx.apply();
  assert.deepEqual(second, []);
  const sources = await backend.emqx.client!.listAuthorizationSources();
  assert.ok(sources.some((s) => s.type === 'http'));
  const settings = await backend.emqx.client!.getAuthorizationSettings();
  assert.equal(settings.no_match, 'deny');
});

test('a unit publishes to its own output node and not to another unit\'s', async () => {
  const watcher = await connect(backendToken(domain, backend.deps.config.secretKey));
  assert.equal(await trySubscribe(watcher, `${domain}/+/pepeunit`), true, 'backend may subscribe <domain>/+/pepeunit');
  const unitA = await connect(unitToken(ids.unitA, backend.deps.config.secretKey), `${ids.unitA}-${randomUUID().slice(0, 8)}`);
  const own = receives(watcher, `${domain}/${ids.outA}/pepeunit`);
  unitA.publish(`${domain}/${ids.outA}/pepeunit`, '21.5');
  assert.equal(await own, '21.5');
  const foreign = receives(watcher, `${domain}/${ids.outB}/pepeunit`);
  unitA.publish(`${domain}/${ids.outB}/pepeunit`, 'spoofed');
  assert.equal(await foreign, null, 'publishing to another unit\'s node is dropped');
});

test('a Private node can be subscribed only while its owner grants a permission', async () => {
  const topic = `${domain}/${ids.privOutB}/pepeunit`;
  const unitA = await connect(unitToken(ids.unitA, backend.deps.config.secretKey), `${ids.unitA}-${randomUUID().slice(0, 8)}`);
  const unitB = await connect(unitToken(ids.unitB, backend.deps.config.secretKey), `${ids.unitB}-${randomUUID().slice(0, 8)}`);
  assert.equal(await trySubscribe(unitA, topic), false, 'denied before the grant');

  const grant = await call('POST', '/permission', ids.tokenB, { agent_uuid: ids.unitA, agent_type: 'Unit', resource_uuid: ids.privOutB, resource_type: 'UnitNode' });
  assert.equal(grant.status, 201, JSON.stringify(grant.body));
  assert.equal(await trySubscribe(unitA, topic), true, 'allowed after the grant, without a restart');
  const message = receives(unitA, topic);
  unitB.publish(topic, '42');
  assert.equal(await message, '42');

  // Revoking cuts the session that holds the subscription (issue 10.3): it stops delivering at once.
  const cut = waitForEvent(unitA, 'close', { what: 'unitA closed' });
  const revoke = await call('DELETE', `/permission/${grant.body.uuid}?agent_uuid=${ids.unitA}&resource_uuid=${ids.privOutB}`, ids.tokenB);
  assert.equal(revoke.status, 204, JSON.stringify(revoke.body));
  await cut;
  const fresh = await connect(unitToken(ids.unitA, backend.deps.config.secretKey), `${ids.unitA}-${randomUUID().slice(0, 8)}`);
  assert.equal(await trySubscribe(fresh, topic), false, 'denied again after the revocation (caches invalidated)');
  const leaked = receives(fresh, topic);
  unitB.publish(topic, '43');
  assert.equal(await leaked, null, 'nothing reaches the unit after the revocation');
});

test('making a node Private cuts the subscribers without a permission; the owner keeps its session (issue 10.3)', async () => {
  const key = backend.deps.config.secretKey;
  const topic = `${domain}/${ids.outB}/pepeunit`; // Public: anyone may subscribe
  const reader = await connect(unitToken(ids.unitA, key), `${ids.unitA}-reader`);
  assert.equal(await trySubscribe(reader, topic), true);
  const owner = await connect(unitToken(ids.unitB, key), `${ids.unitB}-owner`);
  const readerCut = waitForEvent(reader, 'close', { what: 'reader closed' });
  const privately = await call('PATCH', `/unit_nodes/${ids.outB}`, ids.tokenB, { visibility_level: 'Private' });
  assert.equal(privately.status, 200, JSON.stringify(privately.body));
  await readerCut;
  assert.equal(owner.connected, true, 'the owner keeps its session');
  const again = await connect(unitToken(ids.unitA, key), `${ids.unitA}-reader2`);
  assert.equal(await trySubscribe(again, topic), false, 'the reader cannot subscribe again');
  assert.equal((await call('PATCH', `/unit_nodes/${ids.outB}`, ids.tokenB, { visibility_level: 'Public' })).status, 200);
});

test('a non-owner cannot grant, list or revoke permissions of a resource; nothing changes', async () => {
  const before = await backend.deps.pg.query('SELECT count(*)::int AS n FROM permissions');
  const grant = await call('POST', '/permission', ids.tokenA, { agent_uuid: ids.unitA, agent_type: 'Unit', resource_uuid: ids.privOutB, resource_type: 'UnitNode' });
  assert.equal(grant.status, 403);
  assert.match(grant.body.detail, /^403: 1: No Access: /);
  const list = await call('GET', `/permission/get_resource_agents?resource_uuid=${ids.privOutB}&resource_type=UnitNode`, ids.tokenA);
  assert.equal(list.status, 403);
  const ownerList = await call('GET', `/permission/get_resource_agents?resource_uuid=${ids.privOutB}&resource_type=UnitNode`, ids.tokenB);
  assert.equal(ownerList.status, 200);
  assert.equal(ownerList.body.count, 2);
  const revoke = await call('DELETE', `/permission/x?agent_uuid=${ids.unitB}&resource_uuid=${ids.privOutB}`, ids.tokenA);
  assert.equal(revoke.status, 403);
  const badType = await call('POST', '/permission', ids.tokenB, { agent_uuid: ids.unitA, agent_type: 'Robot', resource_uuid: ids.privOutB, resource_type: 'UnitNode' });
  assert.equal(badType.status, 422);
  assert.match(badType.body.detail, /^422: 4: Permission Validation Error: /);
  const after = await backend.deps.pg.query('SELECT count(*)::int AS n FROM permissions');
  assert.equal(after.rows[0].n, before.rows[0].n);
});

test('forged, expired, wrong-secret, user and deleted-unit tokens are refused at CONNECT', async () => {
  const key = backend.deps.config.secretKey;
  const refused = [
    signToken({ uuid: ids.unitA, type: 'Unit' }, 'wrong-secret'),
    unitToken(ids.unitA, key).slice(0, -3) + 'abc',
    signToken({ uuid: ids.unitA, type: 'Unit', exp: Math.floor(Date.now() / 1000) - 10 } as never, key),
    ids.tokenA,
    unitToken(randomUUID(), key),
    'not-a-token',
    '',
  ];
  for (const token of refused) {
    // Each with the id its unit would use, so only the token decides.
    const claimed = token.split('.')[1] ? (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString() || '{}') as { uuid?: string }).uuid : undefined;
    await assert.rejects(connect(token, claimed ?? `c-${randomUUID()}`), /Not authorized|Bad username|refused/i, `token ${token.slice(0, 24)}… must be refused`);
  }
});

test('a unit connects only with its own client ids: no takeover of another device\'s session (issue 10.2)', async () => {
  const key = backend.deps.config.secretKey;
  const victim = await connect(unitToken(ids.unitB, key), ids.unitB);
  const victimClosed = waitForEvent(victim, 'close', { what: 'victim closed' });
  for (const clientId of [ids.unitB, `${ids.unitB}-x`, 'anything-else', `${ids.unitB.slice(0, 35)}`, `x${ids.unitA}`]) {
    await assert.rejects(connect(unitToken(ids.unitA, key), clientId), /Not authorized|Bad username|refused/i, `unit A must not connect as ${clientId}`);
  }
  assert.equal(victim.connected, true, 'the victim was never kicked');
  for (const clientId of [ids.unitA, ids.unitA.toUpperCase(), `${ids.unitA}-ota`, `${ids.unitA}_2`]) {
    const own = await connect(unitToken(ids.unitA, key), clientId);
    assert.equal(own.connected, true, clientId);
    await own.endAsync();
  }
  await victim.endAsync();
  await victimClosed;
});

test('the broker callbacks answer only the broker: without the shared secret 401, nothing decided (issue 10.4)', async () => {
  const key = backend.deps.config.secretKey;
  for (const url of ['/units/auth', '/units/authn']) {
    const res = await backend.app.inject({ method: 'POST', url: api + url, payload: { token: unitToken(ids.unitA, key), username: unitToken(ids.unitA, key), clientid: ids.unitA, topic: `${domain}/${ids.outA}/pepeunit` } });
    assert.equal(res.statusCode, 401, url);
    const wrong = await backend.app.inject({ method: 'POST', url: api + url, headers: { [BROKER_CALLBACK_SECRET_HEADER]: 'guess' }, payload: { token: unitToken(ids.unitA, key), topic: 'x' } });
    assert.equal(wrong.statusCode, 401, url);
  }
  const stats = backend.app.acl.access.cacheStats();
  const before = stats.decisions + stats.callers;
  // Garbage tokens and huge topics through the real (authenticated) callback are denied and never cached.
  for (let i = 0; i < 200; i++) {
    const denied = await call('POST', '/units/auth', undefined, { token: `garbage-${i}-${'x'.repeat(4000)}`, topic: `${domain}/${'t'.repeat(60_000)}${i}`, action: 'publish' });
    assert.deepEqual(denied.body, { result: 'deny' });
  }
  const afterStats = backend.app.acl.access.cacheStats();
  assert.equal(afterStats.decisions + afterStats.callers, before, 'nothing cached for invalid tokens');
});

test('2,000 unauthenticated callback requests with unique 8 KB tokens and 60 KB topics leave the heap where it was (issue 10.4)', async () => {
  const gc = runInNewContext('gc') as () => void;
  const heap = () => {
    gc();
    gc();
    return process.memoryUsage().heapUsed;
  };
  const before = heap();
  const key = backend.deps.config.secretKey;
  for (let i = 0; i < 2000; i++) {
    // Half garbage tokens, half correctly signed ones with huge topics: neither may be remembered.
    const token = i % 2 === 0 ? `${i}-${randomUUID()}-`.padEnd(8192, 'x') : unitToken(ids.unitA, key);
    const res = await call('POST', '/units/auth', undefined, { token, topic: `${domain}/${randomUUID()}/`.padEnd(60_000, 't'), action: 'subscribe' });
    assert.deepEqual(res.body, { result: 'deny' });
  }
  const grown = heap() - before;
  assert.ok(grown < 16 * 1024 * 1024, `heap grew by ${(grown / 1024 / 1024).toFixed(1)} MB`);
  assert.ok(backend.app.acl.access.cacheStats().bytes < 1024 * 1024, 'the caches hold no request text');
});

test('the backend token subscribes system topics; units never touch another unit\'s base topics', async () => {
  const key = backend.deps.config.secretKey;
  const watcher = await connect(backendToken(domain, key));
  assert.equal(await trySubscribe(watcher, `${domain}/+/+/+/pepeunit`), true);
  const unitA = await connect(unitToken(ids.unitA, key), `${ids.unitA}-${randomUUID().slice(0, 8)}`);
  assert.equal(await trySubscribe(unitA, `${domain}/input_base_topic/${ids.unitA}/update/pepeunit`), true, 'own input base topic');
  assert.equal(await trySubscribe(unitA, `${domain}/input_base_topic/${ids.unitB}/update/pepeunit`), false);
  assert.equal(await trySubscribe(unitA, `${domain}/output_base_topic/${ids.unitB}/state/pepeunit`), false);
  assert.equal(await trySubscribe(unitA, `${domain}/+/+/+/pepeunit`), false);
  assert.equal(await trySubscribe(unitA, `${domain}/+/pepeunit`), false);
  assert.equal(await trySubscribe(unitA, '#'), false);
  const ownState = receives(watcher, `${domain}/output_base_topic/${ids.unitA}/state/pepeunit`);
  unitA.publish(`${domain}/output_base_topic/${ids.unitA}/state/pepeunit`, '{"millis":1}');
  assert.equal(await ownState, '{"millis":1}');
  const spoof = receives(watcher, `${domain}/output_base_topic/${ids.unitB}/state/pepeunit`);
  unitA.publish(`${domain}/output_base_topic/${ids.unitB}/state/pepeunit`, '{"millis":2}');
  assert.equal(await spoof, null);
  const command = receives(watcher, `${domain}/input_base_topic/${ids.unitB}/update/pepeunit`);
  unitA.publish(`${domain}/input_base_topic/${ids.unitB}/update/pepeunit`, '{"COMMAND":"Update"}');
  assert.equal(await command, null, 'a unit cannot send commands to another unit');
});

test('the authorization callback answers the reference body (no action) and denies on bad input', async () => {
  const key = backend.deps.config.secretKey;
  const ok = await call('POST', '/units/auth', undefined, { token: unitToken(ids.unitA, key), topic: `${domain}/${ids.outA}/pepeunit` });
  assert.deepEqual(ok.body, { result: 'allow' });
  const no = await call('POST', '/units/auth', undefined, { token: unitToken(ids.unitA, key), topic: `${domain}/${ids.inB}` });
  assert.deepEqual(no.body, { result: 'deny' });
  const malformed = await backend.app.inject({ method: 'POST', url: `${api}/units/auth`, headers: { 'content-type': 'application/json', [BROKER_CALLBACK_SECRET_HEADER]: backend.deps.config.brokerCallbacks.secret ?? '' }, payload: '{"token": 1' });
  assert.equal(malformed.statusCode, 200);
  assert.deepEqual(malformed.json(), { result: 'deny' });
});

test('blocking an owner cuts and refuses its units on MQTT and REST; unblocking restores them (issue 10.9)', async () => {
  const key = backend.deps.config.secretKey;
  const device = await connect(unitToken(ids.unitA, key), ids.unitA);
  const cut = waitForEvent(device, 'close', { what: 'device closed' });
  const admin = await call('POST', '/users/auth', undefined, { credentials: 'instance_admin', password: 'Passw0rd!' });
  assert.equal(admin.status, 200, JSON.stringify(admin.body));
  assert.equal((await call('PATCH', `/users/block/${ids.userA}`, admin.body.token)).status, 204);
  await cut;
  await assert.rejects(connect(unitToken(ids.unitA, key), ids.unitA), /Not authorized|refused/i, 'a blocked owner\'s unit cannot reconnect');
  assert.equal((await call('GET', `/units/env/${ids.unitA}`, unitToken(ids.unitA, key))).status, 403, 'nor use REST');
  assert.equal((await call('PATCH', `/users/unblock/${ids.userA}`, admin.body.token)).status, 204);
  const back = await connect(unitToken(ids.unitA, key), ids.unitA);
  assert.equal(back.connected, true);
});
