/**
 * What the quick start decides once per data folder and keeps: its own Postgres database and the
 * ports devices are told about. Stored in `<data>/platform.json` so the second start is the first
 * start again (same database, same ports, same env.json for devices).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, realpathSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type QuickstartService = 'backend' | 'mqtt' | 'emqx_api' | 'clickhouse';

export interface PlatformState {
  readonly version: 1;
  /** The Postgres database of this checkout (on the machine's server or the private cluster). */
  readonly database: string;
  readonly ports: Partial<Record<QuickstartService, number>>;
}

export const STATE_FILE = 'platform.json';

export function readPlatformState(dataDir: string): PlatformState | undefined {
  const file = join(dataDir, STATE_FILE);
  if (!existsSync(file)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file} is not valid JSON (${err instanceof Error ? err.message : String(err)}); fix it or delete it to choose ports and a database again`);
  }
  const state = parsed as Partial<PlatformState>;
  if (typeof state !== 'object' || state === null || typeof state.database !== 'string' || typeof state.ports !== 'object' || state.ports === null) {
    throw new Error(`${file} does not look like a quick-start state file (expected "database" and "ports"); fix it or delete it`);
  }
  return { version: 1, database: state.database, ports: { ...state.ports } };
}

/** Written atomically (temp file + rename): a crash never leaves half a file. */
export function writePlatformState(dataDir: string, state: PlatformState): void {
  const file = join(dataDir, STATE_FILE);
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
  renameSync(temp, file);
}

/**
 * `pepeunit_<8 hex>` from the data folder's real path: two checkouts never share a database,
 * and the same checkout always finds its own.
 */
export function checkoutDatabaseName(dataDir: string): string {
  const path = existsSync(dataDir) ? realpathSync(dataDir) : dataDir;
  return `pepeunit_${createHash('sha256').update(path).digest('hex').slice(0, 8)}`;
}

/**
 * The database of a data folder that has no state file yet: data folders made before the state
 * file existed (they have `secrets.env`) used the shared `pepeunit` database and keep it so their
 * units survive; new ones get their own.
 */
export function initialDatabase(dataDir: string): { database: string; legacy: boolean } {
  if (existsSync(join(dataDir, 'secrets.env'))) return { database: 'pepeunit', legacy: true };
  return { database: checkoutDatabaseName(dataDir), legacy: false };
}
