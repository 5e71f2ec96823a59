/**
 * Instance grades and the signed load_limit report (issue 14): the instance key, scraper tokens
 * (created, listed, revoked; only hashes stored), the report served only to token holders, a
 * tiny load check ramped end to end against the real backend and embedded broker, and offline
 * verification (the library and the CLI): the report verifies, one changed byte does not.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startEmbeddedBroker } from '@pepeunit/emqx-rules';
import { startBackend, type RunningBackend } from '@pepeunit/backend';
import { createTestDatabases, testBackendConfig, testLogger, type TestDatabases } from '../../../tests/src/harness.ts';
import { waitFor } from '../../../tests/src/wait.ts';
import { canonicalJson } from '../../src/grades/canonical.ts';
import { verifyReport } from '../../src/grades/report.ts';

let db: TestDatabases;
let broker: Awaited<ReturnType<typeof startEmbeddedBroker>>;
let backend: RunningBackend;
const api = '/pepeunit/api/v1';
let adminToken = '';
let userToken = '';
const root = resolve(import.meta.dirname, '../../..');

before(async () => {
  db = await createTestDatabases('grades');
  broker = await startEmbeddedBroker({ mqttPort: 0, apiPort: 0, apiKeys: [{ key: 'k', secret: 's' }] });
  backend = await startBackend(
    testBackendConfig(db, { PU_MQTT_PORT: String(broker.mqttPort), PU_EMQX_API_URL: `http://127.0.0.1:${broker.apiPort}`, PU_EMQX_API_KEY: 'k', PU_EMQX_API_SECRET: 's' }),
    testLogger,
  );
  for (const login of ['grades_admin', 'grades_user']) {
    const res = await backend.app.inject({ method: 'POST', url: `${api}/users`, payload: { login, password: 'Passw0rd!x' } });
    assert.equal(res.statusCode, 201, res.body);
  }
  const auth = async (login: string) => (await backend.app.inject({ method: 'POST', url: `${api}/users/auth`, payload: { credentials: login, password: 'Passw0rd!x' } })).json().token as string;
  adminToken = await auth('grades_admin');
  userToken = await auth('grades_user');
});
after(async () => {
  await backend?.close();
  await broker?.close();
  await db?.drop();
});

test('canonical JSON: sorted keys, no whitespace, refuses values JSON cannot carry', () => {
  assert.equal(canonicalJson({ b: [1, 'x', null, true], a: { d: 1.5, c: -0.001 }, u: undefined }), '{"a":{"c":-0.001,"d":1.5},"b":[1,"x",null,true]}');
  assert.throws(() => canonicalJson({ x: Number.NaN }));
  assert.throws(() => canonicalJson({ x: 1n }));
});

test('the instance key is created once and published in GET /pepeunit, the well-known URL and /grades/instance_key', async () => {
  const info = (await backend.app.inject({ method: 'GET', url: '/pepeunit' })).json();
  const wellKnown = (await backend.app.inject({ method: 'GET', url: '/.well-known/pepeunit-instance-key' })).json();
  const prefixed = (await backend.app.inject({ method: 'GET', url: '/pepeunit/.well-known/pepeunit-instance-key' })).json();
  const viaApi = (await backend.app.inject({ method: 'GET', url: `${api}/grades/instance_key` })).json();
  assert.equal(info.instance_key.algorithm, 'Ed25519');
  assert.match(info.instance_key.public_key, /^[A-Za-z0-9+/=]{40,}$/);
  for (const doc of [wellKnown, prefixed, viaApi]) {
    assert.equal(doc.public_key, info.instance_key.public_key);
    assert.equal(doc.key_id, info.instance_key.key_id);
  }
  const { rows } = await backend.deps.pg.query('SELECT public_key, private_key_encrypted FROM instance_keys');
  assert.equal(rows.length, 1);
  assert.doesNotMatch(rows[0].private_key_encrypted, /^MC4CAQAwBQYDK2Vw/, 'the private key is stored encrypted, not as plain PKCS#8');
});

test('scraper tokens: admin only; stored as hashes; load_limit refuses no token (401), unknown and revoked tokens (403)', async () => {
  const url = `${api}/metrics/load_limit`;
  assert.equal((await backend.app.inject({ method: 'POST', url: `${api}/grades/scraper_tokens`, headers: { 'x-auth-token': userToken }, payload: { name: 'x' } })).statusCode, 403);
  assert.equal((await backend.app.inject({ method: 'GET', url: `${api}/grades/scraper_tokens` })).statusCode, 403);
  assert.equal((await backend.app.inject({ method: 'POST', url: `${api}/grades/scraper_tokens`, headers: { 'x-auth-token': adminToken }, payload: { name: '' } })).statusCode, 422);

  const created = await backend.app.inject({ method: 'POST', url: `${api}/grades/scraper_tokens`, headers: { 'x-auth-token': adminToken }, payload: { name: 'federation scraper' } });
  assert.equal(created.statusCode, 201, created.body);
  const { token, uuid } = created.json();
  assert.match(token, /^pus_[A-Za-z0-9_-]{43}$/);
  const stored = await backend.deps.pg.query('SELECT * FROM scraper_tokens WHERE uuid = $1', [uuid]);
  assert.ok(!JSON.stringify(stored.rows).includes(token.slice(4)), 'the token itself is not stored');
  const listed = (await backend.app.inject({ method: 'GET', url: `${api}/grades/scraper_tokens`, headers: { 'x-auth-token': adminToken } })).json();
  assert.equal(listed.length, 1);
  assert.equal(listed[0].name, 'federation scraper');
  assert.equal(listed[0].token, undefined, 'lists never show the token');

  const none = await backend.app.inject({ method: 'GET', url });
  assert.equal(none.statusCode, 401);
  assert.match(none.json().detail, /scraper token is required/);
  assert.equal((await backend.app.inject({ method: 'GET', url, headers: { authorization: `Bearer pus_${'A'.repeat(43)}` } })).statusCode, 403);
  assert.equal((await backend.app.inject({ method: 'GET', url, headers: { 'x-auth-token': adminToken } })).statusCode, 401, 'a user token is not a scraper token');
  const ok = await backend.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
  assert.equal(ok.statusCode, 200, ok.body);
  assert.equal(ok.headers['cache-control'], 'no-store');
  const key = (await backend.app.inject({ method: 'GET', url: '/.well-known/pepeunit-instance-key' })).json();
  assert.deepEqual(verifyReport(ok.json(), { trustedPublicKey: key.public_key }).problems, []);
  assert.equal(ok.json().grade, null, 'no load check yet');
  assert.equal((await backend.app.inject({ method: 'GET', url, headers: { 'x-scraper-token': token } })).statusCode, 200);

  const revoked = await backend.app.inject({ method: 'DELETE', url: `${api}/grades/scraper_tokens/${uuid}`, headers: { 'x-auth-token': adminToken } });
  assert.equal(revoked.statusCode, 200);
  assert.ok(revoked.json().revoked_datetime);
  const refused = await backend.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });
  assert.equal(refused.statusCode, 403);
  assert.match(refused.json().detail, /revoked/);
  assert.equal((await backend.app.inject({ method: 'DELETE', url: `${api}/grades/scraper_tokens/${crypto.randomUUID()}`, headers: { 'x-auth-token': adminToken } })).statusCode, 404);
});

test('a tiny load check ramps simulated units until it stops by itself; its report verifies, one changed byte does not (library and CLI)', async () => {
  assert.equal((await backend.app.inject({ method: 'POST', url: `${api}/grades/load_checks`, headers: { 'x-auth-token': userToken }, payload: {} })).statusCode, 403);
  assert.equal((await backend.app.inject({ method: 'POST', url: `${api}/grades/load_checks`, headers: { 'x-auth-token': adminToken }, payload: { units_start: 0 } })).statusCode, 422);
  // A ramp of 2 -> 4 -> 8 units at 5 msg/s each, one second per step; the service level is loose
  // (the machine is shared) so all three steps hold and the ramp's maximum stops the check.
  const payload = { units_start: 2, units_step_factor: 2, units_max: 8, rate_per_unit: 5, iteration_seconds: 1, connect_rate: 50, service_level: { max_latency_p99_ms: 10_000, max_loss: 0.5 } };
  const started = await backend.app.inject({ method: 'POST', url: `${api}/grades/load_checks`, headers: { 'x-auth-token': adminToken }, payload });
  assert.equal(started.statusCode, 202, started.body);
  const { uuid } = started.json();
  const second = await backend.app.inject({ method: 'POST', url: `${api}/grades/load_checks`, headers: { 'x-auth-token': adminToken }, payload });
  assert.equal(second.statusCode, 422, 'one load check at a time');
  const run = await waitFor(
    async () => {
      const res = (await backend.app.inject({ method: 'GET', url: `${api}/grades/load_checks/${uuid}`, headers: { 'x-auth-token': adminToken } })).json();
      return res.status !== 'running' ? res : null;
    },
    { what: 'the load check to stop by itself', timeoutMs: 120_000, intervalMs: 200 },
  );
  assert.equal(run.status, 'finished', JSON.stringify(run));
  assert.deepEqual(run.iterations.map((it: { units: number }) => it.units), [2, 4, 8]);
  assert.match(run.stop_reason, /maximum of 8 units/);
  for (const it of run.iterations) {
    assert.equal(it.offered_mps, it.units * 5);
    assert.equal(it.sent, it.units * 5);
    assert.ok(it.received > 0 && it.received <= it.sent);
    assert.ok(it.resources.cpus >= 1);
  }
  assert.equal(run.grade_mps, Math.max(...run.iterations.filter((it: { held: boolean }) => it.held).map((it: { achieved_mps: number }) => Math.floor(it.achieved_mps))));

  const scraper = (await backend.app.inject({ method: 'POST', url: `${api}/grades/scraper_tokens`, headers: { 'x-auth-token': adminToken }, payload: { name: 'test' } })).json().token;
  const res = await backend.app.inject({ method: 'GET', url: `${api}/metrics/load_limit`, headers: { authorization: `Bearer ${scraper}` } });
  assert.equal(res.statusCode, 200);
  const report = res.json();
  const key = (await backend.app.inject({ method: 'GET', url: '/.well-known/pepeunit-instance-key' })).json().public_key;
  assert.equal(report.grade.run_uuid, uuid);
  assert.equal(report.grade.mps, run.grade_mps);
  assert.equal(report.grade.iterations.length, 3);
  assert.equal(report.software.name, 'pepeunit-ts');
  assert.deepEqual(Object.keys(report.prices).sort(), ['aggregation_topic_price', 'billing_period_days', 'currency', 'free_aggregation_topics', 'free_mps', 'mps_price']);
  assert.deepEqual(verifyReport(report, { trustedPublicKey: key }).problems, []);

  // Every single digit of the report changed to another digit breaks verification.
  const text = res.body;
  let changed = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c < '0' || c > '9') continue;
    const mutated = text.slice(0, i) + String((Number(c) + 1) % 10) + text.slice(i + 1);
    let parsed: unknown;
    try {
      parsed = JSON.parse(mutated);
    } catch {
      continue;
    }
    assert.equal(verifyReport(parsed, { trustedPublicKey: key }).ok, false, `changing byte ${i} (${c}) must break verification: ...${text.slice(i - 60, i + 20)}...`);
    changed++;
  }
  assert.ok(changed > 100, `${changed} single-byte changes tried`);
  // A report re-signed with another key does not verify against the instance's key.
  assert.equal(verifyReport({ ...report, instance: { ...report.instance, domain: 'evil.example' } }, { trustedPublicKey: key }).ok, false);

  // The offline command: exit 0 for the report, 1 after a one-byte change.
  const dir = mkdtempSync(join(tmpdir(), 'load-limit-'));
  const good = join(dir, 'good.json');
  const bad = join(dir, 'bad.json');
  writeFileSync(good, text);
  const at = text.indexOf('"achieved_mps":') + '"achieved_mps":'.length;
  writeFileSync(bad, text.slice(0, at) + (text[at] === '9' ? '8' : '9') + text.slice(at + 1));
  const cli = (file: string) => spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts/verify-load-limit.ts'), file, '--public-key', key], { cwd: root, encoding: 'utf8' });
  const valid = cli(good);
  assert.equal(valid.status, 0, valid.stdout + valid.stderr);
  assert.match(valid.stdout, /^VALID: .*trusted/);
  const invalid = cli(bad);
  assert.equal(invalid.status, 1, invalid.stdout + invalid.stderr);
  assert.match(invalid.stdout, /INVALID:[\s\S]*(hash does not match|signature does not match)/);
});
