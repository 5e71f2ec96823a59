/** The waits of the tests (wait.ts): values, failures naming what was awaited, listeners removed. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { elapse, waitFor, waitForEvent } from './wait.ts';

test('waitFor resolves with the first truthy value of the probe', async () => {
  let calls = 0;
  const value = await waitFor(() => (++calls >= 3 ? { calls } : undefined), { what: 'three calls', intervalMs: 1 });
  assert.deepEqual(value, { calls: 3 });
});

test('waitFor fails at its deadline naming what was awaited and the last error', async () => {
  await assert.rejects(waitFor(() => false, { what: 'something that never holds', timeoutMs: 30, intervalMs: 5 }), /^Error: timed out waiting for something that never holds$/);
  await assert.rejects(
    waitFor(
      () => {
        throw new Error('not yet');
      },
      { what: 'a probe that throws', timeoutMs: 30, intervalMs: 5 },
    ),
    /timed out waiting for a probe that throws: last error not yet/,
  );
});

test('waitForEvent resolves with the arguments of the first event passing the filter and stops listening', async () => {
  const emitter = new EventEmitter();
  const seen = waitForEvent<[string, number]>(emitter, 'message', { what: 'message b', filter: (topic) => topic === 'b' });
  emitter.emit('message', 'a', 1);
  emitter.emit('message', 'b', 2);
  assert.deepEqual(await seen, ['b', 2]);
  assert.equal(emitter.listenerCount('message'), 0);
});

test('waitForEvent fails at its deadline and removes its listener', async () => {
  const emitter = new EventEmitter();
  await assert.rejects(waitForEvent(emitter, 'close', { what: 'the close', timeoutMs: 20 }), /timed out waiting for the close \(event 'close'\)/);
  assert.equal(emitter.listenerCount('close'), 0);
});

test('a filter that throws rejects the wait', async () => {
  const emitter = new EventEmitter();
  const seen = waitForEvent(emitter, 'x', {
    what: 'x',
    filter: () => {
      throw new Error('bad filter');
    },
  });
  emitter.emit('x');
  await assert.rejects(seen, /bad filter/);
  assert.equal(emitter.listenerCount('x'), 0);
});

test('elapse says why time must pass', async () => {
  await elapse(1, 'a test of elapse');
  await assert.rejects(elapse(1, ''), /say why/);
});
