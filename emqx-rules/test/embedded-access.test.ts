// Authentication and authorization of the embedded broker once the controller has configured it,
// with a stand-in backend answering the HTTP callbacks.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { ErrorWithSubackPacket } from 'mqtt';
import type { MqttClient } from 'mqtt';
import { buildEmqxBaseConfig, reconcileEmqxBase } from '../src/controller.js';
import { waitFor, waitForEvent } from '@pepeunit/tests/wait';
import { collect, connectClient, expectRefused, startBackendStub, startTestBroker } from './helpers.js';
import type { BackendStub, TestBroker } from './helpers.js';

describe('embedded broker access control (configured by the controller)', () => {
  let broker: TestBroker;
  let backend: BackendStub;
  const clients: MqttClient[] = [];

  const connect = async (username: string, password: string, clientId: string): Promise<MqttClient> => {
    const client = await connectClient(broker.broker.mqttUrl, { username, password, clientId });
    clients.push(client);
    return client;
  };
  const authzFor = (clientid: string) => backend.authzRequests.filter((request) => request.body.clientid === clientid);

  before(async () => {
    broker = await startTestBroker();
    backend = await startBackendStub();
    const result = await reconcileEmqxBase(broker.client, buildEmqxBaseConfig({ callbackBaseUrl: backend.baseUrl }));
    assert.ok(result.changed.length > 0);
    backend.users.set('unit-a', { password: 'secret-a', clientAttrs: { owner: 'alice', 'bad key': 'dropped' } });
    backend.users.set('unit-b', { password: 'secret-b' });
    backend.users.set('backend', { password: 'backend-secret', isSuperuser: true });
  });

  beforeEach(() => {
    backend.authnRequests.length = 0;
    backend.authzRequests.length = 0;
    backend.permissions.clear();
  });

  after(async () => {
    await Promise.all(clients.map((client) => client.endAsync(true).catch(() => undefined)));
    await backend.close();
    await broker.close();
  });

  it('accepts a CONNECT the authn callback allows, with every template placeholder substituted', async () => {
    await connect('unit-a', 'secret-a', 'client-a1');
    assert.equal(backend.authnRequests.length, 1);
    const [request] = backend.authnRequests;
    assert.deepEqual(request?.body, { username: 'unit-a', password: 'secret-a', clientid: 'client-a1', peerhost: '127.0.0.1' });
    assert.match(String(request?.headers['content-type']), /^application\/json/);
    const info = await broker.client.getClient('client-a1');
    assert.deepEqual(info?.client_attrs, { owner: 'alice' }, 'client_attrs kept, invalid keys dropped');
  });

  it('refuses a bad password and an unknown user with CONNACK 5', async () => {
    const badPassword = await expectRefused(broker.broker.mqttUrl, { username: 'unit-a', password: 'wrong', clientId: 'client-a2' });
    assert.equal(badPassword.code, 5);
    const unknown = await expectRefused(broker.broker.mqttUrl, { username: 'nobody', password: 'x', clientId: 'client-x' });
    assert.equal(unknown.code, 5);
    assert.equal(await broker.client.getClient('client-a2'), undefined);
  });

  it('passes publish and subscribe to the authz callback with the action, and enforces its answer', async () => {
    const subscriber = await connect('unit-b', 'secret-b', 'client-b-sub');
    const publisher = await connect('unit-a', 'secret-a', 'client-a-pub');
    backend.permissions.set('unit-b|subscribe|dom/in/#', 'allow');
    backend.permissions.set('unit-a|publish|dom/in/allowed', 'allow');
    const received = collect(subscriber);

    const granted = await subscriber.subscribeAsync('dom/in/#', { qos: 1 });
    assert.equal(granted[0]?.qos, 1);
    await publisher.publishAsync('dom/in/allowed', 'yes', { qos: 1 });
    await publisher.publishAsync('dom/in/denied', 'no', { qos: 1 });
    await publisher.publishAsync('dom/in/allowed', 'after-denied', { qos: 1 });
    // 'after-denied' follows the denied publish: once it arrived, the denied one was decided.
    await waitFor(() => received.length >= 2, { what: 'allowed messages' });
    assert.deepEqual(received, [
      { topic: 'dom/in/allowed', payload: 'yes' },
      { topic: 'dom/in/allowed', payload: 'after-denied' },
    ]);
    assert.equal(publisher.connected, true, 'deny_action ignore keeps the publisher connected');

    assert.deepEqual(
      authzFor('client-b-sub').map((request) => request.body),
      [{ token: 'unit-b', topic: 'dom/in/#', action: 'subscribe', clientid: 'client-b-sub' }],
    );
    assert.deepEqual(
      authzFor('client-a-pub').map((request) => request.body),
      [
        { token: 'unit-a', topic: 'dom/in/allowed', action: 'publish', clientid: 'client-a-pub' },
        { token: 'unit-a', topic: 'dom/in/denied', action: 'publish', clientid: 'client-a-pub' },
      ],
      'the second allowed publish (same topic and QoS) came from the cache',
    );
    const info = await broker.client.getClient('client-a-pub');
    assert.equal(info?.recv_msg, 3);
    assert.equal(info?.['recv_msg.dropped'], 1);
  });

  it('answers a denied SUBSCRIBE with SUBACK 0x80', async () => {
    const client = await connect('unit-b', 'secret-b', 'client-b-denied');
    await assert.rejects(client.subscribeAsync('dom/other/#', { qos: 1 }), (error: unknown) => {
      assert.ok(error instanceof ErrorWithSubackPacket);
      assert.equal(error.packet.granted[0], 128);
      return true;
    });
    assert.deepEqual(authzFor('client-b-denied')[0]?.body.action, 'subscribe');
    assert.equal(client.connected, true);
  });

  it('authorizes a shared subscription against its real topic filter', async () => {
    const client = await connect('unit-b', 'secret-b', 'client-b-shared');
    backend.permissions.set('unit-b|subscribe|dom/shared/#', 'allow');
    const granted = await client.subscribeAsync('$share/workers/dom/shared/#', { qos: 1 });
    assert.equal(granted[0]?.qos, 1);
    assert.deepEqual(authzFor('client-b-shared')[0]?.body.topic, 'dom/shared/#');
  });

  it('stops subscriptions to "#" in the file source before asking the backend', async () => {
    const client = await connect('unit-b', 'secret-b', 'client-b-hash');
    backend.permissions.set('unit-b|subscribe|#', 'allow');
    await assert.rejects(client.subscribeAsync('#'), ErrorWithSubackPacket);
    assert.equal(authzFor('client-b-hash').length, 0);
  });

  it('lets a superuser publish and subscribe anywhere without authz callbacks', async () => {
    const superuser = await connect('backend', 'backend-secret', 'backend-1');
    const received = collect(superuser);
    const granted = await superuser.subscribeAsync('dom/+/+/+/pepeunit', { qos: 1 });
    assert.equal(granted[0]?.qos, 1);
    await superuser.publishAsync('dom/input_base_topic/u1/state/pepeunit', 'hello', { qos: 1 });
    await waitFor(() => received.length === 1, { what: 'superuser message' });
    assert.equal(authzFor('backend-1').length, 0);
  });

  it('caches decisions until DELETE /api/v5/authorization/cache clears them', async () => {
    const subscriber = await connect('backend', 'backend-secret', 'backend-cache-watch');
    const received = collect(subscriber);
    await subscriber.subscribeAsync('dom/cache/#');
    const publisher = await connect('unit-a', 'secret-a', 'client-a-cache');
    backend.permissions.set('unit-a|publish|dom/cache/t', 'allow');
    backend.permissions.set('unit-a|publish|dom/cache/barrier', 'allow');
    const ofT = () => received.filter((message) => message.topic === 'dom/cache/t').map((message) => message.payload);
    const authzOfT = () => authzFor('client-a-cache').filter((request) => request.body.topic === 'dom/cache/t');
    // Barrier: a later allowed publish of the same client arrived, so the earlier ones were decided.
    const barrier = async (label: string) => {
      await publisher.publishAsync('dom/cache/barrier', label, { qos: 1 });
      await waitFor(() => received.some((message) => message.payload === label), { what: `barrier ${label}` });
    };

    await publisher.publishAsync('dom/cache/t', '1', { qos: 1 });
    backend.permissions.set('unit-a|publish|dom/cache/t', 'deny'); // the backend changes its mind
    await publisher.publishAsync('dom/cache/t', '2', { qos: 1 });
    await waitFor(() => ofT().length === 2, { what: 'cached allow' });
    assert.equal(authzOfT().length, 1, 'second publish answered from the cache');

    const cache = (await broker.client.request<unknown[]>('GET', '/clients/client-a-cache/authorization/cache')).body;
    assert.equal(cache.length, 1);

    await broker.client.clearAuthorizationCache();
    await publisher.publishAsync('dom/cache/t', '3', { qos: 1 });
    await barrier('b1');
    assert.deepEqual(ofT(), ['1', '2']);
    assert.equal(authzOfT().length, 2, 'asked the backend again after the flush');

    backend.permissions.set('unit-a|publish|dom/cache/t', 'allow');
    await publisher.publishAsync('dom/cache/t', '4', { qos: 1 });
    await barrier('b2');
    assert.ok(!ofT().includes('4'), 'the deny is cached now');
    assert.equal(await broker.client.clearClientAuthorizationCache('client-a-cache'), true);
    await publisher.publishAsync('dom/cache/t', '5', { qos: 1 });
    await waitFor(() => received.some((message) => message.payload === '5'), { what: 'allowed after per-client flush' });
  });

  it('refuses a client whose clientid was banned while its authentication callout ran', async () => {
    backend.authnDelays.set('unit-b', 300);
    try {
      const connecting = expectRefused(broker.broker.mqttUrl, { username: 'unit-b', password: 'secret-b', clientId: 'banned-mid-authn' });
      await waitFor(() => backend.authnRequests.some((request) => request.body.clientid === 'banned-mid-authn'), { what: 'the authn callout' });
      await broker.client.createBan({ as: 'clientid', who: 'banned-mid-authn' });
      assert.equal((await connecting).code, 5);
      assert.equal(await broker.client.getClient('banned-mid-authn'), undefined);
    } finally {
      backend.authnDelays.clear();
      await broker.client.deleteBan('clientid', 'banned-mid-authn');
    }
  });

  it('disconnects on a denied publish with deny_action disconnect', async () => {
    const settings = await broker.client.getAuthorizationSettings();
    await broker.client.updateAuthorizationSettings({ ...settings, deny_action: 'disconnect' });
    try {
      const client = await connect('unit-a', 'secret-a', 'client-a-strict');
      const closed = waitForEvent(client, 'close', { what: 'client closed' });
      client.publish('dom/strict/denied', 'x', { qos: 0 });
      await closed;
      assert.equal(client.connected, false);
    } finally {
      await broker.client.updateAuthorizationSettings({ ...settings, deny_action: 'ignore' });
    }
  });

  it('refuses every CONNECT when the authn callback is unreachable (all authenticators ignore)', async () => {
    const [authenticator] = await broker.client.listAuthenticators();
    assert.ok(authenticator);
    const { id, ...config } = authenticator;
    await broker.client.updateAuthenticator(id, { ...config, url: 'http://127.0.0.1:1/units/authn', request_timeout: '1s' });
    try {
      const refused = await expectRefused(broker.broker.mqttUrl, { username: 'unit-a', password: 'secret-a', clientId: 'client-a-offline' });
      assert.equal(refused.code, 5);
    } finally {
      await broker.client.updateAuthenticator(id, config);
    }
    await connect('unit-a', 'secret-a', 'client-a-online');
  });
});
