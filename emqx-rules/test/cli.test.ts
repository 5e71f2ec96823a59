// The embedded broker as a process: ready line, working MQTT and API, SIGTERM → exit 0, and a
// clear error when a port is taken.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { EmqxManagementClient } from '../src/management-client.js';
import { connectClient } from './helpers.js';

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
});
