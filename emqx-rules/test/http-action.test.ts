// Connectors, actions and the HTTP action of the embedded broker, against a local server that
// stands in for the backend's webhook: EMQX-style validation of the API bodies, templates,
// retries on 429/503 only, action and rule metrics — and the alert rules end to end (unit log
// entries, authorization denials, abnormal disconnects).
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Fastify from 'fastify';
import type { FastifyInstance } from 'fastify';
import { EmqxApiError } from '../src/management-client.js';
import {
  ALERT_ACTION_REF,
  buildAlertAction,
  buildAlertConnector,
  reconcileAlertRules,
} from '../src/rules/index.js';
import { waitFor, waitForEvent } from '@pepeunit/tests/wait';
import { connectClient, startTestBroker } from './helpers.js';
import type { TestBroker } from './helpers.js';

interface Received {
  path: string;
  headers: Record<string, unknown>;
  body: unknown;
}

interface Webhook {
  url: string;
  received: Received[];
  /** Status codes to answer, in order, per path; 204 once exhausted. */
  script: Map<string, number[]>;
  close(): Promise<void>;
}

async function startWebhook(): Promise<Webhook> {
  const app: FastifyInstance = Fastify();
  const received: Received[] = [];
  const script = new Map<string, number[]>();
  app.post('/*', async (request, reply) => {
    const path = request.url;
    received.push({ path, headers: request.headers, body: request.body });
    const status = script.get(path)?.shift() ?? 204;
    return reply.code(status).send();
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { url: `http://127.0.0.1:${port}`, received, script, close: () => app.close() };
}

function isApiError(status: number, code: string, message?: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof EmqxApiError, String(error));
    assert.equal(error.status, status, error.message);
    assert.equal(error.code, code, error.message);
    if (message) assert.match(error.emqxMessage, message);
    return true;
  };
}

const DOMAIN = 'alerts.test';
const SECRET = randomBytes(24).toString('hex');

