import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  AUTHN_REQUEST_BODY_TEMPLATE,
  AUTHZ_REQUEST_BODY_TEMPLATE,
  buildEmqxBaseConfig,
  emqxBaseOptionsFromEnv,
  reconcileEmqxBase,
} from '../src/controller.js';
import type { EmqxBaseConfig } from '../src/controller.js';
import { differences } from '../src/config-compare.js';
import type { EmqxManagementClient } from '../src/management-client.js';
import { startTestBroker } from './helpers.js';
import type { TestBroker } from './helpers.js';

const CALLBACK_BASE = 'http://127.0.0.1:5000/pepeunit/api/v1';

/** Every resource the controller touches, read back through the API. */
async function readManagedResources(client: EmqxManagementClient): Promise<Record<string, unknown>> {
  const paths = [
    '/authentication',
    '/authentication/password_based%3Ahttp',
    '/authorization/sources',
    '/authorization/sources/file',
    '/authorization/sources/http',
    '/authorization/settings',
    '/listeners/tcp%3Adefault',
    '/configs/global_zone',
    '/mqtt/retainer',
  ];
  const result: Record<string, unknown> = {};
  for (const path of paths) result[path] = (await client.request('GET', path)).body;
  return result;
}

describe('buildEmqxBaseConfig', () => {
  it('computes the authenticator, the source chain, settings, listener limits, zone and retainer', () => {
    const config = buildEmqxBaseConfig({
      callbackBaseUrl: `${CALLBACK_BASE}/`,
      maxClients: 500,
      maxClientConnectionRate: '5/s',
      clientMaxMessagesRate: '10/s',
      clientMaxBytesRate: '64KB/s',
      maxPayloadSizeKb: 128,
      maxQos: 1,
      maxTopicLevels: 6,
      maxLenMessageQueue: 64,
      maxTopicAlias: 16,
      maxClientIdLen: 256,
    });
    const [authenticator] = config.authentication;
    assert.equal(authenticator?.url, `${CALLBACK_BASE}/units/authn`);
    assert.deepEqual(authenticator?.body, { ...AUTHN_REQUEST_BODY_TEMPLATE });
    assert.deepEqual(authenticator?.ssl, { enable: false });
    assert.deepEqual(
      config.authorizationSources.map((source) => source.type),
      ['file', 'http'],
    );
    const http = config.authorizationSources[1];
    assert.equal(http?.url, `${CALLBACK_BASE}/units/auth`);
    assert.deepEqual(http?.body, { token: '${username}', topic: '${topic}', action: '${action}', clientid: '${clientid}' });
    assert.deepEqual(http?.body, { ...AUTHZ_REQUEST_BODY_TEMPLATE });
    const file = config.authorizationSources[0];
    assert.match(String(file?.rules), /\{deny, all, subscribe, \["\$SYS\/#", \{eq, "#"\}, \{eq, "\+\/#"\}\]\}\./);
    assert.doesNotMatch(String(file?.rules), /127\.0\.0\.1/, 'loopback is not trusted by default');
    assert.deepEqual(config.authorizationSettings, {
      no_match: 'deny',
      deny_action: 'ignore',
      cache: { enable: true, max_size: 64, ttl: '10m', excludes: [] },
    });
    assert.deepEqual(config.listeners, [
      {
        id: 'tcp:default',
        config: { enable_authn: true, max_connections: 500, max_conn_rate: '5/s', messages_rate: '10/s', bytes_rate: '64KB/s' },
      },
    ]);
    assert.deepEqual(config.globalZone, {
      mqtt: { max_clientid_len: 256, max_topic_alias: 16, max_qos_allowed: 1, max_mqueue_len: 64, max_topic_levels: 6, max_packet_size: '128KB', shared_subscription_strategy: 'hash_topic' },
    });
    assert.deepEqual(config.retainer, { enable: false });
  });

  it('enables TLS for https callbacks and can trust loopback on request', () => {
    const config = buildEmqxBaseConfig({ callbackBaseUrl: 'https://pepeunit.example/pepeunit/api/v1', trustLoopback: true });
    assert.deepEqual(config.authentication[0]?.ssl, { enable: true, verify: 'verify_none', versions: ['tlsv1.3', 'tlsv1.2'] });
    assert.match(String(config.authorizationSources[0]?.rules), /\{allow, \{ipaddr, "127\.0\.0\.1"\}, all, \["\$SYS\/#", "#"\]\}\./);
  });

  it('rejects bad options with a message naming them', () => {
    assert.throws(() => buildEmqxBaseConfig({ callbackBaseUrl: 'not a url' }), /callbackBaseUrl/);
    assert.throws(() => buildEmqxBaseConfig({ callbackBaseUrl: CALLBACK_BASE, callbackTls: true }), /callbackTls needs an https/);
    assert.throws(() => buildEmqxBaseConfig({ callbackBaseUrl: CALLBACK_BASE, clientMaxMessagesRate: 'fast' }), /clientMaxMessagesRate/);
    assert.throws(() => buildEmqxBaseConfig({ callbackBaseUrl: CALLBACK_BASE, maxQos: 3 }), /maxQos/);
    assert.throws(() => buildEmqxBaseConfig({ callbackBaseUrl: CALLBACK_BASE, maxTopicLevels: 0 }), /maxTopicLevels/);
  });

  it('reads the PU_MQTT_* variables', () => {
    const options = emqxBaseOptionsFromEnv(
      { PU_MQTT_MAX_CLIENTS: '42', PU_MQTT_CLIENT_MAX_BYTES_RATE: '2MB/s', PU_MQTT_MAX_TOPIC_LEVELS: '7', PU_MQTT_MAX_PAYLOAD_SIZE: '' },
      CALLBACK_BASE,
    );
    const config = buildEmqxBaseConfig(options);
    assert.equal(config.listeners[0]?.config.max_connections, 42);
    assert.equal(config.listeners[0]?.config.bytes_rate, '2MB/s');
    assert.equal(config.globalZone?.mqtt?.max_topic_levels, 7);
    assert.equal(config.globalZone?.mqtt?.max_packet_size, '256KB');
    assert.throws(() => emqxBaseOptionsFromEnv({ PU_MQTT_MAX_QOS: 'two' }, CALLBACK_BASE), /PU_MQTT_MAX_QOS/);
    assert.throws(() => emqxBaseOptionsFromEnv({ PU_MQTT_CLIENT_MAX_MESSAGES_RATE: '30 per second' }, CALLBACK_BASE), /PU_MQTT_CLIENT_MAX_MESSAGES_RATE/);
  });
});

