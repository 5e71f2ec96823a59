/**
 * `npm run bench -- <name> [args]`: runs tests/bench/<name>.bench.ts, which compares against a
 * baseline in the same run and appends its result row to docs/BENCHMARKS.md.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const [name, ...rest] = process.argv.slice(2);
const available = readdirSync(join(root, 'tests/bench')).filter((f) => f.endsWith('.bench.ts')).map((f) => f.replace('.bench.ts', ''));
if (!name || !existsSync(join(root, 'tests/bench', `${name}.bench.ts`))) {
  process.stderr.write(`Usage: npm run bench -- <name>\nAvailable: ${available.join(', ')}\n`);
  process.exit(2);
}
const result = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'tests/bench', `${name}.bench.ts`), ...rest], { stdio: 'inherit', cwd: root });
process.exit(result.status ?? 1);