describe('embedded connectors and actions API', () => {
  let broker: TestBroker;
  let webhook: Webhook;
  before(async () => {
    broker = await startTestBroker();
    webhook = await startWebhook();
  });
  after(async () => {
    await broker.close();
    await webhook.close();
  });

  it('validates bodies like EMQX: 400 for bad input (changing nothing), 404, ALREADY_EXISTS', async () => {
    const { client } = broker;
    const connector = buildAlertConnector({ url: `${webhook.url}/emqx`, secret: SECRET });
    await assert.rejects(client.createConnector({ ...connector, url: 'ftp://x' }), isApiError(400, 'BAD_REQUEST', /bad_url/));
    await assert.rejects(client.createConnector({ ...connector, url: `${webhook.url}/\${x}` }), isApiError(400, 'BAD_REQUEST', /placeholders/));
    await assert.rejects(client.createConnector({ ...connector, type: 'mqtt' }), isApiError(400, 'BAD_REQUEST', /not implemented/));
    await assert.rejects(client.createConnector({ ...connector, name: 'bad name' }), isApiError(400, 'BAD_REQUEST', /bad_name/));
    await assert.rejects(client.createConnector({ ...connector, pool_size: 0 }), isApiError(400, 'BAD_REQUEST', /pool_size/));
    await assert.rejects(client.createConnector({ ...connector, surprise: 1 }), isApiError(400, 'BAD_REQUEST', /unknown_fields/));
    assert.deepEqual(await client.listConnectors(), []);

    const created = await client.createConnector(connector);
    assert.equal(created.status, 'connected');
    assert.equal(created.headers?.authorization, '******', 'the secret is not shown');
    assert.equal(created.connect_timeout, '5s');
    await assert.rejects(client.createConnector(connector), isApiError(400, 'ALREADY_EXISTS'));

    const action = buildAlertAction({ url: `${webhook.url}/emqx`, secret: SECRET });
    await assert.rejects(client.createAction({ ...action, connector: 'missing' }), isApiError(400, 'BAD_REQUEST', /connector_not_found/));
    await assert.rejects(client.createAction({ ...action, resource_opts: { batch_size: 10 } }), isApiError(400, 'BAD_REQUEST', /batching/));
    await assert.rejects(client.createAction({ ...action, parameters: { ...action.parameters, method: 'patch' as never } }), isApiError(400, 'BAD_REQUEST', /enum/));
    const createdAction = await client.createAction(action);
    assert.equal(createdAction.parameters.path, 'alerts/${kind}');
    assert.equal(createdAction.resource_opts?.query_mode, 'async');
    assert.equal(await client.getAction('http:nope'), undefined);
    await assert.rejects(client.getAction('no-colon'), isApiError(400, 'BAD_REQUEST', /Invalid action ID/));

    // A connector used by an action, and an action used by a rule, cannot be deleted.
    await assert.rejects(client.deleteConnector('http:pu-backend'), isApiError(400, 'BAD_REQUEST', /active channels/));
    await client.createRule({ id: 'uses-action', sql: 'SELECT clientid FROM "x/#"', actions: [ALERT_ACTION_REF] });
    await assert.rejects(client.deleteAction(ALERT_ACTION_REF), isApiError(400, 'BAD_REQUEST', /dependent/));
    assert.equal(await client.deleteAction(ALERT_ACTION_REF, { alsoDeleteDepActions: true }), true);
    assert.deepEqual((await client.getRule('uses-action'))?.actions, [], 'the reference left the rule');
    assert.equal(await client.deleteConnector('http:pu-backend'), true);
    assert.equal(await client.deleteConnector('http:pu-backend'), false);
    await client.deleteRule('uses-action');
  });

  it('keeps a redacted secret on a GET -> PUT round trip', async () => {
    const { client } = broker;
    await client.createConnector(buildAlertConnector({ url: `${webhook.url}/emqx`, secret: SECRET }));
    await client.createAction({ ...buildAlertAction({ url: `${webhook.url}/emqx`, secret: SECRET }), name: 'roundtrip' });
    const read = await client.getConnector('http:pu-backend');
    assert.ok(read);
    await client.updateConnector('http:pu-backend', { ...read, pool_size: 2 });
    await client.createRule({ id: 'roundtrip', sql: `SELECT 'rt' AS kind FROM "roundtrip/#"`, actions: ['http:roundtrip'] });
    const device = await connectClient(broker.broker.mqttUrl, { clientId: 'roundtrip-device' });
    await device.publishAsync('roundtrip/1', 'x');
    await device.endAsync();
    await waitFor(() => webhook.received.some((item) => item.path === '/emqx/alerts/rt'), { what: 'the round-trip request' });
    const request = webhook.received.find((item) => item.path === '/emqx/alerts/rt');
    assert.equal(request?.headers.authorization, `Bearer ${SECRET}`);
    await client.deleteRule('roundtrip');
    await client.deleteAction('http:roundtrip');
    await client.deleteConnector('http:pu-backend');
  });
});

