/**
 * The pipe-rules service against real PostgreSQL and the embedded EMQX-compatible broker: which
 * nodes get a rule, the per-node fast path, election with an advisory lock, retries when EMQX is
 * unreachable, and the wiring to `app.datapipe.onChange`.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import net from 'node:net';
import Fastify from 'fastify';
import pg from 'pg';
import { silentLogger, type BackendConfig } from '@pepeunit/common';
import type { AppDeps } from '../../src/deps.ts';
import { createDatabase, databaseUrl, dropDatabase } from '@pepeunit/common/postgres';
import { defaultLastValueConfig, serialiseDataPipeConfig } from '@pepeunit/common/datapipe/index';
import { EmqxManagementClient, PIPE_RULE_PREFIX, startEmbeddedBroker, type EmbeddedBroker } from '@pepeunit/emqx-rules';
import { migratePostgres } from '../../src/db/migrate.ts';
import { createDataPipeEvents } from '../../src/services/datapipe-events.ts';
import { PIPE_RULES_LOCK_KEY, createPipeRules, registerPipeRules } from '../../src/services/pipe-rules.ts';
import { waitFor } from '@pepeunit/tests/wait';
import { testServices } from '@pepeunit/tests/harness';

// The harness' PostgreSQL (the runner's, or one it starts): never a server that happens to run on 5432.
const ADMIN_URL = (await testServices()).pgAdminUrl;
const DOMAIN = 'pipe-rules.test';
const CONFIG = serialiseDataPipeConfig(defaultLastValueConfig());

let dbName: string;
let pool: pg.Pool;
let broker: EmbeddedBroker;
let client: EmqxManagementClient;
const poolErrors: Error[] = [];

/** A loopback port nothing listens on (a server bound it, then closed). */
async function refusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function insertNode(opts: { active: boolean; config?: string | null; topicName?: string }): Promise<string> {
  const uuid = randomUUID();
  await pool.query(
    `INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, topic_name, create_datetime, is_data_pipe_active, data_pipe_yml)
     VALUES ($1, 'Output', 'Public', false, $2, now(), $3, $4)`,
    [uuid, opts.topicName ?? 'temperature/pepeunit', opts.active, opts.config === undefined ? CONFIG : opts.config],
  );
  return uuid;
}

async function setActive(uuid: string, active: boolean): Promise<void> {
  await pool.query('UPDATE units_nodes SET is_data_pipe_active = $2 WHERE uuid = $1', [uuid, active]);
}

async function pipeRuleIds(): Promise<string[]> {
  return (await client.listAllRules({ like_id: PIPE_RULE_PREFIX })).map((rule) => rule.id).filter((id) => id.startsWith(PIPE_RULE_PREFIX)).sort();
}

before(async () => {
  dbName = `pu_t_piperules_${randomBytes(4).toString('hex')}`;
  await createDatabase(ADMIN_URL, dbName);
  const url = databaseUrl(ADMIN_URL, dbName);
  await migratePostgres(url);
  pool = new pg.Pool({ connectionString: url, max: 5 });
  // An idle client's error would otherwise be an uncaught exception after some test ended.
  pool.on('error', (error) => poolErrors.push(error));
  broker = await startEmbeddedBroker({ apiKeys: [{ key: 'backend', secret: 'backend-secret' }] });
  client = new EmqxManagementClient({ baseUrl: broker.apiUrl, apiKey: 'backend', apiSecret: 'backend-secret', maxRetries: 0 });
});

after(async () => {
  await client?.close();
  await broker?.close();
  await pool?.end();
  if (dbName) await dropDatabase(ADMIN_URL, dbName);
  assert.deepEqual(poolErrors.map(String), [], 'no idle Postgres connection failed');
});

