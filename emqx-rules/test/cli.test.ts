// The embedded broker as a process: ready line, working MQTT and API, SIGTERM → exit 0, a
// clear error when a port is taken, and a log (broker.log under the launcher) that only its owner
// can read and that never holds a client's token.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { startService } from '@pepeunit/common';
import { buildEmqxBaseConfig, reconcileEmqxBase } from '../src/controller.js';
import { EmqxManagementClient } from '../src/management-client.js';
import { connectClient, expectRefused, startBackendStub } from './helpers.js';

const CLI = fileURLToPath(new URL('../src/embedded/cli.ts', import.meta.url));

function startCli(args: string[], env: Record<string, string>): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

function firstLine(child: ChildProcessWithoutNullStreams): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    const onData = (chunk: Buffer): void => {
      buffer += chunk.toString();
      const newline = buffer.indexOf('\n');
      if (newline !== -1) {
        child.stdout.off('data', onData);
        resolve(buffer.slice(0, newline));
      }
    };
    child.stdout.on('data', onData);
    child.once('exit', (code) => reject(new Error(`CLI exited with ${String(code)} before the ready line`)));
  });
}

function exitOf(child: ChildProcessWithoutNullStreams): Promise<{ code: number | null; stderr: string }> {
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stderr })));
}

describe('embedded broker CLI', () => {
  it('prints the ready line, serves MQTT and the API, and exits 0 on SIGTERM', async () => {
    const child = startCli(['--mqtt-port', '0', '--api-port', '0', '--log-level', 'warn'], { EMQX_API_KEY: 'cli-key', EMQX_API_SECRET: 'cli-secret' });
    const exited = exitOf(child);
    try {
      const ready = JSON.parse(await firstLine(child)) as { event: string; mqttUrl: string; apiUrl: string };
      assert.equal(ready.event, 'ready');
      assert.match(ready.mqttUrl, /^mqtt:\/\/127\.0\.0\.1:\d+$/);
      assert.match(ready.apiUrl, /^http:\/\/127\.0\.0\.1:\d+$/);

      const client = new EmqxManagementClient({ baseUrl: ready.apiUrl, apiKey: 'cli-key', apiSecret: 'cli-secret', maxRetries: 0 });
      const mqttClient = await connectClient(ready.mqttUrl, { clientId: 'cli-check' });
      try {
        assert.equal((await client.status()).running, true);
        assert.deepEqual((await client.listClients()).data.map((entry) => entry.clientid), ['cli-check']);
      } finally {
        await mqttClient.endAsync();
        await client.close();
      }
    } finally {
      child.kill('SIGTERM');
    }
    const { code } = await exited;
    assert.equal(code, 0);
  });

  it('exits 1 naming the port when it is already in use', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
    const port = (blocker.address() as AddressInfo).port;
    try {
      const child = startCli(['--mqtt-port', String(port), '--api-port', '0'], { EMQX_API_KEY: 'k', EMQX_API_SECRET: 's' });
      const { code, stderr } = await exitOf(child);
      assert.equal(code, 1);
      assert.match(stderr, new RegExp(`MQTT port ${port} on 127\\.0\\.0\\.1 is already in use`));
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });

  it('refuses to start without API credentials', async () => {
    const env = { EMQX_API_KEY: '', EMQX_API_SECRET: '' };
    const { code, stderr } = await exitOf(startCli(['--mqtt-port', '0', '--api-port', '0'], env));
    assert.equal(code, 1);
    assert.match(stderr, /EMQX_API_KEY/);
  });

  it('writes a log only its owner can read, with refused clients and username bans but no token', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'pu-broker-log-'));
    const logFile = join(directory, 'logs', 'broker.log');
    const backend = await startBackendStub();
    // A unit's username is a JWT; the password is empty, as Pepeunit's units send it.
    const token = `eyJhbGciOiJIUzI1NiJ9.${randomBytes(24).toString('base64url')}.${randomBytes(32).toString('base64url')}`;
    const bannedToken = `eyJhbGciOiJIUzI1NiJ9.${randomBytes(24).toString('base64url')}.sig`;
    try {
      const service = await startService({
        name: 'broker',
        command: process.execPath,
        args: ['--import', 'tsx', CLI, '--mqtt-port', '0', '--api-port', '0', '--log-level', 'debug'],
        env: { EMQX_API_KEY: 'log-key', EMQX_API_SECRET: 'log-secret' },
        logFile,
        readyLine: true,
        timeoutMs: 30_000,
      });
      const ready = service.ready as { mqttUrl: string; apiUrl: string };
      const client = new EmqxManagementClient({ baseUrl: ready.apiUrl, apiKey: 'log-key', apiSecret: 'log-secret', maxRetries: 0 });
      try {
        await reconcileEmqxBase(client, buildEmqxBaseConfig({ callbackBaseUrl: backend.baseUrl }));
        const refused = await expectRefused(ready.mqttUrl, { clientId: 'unit-refused', username: token, password: '' });
        assert.equal(refused.code, 5);
        await client.createBan({ as: 'username', who: bannedToken, reason: 'test' });
      } finally {
        await client.close();
        assert.equal(await service.stop(), 0);
      }
      assert.equal((await stat(logFile)).mode & 0o777, 0o600, 'broker.log: owner read/write only');
      assert.equal((await stat(join(directory, 'logs'))).mode & 0o777, 0o700, 'the log directory: owner only');
      const text = await readFile(logFile, 'utf8');
      const refusal = text.split('\n').find((line) => line.includes('client refused by authentication'));
      assert.ok(refusal, 'the refusal is logged');
      assert.match(refusal, /"clientid":"unit-refused"/);
      assert.match(refusal, /"username_fingerprint":"sha256:[0-9a-f]{16}"/);
      assert.match(text, /ban created/);
      for (const secret of [token, bannedToken, token.split('.')[1] as string, bannedToken.split('.')[1] as string, 'log-secret']) {
        assert.ok(!text.includes(secret), 'no token, token part or API secret in the log');
      }

      // A log file left world-readable by an older version is narrowed when the service starts again.
      await chmod(logFile, 0o644);
      const again = await startService({
        name: 'broker',
        command: process.execPath,
        args: ['--import', 'tsx', CLI, '--mqtt-port', '0', '--api-port', '0', '--log-level', 'warn'],
        env: { EMQX_API_KEY: 'log-key', EMQX_API_SECRET: 'log-secret' },
        logFile,
        readyLine: true,
        timeoutMs: 30_000,
      });
      await again.stop();
      assert.equal((await stat(logFile)).mode & 0o777, 0o600);
    } finally {
      await backend.close();
      await rm(directory, { recursive: true, force: true });
    }
  });
});
