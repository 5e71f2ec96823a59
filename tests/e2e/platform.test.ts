/**
 * README command 1, end to end: the launcher brings the platform up, GET /pepeunit answers,
 * readiness reports every dependency up, and Ctrl-C (SIGINT) leaves no process behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../..');

/** PIDs of live processes started by the launcher (they carry PU_PARENT_PID=<launcher pid>). */
function descendants(launcherPid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const environ = readFileSync(`/proc/${entry}/environ`, 'utf8');
      if (environ.split('\0').includes(`PU_PARENT_PID=${launcherPid}`)) found.push(Number(entry));
    } catch {
      /* process ended or not readable */
    }
  }
  return found;
}

test('the launcher serves GET /pepeunit within 90 s and Ctrl-C stops every process', { timeout: 180_000 }, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'pepeunit-launcher-'));
  const env: NodeJS.ProcessEnv = { ...process.env, PU_DATA_DIR: dataDir };
  // The launcher's own discovery is under test: no configured database, broker or ClickHouse.
  for (const name of ['PU_SQLALCHEMY_DATABASE_URL', 'PU_CLICKHOUSE_DATABASE_URL', 'PU_MQTT_HOST']) delete env[name];
  const started = Date.now();
  const launcher = spawn(process.execPath, ['--import', 'tsx', join(root, 'scripts/platform.ts')], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  launcher.stdout.on('data', (d: Buffer) => (output += d.toString()));
  launcher.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((r) => launcher.once('exit', (code) => r(code)));
  try {
    const upBy = Date.now() + 90_000;
    while (!output.includes('Press Ctrl-C to stop.') && Date.now() < upBy) {
      if (launcher.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(output.includes('Press Ctrl-C to stop.'), `launcher did not come up:\n${output}`);
    const base = /Instance info\s+(\S+)/.exec(output)?.[1];
    assert.ok(base, output);
    const info = await fetch(base);
    assert.equal(info.status, 200);
    assert.equal(((await info.json()) as { name: string }).name, 'pepeunit-ts');
    assert.ok(Date.now() - started < 90_000, 'GET /pepeunit answered within 90 s');
    const ready = await fetch(`${base}/health/ready`);
    const readiness = (await ready.json()) as { status: string; checks: Record<string, { up: boolean }> };
    assert.equal(ready.status, 200, JSON.stringify(readiness));
    assert.equal(readiness.checks.postgres?.up, true);
    assert.equal(readiness.checks.clickhouse?.up, true);
    assert.equal(readiness.checks.broker?.up, true);

    // The embedded ClickHouse requires the password the launcher generated into secrets.env, and
    // neither it nor the logs are readable by other users or hold the password (docs/SECURITY.md).
    const secretsFile = join(dataDir, 'secrets.env');
    assert.equal(statSync(secretsFile).mode & 0o777, 0o600);
    assert.equal(statSync(dataDir).mode & 0o066, 0, 'the data directory is not readable or writable by others');
    const password = /^PU_EMBEDDED_CLICKHOUSE_PASSWORD=(.+)$/m.exec(readFileSync(secretsFile, 'utf8'))?.[1];
    assert.ok(password && password.length >= 24, 'a generated ClickHouse password');
    const clickhouseUrl = /ClickHouse\s+(http\S+)/.exec(output)?.[1];
    assert.ok(clickhouseUrl && !clickhouseUrl.includes('@'), `the ClickHouse URL is printed without credentials: ${clickhouseUrl}`);
    const clickhouseBase = new URL(clickhouseUrl).origin;
    const anonymous = await fetch(`${clickhouseBase}/?query=SELECT%201`);
    assert.equal(anonymous.status, 403);
    assert.equal(anonymous.headers.get('x-clickhouse-exception-code'), '516');
    const authorised = await fetch(`${clickhouseBase}/?query=SELECT%201`, { headers: { 'X-ClickHouse-User': 'default', 'X-ClickHouse-Key': password } });
    assert.equal(await authorised.text(), '1\n');
    assert.equal(statSync(join(dataDir, 'logs')).mode & 0o777, 0o700);
    for (const log of readdirSync(join(dataDir, 'logs'))) {
      assert.equal(statSync(join(dataDir, 'logs', log)).mode & 0o777, 0o600, log);
      assert.ok(!readFileSync(join(dataDir, 'logs', log), 'utf8').includes(password), `${log} does not hold the ClickHouse password`);
    }
    assert.ok(!output.includes(password), 'the launcher does not print the password');

    const children = descendants(launcher.pid!);
    assert.ok(children.length >= 4, `expected clickhouse, broker, backend and ingest processes, found ${children.length}`);

    launcher.kill('SIGINT');
    const code = await exited;
    assert.equal(code, 0, output);
    assert.match(output, /All processes stopped\./);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(descendants(launcher.pid!), [], 'no process is left behind');
    await assert.rejects(fetch(base), 'the backend port is closed');
  } finally {
    if (launcher.exitCode === null) launcher.kill('SIGKILL');
    for (const pid of descendants(launcher.pid!)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
});
