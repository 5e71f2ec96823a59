/** Shared pieces of the benchmarks: real services, the load child, the results table. */
import { spawn } from 'node:child_process';
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
