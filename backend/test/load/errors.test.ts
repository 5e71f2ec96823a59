/**
 * Error tracker: fingerprints (normalised message + top frames), counts per process and in total
 * in Postgres, top-N for admins; crashes recorded at once and alerted to the admin (what reached
 * app.alertSink), throttled per fingerprint, with "happened N times since the last alert".
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { startBackend, type RunningBackend } from '@pepeunit/backend';
import { createLogger } from '@pepeunit/common';
import { describeLogCall, errorFingerprint, normaliseMessage, topFrames, writeTrackedErrors } from '@pepeunit/common/error-tracker';
import type { PlatformAlert } from '../../src/domain/alert-sink.ts';
import { createTestDatabases, testBackendConfig, testLogger, type TestDatabases } from '../../../tests/src/harness.ts';
import { startBroker, type TestBroker } from './helpers.ts';

describe('fingerprints', () => {
  it('normalise variable parts and keep the top frames without line numbers', () => {
    assert.equal(normaliseMessage(`unit ${randomUUID()} failed after 1500 ms at 0xdeadbeef12 with "abc"`), 'unit <uuid> failed after <n> ms at <hex> with <str>');
    const error = new Error('x');
    error.stack = `Error: x\n    at doThing (${process.cwd()}/backend/src/a.ts:10:5)\n    at file://${process.cwd()}/backend/src/b.ts:20:7\n    at run (node:internal/x:1:1)`;
    assert.deepEqual(topFrames(error.stack, 2), ['at doThing (backend/src/a.ts)', 'at backend/src/b.ts']);
    assert.equal(errorFingerprint('a', ['f']), errorFingerprint('a', ['f']));
    assert.notEqual(errorFingerprint('a', ['f']), errorFingerprint('a', ['g']));
    assert.deepEqual(describeLogCall([{ err: new Error('boom') }, 'write failed']), { message: 'write failed: boom', error: describeLogCall([{ err: new Error('boom') }]).error });
    assert.equal(describeLogCall(['plain text']).message, 'plain text');
  });
});

describe('error tracker in the backend', () => {
  let db: TestDatabases;
  let broker: TestBroker;
  let backend: RunningBackend;
  let admin = '';
  const alerts: PlatformAlert[] = [];
  const api = '/pepeunit/api/v1';

  before(async () => {
    db = await createTestDatabases('load_errors');
    broker = await startBroker();
    backend = await startBackend(testBackendConfig(db, { PU_MQTT_PORT: String(broker.broker.mqttPort), PU_ERROR_ALERT_INTERVAL: '3600' }), testLogger, { listen: false });
    backend.app.alertSink.use({ raise: async (alert) => void alerts.push(alert) });
    await backend.app.inject({ method: 'POST', url: `${api}/users`, payload: { login: 'errors_admin', password: 'Passw0rd!' } });
    admin = (await backend.app.inject({ method: 'POST', url: `${api}/users/auth`, payload: { credentials: 'errors_admin', password: 'Passw0rd!' } })).json().token;
  });
  after(async () => {
    await backend?.close();
    await broker?.close();
    await db?.drop();
  });

  it('counts errors logged at error level by fingerprint; admins get the top N', async () => {
    const sink = new Writable({ write: (_chunk, _encoding, done) => done() });
    const logger = createLogger('errors-test', { destination: sink });
    const fail = (unit: string) => {
      const err = new Error(`unit ${unit} not reachable after 3 attempts`);
      logger.error({ err }, 'delivery failed');
    };
    for (let i = 0; i < 3; i += 1) fail(randomUUID()); // one fingerprint
    logger.warn('not tracked: below error level');
    logger.fatal('disk full on /var/lib/x');
    await backend.app.errorTracking.tracker.flush();
    const answer = await backend.app.inject({ method: 'GET', url: `${api}/load/errors?limit=10`, headers: { 'x-auth-token': admin } });
    assert.equal(answer.statusCode, 200, answer.body);
    const body = answer.json() as { total: number; per_process: Array<{ process: string; count: number }>; errors: Array<{ message: string; count: number; total_count: number; level: string; frames: string[]; processes: Array<{ process: string; count: number }> }> };
    const delivery = body.errors.find((e) => e.message === 'delivery failed: unit <uuid> not reachable after <n> attempts');
    assert.ok(delivery, answer.body);
    assert.equal(delivery.count, 3);
    assert.equal(delivery.total_count, 3);
    assert.ok(delivery.frames.length > 0 && delivery.frames.every((f) => f.startsWith('at ')));
    assert.deepEqual(delivery.processes.map((p) => [p.process, p.count]), [[backend.app.errorTracking.tracker.process, 3]]);
    assert.ok(body.errors.some((e) => e.level === 'fatal' && e.message === 'disk full on /var/lib/x'));
    assert.ok(!body.errors.some((e) => e.message.includes('below error level')));
    assert.ok(body.total >= 4);
    assert.equal((await backend.app.inject({ method: 'GET', url: `${api}/load/errors?limit=0`, headers: { 'x-auth-token': admin } })).statusCode, 422);
    assert.equal((await backend.app.inject({ method: 'GET', url: `${api}/load/errors` })).statusCode, 403);
  });

  it('records crashes at once and alerts the admin, throttled, with the count since the last alert', async () => {
    const crash = () => backend.app.errorTracking.recordCrash(new Error('cannot read properties of undefined (reading "x") at 12'), 'uncaught exception');
    await crash();
    await crash();
    assert.equal(await backend.app.errorTracking.alertCrashes(), 1);
    assert.equal(await backend.app.errorTracking.alertCrashes(), 0, 'nothing new');
    await crash();
    assert.equal(await backend.app.errorTracking.alertCrashes(), 0, 'throttled within PU_ERROR_ALERT_INTERVAL');
    // Time passes (the last alert is older than the interval).
    await backend.deps.pg.query(`UPDATE error_fingerprints SET last_alert_at = last_alert_at - interval '2 hours' WHERE kind = 'crash'`);
    await crash();
    assert.equal(await backend.app.errorTracking.alertCrashes(), 1);
    // A crash recorded by another process (an ingest, the launcher for a child that died).
    const now = Date.now();
    await writeTrackedErrors(backend.deps.pg, 'ingest@host:77', [{ fingerprint: 'f'.repeat(40), kind: 'crash', level: 'fatal', message: 'ingest exited unexpectedly', sample: 'ingest exited unexpectedly with code 1', frames: '', count: 1, first: now, last: now }]);
    assert.equal(await backend.app.errorTracking.alertCrashes(), 1);
    const crashes = alerts.filter((a) => a.source === 'process.crash');
    assert.equal(crashes.length, 3);
    assert.ok(crashes.every((a) => a.recipient.kind === 'admin' && a.level === 'critical'));
    assert.match(crashes[0]!.text, /uncaught exception: cannot read properties.*Happened 2 times since the last alert \(2 in total/);
    assert.match(crashes[1]!.text, /Happened 2 times since the last alert \(4 in total/);
    assert.match(crashes[2]!.text, /^Crash of ingest@host:77: ingest exited unexpectedly with code 1\. Happened 1 time since the last alert/);
    assert.equal(crashes[0]!.key, crashes[1]!.key, 'one alert key per fingerprint');
  });
});
