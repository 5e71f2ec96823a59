import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import Fastify, { LogController } from 'fastify';
import fp from 'fastify-plugin';
import accessLog from '../../src/plugins/access-log.ts';
import { elapse } from '@pepeunit/tests/wait';

type Line = { level: number; msg: string; route?: string; path?: string; status?: number; ms?: number };

/** A Fastify app with only the access log, a gate the slow route waits on, and its log lines. */
async function appWith(mode: 'errors' | 'all' | 'off', slowRequestMs: number) {
  const lines: Line[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const text of String(chunk).split('\n')) if (text) lines.push(JSON.parse(text));
      done();
    },
  });
  const app = Fastify({ logger: { level: 'debug', stream }, logController: new LogController({ disableRequestLogging: true }) });
  // Stands in for plugins/core.ts (the access log depends on 'pepeunit-core' for app.config).
  await app.register(fp(async (core) => void core.decorate('config', { http: { accessLog: mode, slowRequestMs } } as never), { name: 'pepeunit-core' }));
  await app.register(accessLog);
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => (release = resolve));
  app.get('/ok/:id', async () => ({ ok: true }));
  app.get('/boom', async () => {
    throw new Error('boom');
  });
  app.get('/slow', async () => {
    await gate;
    return { ok: true };
  });
  await app.ready();
  return { app, lines, release };
}

test('errors mode: nothing for a success, debug for a 4xx, error for a 5xx, route pattern instead of the URL', async () => {
  const { app, lines } = await appWith('errors', 60_000);
  assert.equal((await app.inject('/ok/secret-looking-id?token=abc')).statusCode, 200);
  assert.equal(lines.filter((l) => l.msg !== undefined && /request/.test(l.msg)).length, 0, JSON.stringify(lines));
  assert.equal((await app.inject('/missing')).statusCode, 404);
  assert.equal((await app.inject('/boom')).statusCode, 500);
  const refused = lines.find((l) => l.msg === 'request refused');
  const failed = lines.find((l) => l.msg === 'request failed');
  assert.equal(refused?.level, 20);
  assert.equal(refused?.route, 'unmatched');
  assert.equal(failed?.level, 50);
  assert.equal(failed?.route, '/boom');
  assert.ok(!JSON.stringify(lines).includes('token=abc'));
  await app.close();
});

test('all mode: one info line per request with route and path (no query string)', async () => {
  const { app, lines } = await appWith('all', 60_000);
  await app.inject('/ok/7?token=abc');
  await app.inject('/ok/8');
  const requests = lines.filter((l) => l.msg === 'request');
  assert.deepEqual(
    requests.map((l) => [l.level, l.route, l.path, l.status]),
    [
      [30, '/ok/:id', '/ok/7', 200],
      [30, '/ok/:id', '/ok/8', 200],
    ],
  );
  assert.ok(!JSON.stringify(lines).includes('token=abc'));
  await app.close();
});

test('a request slower than PU_SLOW_REQUEST_MS is logged at warn even when the log is off', async () => {
  const { app, lines, release } = await appWith('off', 1);
  const pending = app.inject('/slow');
  // the route waits until the gate opens
  await elapse(5, 'the request must take longer than PU_SLOW_REQUEST_MS = 1');
  release();
  assert.equal((await pending).statusCode, 200);
  await app.inject('/boom');
  const slow = lines.filter((l) => l.msg === 'slow request');
  assert.ok(slow.some((l) => l.level === 40 && l.route === '/slow' && (l.ms ?? 0) >= 1), JSON.stringify(lines));
  assert.equal(lines.filter((l) => l.msg === 'request failed').length, 0, 'off mode: failures are not logged');
  await app.close();
});