describe('embedded connectors and actions across a restart', () => {
  it('keeps them (and the rules using them) in the state file, readable only by the owner, and runs them again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pepeunit-bridges-'));
    const stateFile = join(dir, 'broker.json');
    const webhook = await startWebhook();
    try {
      const options = { url: `${webhook.url}/emqx`, secret: SECRET };
      let broker = await startTestBroker({ stateFile });
      await broker.client.createConnector(buildAlertConnector(options));
      await broker.client.createAction(buildAlertAction(options));
      await broker.client.createRule({ id: 'persisted', sql: `SELECT 'persisted' AS kind FROM "persisted/#"`, actions: [ALERT_ACTION_REF] });
      await broker.close();
      const file = `${stateFile}.rules.json`;
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.equal(JSON.parse(readFileSync(file, 'utf8')).version, 2);

      broker = await startTestBroker({ stateFile });
      try {
        assert.equal((await broker.client.getConnector('http:pu-backend'))?.status, 'connected');
        assert.equal((await broker.client.getAction(ALERT_ACTION_REF))?.parameters.path, 'alerts/${kind}');
        const device = await connectClient(broker.broker.mqttUrl, { clientId: 'after-restart' });
        await device.publishAsync('persisted/1', 'x');
        await device.endAsync();
        await waitFor(() => webhook.received.some((item) => item.path === '/emqx/alerts/persisted'), { what: 'a request after the restart' });
        assert.equal(webhook.received.find((item) => item.path === '/emqx/alerts/persisted')?.headers.authorization, `Bearer ${SECRET}`);
      } finally {
        await broker.close();
      }
    } finally {
      await webhook.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('embedded HTTP action at run time', () => {
  let broker: TestBroker;
  let webhook: Webhook;
  before(async () => {
    broker = await startTestBroker();
    webhook = await startWebhook();
    await broker.client.createConnector({ type: 'http', name: 'hook', url: `${webhook.url}/base/`, headers: { 'x-from': 'connector', 'x-both': 'connector' } });
  });
  after(async () => {
    await broker.close();
    await webhook.close();
  });

  async function actionWithRule(name: string, parameters: Record<string, unknown>, topic: string, sql: string): Promise<void> {
    await broker.client.createAction({ type: 'http', name, connector: 'hook', parameters: { method: 'post', headers: { 'x-both': 'action', 'x-kind': '${kind}' }, ...parameters } });
    await broker.client.createRule({ id: name, sql, actions: [`http:${name}`] });
    const device = await connectClient(broker.broker.mqttUrl, { clientId: `device-${name}` });
    await device.publishAsync(topic, '{"n":1}');
    await device.endAsync();
  }

  async function metricsOf(name: string) {
    return { action: (await broker.client.getActionMetrics(`http:${name}`))?.metrics ?? {}, rule: (await broker.client.getRuleMetrics(name))?.metrics };
  }

  it('renders path, headers and body templates; 2xx is a success', async () => {
    await actionWithRule('render', { path: 'a/${kind}/${payload.n}', body: '{"k":"${kind}"}' }, 'render/1', `SELECT 'x y/z' AS kind, payload FROM "render/#"`);
    await waitFor(async () => (await metricsOf('render')).action.success === 1, { what: 'the request' });
    const request = webhook.received.find((item) => item.path.startsWith('/base/a/'));
    assert.equal(request?.path, '/base/a/x%20y%2Fz/1', 'placeholder values are URL-encoded in the path');
    assert.equal(request?.headers['x-from'], 'connector');
    assert.equal(request?.headers['x-both'], 'action', 'action headers override the connector');
    assert.equal(request?.headers['x-kind'], 'x y/z');
    assert.deepEqual(request?.body, { k: 'x y/z' });
    const { action, rule } = await metricsOf('render');
    assert.deepEqual([action.matched, action.success, action.failed, action.retried, action.inflight, action.queuing], [1, 1, 0, 0, 0, 0]);
    assert.deepEqual([rule?.['actions.total'], rule?.['actions.success'], rule?.['actions.failed']], [1, 1, 0]);
  });

  it('retries 503 and 429 up to max_retries, then succeeds or fails; other statuses fail at once', async () => {
    webhook.script.set('/base/retry-ok', [503, 429]);
    await actionWithRule('retryok', { path: 'retry-ok', max_retries: 2 }, 'retryok/1', 'SELECT clientid FROM "retryok/#"');
    await waitFor(async () => (await metricsOf('retryok')).action.success === 1, { what: 'success after two retries' });
    let metrics = await metricsOf('retryok');
    assert.deepEqual([metrics.action.retried, metrics.action['retried.success'], metrics.action.failed], [2, 1, 0]);
    assert.equal(webhook.received.filter((item) => item.path === '/base/retry-ok').length, 3);

    webhook.script.set('/base/retry-fail', [429, 429, 429]);
    await actionWithRule('retryfail', { path: 'retry-fail', max_retries: 1 }, 'retryfail/1', 'SELECT clientid FROM "retryfail/#"');
    await waitFor(async () => (await metricsOf('retryfail')).action.failed === 1, { what: 'failure after the retries' });
    metrics = await metricsOf('retryfail');
    assert.deepEqual([metrics.action.retried, metrics.action['retried.failed'], metrics.action.success], [1, 1, 0]);
    assert.deepEqual([metrics.rule?.['actions.failed'], metrics.rule?.['actions.failed.unknown']], [1, 1]);
    assert.equal(webhook.received.filter((item) => item.path === '/base/retry-fail').length, 2);

    webhook.script.set('/base/final', [500]);
    await actionWithRule('final', { path: 'final', max_retries: 5 }, 'final/1', 'SELECT clientid FROM "final/#"');
    await waitFor(async () => (await metricsOf('final')).action.failed === 1, { what: 'a final failure' });
    metrics = await metricsOf('final');
    assert.equal(metrics.action.retried, 0, '500 is not retried');
    assert.equal(webhook.received.filter((item) => item.path === '/base/final').length, 1);
  });

  it('counts a disabled action as out of service and a missing one as discarded', async () => {
    await broker.client.createAction({ type: 'http', name: 'off', connector: 'hook', enable: false, parameters: { path: 'off' } });
    await broker.client.createRule({ id: 'off', sql: 'SELECT clientid FROM "off/#"', actions: ['http:off', 'http:missing'] });
    const device = await connectClient(broker.broker.mqttUrl, { clientId: 'device-off' });
    await device.publishAsync('off/1', 'x');
    await device.endAsync();
    await waitFor(async () => (await metricsOf('off')).rule?.['actions.total'] === 2, { what: 'two action sends' });
    const { action, rule } = await metricsOf('off');
    assert.deepEqual([rule?.['actions.failed.out_of_service'], rule?.['actions.discarded']], [1, 1]);
    assert.deepEqual([action.dropped, action['dropped.resource_stopped']], [1, 1]);
    assert.ok(!webhook.received.some((item) => item.path === '/base/off'));
  });
});

describe('alert rules end to end on the embedded broker', () => {
  let broker: TestBroker;
  let webhook: Webhook;
  const unit = randomUUID();
  before(async () => {
    broker = await startTestBroker();
    webhook = await startWebhook();
    const options = { url: `${webhook.url}/pepeunit/api/v1/emqx`, secret: SECRET };
    await broker.client.createConnector(buildAlertConnector(options));
    await broker.client.createAction(buildAlertAction(options));
    await reconcileAlertRules(broker.client, { domain: DOMAIN, units: [{ unitUuid: unit, level: 'Warning' }] });
  });
  after(async () => {
    await broker.close();
    await webhook.close();
  });

  const alertsOf = (kind: string) => webhook.received.filter((item) => item.path === `/pepeunit/api/v1/emqx/alerts/${kind}`);

  it('forwards log entries at or above the unit level, one request each, with the shared secret', async () => {
    const device = await connectClient(broker.broker.mqttUrl, { clientId: unit });
    const topic = `${DOMAIN}/output_base_topic/${unit}/log/pepeunit`;
    await device.publishAsync(topic, JSON.stringify([{ level: 'Info', text: 'boot' }, { level: 'Error', text: 'sensor' }, { level: 'warning', text: 'hot' }]));
    await device.publishAsync(topic, JSON.stringify({ level: 'Critical', text: 'fire' }));
    await device.publishAsync(topic, JSON.stringify({ level: 'Debug', text: 'noise' }));
    await device.publishAsync(topic, 'not json');
    await waitFor(() => alertsOf('unit_log').length === 3, { what: 'three log alerts' });
    const bodies = alertsOf('unit_log').map((item) => item.body as Record<string, unknown>);
    assert.deepEqual(bodies.map((body) => body.text).sort(), ['fire', 'hot', 'sensor']);
    for (const body of bodies) {
      assert.equal(body.kind, 'unit_log');
      assert.equal(body.unit_uuid, unit);
      assert.equal(body.clientid, unit);
      assert.equal(typeof body.timestamp, 'number');
    }
    assert.ok(alertsOf('unit_log').every((item) => item.headers.authorization === `Bearer ${SECRET}`));
    const metrics = (await broker.client.getRuleMetrics(`alert-log-warning-${unit}`))?.metrics;
    assert.deepEqual([metrics?.matched, metrics?.passed, metrics?.['failed.no_result'], metrics?.['failed.exception']], [4, 2, 1, 1]);
    await device.endAsync();
  });

  it('forwards authorization denials that are not cache hits', async () => {
    await broker.client.updateAuthorizationSource('file', { type: 'file', enable: true, rules: '{deny, all, publish, ["forbidden/#"]}.\n{allow, all}.\n' });
    const device = await connectClient(broker.broker.mqttUrl, { clientId: 'denied-device', username: 'owner-1' });
    await device.publishAsync('forbidden/a', 'x');
    await device.publishAsync('forbidden/a', 'y'); // the second decision comes from the cache
    await waitFor(async () => ((await broker.client.getRuleMetrics('alert-authz-deny'))?.metrics.matched ?? 0) >= 2, { what: 'two authorization checks' });
    await waitFor(() => alertsOf('authz_deny').length === 1, { what: 'one authz alert' });
    const body = alertsOf('authz_deny')[0]?.body as Record<string, unknown>;
    assert.deepEqual({ ...body, timestamp: 0 }, { kind: 'authz_deny', clientid: 'denied-device', username: 'owner-1', peerhost: '127.0.0.1', topic: 'forbidden/a', action: 'publish', authz_source: 'file', timestamp: 0 });
    const metrics = (await broker.client.getRuleMetrics('alert-authz-deny'))?.metrics;
    assert.equal(metrics?.passed, 1, 'the cache hit is filtered by the WHERE');
    await device.endAsync();
  });

  it('reports the EMQX disconnect reasons in the event: normal, tcp_closed, takenover', async () => {
    await broker.client.createRule({
      id: 'reasons',
      sql: 'SELECT clientid, reason, connected_at, disconnected_at, proto_ver FROM "$events/client_disconnected"',
      actions: [{ function: 'republish', args: { topic: 'reasons/${clientid}', payload: '${reason}' } }],
    });
    const watcher = await connectClient(broker.broker.mqttUrl, { clientId: 'reason-watcher' });
    const seen: Array<[string, string]> = [];
    watcher.on('message', (topic, payload) => seen.push([topic.slice('reasons/'.length), payload.toString()]));
    await watcher.subscribeAsync('reasons/#');
    const normal = await connectClient(broker.broker.mqttUrl, { clientId: 'r-normal' });
    await normal.endAsync();
    const dropped = await connectClient(broker.broker.mqttUrl, { clientId: 'r-dropped' });
    dropped.stream.destroy();
    await connectClient(broker.broker.mqttUrl, { clientId: 'r-twice' });
    const second = await connectClient(broker.broker.mqttUrl, { clientId: 'r-twice' });
    await waitFor(() => seen.length >= 3, { what: 'three disconnect events' });
    assert.deepEqual(Object.fromEntries(seen), { 'r-normal': 'normal', 'r-dropped': 'tcp_closed', 'r-twice': 'takenover' });
    await second.endAsync();
    await watcher.endAsync();
    await broker.client.deleteRule('reasons');
  });

  it('forwards abnormal disconnects (kicked) and not normal ones', async () => {
    const normal = await connectClient(broker.broker.mqttUrl, { clientId: 'leaves-normally' });
    await normal.endAsync();
    const kicked = await connectClient(broker.broker.mqttUrl, { clientId: 'gets-kicked', username: 'owner-2' });
    const closed = waitForEvent(kicked, 'close', { what: 'kicked closed' });
    assert.equal(await broker.client.kickClient('gets-kicked'), true);
    await closed;
    await waitFor(() => alertsOf('disconnect').length === 1, { what: 'one disconnect alert' });
    const body = alertsOf('disconnect')[0]?.body as Record<string, unknown>;
    assert.equal(body.clientid, 'gets-kicked');
    assert.equal(body.username, 'owner-2');
    assert.equal(body.reason, 'kicked');
    assert.equal(typeof body.disconnected_at, 'number');
    await waitFor(async () => ((await broker.client.getRuleMetrics('alert-disconnect'))?.metrics['failed.no_result'] ?? 0) >= 1, { what: 'the normal disconnect evaluated' });
    kicked.end(true);
  });
});