describe('pipe rules service', () => {
  it('reconcileAll creates exactly one rule per node with an active policy, config and pipeable topic', async () => {
    const active = await insertNode({ active: true });
    const active2 = await insertNode({ active: true });
    await insertNode({ active: false });
    await insertNode({ active: true, config: null });
    await insertNode({ active: true, topicName: 'temperature' });
    const stray = `pipe-${randomUUID()}`;
    await client.createRule({ id: stray, sql: `SELECT payload FROM "${DOMAIN}/x/pepeunit"` });

    const service = createPipeRules({ pg: pool, client, domain: DOMAIN, intervalMs: 0, initialDelayMs: -1 });
    try {
      const outcome = await service.reconcileAll();
      assert.equal(outcome.status, 'done');
      assert.deepEqual(await pipeRuleIds(), [`pipe-${active}`, `pipe-${active2}`].sort());
      const rule = await client.getRule(`pipe-${active}`);
      assert.equal(rule?.sql, `SELECT payload, topic, clientid, publish_received_at AS ts FROM "${DOMAIN}/${active}/pepeunit"`);
      const again = await service.reconcileAll();
      assert.ok(again.status === 'done' && again.result.unchanged.length === 2 && again.result.created.length === 0);
    } finally {
      await service.close();
    }
    // With the DataPipe feature off, no node wants a rule.
    const off = createPipeRules({ pg: pool, client, domain: DOMAIN, enabled: false, intervalMs: 0, initialDelayMs: -1 });
    try {
      const outcome = await off.reconcileAll();
      assert.ok(outcome.status === 'done' && outcome.result.deleted.length === 2);
      assert.deepEqual(await pipeRuleIds(), []);
    } finally {
      await off.close();
    }
  });

  it('reconcileNode follows the node in Postgres: create on enable, delete on disable', async () => {
    const service = createPipeRules({ pg: pool, client, domain: DOMAIN, intervalMs: 0, initialDelayMs: -1 });
    try {
      const node = await insertNode({ active: false });
      assert.equal(await service.reconcileNode(node), 'absent');
      await setActive(node, true);
      assert.equal(await service.reconcileNode(node.toUpperCase()), 'created');
      assert.equal(await service.reconcileNode(node), 'unchanged');
      assert.ok(await client.getRule(`pipe-${node}`));
      await setActive(node, false);
      // Several quick changes for one node are applied in order; the last state wins.
      const outcomes = await Promise.all([service.reconcileNode(node), service.reconcileNode(node)]);
      assert.deepEqual(outcomes, ['deleted', 'absent']);
      assert.equal(await client.getRule(`pipe-${node}`), undefined);
      await pool.query('DELETE FROM units_nodes WHERE uuid = $1', [node]);
      assert.equal(await service.reconcileNode(node), 'absent', 'a deleted node has no rule');
      assert.equal(await service.reconcileNode('not-a-uuid'), 'skipped');
    } finally {
      await service.close();
    }
  });

  it('skips the full reconcile while another replica holds the advisory lock', async () => {
    const node = await insertNode({ active: true });
    const service = createPipeRules({ pg: pool, client, domain: DOMAIN, intervalMs: 0, initialDelayMs: -1 });
    const other = await pool.connect();
    try {
      await other.query('SELECT pg_advisory_lock($1, $2)', [...PIPE_RULES_LOCK_KEY]);
      const skipped = await service.reconcileAll();
      assert.deepEqual(skipped, { status: 'skipped', reason: 'another replica holds the reconcile lock' });
      assert.equal(await client.getRule(`pipe-${node}`), undefined);
      await other.query('SELECT pg_advisory_unlock($1, $2)', [...PIPE_RULES_LOCK_KEY]);
      const done = await service.reconcileAll();
      assert.equal(done.status, 'done');
      assert.ok(await client.getRule(`pipe-${node}`));
    } finally {
      other.release();
      await service.close();
    }
  });

  it('never throws when EMQX is unreachable, and retries until it answers', async () => {
    const node = await insertNode({ active: true });
    const unreachable = new EmqxManagementClient({ baseUrl: `http://127.0.0.1:${await refusedPort()}`, apiKey: 'k', apiSecret: 's', maxRetries: 0, timeoutMs: 1000 });
    let current: EmqxManagementClient = unreachable;
    const service = createPipeRules({ pg: pool, client: () => current, domain: DOMAIN, intervalMs: 0, initialDelayMs: -1, retryBaseMs: 50 });
    try {
      assert.equal(await service.reconcileNode(node), 'failed');
      const all = await service.reconcileAll();
      assert.equal(all.status, 'failed');
      current = client; // EMQX is back: the scheduled retries succeed.
      await waitFor(() => client.getRule(`pipe-${node}`), { what: 'the retried change to reach EMQX' });
    } finally {
      await service.close();
      await unreachable.close();
    }
    const none = createPipeRules({ pg: pool, client: null, domain: DOMAIN, intervalMs: 0, initialDelayMs: -1 });
    assert.deepEqual(await none.reconcileAll(), { status: 'skipped', reason: 'no EMQX management API configured' });
    assert.equal(await none.reconcileNode(node), 'skipped');
    await none.close();
    const badDomain = createPipeRules({ pg: pool, client, domain: 'bad/domain', intervalMs: 0, initialDelayMs: -1 });
    const outcome = await badDomain.reconcileAll();
    assert.ok(outcome.status === 'skipped' && /PU_DOMAIN/.test(outcome.reason));
    await badDomain.close();
  });

  it('registerPipeRules reconciles a node on every app.datapipe change', async () => {
    const app = Fastify();
    app.decorate('pg', pool);
    // Only what the service reads: the logger of app.deps (plugins/core.ts) and two config fields.
    app.decorate('deps', { logger: silentLogger } as unknown as AppDeps);
    app.decorate('config', { domain: DOMAIN, featureFlags: { datapipe: true } } as unknown as BackendConfig);
    const events = createDataPipeEvents({ pg: pool, redisUrl: '', enabled: true });
    app.decorate('datapipe', events);
    const service = registerPipeRules(app, { client, intervalMs: 0, initialDelayMs: -1 });
    await app.ready();
    try {
      const node = await insertNode({ active: true });
      await events.notifyChanged(node, 'Update');
      assert.ok(await client.getRule(`pipe-${node}`), 'the listener waited for the rule');
      await setActive(node, false);
      await events.notifyChanged(node, 'Delete');
      assert.equal(await client.getRule(`pipe-${node}`), undefined);
    } finally {
      await app.close(); // closes the service through the onClose hook
      await events.close();
    }
    assert.equal(await service.reconcileNode(randomUUID()), 'skipped', 'closed');
  });
});