describe('semantic comparison', () => {
  it('ignores what EMQX adds on read and equivalent spellings', () => {
    const desired = { request_timeout: '10m', headers: { 'Content-Type': 'application/json' }, cache: { excludes: ['a/#', 'b/+'] }, max_packet_size: '1MB' };
    const actual = {
      request_timeout: '600s',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      cache: { excludes: ['b/+', 'a/#'], enable: true },
      max_packet_size: '1024KB',
      pool_size: 8,
    };
    assert.deepEqual(differences(desired, actual), []);
  });

  it('reports changed values, missing keys and reordered ordered lists', () => {
    assert.deepEqual(differences({ no_match: 'deny' }, { no_match: 'allow' }), ['no_match']);
    assert.deepEqual(differences({ body: { action: '${action}' } }, { body: {} }), ['body.action']);
    assert.deepEqual(differences({ access_rules: ['a', 'b'] }, { access_rules: ['b', 'a'] }), ['access_rules[0]', 'access_rules[1]']);
    assert.deepEqual(differences({ max_connections: 10 }, { max_connections: 'infinity' }), ['max_connections']);
  });

  it('accepts redacted secrets and acl text with other blank lines or comments', () => {
    assert.deepEqual(differences({ headers: { authorization: 'Bearer x' } }, { headers: { authorization: '******' } }), []);
    assert.deepEqual(differences({ rules: '%% note\n{allow, all}.\n' }, { rules: '{allow, all}.   \n\n' }), []);
  });
});

