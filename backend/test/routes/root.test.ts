import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEmbeddedBroker } from '@pepeunit/emqx-rules';
import type { RunningBackend } from '@pepeunit/backend';
import { type TestDatabases } from '@pepeunit/tests/harness';
import { waitFor } from '@pepeunit/tests/wait';
import { startTestBackend, type TestBackend } from '@pepeunit/tests/backend';

let db: TestDatabases;
let backend: RunningBackend;
let t: TestBackend;

before(async () => {
  // The flags ask for Telegram and Grafana, but neither is configured and running.
  t = await startTestBackend({
    label: 'root',
    env: { PU_TELEGRAM_BOT_LINK: 'https://t.me/TestBot', PU_FF_TELEGRAM_BOT_ENABLE: 'True', PU_FF_GRAFANA_INTEGRATION_ENABLE: 'True' },
    listen: true,
  });
  ({ db, backend } = t);
});

after(async () => {
  await t?.close();
});

test('GET /pepeunit answers instance info in the reference shape; flags report what is served, not what is asked', async () => {
  const res = await backend.app.inject({ method: 'GET', url: '/pepeunit' });
  assert.equal(res.statusCode, 200);
  const body = res.json();
  assert.equal(body.name, 'pepeunit-ts');
  assert.match(body.version, /^\d+\.\d+\.\d+/);
  assert.equal(body.swagger, 'http://test.pepeunit.local/pepeunit/docs');
  assert.equal(body.grafana, '', 'no Grafana integration runs');
  assert.equal(body.telegram_bot, '', 'no bot runs (no token)');
  assert.deepEqual(body.feature_flags, {
    pu_ff_telegram_bot_enable: false,
    pu_ff_grafana_integration_enable: false,
    pu_ff_datapipe_enable: true,
    pu_ff_datapipe_default_last_value_enable: true,
    pu_ff_prometheus_enable: true,
  });
});

test('readiness reports Postgres, ClickHouse and the broker up; liveness answers', async () => {
  const live = await backend.app.inject({ method: 'GET', url: '/pepeunit/health/live' });
  assert.equal(live.statusCode, 200);
  const ready = await backend.app.inject({ method: 'GET', url: '/pepeunit/health/ready' });
  assert.equal(ready.statusCode, 200, ready.body);
  const body = ready.json();
  assert.equal(body.status, 'ready');
  assert.equal(body.checks.postgres.up, true);
  assert.equal(body.checks.clickhouse.up, true);
  assert.equal(body.checks.broker.up, true);
});

test('readiness turns 503 naming the broker when the broker goes away', async () => {
  const separate = await startEmbeddedBroker({ mqttPort: 0, apiPort: 0, apiKeys: [{ key: 'k', secret: 's' }] });
  const other = (await startTestBackend({ label: 'root', db, broker: separate })).backend;
  try {
    assert.equal((await other.app.inject({ method: 'GET', url: '/pepeunit/health/ready' })).statusCode, 200);
    await separate.close();
    const res = await waitFor(
      async () => {
        const r = await other.app.inject({ method: 'GET', url: '/pepeunit/health/ready' });
        return r.statusCode === 503 && r;
      },
      { what: 'readiness 503 after the broker went away' },
    );
    assert.equal(res.json().checks.broker.up, false);
    assert.equal(res.json().checks.postgres.up, true);
  } finally {
    await other.close();
  }
});

test('OpenAPI document and Swagger UI are served', async () => {
  const doc = await backend.app.inject({ method: 'GET', url: '/pepeunit/api/v1/openapi.json' });
  assert.equal(doc.statusCode, 200);
  const openapi = doc.json();
  assert.match(openapi.openapi, /^3\./);
  assert.ok(openapi.paths['/pepeunit'], 'GET /pepeunit is documented');
  assert.ok(openapi.paths['/pepeunit/health/ready']);
  const ui = await backend.app.inject({ method: 'GET', url: '/pepeunit/docs/' });
  assert.equal(ui.statusCode, 200);
  assert.match(ui.body, /swagger/i);
});

test('Prometheus metrics count requests', async () => {
  await backend.app.inject({ method: 'GET', url: '/pepeunit' });
  const res = await backend.app.inject({ method: 'GET', url: '/pepeunit/metrics' });
  assert.equal(res.statusCode, 200);
  assert.match(res.body, /http_requests_total\{[^}]*route="\/pepeunit"[^}]*status="200"[^}]*\} \d+/);
  assert.match(res.body, /process_cpu_user_seconds_total/);
});

test('unknown paths get a 404 in the reference error shape', async () => {
  const res = await backend.app.inject({ method: 'GET', url: '/pepeunit/api/v1/nothing' });
  assert.equal(res.statusCode, 404);
  assert.match(res.json().detail, /^404: /);
});
