// Counting: the pure sampling module (parsing EMQX's data_integration answer in both formats,
// Prometheus-style deltas with counter resets, per-unit loads) with tables of cases, and the
// embedded broker's side: rule counters on every publish path (QoS 0 fast path and aedes'
// path), `/api/v5/prometheus/data_integration` in text and JSON, per-client counters, and a
// broker restart in the middle of a sampling run.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { EmqxApiError } from '../src/management-client.js';
import {
  COUNT_RULE_PREFIX,
  CounterParseError,
  countNodeRuleId,
  countUnitRuleId,
  counterDeltas,
  counterReading,
  parseDataIntegration,
  reconcileCountingRules,
  ruleRates,
  unitLoads,
} from '../src/rules/index.js';
import type { CounterReading, CountedUnit, DataIntegrationSnapshot } from '../src/rules/index.js';
import { waitFor } from '@pepeunit/tests/wait';
import { connectClient, startTestBroker } from './helpers.js';
import type { TestBroker } from './helpers.js';

const UNIT = '0f1e6c1a-5a8e-4a43-9a4c-6f1b8d2a3c4d';
const NODE = '3c0a9a52-1f7b-4e0e-9f3e-2b1a6a9f0c11';
const UNIT_RULE = countUnitRuleId(UNIT);
const NODE_RULE = countNodeRuleId(NODE);

function reading(takenAt: number, values: Record<string, number>): CounterReading {
  return { takenAt, values: new Map(Object.entries(values)) };
}