describe('reconcileEmqxBase against the embedded broker', () => {
  let broker: TestBroker;
  let desired: EmqxBaseConfig;

  before(async () => {
    broker = await startTestBroker();
    desired = buildEmqxBaseConfig({ callbackBaseUrl: CALLBACK_BASE, maxClients: 1000 });
  });
  after(async () => {
    await broker.close();
  });

  it('changes the fresh broker on the first run and nothing on the second', async () => {
    const first = await reconcileEmqxBase(broker.client, desired);
    assert.deepEqual(first.changed.sort(), [
      'authentication/password_based:http created',
      'authorization/settings updated',
      'authorization/sources reordered',
      'authorization/sources/file updated',
      'authorization/sources/http created',
      'configs/global_zone updated',
      'listeners/tcp:default updated',
      'mqtt/retainer updated',
    ]);

    const before = await readManagedResources(broker.client);
    const second = await reconcileEmqxBase(broker.client, desired);
    assert.deepEqual(second.changed, []);
    assert.deepEqual(await readManagedResources(broker.client), before);

    const sources = await broker.client.listAuthorizationSources();
    assert.deepEqual(
      sources.map((source) => source.type),
      ['file', 'http'],
    );
    const settings = await broker.client.getAuthorizationSettings();
    assert.equal(settings.no_match, 'deny');
    const listener = await broker.client.getListener('tcp:default');
    assert.equal(listener?.max_connections, 1000);
    assert.equal(listener?.messages_rate, '30/s');
    assert.equal((await broker.client.getRetainer()).enable, false);
    const zone = await broker.client.getGlobalZone();
    assert.equal(zone.mqtt?.max_topic_levels, 5);
    assert.equal(zone.mqtt?.max_inflight, 32, 'zone keys the controller does not manage keep their values');
    assert.equal(zone.mqtt?.shared_subscription_strategy, 'hash_topic', 'one topic -> one ingest (per-node state stays in one process)');
  });

  it('refuses to report success when the broker does not keep the shared-subscription strategy', async () => {
    const fresh = await startTestBroker();
    try {
      // A broker that accepts the write but keeps its old strategy (an EMQX version or a config
      // file override that wins): the controller must say so, not carry on.
      const client = fresh.client;
      const original = client.updateGlobalZone.bind(client);
      client.updateGlobalZone = async (body) => original({ ...body, mqtt: { ...(body.mqtt ?? {}), shared_subscription_strategy: 'round_robin' } });
      await assert.rejects(reconcileEmqxBase(client, desired), /did not apply mqtt\.shared_subscription_strategy = hash_topic.*reads round_robin/);
    } finally {
      await fresh.close();
    }
  });

  it('repairs drift and writes only what drifted', async () => {
    await reconcileEmqxBase(broker.client, desired);
    await broker.client.updateAuthorizationSettings({ no_match: 'allow', deny_action: 'ignore', cache: { enable: true, max_size: 64, ttl: '10m', excludes: [] } });
    await broker.client.moveAuthorizationSource('file', 'rear');
    await broker.client.updateListener('tcp:default', { max_connections: 5 });

    const repair = await reconcileEmqxBase(broker.client, desired);
    assert.deepEqual(repair.changed.sort(), ['authorization/settings updated', 'authorization/sources reordered', 'listeners/tcp:default updated']);
    assert.deepEqual((await reconcileEmqxBase(broker.client, desired)).changed, []);

    await broker.client.deleteAuthorizationSource('http');
    await broker.client.deleteAuthenticator('password_based:http');
    const recreate = await reconcileEmqxBase(broker.client, desired);
    assert.deepEqual(recreate.changed.sort(), [
      'authentication/password_based:http created',
      'authorization/sources reordered',
      'authorization/sources/http created',
    ]);
    assert.deepEqual(
      (await broker.client.listAuthorizationSources()).map((source) => source.type),
      ['file', 'http'],
    );
  });

  it('converges when several replicas run it at the same time', async () => {
    const fresh = await startTestBroker();
    try {
      const results = await Promise.all([1, 2, 3].map(() => reconcileEmqxBase(fresh.client, desired)));
      assert.ok(results.some((result) => result.changed.length > 0));
      assert.deepEqual((await reconcileEmqxBase(fresh.client, desired)).changed, []);
      assert.deepEqual(
        (await fresh.client.listAuthorizationSources()).map((source) => source.type),
        ['file', 'http'],
      );
      assert.deepEqual(
        (await fresh.client.listAuthenticators()).map((authenticator) => authenticator.id),
        ['password_based:http'],
      );
    } finally {
      await fresh.close();
    }
  });
});

