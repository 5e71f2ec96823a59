// The stable-family reconciler against the embedded broker: bulk creation of thousands of rules,
// a second run that writes nothing, per-owner changes (node removed, unit deleted, alert level
// changed), drift repaired by delete + create, concurrent replicas — and never a PUT, so the
// counters the backend samples are never reset by a reconcile.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { EmqxManagementClient } from '../src/management-client.js';
import type { ApiResponse, RequestOptions } from '../src/management-client.js';
import {
  ALERT_RULE_PREFIX,
  COUNT_RULE_PREFIX,
  StableReconcileError,
  countNodeRuleId,
  countUnitRuleId,
  countingRules,
  nodeCountingRule,
  reconcileAlertRules,
  reconcileCountingRules,
  reconcileStableRules,
  reconcileUnitAlertRules,
  reconcileUnitCountingRules,
} from '../src/rules/index.js';
import type { CountedUnit } from '../src/rules/index.js';
import { connectClient, startTestBroker } from './helpers.js';
import type { TestBroker } from './helpers.js';

const DOMAIN = 'pepeunit.test';

/** A client that records the method of every request it sends. */
class RecordingClient extends EmqxManagementClient {
  readonly methods: string[] = [];
  override async request<T = unknown>(method: Parameters<EmqxManagementClient['request']>[0], path: string, options?: RequestOptions): Promise<ApiResponse<T>> {
    this.methods.push(`${method} ${path.split('?')[0] ?? ''}`);
    return super.request<T>(method, path, options);
  }
}

function units(count: number, nodesPerUnit = 1): CountedUnit[] {
  return Array.from({ length: count }, () => ({ unitUuid: randomUUID(), nodeUuids: Array.from({ length: nodesPerUnit }, () => randomUUID()) }));
}

async function familyIds(broker: TestBroker, prefix: string): Promise<string[]> {
  return (await broker.client.listAllRules({ like_id: prefix })).map((rule) => rule.id).filter((id) => id.startsWith(prefix)).sort();
}

