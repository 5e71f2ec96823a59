// The embedded broker's rule engine: the Rules API (paths, status codes, bodies of EMQX 5.8) and
// the runtime (FROM filters, WHERE, republish templates, shared subscriptions, recursion guard,
// metrics), driven through the management client and real MQTT clients.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import type { MqttClient } from 'mqtt';
import { EmqxApiError } from '../src/management-client.js';
import type { RuleCreate } from '../src/emqx-types.js';
import { waitFor } from '@pepeunit/tests/wait';
import { collect, connectClient, startTestBroker } from './helpers.js';
import type { TestBroker } from './helpers.js';

const republish = (topic: string, payload = '', extra: Record<string, unknown> = {}) => ({
  function: 'republish',
  args: { topic, qos: 0, retain: false, payload, mqtt_properties: {}, user_properties: '', direct_dispatch: false, ...extra },
});

function isApiError(status: number, code: string, message?: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof EmqxApiError, `expected EmqxApiError, got ${String(error)}`);
    assert.equal(error.status, status);
    assert.equal(error.code, code);
    if (message) assert.match(error.emqxMessage, message);
    return true;
  };
}

describe('embedded Rules API', () => {
  let broker: TestBroker;
  before(async () => {
    broker = await startTestBroker();
  });
  after(async () => {
    await broker.close();
  });

  it('creates (201), reads (200), upserts (200) and deletes (204) rules with EMQX bodies', async () => {
    const { client } = broker;
    const created = await client.request<Record<string, unknown>>('POST', '/rules', {
      body: { id: 'crud-1', sql: 'SELECT payload FROM "a/+"', actions: [{ function: 'republish', args: { topic: 'out/${topic}' } }], description: 'first' },
    });
    assert.equal(created.status, 201);
    assert.equal(created.body.id, 'crud-1');
    assert.deepEqual(created.body.from, ['a/+']);
    assert.equal(created.body.enable, true);
    assert.equal(created.body.name, '');
    assert.match(String(created.body.created_at), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}/);
    // EMQX's defaults are filled into republish args.
    assert.deepEqual(created.body.actions, [
      { function: 'republish', args: { topic: 'out/${topic}', qos: '${qos}', retain: '${retain}', payload: '${payload}', mqtt_properties: {}, user_properties: '${user_properties}', direct_dispatch: false } },
    ]);

    const read = await client.getRule('crud-1');
    assert.equal(read?.description, 'first');
    assert.equal(await client.getRule('no-such-rule'), undefined);
    await assert.rejects(client.request('GET', '/rules/no-such-rule'), isApiError(404, 'NOT_FOUND', /Rule Id Not Found/));

    // PUT merges into the stored rule: only `enable` changes.
    const disabled = await client.upsertRule('crud-1', { enable: false } as RuleCreate);
    assert.equal(disabled.enable, false);
    assert.equal(disabled.sql, 'SELECT payload FROM "a/+"');
    assert.equal(disabled.description, 'first');
    // PUT on an unknown id creates it (EMQX upsert).
    const upserted = await client.request<Record<string, unknown>>('PUT', '/rules/crud-2', { body: { sql: 'SELECT * FROM "b/#"' } });
    assert.equal(upserted.status, 200);
    assert.deepEqual(upserted.body.actions, []);

    const deleted = await client.request('DELETE', '/rules/crud-2');
    assert.equal(deleted.status, 204);
    assert.equal(await client.deleteRule('crud-2'), false);
    await assert.rejects(client.request('DELETE', '/rules/crud-2'), isApiError(404, 'NOT_FOUND'));
    assert.equal(await client.deleteRule('crud-1'), true);
  });

  it('answers 400 BAD_REQUEST for SQL or bodies EMQX would refuse, and changes nothing', async () => {
    const { client } = broker;
    await assert.rejects(client.createRule({ id: 'bad', sql: 'SELECT a FROM' }), isApiError(400, 'BAD_REQUEST', /rule_engine\.rules\.bad\.sql.*empty_from_clause/));
    await assert.rejects(client.createRule({ id: 'bad', sql: 'SELECT FROM "t"' }), isApiError(400, 'BAD_REQUEST', /syntax error before: FROM/));
    await assert.rejects(client.createRule({ id: 'bad', sql: 'SELECT a FROM "t/#/x"' }), isApiError(400, 'BAD_REQUEST', /not a valid MQTT topic filter/));
    await assert.rejects(client.createRule({ id: 'bad', sql: 'SELECT payload.a[1..2] AS r FROM "t"' }), isApiError(400, 'BAD_REQUEST', /not supported by the embedded rule engine/));
    await assert.rejects(client.createRule({ id: 'bad id!', sql: 'SELECT a FROM "t"' }), isApiError(400, 'BAD_REQUEST', /invalid_map_key/));
    await assert.rejects(client.createRule({ id: '', sql: 'SELECT a FROM "t"' }), isApiError(400, 'BAD_REQUEST', /empty rule id is not allowed/));
    await assert.rejects(client.request('POST', '/rules', { body: { id: 'bad', sql: 'SELECT a FROM "t"', color: 'red' } }), isApiError(400, 'BAD_REQUEST', /unknown_fields/));
    await assert.rejects(client.createRule({ id: 'bad', sql: 'SELECT a FROM "t"', actions: [{ function: 'republish', args: { topic: 'x/#' } }] }), isApiError(400, 'BAD_REQUEST', /wildcards/));
    await assert.rejects(client.createRule({ id: 'bad', sql: 'SELECT a FROM "t"', actions: [{ function: 'republish', args: { topic: 'x', bogus: 1 } as never }] }), isApiError(400, 'BAD_REQUEST', /unknown_fields/));
    await assert.rejects(client.createRule({ id: 'bad', sql: 'SELECT a FROM "t"', actions: [{ function: 'mymod:myfun' }] }), isApiError(400, 'BAD_REQUEST', /action_function_not_supported/));
    await assert.rejects(client.upsertRule('bad', { enable: true } as RuleCreate), isApiError(400, 'BAD_REQUEST', /sql.*required_field/));
    assert.equal(await client.getRule('bad'), undefined, 'nothing was created');

    // A double-quoted "literal" is a name for EMQX: accepted (it just never matches).
    const named = await client.createRule({ id: 'dq', sql: `SELECT a FROM "t" WHERE payload.name = "sensor_1"` });
    assert.equal(named.id, 'dq');
    await assert.rejects(client.createRule({ id: 'dq', sql: 'SELECT a FROM "t"' }), isApiError(400, 'BAD_REQUEST', /rule id already exists/));
    // An update with bad SQL leaves the stored rule as it was.
    await assert.rejects(client.upsertRule('dq', { sql: 'SELECT' }), isApiError(400, 'BAD_REQUEST'));
    assert.equal((await client.getRule('dq'))?.sql, `SELECT a FROM "t" WHERE payload.name = "sensor_1"`);
    await client.deleteRule('dq');

    const plain = await request(`${broker.broker.apiUrl}/api/v5/rules`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${broker.apiKey}:${broker.apiSecret}`).toString('base64')}`, 'content-type': 'text/plain' },
      body: 'SELECT a FROM "t"',
    });
    assert.equal(plain.statusCode, 415);
  });

  it('lists rules with pagination and EMQX filters (like_id is a substring match)', async () => {
    const { client } = broker;
    for (let index = 0; index < 5; index += 1) await client.createRule({ id: `list-${index}`, sql: `SELECT a FROM "list/${index}/+"`, enable: index % 2 === 0, description: index === 3 ? 'special' : '' });
    await client.createRule({ id: 'other-list-x', sql: 'SELECT a FROM "other/#"' });
    const page = await client.listRules({ like_id: 'list-', limit: 2, page: 1 });
    assert.equal(page.data.length, 2);
    assert.deepEqual(page.meta, { page: 1, limit: 2, count: 6, hasnext: true });
    const all = await client.listAllRules({ like_id: 'list-', limit: 2 });
    assert.deepEqual(
      all.map((rule) => rule.id),
      ['list-0', 'list-1', 'list-2', 'list-3', 'list-4', 'other-list-x'],
    );
    assert.deepEqual((await client.listRules({ like_id: 'list-', enable: false })).data.map((rule) => rule.id), ['list-1', 'list-3']);
    assert.deepEqual((await client.listRules({ like_description: 'spec' })).data.map((rule) => rule.id), ['list-3']);
    assert.deepEqual((await client.listRules({ match_from: 'list/2/z' })).data.map((rule) => rule.id), ['list-2']);
    assert.deepEqual((await client.listRules({ from: 'other/#' })).data.map((rule) => rule.id), ['other-list-x']);
    await assert.rejects(client.listRules({ limit: 10_001 }), isApiError(400, 'BAD_REQUEST'));
    for (const rule of all) await client.deleteRule(rule.id);
  });

  it('dry-runs SQL with /rule_test: 200 output, 412 NOT_MATCH, 400 for bad SQL or payload', async () => {
    const { client } = broker;
    const sql = 'SELECT clientid, payload.level AS level FROM "u/+/alerts/#" WHERE level >= 3';
    assert.deepEqual(await client.testRuleSql(sql, { topic: 'u/42/alerts/x', clientid: 'dev-1', payload: '{"level":4}' }), { matched: true, output: { clientid: 'dev-1', level: 4 } });
    assert.deepEqual(await client.testRuleSql(sql, { topic: 'u/42/alerts/x', payload: '{"level":1}' }), { matched: false });
    assert.deepEqual(await client.testRuleSql(sql, { topic: 'other/topic' }), { matched: false });
    await assert.rejects(client.testRuleSql('SELECT FROM "t"'), isApiError(400, 'BAD_REQUEST', /syntax error/));
    await assert.rejects(client.testRuleSql(sql, { topic: 'u/1/alerts', payload: 'nope' }), isApiError(400, 'BAD_REQUEST', /decode_json_failed/));
  });
});

