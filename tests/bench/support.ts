/** Shared pieces of the benchmarks: real services, the load child, the results table. */
import { spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { resolvePostgres, createDatabase, dropDatabase, databaseUrl } from '@pepeunit/common/postgres';
import { startEmbeddedClickHouse, createClickHouse } from '@pepeunit/clickhouse-schemas';

export const root = resolve(import.meta.dirname, '../..');

export interface BenchServices {
  readonly pgUrl: string;
  readonly clickhouseUrl: string;
  close(): Promise<void>;
}

/** PostgreSQL (local or private) with a fresh database, and an embedded ClickHouse with a fresh database. */
export async function benchServices(label: string): Promise<BenchServices> {
  const dataDir = join(root, '.data', 'bench');
  const pg = await resolvePostgres({ dataDir, allowInstall: true });
  const name = `pu_bench_${label}_${randomBytes(3).toString('hex')}`;
  await createDatabase(pg.adminUrl, name);
  const chDir = mkdtempSync(join(tmpdir(), 'pepeunit-bench-ch-'));
  const ch = await startEmbeddedClickHouse({ port: 0, dataPath: chDir, auth: { username: 'default', password: randomBytes(18).toString('base64url') } });
  const admin = createClickHouse(ch.authenticatedUrl, 'default');
  await admin.command({ query: `CREATE DATABASE IF NOT EXISTS ${name}` });
  await admin.close();
  return {
    pgUrl: databaseUrl(pg.adminUrl, name),
    clickhouseUrl: `${ch.authenticatedUrl}/${name}`,
    async close() {
      await ch.close();
      rmSync(chDir, { recursive: true, force: true });
      await dropDatabase(pg.adminUrl, name).catch(() => {});
      await pg.stop();
    },
  };
}

export interface LoadResult {
  requests: number;
  seconds: number;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  errors: number;
  non2xx: number;
  allowed: number;
}

/** Runs tests/bench/http-load.ts in a child process against `url`. */
export async function httpLoad(url: string, bodies: unknown[], seconds: number, connections = 32, pipelining = 4): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), 'pepeunit-load-'));
  const file = join(dir, 'bodies.json');
  writeFileSync(file, JSON.stringify(bodies));
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'tests/bench/http-load.ts'), url, file, String(seconds), String(connections), String(pipelining)], {
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
