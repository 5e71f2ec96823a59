import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger, plainLogLine } from '../src/logger.js';

function collect(): { stream: Writable; lines: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  });
  return { stream, lines: () => chunks.join('') };
}

test('PU_LOG_FORMAT=plain writes one readable line per record, secrets redacted, stacks line by line', () => {
  const out = collect();
  const logger = createLogger('backend', { format: 'plain', destination: out.stream, level: 'info' });
  logger.info({ unit: 'u1', token: 'secret-token-value' }, 'unit connected');
  logger.debug('not written at info');
  const err = new Error('boom');
  logger.error({ err }, 'write failed');
  const text = out.lines();
  const [first, second] = text.split('\n');
  assert.match(first!, /^\d{4}-\d\d-\d\dT[\d:.]+Z INFO backend: unit connected \{"unit":"u1","token":"\[redacted\]"\}$/);
  assert.match(second!, /^\S+ ERROR backend: write failed$/);
  assert.ok(text.includes('    Error: boom'), 'the stack follows, indented');
  assert.ok(!text.includes('not written'), 'the level applies');
  assert.ok(!text.includes('secret-token-value'));
});

test('the default format stays JSON; a line that is not JSON passes through plain unchanged', () => {
  const out = collect();
  createLogger('ingest', { destination: out.stream }).warn({ a: 1 }, 'hello');
  const record = JSON.parse(out.lines()) as { level: number; msg: string; service: string; a: number };
  assert.deepEqual([record.level, record.msg, record.service, record.a], [40, 'hello', 'ingest', 1]);
  assert.equal(plainLogLine('not json'), 'not json\n');
});