describe('embedded rule engine runtime', () => {
  let broker: TestBroker;
  const clients: MqttClient[] = [];
  const connect = async (clientId: string): Promise<MqttClient> => {
    const client = await connectClient(broker.broker.mqttUrl, { clientId });
    clients.push(client);
    return client;
  };
  before(async () => {
    broker = await startTestBroker();
  });
  after(async () => {
    await Promise.all(clients.map((client) => client.endAsync(true).catch(() => undefined)));
    await broker.close();
  });

  it('republishes the whole SELECT output as JSON for an empty payload template, and renders ${var} templates', async () => {
    const { client } = broker;
    await client.createRule({
      id: 'env',
      sql: 'SELECT payload, topic, clientid, publish_received_at AS ts FROM "dom/+/pepeunit"',
      actions: [republish('ingest/${topic}')],
    });
    await client.createRule({
      id: 'tpl',
      sql: 'SELECT payload.v AS v, clientid AS who FROM "tpl/#"',
      actions: [republish('tpl-out/${who}', 'v=${v} missing=${nope} all=${.}')],
    });
    const subscriber = await connect('sub-env');
    const received = collect(subscriber);
    await subscriber.subscribeAsync(['ingest/#', 'tpl-out/#']);
    const device = await connect('dev-1');
    const before = Date.now();
    await device.publishAsync('dom/n1/pepeunit', '21.5');
    await device.publishAsync('tpl/x', '{"v":7}');
    await waitFor(() => received.length >= 2, { what: 'republished messages' });
    const envelope = received.find((message) => message.topic === 'ingest/dom/n1/pepeunit');
    assert.ok(envelope, 'republished to ingest/<topic>');
    const body = JSON.parse(envelope.payload) as Record<string, unknown>;
    assert.deepEqual(Object.keys(body).sort(), ['clientid', 'payload', 'topic', 'ts']);
    assert.equal(body.payload, '21.5');
    assert.equal(body.topic, 'dom/n1/pepeunit');
    assert.equal(body.clientid, 'dev-1');
    assert.ok(typeof body.ts === 'number' && body.ts >= before - 1000 && body.ts <= Date.now());
    const rendered = received.find((message) => message.topic === 'tpl-out/dev-1');
    assert.equal(rendered?.payload, 'v=7 missing=undefined all={"v":7,"who":"dev-1"}');
  });

  it('only evaluates rules whose FROM matches (+ and #), applies WHERE, and counts metrics like EMQX', async () => {
    const { client } = broker;
    await client.createRule({ id: 'plus', sql: 'SELECT payload.n AS n FROM "m/+/data" WHERE n > 10', actions: [republish('m-out/plus')] });
    await client.createRule({ id: 'hash', sql: 'SELECT payload FROM "m/#"', actions: [] });
    await client.createRule({ id: 'exact', sql: 'SELECT payload FROM "m/a/data", "m/+/data"', actions: [] });
    await client.createRule({ id: 'unrelated', sql: 'SELECT payload FROM "zzz/#"', actions: [] });
    const subscriber = await connect('sub-m');
    const received = collect(subscriber);
    await subscriber.subscribeAsync('m-out/#');
    const device = await connect('dev-m');
    await device.publishAsync('m/a/data', '{"n": 11}'); // plus passes, hash, exact
    await device.publishAsync('m/b/data', '{"n": 3}'); // plus: no_result
    await device.publishAsync('m/c/data', 'not json'); // plus: exception
    await device.publishAsync('m/a/other', '{"n": 50}'); // only hash
    await device.publishAsync('m', 'x'); // `m/#` also matches `m`
    await waitFor(async () => (await client.getRuleMetrics('hash'))?.metrics.matched === 5, { what: 'hash metrics' });
    const plus = await client.getRuleMetrics('plus');
    assert.ok(plus);
    assert.equal(plus.metrics.matched, 3);
    assert.equal(plus.metrics.passed, 1);
    assert.equal(plus.metrics.failed, 2);
    assert.equal(plus.metrics['failed.no_result'], 1);
    assert.equal(plus.metrics['failed.exception'], 1);
    assert.equal(plus.metrics['actions.total'], 1);
    assert.equal(plus.metrics['actions.success'], 1);
    assert.equal(plus.node_metrics[0]?.node, 'emqx@127.0.0.1');
    // A message matching two filters of one rule triggers it once.
    assert.equal((await client.getRuleMetrics('exact'))?.metrics.matched, 3);
    assert.equal((await client.getRuleMetrics('unrelated'))?.metrics.matched, 0);
    await waitFor(() => received.length === 1, { what: 'one republished message' });
    assert.equal(received[0]?.payload, '{"n":11}');

    // Disabled rules are skipped and not counted; an update resets the metrics.
    await client.upsertRule('hash', { enable: false } as RuleCreate);
    assert.equal((await client.getRuleMetrics('hash'))?.metrics.matched, 0);
    await device.publishAsync('m/a/other', '{}');
    // Barrier: a later message of the same client matched by an enabled rule has been evaluated.
    await device.publishAsync('zzz/barrier', '{}');
    await waitFor(async () => (await client.getRuleMetrics('unrelated'))?.metrics.matched === 1, { what: 'the barrier message evaluated' });
    assert.equal((await client.getRuleMetrics('hash'))?.metrics.matched, 0);
    await client.resetRuleMetrics('plus');
    assert.equal((await client.getRuleMetrics('plus'))?.metrics.matched, 0);
    for (const id of ['plus', 'hash', 'exact', 'unrelated']) await client.deleteRule(id);
  });

  it('delivers republished messages to one member of a shared subscription group', async () => {
    const { client } = broker;
    await client.createRule({ id: 'share', sql: 'SELECT payload, topic FROM "s/+/pepeunit"', actions: [republish('sq/${topic}')] });
    const memberA = await connect('ingest-a');
    const memberB = await connect('ingest-b');
    const plain = await connect('plain');
    const gotA = collect(memberA);
    const gotB = collect(memberB);
    const gotPlain = collect(plain);
    await memberA.subscribeAsync('$share/g/sq/#');
    await memberB.subscribeAsync('$share/g/sq/#');
    await plain.subscribeAsync('sq/#');
    const device = await connect('dev-s');
    for (let index = 0; index < 10; index += 1) await device.publishAsync(`s/n${index}/pepeunit`, String(index));
    await waitFor(() => gotA.length + gotB.length === 10 && gotPlain.length === 10, { what: 'shared deliveries' });
    assert.ok(gotA.length > 0 && gotB.length > 0, 'the group spreads messages over its members');
    await client.deleteRule('share');
  });

  it('stops a rule from re-triggering itself (recursive republish) and honours direct_dispatch', async () => {
    const { client } = broker;
    // Republishing onto a topic its own FROM matches.
    await client.createRule({ id: 'loop', sql: 'SELECT payload, topic FROM "loop/#"', actions: [republish('loop/again/${topic}', '${payload}')] });
    // A chain: first -> chain/b (through the hook) -> second; direct dispatch skips rules.
    await client.createRule({ id: 'first', sql: 'SELECT payload FROM "chain/a"', actions: [republish('chain/b', '${payload}'), republish('chain/direct', '${payload}', { direct_dispatch: true })] });
    await client.createRule({ id: 'second', sql: 'SELECT payload FROM "chain/+"', actions: [republish('chain-out/second', '${payload}')] });
    const subscriber = await connect('sub-loop');
    const received = collect(subscriber);
    await subscriber.subscribeAsync(['loop/#', 'chain/#', 'chain-out/#']);
    const device = await connect('dev-loop');
    await device.publishAsync('loop/x', 'p');
    await device.publishAsync('chain/a', 'q');
    await waitFor(() => received.length >= 7, { what: 'the loop and chain messages' });
    // Barrier: a later message of the same client through the same subscriber, after any repeat of the loop.
    await device.publishAsync('chain-out/barrier', 'end');
    await waitFor(() => received.some((message) => message.topic === 'chain-out/barrier'), { what: 'the barrier message' });
    received.splice(received.findIndex((message) => message.topic === 'chain-out/barrier'), 1);
    const loopTopics = received.filter((message) => message.topic.startsWith('loop/')).map((message) => message.topic).sort();
    assert.deepEqual(loopTopics, ['loop/again/loop/x', 'loop/x'], 'the republished message did not trigger the same rule again');
    const loopMetrics = await client.getRuleMetrics('loop');
    assert.equal(loopMetrics?.metrics.matched, 2, 'the rule saw its own output once and stopped there');
    const chainTopics = received.filter((message) => message.topic.startsWith('chain')).map((message) => message.topic).sort();
    // chain/a triggers `second` too (FROM chain/+): one chain-out from chain/a and one from chain/b; chain/direct skips the hook.
    assert.deepEqual(chainTopics, ['chain-out/second', 'chain-out/second', 'chain/a', 'chain/b', 'chain/direct']);
    assert.equal((await client.getRuleMetrics('second'))?.metrics.matched, 2);
    for (const id of ['loop', 'first', 'second']) await client.deleteRule(id);
  });

  it('keeps rules across a restart when a state file is configured', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pepeunit-rules-'));
    const stateFile = join(dir, 'broker.json');
    try {
      const first = await startTestBroker({ stateFile });
      await first.client.createRule({ id: 'persisted', sql: 'SELECT payload, topic FROM "p/#"', actions: [republish('p-out/${topic}', '${payload}')], description: 'kept' });
      await first.close();
      const saved = JSON.parse(await readFile(`${stateFile}.rules.json`, 'utf8')) as { rules: Array<{ id: string }> };
      assert.deepEqual(saved.rules.map((rule) => rule.id), ['persisted']);

      const second = await startTestBroker({ stateFile });
      try {
        assert.equal((await second.client.getRule('persisted'))?.description, 'kept');
        const subscriber = await connectClient(second.broker.mqttUrl, { clientId: 'p-sub' });
        const received = collect(subscriber);
        await subscriber.subscribeAsync('p-out/#');
        const device = await connectClient(second.broker.mqttUrl, { clientId: 'p-dev' });
        await device.publishAsync('p/1', 'hello');
        await waitFor(() => received.length === 1, { what: 'rule applied after restart' });
        assert.deepEqual(received[0], { topic: 'p-out/p/1', payload: 'hello' });
        await subscriber.endAsync(true);
        await device.endAsync(true);
      } finally {
        await second.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
