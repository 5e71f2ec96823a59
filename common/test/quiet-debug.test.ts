import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
// Each case runs in a fresh process: the stand-in only applies before `debug` is first loaded.
const probe = `
await import('@pepeunit/common/quiet-debug');
const { createRequire } = await import('node:module');
const require = createRequire(process.cwd() + '/ingest-go-compatible/src/main.ts');
const createDebug = require('debug');
// Enabling at run time works with the real package; the stand-in ignores it (DEBUG decides).
createDebug.enable('pepeunit:*');
const log = createDebug('pepeunit:probe');
let printed = '';
process.stderr.write = (chunk) => { printed += String(chunk); return true; };
log('hello %s', 'world');
console.log(JSON.stringify({ enabled: log.enabled, printed, extend: typeof log.extend('x'), mqtt: typeof require('mqtt').connect }));
`;

function run(env: NodeJS.ProcessEnv): { enabled: boolean; printed: string; extend: string; mqtt: string } {
  const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe], { cwd: root, env: { ...process.env, ...env }, encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  return JSON.parse(result.stdout.trim().split('\n').pop() as string);
}

test('without DEBUG, debug is the no-op stand-in (enabling it at run time does nothing) and mqtt still loads', () => {
  const { DEBUG: _unset, ...env } = process.env;
  const out = run({ ...env, DEBUG: '' });
  assert.deepEqual(out, { enabled: false, printed: '', extend: 'function', mqtt: 'function' });
});

test('with DEBUG set, the real debug package logs', () => {
  const out = run({ DEBUG: 'pepeunit:*', DEBUG_COLORS: 'no' });
  assert.equal(out.enabled, true);
  assert.match(out.printed, /pepeunit:probe hello world/);
});
