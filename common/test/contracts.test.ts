import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ADVISORY_LOCKS, ADVISORY_LOCK_NAMESPACE, ADVISORY_LOCK_OBJECT_NAMESPACES } from '../src/contracts.js';

test('every advisory lock key is unique, and per-object namespaces never equal the singletons namespace', () => {
  const keys = Object.entries(ADVISORY_LOCKS).map(([name, [a, b]]) => [name, `${a}:${b}`] as const);
  const seen = new Map<string, string>();
  for (const [name, key] of keys) {
    assert.ok(!seen.has(key), `${name} reuses the key of ${seen.get(key)}`);
    seen.set(key, name);
  }
  for (const [name, key] of Object.entries(ADVISORY_LOCKS)) {
    for (const part of key) assert.ok(Number.isInteger(part) && part >= -(2 ** 31) && part < 2 ** 31, `${name}: int4 keys`);
  }
  for (const ns of Object.values(ADVISORY_LOCK_OBJECT_NAMESPACES)) assert.notEqual(ns, ADVISORY_LOCK_NAMESPACE);
});
