/**
 * Node state: the collector (counts, deltas of cumulative sources with resets, free disk), and
 * the backend writing its own rows and the broker's (management API /nodes + /metrics) into
 * ClickHouse node_state, served to admins over REST and exposed to Prometheus.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { startBackend, type RunningBackend } from '@pepeunit/backend';
import { NodeStateCollector } from '@pepeunit/common/node-state';
import { createTestDatabases, testBackendConfig, testLogger, type TestDatabases } from '../../../tests/src/harness.ts';
import { waitFor } from '../../../tests/src/wait.ts';
import { PacedPublisher, startBroker, type TestBroker } from './helpers.ts';

describe('node-state collector', () => {
  it('counts per channel since the last sample, reads cumulative sources with resets, reports free disk', async () => {
    let total = 100;
    const collector = new NodeStateCollector({ role: 'test', version: '9.9.9', dataDirs: [tmpdir(), '/nonexistent/pepeunit'] });
    try {
      collector.countFrom('ingest', () => total);
      collector.count('rest');
      collector.count('rest', 2);
      total = 130;
      const first = await collector.sample();
      assert.deepEqual(first.messages, { rest: 3, ingest: 30 });
      assert.equal(first.process, `test@${collector.host}:${process.pid}`);
      assert.equal(first.version, '9.9.9');
      assert.ok(first.disk_free_bytes[tmpdir()]! > 0);
      assert.equal(first.disk_free_bytes['/nonexistent/pepeunit'], undefined, 'a missing folder is skipped');
      assert.ok(first.rss_bytes > 0 && first.heap_used_bytes > 0 && first.uptime_seconds > 0 && first.cpu_percent >= 0);
      total = 5; // the source restarted
      const second = await collector.sample();
      assert.deepEqual(second.messages, { ingest: 5 });
      assert.deepEqual(Object.fromEntries(collector.cumulative), { rest: 3, ingest: 35 });
    } finally {
      collector.close();
    }
  });
});

describe('node state of the backend and the broker', () => {
  let db: TestDatabases;
  let broker: TestBroker;
  let backend: RunningBackend;
  let admin = '';
  const api = '/pepeunit/api/v1';

  before(async () => {
    db = await createTestDatabases('load_nodes');
    broker = await startBroker();
    backend = await startBackend(
      testBackendConfig(db, { PU_MQTT_PORT: String(broker.broker.mqttPort), PU_EMQX_API_URL: broker.broker.apiUrl, PU_EMQX_API_KEY: 'load', PU_EMQX_API_SECRET: 'load-secret', PU_NODE_STATE_INTERVAL: '1', PU_LOAD_SAMPLE_INTERVAL: '1' }),
      testLogger,
      { listen: false },
    );
    await backend.app.inject({ method: 'POST', url: `${api}/users`, payload: { login: 'nodes_admin', password: 'Passw0rd!' } });
    admin = (await backend.app.inject({ method: 'POST', url: `${api}/users/auth`, payload: { credentials: 'nodes_admin', password: 'Passw0rd!' } })).json().token;
  });
  after(async () => {
    await backend?.close();
    await broker?.close();
    await db?.drop();
  });

  it('samples into node_state; admins read current and history; Prometheus has the gauges', async () => {
    const nodes = async () => (await backend.app.inject({ method: 'GET', url: `${api}/load/nodes`, headers: { 'x-auth-token': admin } })).json() as { nodes: Array<{ process: string; role: string; messages: Record<string, number>; version: string; uptime_seconds: number; rss_bytes: number }> };
    const current = await waitFor(async () => {
      const answer = await nodes();
      const self = answer.nodes.find((n) => n.role === 'backend');
      const brokerNode = answer.nodes.find((n) => n.role === 'broker');
      return self && brokerNode ? { self, brokerNode } : null;
    }, { what: 'backend and broker rows in node_state' });
    assert.equal(current.self.process, backend.app.nodeState.collector.process);
    assert.match(current.brokerNode.process, /^broker@/);
    assert.ok(current.brokerNode.uptime_seconds > 0 && current.brokerNode.rss_bytes > 0);
    // The broker's received messages arrive as the mqtt channel (deltas between samples; the
    // first sample of a broker node is the baseline).
    const device = new PacedPublisher(broker.broker.mqttUrl, 'node-state-device', 'anything/x', 1);
    await device.connected();
    await device.burst(3);
    await device.end();
    await waitFor(async () => {
      const result = await db.clickhouse.query({ query: `SELECT toUInt64(sum(messages['mqtt'])) AS n FROM node_state WHERE role = 'broker'`, format: 'JSONEachRow' });
      return Number((await result.json<{ n: string }>())[0]?.n) >= 3;
    }, { what: 'broker messages counted' });
    // REST requests are counted on the rest channel.
    await waitFor(async () => {
      await nodes();
      const result = await db.clickhouse.query({ query: `SELECT toUInt64(sum(messages['rest'])) AS n FROM node_state WHERE role = 'backend'`, format: 'JSONEachRow' });
      return Number((await result.json<{ n: string }>())[0]?.n) >= 2;
    }, { what: 'rest requests counted' });

    const history = await backend.app.inject({ method: 'GET', url: `${api}/load/nodes/history?process=${encodeURIComponent(current.self.process)}`, headers: { 'x-auth-token': admin } });
    assert.equal(history.statusCode, 200, history.body);
    assert.ok(history.json().samples.length >= 1);
    assert.equal((await backend.app.inject({ method: 'GET', url: `${api}/load/nodes/history`, headers: { 'x-auth-token': admin } })).statusCode, 422, 'process is required');
    assert.equal((await backend.app.inject({ method: 'GET', url: `${api}/load/nodes` })).statusCode, 403);
    const metrics = await backend.app.inject({ method: 'GET', url: '/pepeunit/metrics' });
    assert.match(metrics.body, /^pepeunit_node_cpu_percent\{/m);
    assert.match(metrics.body, /^pepeunit_node_messages_total\{[^}]*channel="rest"/m);
    assert.match(metrics.body, /^pepeunit_broker_node_uptime_seconds\{node=/m);
  });
});
