/**
 * The embedded ClickHouse as its own process: ready line, queries, clean SIGTERM, busy port.
 * The engine lives in the child, so this test process loads no chdb.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClickHouseError } from '@clickhouse/client';
import { freePort, isPortFree } from '@pepeunit/common/ports';
import { createClickHouse } from '../src/client.js';
import { parseServerCliArgs } from '../src/server-cli.js';
import { waitFor } from '@pepeunit/tests/wait';

const cliPath = fileURLToPath(new URL('../src/server-cli.ts', import.meta.url));
let workDir: string;

interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Running {
  const child = spawn(process.execPath, ['--import', 'tsx', cliPath, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, stdout: () => out, stderr: () => err, exited };
}

async function waitForReadyLine(run: Running): Promise<{ event: string; url: string }> {
  // The position after the first newline, or -1 once the server exited without one.
  const lineEnd = () => {
    const at = run.stdout().indexOf('\n');
    return at !== -1 ? at + 1 : run.child.exitCode !== null ? -1 : 0;
  };
  const newline = await waitFor(lineEnd, { what: 'the ready line', timeoutMs: 60_000, intervalMs: 50 }).catch(
    (err: Error) => assert.fail(`${err.message}; stderr: ${run.stderr()}`),
  );
  if (newline === -1) assert.fail(`server exited early (${run.child.exitCode}): ${run.stderr()}`);
  return JSON.parse(run.stdout().slice(0, newline - 1)) as { event: string; url: string };
}

before(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'pu-chdb-cli-'));
});

after(async () => {
  await rm(workDir, { recursive: true, force: true });
});

describe('server-cli', () => {
  test('parses --port/--host/--data (and --flag=value) with env fallbacks, rejects bad input', () => {
    const secret = { PU_EMBEDDED_CLICKHOUSE_PASSWORD: 'pw' };
    const auth = { username: 'default', password: 'pw' };
    assert.deepEqual(parseServerCliArgs(['--port', '8124', '--data', '/tmp/x', '--host=::1'], secret), { host: '::1', port: 8124, dataPath: '/tmp/x', auth });
    assert.deepEqual(parseServerCliArgs([], { ...secret, PU_EMBEDDED_CLICKHOUSE_PORT: '9999', PU_EMBEDDED_CLICKHOUSE_DATA: '/d', PU_EMBEDDED_CLICKHOUSE_USER: 'pu' }), {
      host: '127.0.0.1',
      port: 9999,
      dataPath: '/d',
      auth: { username: 'pu', password: 'pw' },
    });
    assert.throws(() => parseServerCliArgs(['--port', 'abc', '--data', '/d'], secret), /invalid port 'abc'/);
    assert.throws(() => parseServerCliArgs(['--port', '70000', '--data', '/d'], secret), /invalid port '70000'/);
    assert.throws(() => parseServerCliArgs(['--port', '1'], secret), /data directory is required/);
    assert.throws(() => parseServerCliArgs(['--bogus'], secret), /unknown argument '--bogus'/);
    assert.throws(() => parseServerCliArgs(['--data', '/d'], {}), /PU_EMBEDDED_CLICKHOUSE_PASSWORD is required/);
  });

  test('prints one ready line, serves queries, exits 0 on SIGTERM and releases the port', async () => {
    const port = await freePort();
    const run = runCli([], {
      PU_EMBEDDED_CLICKHOUSE_PORT: String(port),
      PU_EMBEDDED_CLICKHOUSE_DATA: path.join(workDir, 'data-ok'),
      PU_EMBEDDED_CLICKHOUSE_USER: 'pepeunit',
      PU_EMBEDDED_CLICKHOUSE_PASSWORD: 'cli-secret-pw',
    });
    try {
      const ready = await waitForReadyLine(run);
      assert.deepEqual(ready, { event: 'ready', url: `http://127.0.0.1:${port}` });
      const client = createClickHouse(`http://pepeunit:cli-secret-pw@127.0.0.1:${port}`, 'default');
      const intruder = createClickHouse(ready.url, 'default', { username: 'pepeunit', password: 'wrong' });
      try {
        await client.command({ query: 'CREATE DATABASE IF NOT EXISTS cli_db' });
        const rs = await client.query({ query: 'SELECT 40 + 2 AS answer', format: 'JSONEachRow' });
        assert.deepEqual(await rs.json(), [{ answer: 42 }]);
        await assert.rejects(intruder.query({ query: 'SELECT 1' }), (err: unknown) => {
          assert.ok(err instanceof ClickHouseError);
          assert.equal(err.code, '516');
          assert.equal(err.type, 'AUTHENTICATION_FAILED');
          return true;
        });
        assert.equal((await fetch(`${ready.url}/ping`)).status, 200, 'health checks need no credentials');
      } finally {
        await client.close();
        await intruder.close();
      }
      run.child.kill('SIGTERM');
      const { code, signal } = await run.exited;
      assert.equal(signal, null);
      assert.equal(code, 0, `exit code; stderr: ${run.stderr()}`);
      assert.equal(run.stdout().trim().split('\n').length, 1, 'exactly one stdout line');
      assert.equal(await isPortFree(port), true, 'port released');
      assert.doesNotMatch(run.stderr(), /cli-secret-pw/, 'the password is never logged');
    } finally {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
    }
  });

  test('refuses to start without a password (exit 2, nothing listening)', async () => {
    const run = runCli(['--port', '0', '--data', path.join(workDir, 'data-nopw')], { PU_EMBEDDED_CLICKHOUSE_PASSWORD: '' });
    const { code } = await run.exited;
    assert.equal(code, 2);
    assert.match(run.stderr(), /PU_EMBEDDED_CLICKHOUSE_PASSWORD is required/);
    assert.equal(run.stdout(), '', 'no ready line');
  });

  test('a busy port fails with a clear message naming the port', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const run = runCli(['--port', String(port), '--data', path.join(workDir, 'data-busy')], { PU_EMBEDDED_CLICKHOUSE_PASSWORD: 'pw' });
      const { code } = await run.exited;
      assert.equal(code, 1);
      assert.match(run.stderr(), new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use`));
      assert.equal(run.stdout(), '', 'no ready line');
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});
