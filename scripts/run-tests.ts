/**
 * The full test suite: starts what the tests need (PostgreSQL: the local server or a private
 * cluster; one embedded ClickHouse server process shared by all test files, each of which creates
 * its own databases), runs every `*.test.ts` with node's test runner, stops everything.
 *
 *   npm test                     everything
 *   npm test -- <path filter>    only test files whose path contains the filter
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { freePort, startService, type RunningService } from '@pepeunit/common';
import { resolvePostgres } from '@pepeunit/common/postgres';

const root = resolve(import.meta.dirname, '..');
const dataDir = resolve(process.env.PU_DATA_DIR ?? join(root, '.data'), 'test');
mkdirSync(dataDir, { recursive: true, mode: 0o700 });
const args = process.argv.slice(2);
const noServices = args.includes('--no-services');
const filters = args.filter((a) => !a.startsWith('--'));

function findTests(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const full = join(dir, name);
    if (statSync(full).isDirectory()) findTests(full, out);
    else if (name.endsWith('.test.ts')) out.push(full);
  }
  return out;
}

const workspaces = ['common', 'clickhouse-schemas', 'emqx-rules', 'ingest-go-compatible', 'backend', 'tests', 'ansible'];
const files = workspaces
  .flatMap((w) => {
    try {
      return findTests(join(root, w));
    } catch {
      return [];
    }
  })
  .filter((f) => filters.length === 0 || filters.some((flt) => relative(root, f).includes(flt)))
  .sort();
if (files.length === 0) {
  process.stderr.write(`No test files match ${JSON.stringify(filters)}\n`);
  process.exit(2);
}

const services: RunningService[] = [];
let stopPostgres: () => Promise<void> = async () => {};
const env: NodeJS.ProcessEnv = { ...process.env, PU_TEST_DATA_DIR: dataDir };

async function cleanup(): Promise<void> {
  for (const s of services.reverse()) await s.stop();
  await stopPostgres();
}

async function main(): Promise<number> {
  if (!noServices) {
    const postgres = await resolvePostgres({ url: process.env.PU_TEST_POSTGRES_URL, dataDir, allowInstall: true });
    stopPostgres = postgres.stop;
    env.PU_TEST_PG_ADMIN_URL = postgres.adminUrl;
    process.stdout.write(`PostgreSQL for tests: ${postgres.source}\n`);
    const chPort = await freePort();
    // The shared ClickHouse requires a password like the quick start's; tests get it in the URL.
    const chPassword = randomBytes(18).toString('base64url');
    const ch = await startService({
      name: 'clickhouse',
      command: process.execPath,
      args: ['--import', 'tsx', join(root, 'clickhouse-schemas/src/server-cli.ts'), '--port', String(chPort), '--data', join(dataDir, `clickhouse-${process.pid}`)],
      env: { PU_EMBEDDED_CLICKHOUSE_USER: 'default', PU_EMBEDDED_CLICKHOUSE_PASSWORD: chPassword },
      logFile: join(dataDir, 'clickhouse.log'),
      readyLine: true,
    });
    services.push(ch);
    const chUrl = new URL(String(ch.ready.url));
    chUrl.username = 'default';
    chUrl.password = chPassword;
    env.PU_TEST_CLICKHOUSE_URL = chUrl.toString().replace(/\/$/, '');
    process.stdout.write(`ClickHouse for tests: ${String(ch.ready.url)} (embedded chdb, password protected)\n`);
    // A private Redis (nothing on disk) so the Redis paths are always tested, whatever runs on 6379.
    const redisPort = await freePort();
    const redis = await startService({
      name: 'redis',
      command: 'redis-server',
      args: ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes', '--loglevel', 'notice'],
      logFile: join(dataDir, 'redis.log'),
      readyPattern: /Ready to accept connections/,
      timeoutMs: 30_000,
    });
    services.push(redis);
    env.PU_TEST_REDIS_URL = `redis://127.0.0.1:${redisPort}`;
    process.stdout.write(`Redis for tests: ${env.PU_TEST_REDIS_URL} (private, in memory)\n`);
  }
  process.stdout.write(`Running ${files.length} test files\n`);
  // The spec report goes to the terminal; a TAP copy goes to a file so that, when something
  // fails, the failures and their diagnostics are repeated at the very end of the output (a CI
  // log is often read from its tail, and the spec reporter interleaves 600 lines before them).
  const tapFile = join(dataDir, 'last-run.tap');
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--test',
      '--test-reporter=spec',
      '--test-reporter-destination=stdout',
      '--test-reporter=tap',
      `--test-reporter-destination=${tapFile}`,
      `--test-concurrency=${process.env.PU_TEST_CONCURRENCY ?? '2'}`,
      '--test-timeout=600000',
      ...files.map((f) => relative(root, f)),
    ],
    { cwd: root, env, stdio: 'inherit' },
  );
  const code = await new Promise<number>((resolveCode) => child.on('exit', (exitCode, signal) => resolveCode(exitCode ?? (signal ? 1 : 0))));
  if (code !== 0) printFailures(tapFile);
  return code;
}

/**
 * Repeats what explains a failure from the TAP copy: every `not ok` block (with its YAML
 * diagnostics) and every runner diagnostic about asynchronous activity after a test ended or
 * an uncaught error, which the spec reporter prints far from the file it belongs to.
 */
function printFailures(tapFile: string): void {
  let lines: string[];
  try {
    lines = readFileSync(tapFile, 'utf8').split('\n');
  } catch {
    return;
  }
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i] as string;
    const trimmed = text.trimStart();
    if (/^# (Error|Warning): /.test(trimmed) || /asynchronous activity after the test ended|uncaught|unhandled/i.test(trimmed)) {
      out.push(text);
    } else if (trimmed.startsWith('not ok ')) {
      out.push(text);
      const indent = text.length - trimmed.length;
      // The YAML block that follows (`---` ... `...`), at most 60 lines.
      for (let j = i + 1, n = 0; j < lines.length && n < 60; j++, n++) {
        const next = lines[j] as string;
        out.push(next);
        if (next.trim() === '...' && next.length - next.trimStart().length === indent + 2) break;
      }
    }
  }
  if (out.length === 0) return;
  process.stdout.write(`\n==== failures and runner diagnostics (from ${relative(root, tapFile)}) ====\n${out.slice(0, 400).join('\n')}\n`);
}

let code = 1;
try {
  code = await main();
} catch (err) {
  process.stderr.write(`Test setup failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
} finally {
  await cleanup();
}
process.exit(code);
