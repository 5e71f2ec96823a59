/**
 * Load counting end to end on the real embedded broker, Postgres and ClickHouse:
 *  - counting rules follow units and nodes (Postgres triggers -> LISTEN -> per-unit reconcile);
 *  - units publishing at a known rate are measured within 5 % by the sampler;
 *  - every message is in unit_load_minute exactly once, including across a broker restart
 *    (counters restart from zero: no negative, no doubled value).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COUNT_RULE_PREFIX, countNodeRuleId, countUnitRuleId } from '@pepeunit/emqx-rules';
import { waitFor } from '../../../tests/src/wait.ts';
import { createCountingRules, type CountingRules } from '../../src/load/counting-rules.ts';
import { createSampler, spreadOverMinutes, type LoadSample, type Sampler } from '../../src/load/sampler.ts';
import { DOMAIN, PacedPublisher, insertUnit, insertUser, loadFixture, startBroker, type LoadFixture, type TestBroker } from './helpers.ts';

let fx: LoadFixture;
let broker: TestBroker;
let stateDir: string;
let counting: CountingRules;
let sampler: Sampler;

const ruleIds = async (): Promise<string[]> =>
  (await broker.client.listAllRules({ like_id: COUNT_RULE_PREFIX })).map((rule) => rule.id).filter((id) => id.startsWith(COUNT_RULE_PREFIX)).sort();

before(async () => {
  fx = await loadFixture('load_sampler');
  stateDir = mkdtempSync(join(tmpdir(), 'pepeunit-load-'));
  broker = await startBroker({ stateFile: join(stateDir, 'broker.json') });
  counting = createCountingRules({ pg: fx.pool, client: () => broker.client, domain: DOMAIN, initialDelayMs: -1, intervalMs: 0, batchMs: 10 });
  sampler = createSampler({ pg: fx.pool, clickhouse: fx.db.clickhouse, client: () => broker.client, intervalMs: 3_600_000 });
  counting.onChange(() => sampler.unitsChanged());
});

after(async () => {
  await sampler?.stop();
  await counting?.close();
  await broker?.close();
  await fx?.close();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('spreading a cycle over minutes', () => {
  it('keeps the total and splits in proportion to time', () => {
    assert.deepEqual(spreadOverMinutes(10, 60_000, 70_000), [[60, 10]]);
    assert.deepEqual(spreadOverMinutes(10, 50_000, 70_000), [[0, 5], [60, 5]]);
    assert.deepEqual(spreadOverMinutes(7, 119_000, 240_000).reduce((sum, [, m]) => sum + m, 0), 7);
    assert.deepEqual(spreadOverMinutes(0, 0, 120_000), []);
  });
});

describe('counting rules follow their owners', () => {
  it('creates the rules of a new unit and its nodes, removes a deleted node and a deleted unit', async () => {
    const user = await insertUser(fx.pool);
    const { unit, nodes } = await insertUnit(fx.pool, user, 2);
    const wanted = [countUnitRuleId(unit), countNodeRuleId(nodes[0]!), countNodeRuleId(nodes[1]!)].sort();
    await waitFor(async () => (ids = await ruleIds()) && wanted.every((id) => ids.includes(id)), { what: 'counting rules of the new unit' });
    await fx.pool.query('DELETE FROM units_nodes WHERE uuid = $1', [nodes[1]]);
    await waitFor(async () => !(await ruleIds()).includes(countNodeRuleId(nodes[1]!)), { what: 'the deleted node rule gone' });
    assert.ok((await ruleIds()).includes(countNodeRuleId(nodes[0]!)), 'the other node keeps its rule');
    await fx.pool.query('DELETE FROM units WHERE uuid = $1', [unit]);
    await waitFor(async () => (await ruleIds()).every((id) => !id.endsWith(unit) && !id.endsWith(nodes[0]!)), { what: 'the deleted unit rules gone' });
    // The rules are created, never updated: a bulk reconcile finds nothing to change.
    const bulk = await counting.reconcileAll();
    assert.ok(bulk.status === 'done' && bulk.result.created.length === 0 && bulk.result.recreated.length === 0 && bulk.result.deleted.length === 0, JSON.stringify(bulk));
  });
});
let ids: string[] = [];

describe('measured load', () => {
  it('is within 5 % of the real rate per unit, and every message is stored once across a broker restart', async () => {
    const user = await insertUser(fx.pool);
    const a = await insertUnit(fx.pool, user, 1);
    const b = await insertUnit(fx.pool, user, 1);
    await waitFor(async () => (ids = await ruleIds()).includes(countNodeRuleId(a.nodes[0]!)) && ids.includes(countUnitRuleId(b.unit)), { what: 'counting rules of both units' });
    const rates = { a: 40, b: 15 };
    const pubA = new PacedPublisher(broker.broker.mqttUrl, a.unit, `${DOMAIN}/${a.nodes[0]}/pepeunit`, rates.a);
    const pubB = new PacedPublisher(broker.broker.mqttUrl, b.unit, `${DOMAIN}/output_base_topic/${b.unit}/state/pepeunit`, rates.b);
    const samples: LoadSample[] = [];
    sampler.onSample((sample) => void samples.push(sample));
    try {
      await Promise.all([pubA.connected(), pubB.connected()]);
      assert.equal(await sampler.cycle(), null, 'the first reading is a baseline');
      pubA.start();
      pubB.start();
      // Let the schedule settle for one second, then sample every second of publishing for 5 s.
      await waitFor(() => pubA.sent >= rates.a, { what: 'one second of publishing' });
      const first = await sampler.cycle();
      assert.ok(first);
      for (let second = 2; second <= 6; second += 1) {
        await waitFor(() => pubA.sent >= rates.a * second, { what: `${second} s of publishing` });
        assert.ok(await sampler.cycle());
      }
      const steady = samples.slice(samples.indexOf(first) + 1);
      const elapsed = steady.reduce((sum, s) => sum + s.elapsedMs, 0) / 1000;
      const measured = (unit: string) => steady.reduce((sum, s) => sum + (s.loads.get(unit)?.messages ?? 0), 0) / elapsed;
      const mpsA = measured(a.unit);
      const mpsB = measured(b.unit);
      assert.ok(Math.abs(mpsA - rates.a) / rates.a <= 0.05, `unit A: measured ${mpsA.toFixed(2)} MPS, real ${rates.a}`);
      assert.ok(Math.abs(mpsB - rates.b) / rates.b <= 0.05, `unit B: measured ${mpsB.toFixed(2)} MPS, real ${rates.b}`);

      // Broker restart mid-run: stop pacing, count what the broker saw, lose a few with the restart.
      pubA.stop();
      pubB.stop();
      await pubA.burst(3);
      await pubB.burst(2);
      await waitFor(async () => (await sampler.cycle()) && (await countedTotal(a.unit)) === pubA.sent, { what: 'unit A fully counted before the restart' });
      assert.equal(await countedTotal(b.unit), pubB.sent);
      const beforeRestart = { a: pubA.sent, b: pubB.sent };
      await pubA.burst(7); // counted by the broker, lost with its counters
      await pubA.end();
      await pubB.end();
      const { mqttPort, apiPort } = broker.broker;
      await broker.close();
      broker = await startBroker({ stateFile: join(stateDir, 'broker.json'), mqttPort, apiPort });
      assert.ok((await ruleIds()).includes(countNodeRuleId(a.nodes[0]!)), 'rules survive the restart');
      const again = new PacedPublisher(broker.broker.mqttUrl, a.unit, `${DOMAIN}/${a.nodes[0]}/pepeunit`, 1);
      await again.connected();
      await again.burst(5);
      await again.end();
      const afterRestart = await sampler.cycle();
      assert.ok(afterRestart);
      assert.ok(afterRestart.resets > 0, 'the restart is seen as a counter reset');
      assert.equal(afterRestart.loads.get(a.unit)?.messages, 5, 'after the restart the new counter value is the delta');
      assert.equal(await countedTotal(a.unit), beforeRestart.a + 5, 'nothing doubled: what the broker counted before its restart, and after');
      assert.equal(await countedTotal(b.unit), beforeRestart.b);
      for (const sample of samples) for (const load of sample.loads.values()) assert.ok(load.messages >= 0 && load.mps >= 0);
      const negative = await fx.db.clickhouse.query({ query: 'SELECT count() AS n FROM unit_load_minute WHERE messages < 0', format: 'JSONEachRow' });
      assert.equal(Number((await negative.json<{ n: string }>())[0]?.n), 0);
    } finally {
      await pubA.end().catch(() => undefined);
      await pubB.end().catch(() => undefined);
    }
  });
});

async function countedTotal(unit: string): Promise<number> {
  await sampler.flushed();
  const result = await fx.db.clickhouse.query({
    query: 'SELECT toUInt64(sum(messages)) AS n FROM unit_load_minute WHERE unit_uuid = {unit:UUID}',
    query_params: { unit },
    format: 'JSONEachRow',
  });
  return Number((await result.json<{ n: string }>())[0]?.n ?? 0);
}
