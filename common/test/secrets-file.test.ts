import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOrCreateSecrets } from '../src/secrets-file.js';

test('secrets.env: created 600 once, reused, completed with new secrets, narrowed back to 600', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pu-secrets-'));
  const file = join(dir, 'secrets.env');
  let counter = 0;
  const next = () => `value-${++counter}`;
  try {
    const first = loadOrCreateSecrets(file, { A: next, B: next });
    assert.deepEqual(first, { A: 'value-1', B: 'value-2' });
    assert.equal(statSync(file).mode & 0o777, 0o600, 'readable by its owner only');

    // An older file (world-readable, without C): kept values, C appended, mode narrowed.
    writeFileSync(file, 'A=old-a\nB=old-b\n');
    chmodSync(file, 0o644);
    const second = loadOrCreateSecrets(file, { A: next, B: next, C: next });
    assert.deepEqual(second, { A: 'old-a', B: 'old-b', C: 'value-3' });
    assert.equal(readFileSync(file, 'utf8'), 'A=old-a\nB=old-b\nC=value-3\n');
    assert.equal(statSync(file).mode & 0o777, 0o600);

    assert.deepEqual(loadOrCreateSecrets(file, { A: next, C: next }), second, 'nothing regenerated');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
