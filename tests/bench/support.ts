/** Shared pieces of the benchmarks: real services, the load child, the results table. */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createDatabase, dropDatabase, databaseUrl } from '@pepeunit/common/postgres';
import { resolvePostgres } from '@pepeunit/common/postgres-provision';
import { startEmbeddedClickHouse, createClickHouse } from '@pepeunit/clickhouse-schemas';
import { startService } from '@pepeunit/common';
import type { LoadResult, LoadSpec } from './http-load.ts';

export const root = resolve(import.meta.dirname, '../..');

export interface BenchServices {
  readonly pgUrl: string;
  readonly clickhouseUrl: string;
  close(): Promise<void>;
}

/**
 * PostgreSQL (local or private) with a fresh database, and an embedded ClickHouse with a fresh
 * database: in this process by default, or in its own process (`clickhouseProcess`) when the
 * benchmark measures a server in this process that queries ClickHouse, so the engine's work does
 * not run on the server's event loop (a ClickHouse server is its own process in production too).
 */
export async function benchServices(label: string, options: { clickhouseProcess?: boolean } = {}): Promise<BenchServices> {
  const dataDir = join(root, '.data', 'bench');
  const pg = await resolvePostgres({ dataDir, allowInstall: true });
  const name = `pu_bench_${label}_${randomBytes(3).toString('hex')}`;
  await createDatabase(pg.adminUrl, name);
  const chDir = mkdtempSync(join(tmpdir(), 'pepeunit-bench-ch-'));
  // The embedded ClickHouse always authenticates (issue 10.14).
  const password = randomBytes(18).toString('base64url');
  let chUrl: string;
  let stopClickHouse: () => Promise<unknown>;
  if (options.clickhouseProcess) {
    const service = await startService({
      name: 'clickhouse',
      command: process.execPath,
      args: ['--import', 'tsx', join(root, 'clickhouse-schemas/src/server-cli.ts'), '--port', '0', '--data', chDir],
      env: { PU_EMBEDDED_CLICKHOUSE_PASSWORD: password },
      logFile: join(dataDir, 'clickhouse.log'),
      readyLine: true,
    });
    const url = new URL(String(service.ready.url));
    url.username = 'default';
    url.password = password;
    chUrl = url.toString().replace(/\/$/, '');
    stopClickHouse = () => service.stop();
  } else {
    const ch = await startEmbeddedClickHouse({ port: 0, dataPath: chDir, auth: { username: 'default', password } });
    chUrl = ch.authenticatedUrl;
    stopClickHouse = () => ch.close();
  }
  const admin = createClickHouse(chUrl, 'default');
  await admin.command({ query: `CREATE DATABASE IF NOT EXISTS ${name}` });
  await admin.close();
  return {
    pgUrl: databaseUrl(pg.adminUrl, name),
    clickhouseUrl: `${chUrl}/${name}`,
    async close() {
      await stopClickHouse();
      rmSync(chDir, { recursive: true, force: true });
      await dropDatabase(pg.adminUrl, name).catch(() => {});
      await pg.stop();
    },
  };
}

export type { LoadResult, LoadSpec } from './http-load.ts';

/** Runs tests/bench/http-load.ts (autocannon) in a child process and returns its result. */
export async function httpLoad(spec: LoadSpec): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), 'pepeunit-load-'));
  const file = join(dir, 'load.json');
  writeFileSync(file, JSON.stringify(spec));
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'tests/bench/http-load.ts'), file], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    if (code !== 0) throw new Error(`load generator exited with ${String(code)}`);
    return JSON.parse(out.trim().split('\n').at(-1)!) as LoadResult;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function machine(): string {
  return `${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'cpu'}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
}

/** Appends one row to docs/BENCHMARKS.md. */
export function recordResult(row: { benchmark: string; command: string; result: string; baseline: string; ratio: string }): void {
  const file = join(root, 'docs/BENCHMARKS.md');
  const date = new Date().toISOString().slice(0, 10);
  const line = `| ${date} | ${row.benchmark} | \`${row.command}\` | ${machine()} | ${row.result} | ${row.baseline} | ${row.ratio} |\n`;
  const text = readFileSync(file, 'utf8');
  appendFileSync(file, text.endsWith('\n') ? line : '\n' + line);
}

/** A benchmark child process that reports JSON lines `{"event": ...}` on stdout. */
export interface BenchChild {
  proc: ChildProcess;
  lines: Record<string, unknown>[];
  /** The last line of an event, waiting up to `timeoutMs` (fails at once if the child exited). */
  waitFor(event: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  last(event: string): Record<string, unknown> | undefined;
  exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Runs `script` (a benchmark file in a child role) with tsx; non-JSON stdout lines are ignored. */
export function spawnBenchChild(script: string, args: string[], options: { env?: NodeJS.ProcessEnv; stopGraceMs?: number } = {}): BenchChild {
  const env = options.env;
  const proc = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: root, env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  let buffer = '';
  let stderr = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buffer += d.toString();
    let idx: number;
    while ((idx = buffer.indexOf('\n')) >= 0) {
      const text = buffer.slice(0, idx);
      buffer = buffer.slice(idx + 1);
      if (!text.startsWith('{')) continue;
      try {
        lines.push(JSON.parse(text) as Record<string, unknown>);
      } catch {
        /* a log line */
      }
    }
  });
  proc.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const last = (event: string) => [...lines].reverse().find((l) => l.event === event);
  const name = args[0] ?? script;
  return {
    proc,
    lines,
    last,
    exited,
    async waitFor(event, timeoutMs = 300_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = last(event);
        if (found) return found;
        if (proc.exitCode !== null) throw new Error(`${name} exited (${proc.exitCode}) before "${event}":\n${stderr}`);
        if (Date.now() > deadline) throw new Error(`${name}: no "${event}" within ${timeoutMs} ms:\n${stderr}`);
        await pause(50);
      }
    },
    async stop(graceMs = options.stopGraceMs ?? 10_000) {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await Promise.race([exited, pause(graceMs)]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
    },
  };
}
