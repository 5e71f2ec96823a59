import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FastQueue, useFastBacklog } from '../src/embedded/fast-queue.js';

test('FastQueue keeps FIFO order across wrap-around and growth', () => {
  const queue = new FastQueue<number>();
  const expected: number[] = [];
  let next = 0;
  // Interleave pushes and shifts so the ring wraps before it grows past its initial 1024 slots.
  for (let round = 0; round < 5; round += 1) {
    for (let index = 0; index < 900; index += 1) {
      queue.push(next);
      expected.push(next);
      next += 1;
    }
    for (let index = 0; index < 400; index += 1) assert.equal(queue.shift(), expected.shift());
    assert.equal(queue.length, expected.length);
  }
  while (expected.length > 0) assert.equal(queue.shift(), expected.shift());
  assert.equal(queue.length, 0);
  assert.equal(queue.shift(), undefined);
});

test('useFastBacklog replaces only idle mqemitter backlogs', () => {
  const idle = { _messageQueue: [] as unknown[], _messageCallbacks: [] as unknown[] };
  assert.equal(useFastBacklog(idle), true);
  assert.ok(idle._messageQueue instanceof FastQueue);
  assert.ok(idle._messageCallbacks instanceof FastQueue);
  const busy = { _messageQueue: [1] as unknown[], _messageCallbacks: [() => undefined] as unknown[] };
  assert.equal(useFastBacklog(busy), false);
  assert.ok(Array.isArray(busy._messageQueue));
  assert.equal(useFastBacklog({}), false);
});

test('the embedded broker routes through a FastQueue backlog', async () => {
  const { startEmbeddedBroker } = await import('../src/embedded/broker.js');
  const broker = await startEmbeddedBroker({ apiKeys: [{ key: 'k', secret: 's' }] });
  try {
    const mq = (broker.aedes as unknown as { mq: { _messageQueue: unknown; _messageCallbacks: unknown } }).mq;
    assert.ok(mq._messageQueue instanceof FastQueue);
    assert.ok(mq._messageCallbacks instanceof FastQueue);
  } finally {
    await broker.close();
  }
});