describe('counter sampling (pure)', () => {
  it('parses the JSON and the text form to the same numbers, with escaped labels and node labels', () => {
    const json = {
      data_integration_overview: { emqx_rules_count: 2, emqx_actions_count: 0, emqx_connectors_count: 0 },
      rules: [
        { id: UNIT_RULE, emqx_rule_enable: 1, emqx_rule_matched: 91234, emqx_rule_passed: 91234, emqx_rule_failed: 0 },
        { id: 'odd"id\\x', emqx_rule_enable: 0, emqx_rule_matched: 5, emqx_rule_passed: 4, emqx_rule_failed: 1 },
      ],
      actions: [{ id: 'http:pu-alerts', emqx_action_matched: 12, emqx_action_success: 12 }],
      connectors: [{ id: 'http:pu-backend', emqx_connector_enable: 1, emqx_connector_status: 1 }],
    };
    const text = [
      '# HELP emqx_rules_count ',
      '# TYPE emqx_rules_count gauge',
      'emqx_rules_count 2',
      'emqx_actions_count 0',
      'emqx_connectors_count 0',
      '# TYPE emqx_rule_enable gauge',
      `emqx_rule_enable{id="${UNIT_RULE}"} 1`,
      'emqx_rule_enable{id="odd\\"id\\\\x"} 0',
      `emqx_rule_matched{id="${UNIT_RULE}"} 91234`,
      'emqx_rule_matched{id="odd\\"id\\\\x"} 5',
      `emqx_rule_passed{id="${UNIT_RULE}"} 91234`,
      'emqx_rule_passed{id="odd\\"id\\\\x"} 4',
      `emqx_rule_failed{id="${UNIT_RULE}"} 0`,
      'emqx_rule_failed{id="odd\\"id\\\\x"} 1',
      'emqx_action_matched{id="http:pu-alerts"} 12',
      'emqx_action_success{id="http:pu-alerts"} 12',
      'emqx_connector_enable{id="http:pu-backend"} 1',
      'emqx_connector_status{id="http:pu-backend"} 1',
      'some_other_family{id="x"} 3',
      '',
    ].join('\n');
    const fromJson = parseDataIntegration(JSON.stringify(json));
    const fromText = parseDataIntegration(text);
    assert.deepEqual(fromText, fromJson);
    assert.deepEqual(parseDataIntegration(json), fromJson, 'an already parsed object');
    assert.equal(fromJson.rules[1]?.id, 'odd"id\\x');
    assert.deepEqual(fromJson.overview, { emqx_rules_count: 2, emqx_actions_count: 0, emqx_connectors_count: 0 });

    const perNode = parseDataIntegration(`emqx_rule_matched{node="emqx@a",id="${UNIT_RULE}"} 3\nemqx_rule_matched{node="emqx@b",id="${UNIT_RULE}"} 4\n`);
    assert.deepEqual(perNode.rules.map((series) => [series.node, series.values.emqx_rule_matched]), [['emqx@a', 3], ['emqx@b', 4]]);
  });

  it('keeps only the asked metrics when told to (what a sampler needs), in both forms', () => {
    const json = { rules: [{ id: UNIT_RULE, emqx_rule_matched: 7, emqx_rule_passed: 7, emqx_rule_failed: 0 }] };
    const text = `emqx_rule_matched{id="${UNIT_RULE}"} 7\nemqx_rule_passed{id="${UNIT_RULE}"} 7\nemqx_rule_failed{id="${UNIT_RULE}"} 0\n`;
    for (const body of [json, text]) {
      assert.deepEqual(parseDataIntegration(body, { metrics: ['emqx_rule_matched'] }).rules, [{ id: UNIT_RULE, values: { emqx_rule_matched: 7 } }]);
    }
  });

  it('refuses answers it cannot read', () => {
    for (const bad of ['emqx_rule_matched{id="x"} abc', 'emqx_rule_matched{node="a"} 1', '{"rules": 3}', '{"rules":[{"matched":1}]}', '{oops']) {
      assert.throws(() => parseDataIntegration(bad), CounterParseError, bad);
    }
  });

  it('computes deltas with Prometheus counter-reset handling (table)', () => {
    const cases: Array<{ name: string; previous?: Record<string, number>; current: Record<string, number>; deltas: Record<string, number>; resets: string[] }> = [
      { name: 'first reading is a baseline', current: { a: 10 }, deltas: {}, resets: [] },
      { name: 'plain increase', previous: { a: 10, b: 0 }, current: { a: 25, b: 0 }, deltas: { a: 15, b: 0 }, resets: [] },
      { name: 'counter went down: restarted, counts from zero', previous: { a: 150 }, current: { a: 20 }, deltas: { a: 20 }, resets: ['a'] },
      { name: 'restarted to exactly zero', previous: { a: 150 }, current: { a: 0 }, deltas: { a: 0 }, resets: ['a'] },
      { name: 'a new rule counts from zero', previous: { a: 1 }, current: { a: 1, b: 7 }, deltas: { a: 0, b: 7 }, resets: [] },
      { name: 'a deleted rule yields nothing', previous: { a: 1, b: 7 }, current: { a: 3 }, deltas: { a: 2 }, resets: [] },
      {
        name: 'per-node series: one node restarts, the other goes on (no double count)',
        previous: { 'a\u0000n1': 100, 'a\u0000n2': 50 },
        current: { 'a\u0000n1': 10, 'a\u0000n2': 60 },
        deltas: { a: 20 },
        resets: ['a\u0000n1'],
      },
    ];
    for (const testCase of cases) {
      const result = counterDeltas(testCase.previous ? reading(1_000, testCase.previous) : undefined, reading(16_000, testCase.current));
      assert.deepEqual(Object.fromEntries(result.deltas), testCase.deltas, testCase.name);
      assert.deepEqual(result.resets, testCase.resets, testCase.name);
      for (const delta of result.deltas.values()) assert.ok(delta >= 0, `${testCase.name}: no negative delta`);
    }
  });

  it('follows a run with a broker restart: no negative value, nothing counted twice (table)', () => {
    // True messages per 15 s interval, and the broker's counters: it restarts after sample 3
    // (counters back to zero, then counting the 40 messages of interval 4).
    const perInterval = [0, 300, 150, 60, 40, 75];
    const counters = [1000, 1300, 1450, 1510, 40, 115];
    let previous: CounterReading | undefined;
    const seen: number[] = [];
    counters.forEach((value, index) => {
      const current = reading(index * 15_000, { [UNIT_RULE]: value });
      const deltas = counterDeltas(previous, current);
      const loads = unitLoads(deltas, [{ unitUuid: UNIT, nodeUuids: [] }]);
      if (previous) seen.push(loads.get(UNIT)?.messages ?? -1);
      previous = current;
    });
    assert.deepEqual(seen, perInterval.slice(1));
    assert.ok(seen.every((value) => value >= 0));
  });

  it('turns deltas into messages per second per rule and per unit (its rule plus its nodes)', () => {
    const previous = reading(0, { [UNIT_RULE]: 0, [NODE_RULE]: 100, 'cnt-unit-other': 5 });
    const current = reading(10_000, { [UNIT_RULE]: 30, [NODE_RULE]: 170, 'cnt-unit-other': 5 });
    const deltas = counterDeltas(previous, current);
    assert.equal(ruleRates(deltas).get(NODE_RULE), 7);
    const loads = unitLoads(deltas, [
      { unitUuid: UNIT.toUpperCase(), nodeUuids: [NODE] },
      { unitUuid: randomUUID(), nodeUuids: [] },
    ]);
    assert.deepEqual(loads.get(UNIT), { messages: 100, mps: 10 });
    assert.equal([...loads.values()][1]?.mps, 0);
    assert.deepEqual(ruleRates(counterDeltas(undefined, current)), new Map(), 'no rates from a baseline');
  });

  it('reads only the chosen metric and family', () => {
    const snapshot: DataIntegrationSnapshot = {
      rules: [
        { id: UNIT_RULE, values: { emqx_rule_matched: 4, emqx_rule_passed: 3 } },
        { id: 'pipe-x', values: { emqx_rule_matched: 9 } },
      ],
      actions: [],
      connectors: [],
      overview: {},
    };
    assert.deepEqual([...counterReading(snapshot, 1, { prefix: COUNT_RULE_PREFIX }).values], [[UNIT_RULE, 4]]);
    assert.deepEqual([...counterReading(snapshot, 1, { metric: 'emqx_rule_passed' }).values], [[UNIT_RULE, 3]]);
  });
});