describe('the alert webhook connector and action', () => {
  const webhook = { url: `${CALLBACK_BASE}/emqx`, secret: 'first-secret-0123456789' };

  it('builds one HTTP connector and one HTTP action from the options, refusing bad ones', () => {
    const config = buildEmqxBaseConfig({ callbackBaseUrl: CALLBACK_BASE, alertWebhook: webhook });
    assert.equal(config.connectors?.length, 1);
    assert.equal(config.actions?.length, 1);
    const [connector] = config.connectors ?? [];
    const [action] = config.actions ?? [];
    assert.deepEqual([connector?.type, connector?.name, connector?.url], ['http', 'pu-backend', `${CALLBACK_BASE}/emqx`]);
    assert.deepEqual(connector?.headers, { authorization: 'Bearer first-secret-0123456789' });
    assert.ok(!String(connector?.description).includes(webhook.secret), 'the secret is never in the description');
    assert.deepEqual([action?.connector, action?.parameters.path, action?.parameters.body, action?.parameters.max_retries], ['pu-backend', 'alerts/${kind}', '${.}', 2]);
    assert.equal(action?.resource_opts?.query_mode, 'async');
    assert.equal(buildEmqxBaseConfig({ callbackBaseUrl: CALLBACK_BASE }).connectors, undefined, 'none without the option');
    assert.throws(() => buildEmqxBaseConfig({ callbackBaseUrl: CALLBACK_BASE, alertWebhook: { ...webhook, secret: 'short' } }), /secret/);
    assert.throws(() => buildEmqxBaseConfig({ callbackBaseUrl: CALLBACK_BASE, alertWebhook: { ...webhook, url: 'ftp://x' } }), /http/);
    assert.throws(() => buildEmqxBaseConfig({ callbackBaseUrl: CALLBACK_BASE, alertWebhook: { ...webhook, maxRetries: -1 } }), /maxRetries/);
  });

  it('creates them once, reports no change on the second run, and updates on a secret rotation or drift', async () => {
    const broker = await startTestBroker();
    try {
      const desired = buildEmqxBaseConfig({ callbackBaseUrl: CALLBACK_BASE, alertWebhook: webhook });
      const first = await reconcileEmqxBase(broker.client, desired);
      assert.ok(first.changed.includes('connectors/http:pu-backend created'));
      assert.ok(first.changed.includes('actions/http:pu-alerts created'));
      assert.deepEqual((await reconcileEmqxBase(broker.client, desired)).changed, []);

      const rotated = buildEmqxBaseConfig({ callbackBaseUrl: CALLBACK_BASE, alertWebhook: { ...webhook, secret: 'second-secret-0123456789' } });
      assert.deepEqual((await reconcileEmqxBase(broker.client, rotated)).changed, ['connectors/http:pu-backend updated']);
      assert.deepEqual((await reconcileEmqxBase(broker.client, rotated)).changed, []);

      const action = await broker.client.getAction('http:pu-alerts');
      assert.ok(action);
      await broker.client.updateAction('http:pu-alerts', { ...action, parameters: { ...action.parameters, max_retries: 9 } });
      assert.deepEqual((await reconcileEmqxBase(broker.client, rotated)).changed, ['actions/http:pu-alerts updated']);
      assert.equal((await broker.client.getAction('http:pu-alerts'))?.parameters.max_retries, 2);

      const results = await Promise.all([1, 2].map(() => reconcileEmqxBase(broker.client, rotated)));
      assert.ok(results.every((result) => result.changed.length === 0));
    } finally {
      await broker.close();
    }
  });
});
