// The embedded broker's management API: API-key auth and EMQX's error format, clients, kick,
// bans, listener limits. The broker keeps EMQX's defaults here (no authenticator, stock acl.conf
// that allows everything), so clients connect freely.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import mqtt, { ErrorWithSubackPacket } from 'mqtt';
import type { MqttClient } from 'mqtt';
import { EmqxApiError, EmqxManagementClient } from '../src/management-client.js';
import { waitFor, waitForEvent } from '@pepeunit/tests/wait';
import { collect, connectClient, expectRefused, startTestBroker } from './helpers.js';
import type { TestBroker } from './helpers.js';

describe('embedded broker management API', () => {
  let broker: TestBroker;
  const clients: MqttClient[] = [];
  const connect = async (clientId: string, username?: string): Promise<MqttClient> => {
    const client = await connectClient(broker.broker.mqttUrl, { clientId, username });
    clients.push(client);
    return client;
  };
  const basic = (key: string, secret: string): string => `Basic ${Buffer.from(`${key}:${secret}`).toString('base64')}`;

  before(async () => {
    broker = await startTestBroker();
  });
  after(async () => {
    await Promise.all(clients.map((client) => client.endAsync(true).catch(() => undefined)));
    await broker.close();
  });

  it('rejects a wrong API key or a missing header with 401 and EMQX error bodies', async () => {
    const wrong = await request(`${broker.broker.apiUrl}/api/v5/clients`, { headers: { authorization: basic(broker.apiKey, 'wrong') } });
    assert.equal(wrong.statusCode, 401);
    assert.deepEqual(await wrong.body.json(), { code: 'BAD_API_KEY_OR_SECRET', message: 'Check api_key/api_secret' });
    assert.equal(wrong.headers['www-authenticate'], 'Basic Realm="emqx-dashboard"');

    const missing = await request(`${broker.broker.apiUrl}/api/v5/authorization/settings`);
    assert.equal(missing.statusCode, 401);
    assert.equal(((await missing.body.json()) as { code: string }).code, 'AUTHORIZATION_HEADER_ERROR');

    const client = new EmqxManagementClient({ baseUrl: broker.broker.apiUrl, apiKey: 'nope', apiSecret: 'nope', maxRetries: 0 });
    try {
      await assert.rejects(client.listClients(), (error: unknown) => {
        assert.ok(error instanceof EmqxApiError);
        assert.equal(error.status, 401);
        assert.equal(error.code, 'BAD_API_KEY_OR_SECRET');
        return true;
      });
    } finally {
      await client.close();
    }
  });

  it('serves status without auth, 404 NOT_FOUND for unknown paths, 415 for non-JSON bodies, 400 for bad bodies', async () => {
    assert.equal((await broker.client.status()).running, true);
    const text = await request(`${broker.broker.apiUrl}/status`);
    assert.match(await text.body.text(), /is running/);

    const unknown = await request(`${broker.broker.apiUrl}/api/v5/no_such_thing`, { headers: { authorization: basic(broker.apiKey, broker.apiSecret) } });
    assert.equal(unknown.statusCode, 404);
    assert.equal(((await unknown.body.json()) as { code: string }).code, 'NOT_FOUND');

    const plain = await request(`${broker.broker.apiUrl}/api/v5/banned`, {
      method: 'POST',
      headers: { authorization: basic(broker.apiKey, broker.apiSecret), 'content-type': 'text/plain' },
      body: 'as=clientid',
    });
    assert.equal(plain.statusCode, 415);
    assert.deepEqual(await plain.body.json(), { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'content-type:application/json Required' });

    await assert.rejects(
      broker.client.request('PUT', '/authorization/settings', { body: { no_match: 'maybe', deny_action: 'ignore', cache: { enable: true } } }),
      (error: unknown) => error instanceof EmqxApiError && error.status === 400 && error.code === 'BAD_REQUEST' && (error.details as { path?: string }).path === 'authorization.no_match',
    );
    await assert.rejects(
      broker.client.request('PUT', '/authorization/settings', { body: { no_match: 'deny' } }),
      (error: unknown) => error instanceof EmqxApiError && error.status === 400,
    );
    await assert.rejects(
      broker.client.createAuthorizationSource({ type: 'file', rules: '{allow, everyone}.' }),
      (error: unknown) => error instanceof EmqxApiError && error.status === 400 && /bad_acl_file_content/.test(error.emqxMessage),
    );
    await assert.rejects(
      broker.client.updateListener('tcp:default', { max_conn_rate: 'lots' }),
      (error: unknown) => error instanceof EmqxApiError && error.status === 400 && (error.details as { path?: string }).path === 'listeners.tcp.default.max_conn_rate',
    );
    assert.equal((await broker.client.getAuthorizationSettings()).no_match, 'allow', 'rejected requests change nothing');
  });

  it('answers 409 ALREADY_EXISTS for a second authenticator of the same type', async () => {
    const authenticator = { mechanism: 'password_based', backend: 'http', method: 'post', url: 'http://127.0.0.1:9/authn', enable: false };
    const created = await broker.client.createAuthenticator(authenticator);
    assert.equal(created.id, 'password_based:http');
    try {
      await assert.rejects(broker.client.createAuthenticator(authenticator), (error: unknown) => {
        assert.ok(error instanceof EmqxApiError);
        assert.equal(error.status, 409);
        assert.equal(error.code, 'ALREADY_EXISTS');
        return true;
      });
    } finally {
      assert.equal(await broker.client.deleteAuthenticator('password_based:http'), true);
    }
    assert.equal(await broker.client.deleteAuthenticator('password_based:http'), false);
  });

  it('lists clients page by page with username/clientid filters', async () => {
    for (let index = 0; index < 5; index += 1) await connect(`page-${index}`, index < 2 ? 'owner-1' : 'owner-2');
    const first = await broker.client.listClients({ limit: 2, page: 1, like_clientid: 'page-' });
    assert.equal(first.data.length, 2);
    assert.deepEqual(first.meta, { page: 1, limit: 2, count: 5, hasnext: true });
    const last = await broker.client.listClients({ limit: 2, page: 3, like_clientid: 'page-' });
    assert.equal(last.data.length, 1);
    assert.equal(last.meta.hasnext, false);

    const all: string[] = [];
    for await (const client of broker.client.iterateClients({ like_clientid: 'page-', limit: 2 })) all.push(client.clientid);
    assert.deepEqual(all.sort(), ['page-0', 'page-1', 'page-2', 'page-3', 'page-4']);

    const owner1 = await broker.client.listClients({ username: 'owner-1' });
    assert.deepEqual(owner1.data.map((client) => client.clientid).sort(), ['page-0', 'page-1']);
    const picked = await broker.client.listClients({ clientid: ['page-3', 'page-4'], fields: ['clientid', 'recv_msg'] });
    assert.deepEqual(picked.data.map((client) => Object.keys(client).sort()), [
      ['clientid', 'recv_msg'],
      ['clientid', 'recv_msg'],
    ]);
    await assert.rejects(broker.client.listClients({ limit: 20_000 }), (error: unknown) => error instanceof EmqxApiError && error.status === 400);
  });

  it('kicks a client and answers 404 for an unknown one', async () => {
    const client = await connect('kick-me');
    const closed = waitForEvent(client, 'close', { what: 'client closed' });
    assert.equal(await broker.client.kickClient('kick-me'), true);
    await closed;
    await waitFor(async () => (await broker.client.getClient('kick-me')) === undefined, { what: 'client gone' });
    assert.equal(await broker.client.kickClient('kick-me'), false);
    await assert.rejects(broker.client.request('GET', '/clients/kick-me'), (error: unknown) => error instanceof EmqxApiError && error.code === 'CLIENTID_NOT_FOUND');
  });

  it('refuses banned clients at CONNECT, kicks a connected clientid, and lifts bans', async () => {
    const until = new Date(Date.now() + 60_000).toISOString();
    const connected = await connect('ban-me');
    const closed = waitForEvent(connected, 'close', { what: 'connected closed' });
    const ban = await broker.client.createBan({ as: 'clientid', who: 'ban-me', reason: 'mps limit', by: 'backend', until });
    assert.equal(ban.as, 'clientid');
    assert.equal(ban.reason, 'mps limit');
    assert.equal(Date.parse(ban.until), Math.floor(Date.parse(until) / 1000) * 1000);
    await closed;

    const refused = await expectRefused(broker.broker.mqttUrl, { clientId: 'ban-me' });
    assert.equal(refused.code, 5);

    await assert.rejects(broker.client.createBan({ as: 'clientid', who: 'ban-me' }), (error: unknown) => {
      assert.ok(error instanceof EmqxApiError);
      assert.equal(error.code, 'ALREADY_EXISTS');
      assert.equal((error.details as { who?: string }).who, 'ban-me', 'the existing ban is JSON inside message');
      return true;
    });
    await assert.rejects(
      broker.client.createBan({ as: 'clientid', who: 'late', until: Math.floor(Date.now() / 1000) - 10 }),
      (error: unknown) => error instanceof EmqxApiError && error.status === 400,
    );

    await broker.client.createBan({ as: 'username', who: 'banned-user' });
    assert.equal((await expectRefused(broker.broker.mqttUrl, { clientId: 'other', username: 'banned-user' })).code, 5);

    const listed = await broker.client.listBans();
    assert.deepEqual(listed.data.map((item) => `${item.as}:${item.who}`).sort(), ['clientid:ban-me', 'username:banned-user']);
    assert.deepEqual((await broker.client.listBans({ username: 'banned-user' })).data.length, 1);

    assert.equal(await broker.client.deleteBan('clientid', 'ban-me'), true);
    assert.equal(await broker.client.deleteBan('clientid', 'ban-me'), false);
    await connect('ban-me');
    assert.equal(await broker.client.deleteBan('username', 'banned-user'), true);
  });

  it('kicks several clients with POST /clients/kickout/bulk (204; unknown ids are ignored), reason kicked', async () => {
    const reasons = new Map<string, string | undefined>();
    broker.broker.hooks.on('client.disconnected', (event) => reasons.set(event.clientid, event.reason));
    const [first, second, stays] = [await connect('bulk-1'), await connect('bulk-2'), await connect('bulk-3')];
    const closed = [first, second].map((client) => waitForEvent(client, 'close', { what: 'client closed' }));
    const response = await broker.client.request('POST', '/clients/kickout/bulk', { body: ['bulk-1', 'bulk-2', 'nobody'] });
    assert.equal(response.status, 204);
    await Promise.all(closed);
    await waitFor(() => reasons.get('bulk-1') === 'kicked' && reasons.get('bulk-2') === 'kicked', { what: 'disconnect events' });
    assert.equal(stays.connected, true);
    assert.deepEqual((await broker.client.listClients({ like_clientid: 'bulk-' })).data.map((client) => client.clientid), ['bulk-3']);
    await assert.rejects(
      broker.client.request('POST', '/clients/kickout/bulk', { body: { clientid: 'bulk-3' } }),
      (error: unknown) => error instanceof EmqxApiError && error.status === 400,
    );
  });

  it('refuses username and peerhost bans at CONNECT without kicking live sessions; only clientid bans kick', async () => {
    const live = await connect('live-user', 'user-live');
    await broker.client.createBan({ as: 'username', who: 'user-live' });
    assert.equal((await expectRefused(broker.broker.mqttUrl, { clientId: 'live-user-2', username: 'user-live' })).code, 5);
    assert.equal(live.connected, true, 'a username ban does not kick');

    await broker.client.createBan({ as: 'peerhost', who: '127.0.0.1', reason: 'flood' });
    try {
      assert.equal((await expectRefused(broker.broker.mqttUrl, { clientId: 'from-loopback' })).code, 5);
      assert.equal(live.connected, true, 'a peerhost ban does not kick');
      assert.deepEqual((await broker.client.listBans({ peerhost: '127.0.0.1' })).data.map((ban) => ban.reason), ['flood']);
      await assert.rejects(broker.client.createBan({ as: 'peerhost', who: 'not-an-ip' }), (error: unknown) => error instanceof EmqxApiError && error.status === 400);
    } finally {
      assert.equal(await broker.client.deleteBan('peerhost', '127.0.0.1'), true);
    }
    await connect('from-loopback');
    assert.equal(await broker.client.deleteBan('username', 'user-live'), true);
  });

  it('lets a ban end at its until time, and clears every ban with DELETE /banned', async () => {
    const until = Math.floor(Date.now() / 1000) + 2;
    const ban = await broker.client.createBan({ as: 'clientid', who: 'short-ban', until });
    assert.equal(Date.parse(ban.until), until * 1000);
    assert.equal((await expectRefused(broker.broker.mqttUrl, { clientId: 'short-ban' })).code, 5);
    await waitFor(
      async () => {
        try {
          await connect('short-ban');
          return true;
        } catch {
          return false;
        }
      },
      { what: 'the ban to expire' },
    );

    await broker.client.createBan({ as: 'clientid', who: 'clear-1' });
    await broker.client.createBan({ as: 'username_re', who: '^clear-' });
    const cleared = await broker.client.request('DELETE', '/banned');
    assert.equal(cleared.status, 204);
    assert.deepEqual((await broker.client.listBans()).data, []);
  });

  it('lists and clears one client’s authorization cache (GET, DELETE 204, 404 for an unknown client)', async () => {
    const client = await connect('cache-owner');
    await client.publishAsync('cache/topic', 'x', { qos: 1 });
    const path = '/clients/cache-owner/authorization/cache';
    const cached = (await broker.client.request<Array<{ topic: string; result: string }>>('GET', path)).body;
    assert.deepEqual(
      cached.map((entry) => [entry.topic, entry.result]),
      [['cache/topic', 'allow']],
    );
    assert.equal(await broker.client.clearClientAuthorizationCache('cache-owner'), true);
    assert.deepEqual((await broker.client.request<unknown[]>('GET', path)).body, []);
    assert.equal(await broker.client.clearClientAuthorizationCache('no-such-client'), false);
    await assert.rejects(
      broker.client.request('DELETE', '/clients/no-such-client/authorization/cache'),
      (error: unknown) => error instanceof EmqxApiError && error.status === 404 && error.code === 'CLIENTID_NOT_FOUND',
    );
  });

  it('enforces the listener max_connections', async () => {
    const listener = await broker.client.getListener('tcp:default');
    const open = (await broker.client.listClients()).meta.count ?? 0;
    await broker.client.updateListener('tcp:default', { max_connections: open + 1 });
    try {
      await connect('last-seat');
      const outcome = await new Promise<string>((resolve) => {
        const extra = mqtt.connect(broker.broker.mqttUrl, { clientId: 'no-seat', protocolVersion: 4, reconnectPeriod: 0 });
        extra.once('connect', () => {
          resolve('connected');
          extra.end(true);
        });
        extra.once('close', () => {
          resolve('closed');
          extra.end(true);
        });
      });
      assert.equal(outcome, 'closed', 'the connection over max_connections is closed before CONNACK');
    } finally {
      await broker.client.updateListener('tcp:default', { max_connections: listener?.max_connections ?? 'infinity' });
    }
    assert.equal((await broker.client.getListener('tcp:default'))?.max_connections, 'infinity');
  });

  it('routes shared subscriptions to one member per group (round robin)', async () => {
    const memberA = await connect('share-a');
    const memberB = await connect('share-b');
    const other = await connect('share-other-group');
    const plain = await connect('share-plain');
    const publisher = await connect('share-pub');
    const got = { a: collect(memberA), b: collect(memberB), other: collect(other), plain: collect(plain) };
    await memberA.subscribeAsync('$share/ingest/dom/+/pepeunit', { qos: 1 });
    await memberB.subscribeAsync('$share/ingest/dom/+/pepeunit', { qos: 1 });
    await other.subscribeAsync('$queue/dom/+/pepeunit', { qos: 1 });
    await plain.subscribeAsync('dom/+/pepeunit', { qos: 1 });
    await assert.rejects(plain.subscribeAsync('$share/no-filter'), ErrorWithSubackPacket);

    for (let index = 0; index < 6; index += 1) await publisher.publishAsync('dom/unit-1/pepeunit', `m${index}`, { qos: 1 });
    await waitFor(() => got.a.length + got.b.length === 6 && got.other.length === 6 && got.plain.length === 6, { what: 'shared deliveries' });
    assert.equal(got.a.length, 3);
    assert.equal(got.b.length, 3);
    assert.deepEqual(
      [...got.a, ...got.b].map((message) => message.payload).sort(),
      ['m0', 'm1', 'm2', 'm3', 'm4', 'm5'],
    );

    await memberB.endAsync();
    await publisher.publishAsync('dom/unit-1/pepeunit', 'after-leave', { qos: 1 });
    await waitFor(() => got.a.some((message) => message.payload === 'after-leave'), { what: 'remaining member gets everything' });
  });

  it('refuses to move the running listener with a clear message', async () => {
    await assert.rejects(
      broker.client.updateListener('tcp:default', { bind: '0.0.0.0:1' }),
      (error: unknown) => error instanceof EmqxApiError && error.status === 400 && /cannot move listener/.test(error.emqxMessage),
    );
  });
});

describe('embedded broker state file', () => {
  it('keeps the configuration and bans across a restart', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'pu-emqx-state-'));
    const stateFile = join(directory, 'state.json');
    try {
      const first = await startTestBroker({ stateFile });
      await first.client.updateAuthorizationSettings({ no_match: 'deny', deny_action: 'disconnect', cache: { enable: false } });
      await first.client.createBan({ as: 'clientid', who: 'persisted' });
      await first.close();

      const second = await startTestBroker({ stateFile });
      try {
        const settings = await second.client.getAuthorizationSettings();
        assert.equal(settings.no_match, 'deny');
        assert.equal(settings.deny_action, 'disconnect');
        assert.deepEqual((await second.client.listBans()).data.map((ban) => ban.who), ['persisted']);
        assert.equal((await second.client.getListener('tcp:default'))?.bind, second.broker.mqttUrl.replace('mqtt://', ''));
      } finally {
        await second.close();
      }
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});