describe('counting on the embedded broker', () => {
  const DOMAIN = 'count.test';
  const units: CountedUnit[] = [
    { unitUuid: randomUUID(), nodeUuids: [randomUUID(), randomUUID()] },
    { unitUuid: randomUUID(), nodeUuids: [randomUUID()] },
  ];
  let broker: TestBroker;
  before(async () => {
    broker = await startTestBroker();
    await reconcileCountingRules(broker.client, { domain: DOMAIN, units });
  });
  after(async () => {
    await broker.close();
  });

  async function sample(format: 'json' | 'text' = 'json'): Promise<DataIntegrationSnapshot> {
    return parseDataIntegration(await broker.client.getDataIntegrationMetrics({ format }));
  }

  it('counts every publish, on the QoS 0 fast path and on aedes path alike, once per rule', async () => {
    const [first, second] = units as [CountedUnit, CountedUnit];
    const device = await connectClient(broker.broker.mqttUrl, { clientId: first.unitUuid });
    const pepeunitTopic = `${DOMAIN}/${first.nodeUuids[0]}/pepeunit`;
    // One QoS 0 message per topic first: the authorization callouts fill the client's cache.
    const warmTopics = [pepeunitTopic, `${DOMAIN}/output_base_topic/${first.unitUuid}/state/pepeunit`, `${DOMAIN}/${second.nodeUuids[0]}/pepeunit`, `${DOMAIN}/not-a-unit-topic`];
    for (const topic of warmTopics) await device.publishAsync(topic, '0');
    await waitFor(() => (broker.broker.sessions.find(first.unitUuid)?.authzCache.size ?? 0) >= warmTopics.length, { what: 'cached decisions' });
    await waitFor(() => broker.broker.sessions.find(first.unitUuid)?.pendingPublishes === 0, { what: 'no publish in flight' });
    const fastBefore = broker.broker.fastPublishStats.fast;
    // Then the QoS 0 fast path, and QoS 1 publishes on aedes' path, in both node topic forms and the system topics.
    for (let index = 1; index < 5; index += 1) await device.publishAsync(pepeunitTopic, String(index));
    await waitFor(() => broker.broker.fastPublishStats.fast - fastBefore === 4, { what: 'four publishes on the fast path' });
    for (let index = 0; index < 3; index += 1) await device.publishAsync(`${DOMAIN}/${first.nodeUuids[0]}`, String(index), { qos: 1 });
    await device.publishAsync(`${DOMAIN}/input_base_topic/${first.unitUuid}/update/pepeunit`, '{}', { qos: 1 });
    await device.endAsync();

    const snapshot = await sample();
    const matched = new Map(snapshot.rules.map((series) => [series.id, series.values.emqx_rule_matched]));
    assert.equal(matched.get(countNodeRuleId(first.nodeUuids[0] as string)), 8);
    assert.equal(matched.get(countNodeRuleId(first.nodeUuids[1] as string)), 0);
    assert.equal(matched.get(countUnitRuleId(first.unitUuid)), 2);
    assert.equal(matched.get(countNodeRuleId(second.nodeUuids[0] as string)), 1);
    assert.equal(matched.get(countUnitRuleId(second.unitUuid)), 0);
    const passed = snapshot.rules.every((series) => series.values.emqx_rule_passed === series.values.emqx_rule_matched);
    assert.ok(passed, 'counting rules always pass');
    assert.deepEqual(await sample('text'), snapshot, 'the text form reads the same');
    assert.deepEqual(snapshot.overview, { emqx_rules_count: 5, emqx_actions_count: 0, emqx_connectors_count: 0 });
  });

  it('answers data_integration like EMQX: text by default, JSON for exactly application/json, mode checked', async () => {
    const text = await broker.client.request<string>('GET', '/prometheus/data_integration', { accept: 'text/plain' });
    assert.match(text.body, /^# HELP emqx_rules_count /m);
    assert.match(text.body, /^emqx_rule_matched\{id="cnt-/m);
    const loose = await broker.client.request<unknown>('GET', '/prometheus/data_integration', { accept: 'application/json, text/plain' });
    assert.equal(typeof loose.body, 'string', 'only an exact application/json gets JSON');
    const unaggregated = parseDataIntegration(await broker.client.getDataIntegrationMetrics({ mode: 'all_nodes_unaggregated' }));
    assert.ok(unaggregated.rules.every((series) => series.node === 'emqx@127.0.0.1'));
    await assert.rejects(broker.client.request('GET', '/prometheus/data_integration', { query: { mode: 'everything' } }), (error: unknown) => error instanceof EmqxApiError && error.status === 400);
  });

  it('reports per-client recv_msg / send_msg / connected_at with the fields projection', async () => {
    const publisher = await connectClient(broker.broker.mqttUrl, { clientId: 'proj-pub' });
    const subscriber = await connectClient(broker.broker.mqttUrl, { clientId: 'proj-sub' });
    await subscriber.subscribeAsync('proj/#');
    const received = new Promise<void>((resolve) => {
      let count = 0;
      subscriber.on('message', () => {
        count += 1;
        if (count === 3) resolve();
      });
    });
    for (let index = 0; index < 3; index += 1) await publisher.publishAsync('proj/x', String(index));
    await received;
    const page = await broker.client.listClients({ fields: ['clientid', 'recv_msg', 'send_msg', 'connected_at'], like_clientid: 'proj-' });
    const byId = new Map(page.data.map((client) => [client.clientid, client]));
    assert.deepEqual(Object.keys(byId.get('proj-pub') ?? {}).sort(), ['clientid', 'connected_at', 'recv_msg', 'send_msg']);
    assert.equal(byId.get('proj-pub')?.recv_msg, 3);
    assert.equal(byId.get('proj-sub')?.send_msg, 3);
    assert.match(String(byId.get('proj-pub')?.connected_at), /^\d{4}-\d{2}-\d{2}T/);
    await publisher.endAsync();
    await subscriber.endAsync();
  });
});

describe('sampling across an embedded broker restart', () => {
  it('treats the restarted counters as a reset: deltas stay non-negative and exact', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pepeunit-counting-'));
    const stateFile = join(dir, 'broker.json');
    const unit: CountedUnit = { unitUuid: randomUUID(), nodeUuids: [randomUUID()] };
    const topic = `restart.test/${unit.nodeUuids[0]}/pepeunit`;
    const publish = async (broker: TestBroker, count: number): Promise<void> => {
      const device = await connectClient(broker.broker.mqttUrl, { clientId: 'restart-device' });
      for (let index = 0; index < count; index += 1) await device.publishAsync(topic, String(index));
      await device.endAsync();
    };
    const read = async (broker: TestBroker, at: number): Promise<CounterReading> =>
      counterReading(parseDataIntegration(await broker.client.getDataIntegrationMetrics()), at, { prefix: COUNT_RULE_PREFIX });
    const loadOf = (previous: CounterReading, current: CounterReading) => unitLoads(counterDeltas(previous, current), [unit]).get(unit.unitUuid)?.messages;
    try {
      let broker = await startTestBroker({ stateFile });
      await reconcileCountingRules(broker.client, { domain: 'restart.test', units: [unit] });
      await publish(broker, 5);
      const first = await read(broker, 0);
      await publish(broker, 3);
      const second = await read(broker, 15_000);
      assert.equal(loadOf(first, second), 3);
      await publish(broker, 4); // counted by the broker, then lost with its restart
      await broker.close();

      broker = await startTestBroker({ stateFile });
      try {
        assert.equal((await broker.client.listAllRules({ like_id: COUNT_RULE_PREFIX })).length, 2, 'rules survive the restart');
        await publish(broker, 2);
        const third = await read(broker, 30_000);
        assert.equal(loadOf(second, third), 2, 'after a restart the new counter value is the delta');
        await publish(broker, 6);
        const fourth = await read(broker, 45_000);
        assert.equal(loadOf(third, fourth), 6);
      } finally {
        await broker.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
