// The rule reconciler against the embedded broker: creates what is missing, leaves equal rules
// alone, updates and deletes only the difference, never touches other families, survives a
// concurrent replica, and handles thousands of rules in bulk.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { EmqxManagementClient } from '../src/management-client.js';
import {
  PIPE_RULE_PREFIX,
  RuleReconcileError,
  pipeRule,
  pipeRules,
  reconcilePipeNode,
  reconcilePipeRules,
  reconcileRule,
  reconcileRules,
  ruleBody,
} from '../src/rules/index.js';
import { startTestBroker } from './helpers.js';
import type { TestBroker } from './helpers.js';

const DOMAIN = 'pepeunit.test';

function uuids(count: number): string[] {
  return Array.from({ length: count }, () => randomUUID());
}

async function pipeIds(broker: TestBroker): Promise<string[]> {
  return (await broker.client.listAllRules({ like_id: PIPE_RULE_PREFIX })).map((rule) => rule.id).filter((id) => id.startsWith(PIPE_RULE_PREFIX)).sort();
}

describe('rule reconciler', () => {
  let broker: TestBroker;
  before(async () => {
    broker = await startTestBroker();
  });
  after(async () => {
    await broker.close();
  });

  it('creates N, then reports all unchanged, then updates one and deletes one', async () => {
    const { client } = broker;
    const nodes = uuids(20);
    const wanted = pipeRules(DOMAIN, nodes);

    const first = await reconcileRules(client, { prefix: PIPE_RULE_PREFIX, wanted });
    assert.equal(first.created.length, 20);
    assert.deepEqual([first.updated.length, first.deleted.length, first.unchanged.length, first.failed.length], [0, 0, 0, 0]);
    assert.deepEqual(await pipeIds(broker), wanted.map((rule) => rule.id));

    const metricsBefore = await client.getRuleMetrics(wanted[0]?.id ?? '');
    const second = await reconcileRules(client, { prefix: PIPE_RULE_PREFIX, wanted });
    assert.deepEqual([second.created.length, second.updated.length, second.deleted.length], [0, 0, 0]);
    assert.equal(second.unchanged.length, 20);
    const firstRule = await client.getRule(wanted[0]?.id ?? '');
    assert.ok(firstRule && metricsBefore, 'rule still there');

    // An operator edited one rule in the dashboard: the reconciler puts it back.
    const edited = wanted[3];
    assert.ok(edited);
    await client.upsertRule(edited.id, { sql: 'SELECT payload FROM "elsewhere/#"' });
    // One node's policy was switched off.
    const removed = wanted[7];
    assert.ok(removed);
    const third = await reconcileRules(client, { prefix: PIPE_RULE_PREFIX, wanted: wanted.filter((rule) => rule !== removed) });
    assert.deepEqual(third.updated, [edited.id]);
    assert.deepEqual(third.deleted, [removed.id]);
    assert.deepEqual(third.created, []);
    assert.equal(third.unchanged.length, 18);
    assert.equal((await client.getRule(edited.id))?.sql, edited.sql);
    assert.equal(await client.getRule(removed.id), undefined);

    const cleared = await reconcilePipeRules(client, { domain: DOMAIN, enabledNodes: [] });
    assert.equal(cleared.deleted.length, 19);
    assert.deepEqual(await pipeIds(broker), []);
  });

  it('never touches rules of other families or hand-made rules, even when like_id matches them', async () => {
    const { client } = broker;
    const node = randomUUID();
    await client.createRule({ id: `count-${node}`, sql: `SELECT clientid FROM "${DOMAIN}/${node}/pepeunit"` });
    await client.createRule({ id: 'my-pipe-debug', sql: 'SELECT * FROM "debug/#"' });
    const result = await reconcilePipeRules(client, { domain: DOMAIN, enabledNodes: [node] });
    assert.deepEqual(result.created, [`pipe-${node}`]);
    assert.deepEqual(result.deleted, []);
    const cleared = await reconcilePipeRules(client, { domain: DOMAIN, enabledNodes: async () => [] });
    assert.deepEqual(cleared.deleted, [`pipe-${node}`]);
    assert.ok(await client.getRule(`count-${node}`));
    assert.ok(await client.getRule('my-pipe-debug'));
    await client.deleteRule(`count-${node}`);
    await client.deleteRule('my-pipe-debug');
  });

  it('reads the wanted set after listing EMQX, and a dry run writes nothing', async () => {
    const { client } = broker;
    const node = randomUUID();
    let listedFirst = false;
    const dry = await reconcilePipeRules(
      client,
      {
        domain: DOMAIN,
        enabledNodes: async () => {
          // A rule created while the wanted set is being read (another replica's fast path).
          await reconcilePipeNode(client, { domain: DOMAIN, nodeUuid: node, enabled: true });
          listedFirst = true;
          return [node];
        },
      },
      { dryRun: true },
    );
    assert.ok(listedFirst);
    assert.deepEqual(dry.created, [`pipe-${node}`], 'the listing predates the concurrent create');
    const real = await reconcilePipeRules(client, { domain: DOMAIN, enabledNodes: [node] });
    assert.deepEqual(real.unchanged, [`pipe-${node}`]);
    await reconcilePipeRules(client, { domain: DOMAIN, enabledNodes: [] });
  });

  it('reconciles a single node: create, unchanged, update, delete, absent', async () => {
    const { client } = broker;
    const node = randomUUID();
    assert.equal(await reconcilePipeNode(client, { domain: DOMAIN, nodeUuid: node, enabled: true }), 'created');
    assert.equal(await reconcilePipeNode(client, { domain: DOMAIN, nodeUuid: node, enabled: true }), 'unchanged');
    const rule = pipeRule({ domain: DOMAIN, nodeUuid: node });
    await client.upsertRule(rule.id, { ...ruleBody(rule), enable: false });
    assert.equal(await reconcileRule(client, rule.id, rule), 'updated');
    assert.equal((await client.getRule(rule.id))?.enable, true);
    assert.equal(await reconcilePipeNode(client, { domain: DOMAIN, nodeUuid: node, enabled: false }), 'deleted');
    assert.equal(await reconcilePipeNode(client, { domain: DOMAIN, nodeUuid: node, enabled: false }), 'absent');
  });

  it('is safe when two replicas reconcile at the same time', async () => {
    const { client } = broker;
    const wanted = pipeRules(DOMAIN, uuids(50));
    const other = new EmqxManagementClient({ baseUrl: broker.broker.apiUrl, apiKey: broker.apiKey, apiSecret: broker.apiSecret, maxRetries: 0 });
    try {
      const [a, b] = await Promise.all([
        reconcileRules(client, { prefix: PIPE_RULE_PREFIX, wanted }),
        reconcileRules(other, { prefix: PIPE_RULE_PREFIX, wanted }),
      ]);
      assert.equal(a.failed.length + b.failed.length, 0);
      assert.deepEqual(await pipeIds(broker), wanted.map((rule) => rule.id));
      const [c, d] = await Promise.all([
        reconcileRules(client, { prefix: PIPE_RULE_PREFIX, wanted: [] }),
        reconcileRules(other, { prefix: PIPE_RULE_PREFIX, wanted: [] }),
      ]);
      assert.equal(c.deleted.length, 50, 'a 404 on delete (the other replica was first) is fine');
      assert.equal(d.deleted.length, 50);
      assert.deepEqual(await pipeIds(broker), []);
    } finally {
      await other.close();
    }
  });

  it('reports failed writes with the partial result instead of stopping, and refuses foreign ids', async () => {
    const { client } = broker;
    const good = pipeRule({ domain: DOMAIN, nodeUuid: randomUUID() });
    const bad = { ...pipeRule({ domain: DOMAIN, nodeUuid: randomUUID() }), sql: 'SELECT FROM' };
    await assert.rejects(reconcileRules(client, { prefix: PIPE_RULE_PREFIX, wanted: [good, bad] }), (error: unknown) => {
      assert.ok(error instanceof RuleReconcileError);
      assert.deepEqual(error.result.created, [good.id]);
      assert.equal(error.result.failed.length, 1);
      assert.equal(error.result.failed[0]?.id, bad.id);
      assert.match(error.result.failed[0]?.error ?? '', /400 BAD_REQUEST/);
      return true;
    });
    await assert.rejects(reconcileRules(client, { prefix: PIPE_RULE_PREFIX, wanted: [{ ...good, id: 'count-x' }] }), /does not belong to the family/);
    await assert.rejects(reconcileRules(client, { prefix: PIPE_RULE_PREFIX, wanted: [good, good] }), /wanted twice/);
    await reconcileRules(client, { prefix: PIPE_RULE_PREFIX, wanted: [] });
  });

  it('handles 3,000 rules in bulk (create, no-op, delete)', async (t) => {
    const { client } = broker;
    const wanted = pipeRules(DOMAIN, uuids(3000));
    let progressCalls = 0;
    const created = await reconcileRules(client, { prefix: PIPE_RULE_PREFIX, wanted }, { onProgress: () => (progressCalls += 1) });
    assert.equal(created.created.length, 3000);
    assert.equal(progressCalls, 3000);
    const noop = await reconcileRules(client, { prefix: PIPE_RULE_PREFIX, wanted });
    assert.equal(noop.unchanged.length, 3000);
    assert.equal(noop.created.length + noop.updated.length + noop.deleted.length, 0);
    const deleted = await reconcileRules(client, { prefix: PIPE_RULE_PREFIX, wanted: [] });
    assert.equal(deleted.deleted.length, 3000);
    assert.deepEqual(await pipeIds(broker), []);
    const line = `bulk reconcile of 3000 pipe rules against the embedded broker: create ${created.durationMs} ms, no-op ${noop.durationMs} ms, delete ${deleted.durationMs} ms`;
    t.diagnostic(line);
    console.log(line);
  });
});