describe('stable rule reconciler', () => {
  let broker: TestBroker;
  let client: RecordingClient;
  before(async () => {
    broker = await startTestBroker();
    client = new RecordingClient({ baseUrl: broker.broker.apiUrl, apiKey: broker.apiKey, apiSecret: broker.apiSecret, maxRetries: 0 });
  });
  after(async () => {
    await client.close();
    await broker.close();
  });

  it('creates thousands of counting rules in bulk with progress, then writes nothing on the next run', async () => {
    const fleet = units(1000);
    const progress: number[] = [];
    const first = await reconcileCountingRules(client, { domain: DOMAIN, units: fleet }, { concurrency: 16, onProgress: ({ done, total }) => progress.push(done / total) });
    assert.equal(first.created.length, 2000);
    assert.deepEqual([first.deleted.length, first.recreated.length, first.present.length, first.failed.length], [0, 0, 0, 0]);
    assert.equal(progress.length, 2000);
    assert.equal(progress.at(-1), 1);
    assert.deepEqual(await familyIds(broker, COUNT_RULE_PREFIX), countingRules(DOMAIN, fleet).map((rule) => rule.id));

    client.methods.length = 0;
    const second = await reconcileCountingRules(client, { domain: DOMAIN, units: async () => fleet });
    assert.equal(second.present.length, 2000);
    assert.deepEqual([second.created.length, second.deleted.length, second.recreated.length], [0, 0, 0]);
    assert.ok(client.methods.every((method) => method === 'GET /rules'), `only listing: ${[...new Set(client.methods)].join(', ')}`);

    const cleared = await reconcileCountingRules(client, { domain: DOMAIN, units: [] });
    assert.equal(cleared.deleted.length, 2000);
    assert.deepEqual(await familyIds(broker, COUNT_RULE_PREFIX), []);
  });

  it('keeps counters across reconciles: a unit change touches only that unit, never with PUT', async () => {
    const [unit, neighbour] = units(2, 2) as [CountedUnit, CountedUnit];
    await reconcileCountingRules(client, { domain: DOMAIN, units: [unit, neighbour] });
    const device = await connectClient(broker.broker.mqttUrl, { clientId: 'counter-device' });
    const node = unit.nodeUuids[0] as string;
    await device.publishAsync(`${DOMAIN}/${node}/pepeunit`, '1');
    await device.publishAsync(`${DOMAIN}/${node}`, '2');
    await device.publishAsync(`${DOMAIN}/output_base_topic/${unit.unitUuid}/state/pepeunit`, '{}');
    await device.endAsync();
    const matched = async (id: string) => (await broker.client.getRuleMetrics(id))?.metrics.matched;
    assert.equal(await matched(countNodeRuleId(node)), 2);
    assert.equal(await matched(countUnitRuleId(unit.unitUuid)), 1);

    // The unit loses its second node and gains a new one.
    const removed = unit.nodeUuids[1] as string;
    const added = randomUUID();
    client.methods.length = 0;
    const change = await reconcileUnitCountingRules(client, { domain: DOMAIN, unitUuid: unit.unitUuid, nodeUuids: [node, added], removedNodeUuids: [removed] });
    assert.deepEqual(change.created, [countNodeRuleId(added)]);
    assert.deepEqual(change.deleted, [countNodeRuleId(removed)]);
    assert.deepEqual(change.present.sort(), [countNodeRuleId(node), countUnitRuleId(unit.unitUuid)].sort());
    assert.ok(!client.methods.some((method) => method.startsWith('PUT')), 'no PUT');
    assert.equal(await matched(countNodeRuleId(node)), 2, 'the counter of an untouched rule survives');
    assert.equal(await matched(countUnitRuleId(unit.unitUuid)), 1);

    // The unit is deleted: its rules go, the neighbour's stay.
    const gone = await reconcileUnitCountingRules(client, { domain: DOMAIN, unitUuid: unit.unitUuid, nodeUuids: [node, added], deleted: true });
    assert.equal(gone.deleted.length, 3);
    assert.deepEqual(await familyIds(broker, COUNT_RULE_PREFIX), countingRules(DOMAIN, [neighbour]).map((rule) => rule.id));
    await reconcileCountingRules(client, { domain: DOMAIN, units: [] });
  });

  it('repairs drift by delete + create, and refuses wanted rules outside the family or owners', async () => {
    const [unit] = units(1) as [CountedUnit];
    const node = unit.nodeUuids[0] as string;
    await reconcileCountingRules(client, { domain: DOMAIN, units: [unit] });
    await broker.client.upsertRule(countNodeRuleId(node), { sql: 'SELECT clientid FROM "elsewhere/#"' });
    client.methods.length = 0;
    const repaired = await reconcileCountingRules(client, { domain: DOMAIN, units: [unit] });
    assert.deepEqual(repaired.recreated, [countNodeRuleId(node)]);
    assert.ok(!client.methods.some((method) => method.startsWith('PUT')));
    assert.equal((await broker.client.getRule(countNodeRuleId(node)))?.sql, nodeCountingRule(DOMAIN, node).sql);

    await assert.rejects(reconcileStableRules(client, { prefix: ALERT_RULE_PREFIX, wanted: [nodeCountingRule(DOMAIN, node)] }), /does not belong to the family/);
    await assert.rejects(reconcileStableRules(client, { prefix: COUNT_RULE_PREFIX, wanted: [nodeCountingRule(DOMAIN, node)], owners: [unit.unitUuid] }), /none of the owners/);
    await reconcileCountingRules(client, { domain: DOMAIN, units: [] });
  });

  it('lets replicas race: concurrent runs end with every rule once and no failure', async () => {
    const fleet = units(100);
    const runs = await Promise.all([1, 2, 3].map(() => reconcileCountingRules(broker.client, { domain: DOMAIN, units: fleet }, { concurrency: 8 })));
    const created = runs.reduce((sum, run) => sum + run.created.length, 0);
    assert.equal(created, 200, 'each rule created exactly once');
    assert.ok(runs.every((run) => run.failed.length === 0 && run.created.length + run.present.length === 200));
    assert.equal((await familyIds(broker, COUNT_RULE_PREFIX)).length, 200);
    await reconcileCountingRules(client, { domain: DOMAIN, units: [] });
  });

  it('replaces a unit log rule when its alert level changes, and keeps the instance rules', async () => {
    const unit = randomUUID();
    const other = randomUUID();
    const bulk = await reconcileAlertRules(client, { domain: DOMAIN, units: [{ unitUuid: unit, level: 'Warning' }, { unitUuid: other, level: 'Critical' }] });
    assert.deepEqual(bulk.created.sort(), ['alert-authz-deny', 'alert-disconnect', `alert-log-critical-${other}`, `alert-log-warning-${unit}`].sort());

    client.methods.length = 0;
    const change = await reconcileUnitAlertRules(client, { domain: DOMAIN, unitUuid: unit, level: 'Error' });
    assert.deepEqual(change.deleted, [`alert-log-warning-${unit}`]);
    assert.deepEqual(change.created, [`alert-log-error-${unit}`]);
    assert.ok(!client.methods.some((method) => method.startsWith('PUT')));
    const off = await reconcileUnitAlertRules(client, { domain: DOMAIN, unitUuid: unit, level: null });
    assert.deepEqual(off.deleted, [`alert-log-error-${unit}`]);
    assert.deepEqual(await familyIds(broker, ALERT_RULE_PREFIX), ['alert-authz-deny', 'alert-disconnect', `alert-log-critical-${other}`]);
    await reconcileAlertRules(client, { domain: DOMAIN, units: [], authzDeny: false, disconnect: false });
    assert.deepEqual(await familyIds(broker, ALERT_RULE_PREFIX), []);
  });

  it('reports failed operations with the partial result', async () => {
    const refusing = new (class extends EmqxManagementClient {
      override async createRule(): Promise<never> {
        throw new Error('refused for the test');
      }
    })({ baseUrl: broker.broker.apiUrl, apiKey: broker.apiKey, apiSecret: broker.apiSecret, maxRetries: 0 });
    try {
      const error = await reconcileCountingRules(refusing, { domain: DOMAIN, units: units(2) }).then(
        () => undefined,
        (failure: unknown) => failure,
      );
      assert.ok(error instanceof StableReconcileError);
      assert.equal(error.result.failed.length, 4);
      assert.match(error.message, /refused for the test/);
    } finally {
      await refusing.close();
    }
  });
});
