/**
 * The ClickHouse migrations and their runner against the real engine (embedded chdb server).
 * Expected tables are the reference's final state (reference/pepeunit-datapipe.md §4.1).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdtemp, readFile, readdir, rm, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import { startEmbeddedClickHouse, type EmbeddedClickHouse } from '../src/embedded-server.js';
import { createClickHouse } from '../src/client.js';
import { ClickHouseMigrationError, clickHouseMigrationsDir, migrateClickHouse } from '../src/migrate.js';

const REFERENCE_COLUMNS: Record<string, Array<[string, string]>> = {
  unit_logs: [
    ['uuid', 'UUID'],
    ['level', "Enum8('Debug' = 1, 'Info' = 2, 'Warning' = 3, 'Error' = 4, 'Critical' = 5)"],
    ['unit_uuid', 'UUID'],
    ['text', 'String'],
    ['create_datetime', 'DateTime64(3)'],
    ['expiration_datetime', 'DateTime'],
  ],
  n_last_entry: [
    ['unit_node_uuid', 'UUID'],
    ['state', 'String'],
    ['state_type', "Enum8('Number' = 1, 'Text' = 2)"],
    ['create_datetime', 'DateTime64(3)'],
    ['max_count', 'UInt32'],
    ['size', 'UInt32'],
  ],
  window_entry: [
    ['unit_node_uuid', 'UUID'],
    ['state', 'String'],
    ['state_type', "Enum8('Number' = 1, 'Text' = 2)"],
    ['create_datetime', 'DateTime64(3)'],
    ['expiration_datetime', 'DateTime'],
    ['size', 'UInt32'],
  ],
  aggregation_entry: [
    ['unit_node_uuid', 'UUID'],
    ['state', 'Float64'],
    ['aggregation_type', "Enum8('Avg' = 1, 'Min' = 2, 'Max' = 3, 'Sum' = 4)"],
    ['time_window_size', 'UInt32'],
    ['create_datetime', 'DateTime64(3)'],
    ['start_window_datetime', 'DateTime64(3)'],
    ['end_window_datetime', 'DateTime64(3)'],
  ],
};

const REFERENCE_TABLES: Record<string, { key: string; ttl: boolean; settings: string[] }> = {
  unit_logs: { key: 'unit_uuid, create_datetime', ttl: true, settings: ['merge_with_ttl_timeout = 600'] },
  n_last_entry: { key: 'unit_node_uuid, create_datetime', ttl: false, settings: ['merge_with_ttl_timeout = 600', 'index_granularity = 128'] },
  window_entry: { key: 'unit_node_uuid, create_datetime', ttl: true, settings: ['merge_with_ttl_timeout = 600', 'index_granularity = 128'] },
  aggregation_entry: { key: 'unit_node_uuid, start_window_datetime', ttl: false, settings: ['index_granularity = 128'] },
};
const TABLE_NAMES = Object.keys(REFERENCE_COLUMNS);
const REFERENCE_FILES = ['001_unit_logs.sql', '002_n_last_entry.sql', '003_window_entry.sql', '004_aggregation_entry.sql'];
// Our own migrations would follow the reference tables here.
const FILES = [...REFERENCE_FILES, '005_window_entry_expiration_index.sql', '006_unit_load.sql', '007_node_state.sql'];

let workDir: string;
/** Our own engine, unless the test runner shares one (PU_TEST_CLICKHOUSE_URL) to save memory. */
let server: EmbeddedClickHouse | undefined;
let serverUrl: string;
const clients: ClickHouseClient[] = [];
const suffix = randomBytes(4).toString('hex');
const databases = new Set<string>();

/** A database name unique to this run (the server may be shared). */
function db(name: string): string {
  const full = `pu_t_${name}_${suffix}`;
  databases.add(full);
  return full;
}

/** A client bound to `database`, like the services create it (the database may not exist yet). */
function clientFor(database: string): ClickHouseClient {
  const c = createClickHouse(serverUrl, database);
  clients.push(c);
  return c;
}

async function rows<T>(c: ClickHouseClient, query: string, query_params: Record<string, unknown> = {}): Promise<T[]> {
  return (await c.query({ query, format: 'JSONEachRow', query_params })).json<T>();
}

async function copyMigrations(name: string): Promise<string> {
  const dir = path.join(workDir, name);
  await cp(clickHouseMigrationsDir, dir, { recursive: true });
  return dir;
}

async function schemaSnapshot(c: ClickHouseClient, database: string) {
  const tables = await rows(
    c,
    `SELECT name, engine, sorting_key, primary_key, partition_key, create_table_query, metadata_modification_time
     FROM system.tables WHERE database = {db:String} ORDER BY name`,
    { db: database },
  );
  const columns = await rows(c, 'SELECT table, name, type, position FROM system.columns WHERE database = {db:String} ORDER BY table, position', { db: database });
  return { tables, columns };
}

async function databaseExists(c: ClickHouseClient, database: string): Promise<boolean> {
  const [row] = await rows<{ n: number | string }>(c, 'SELECT count() AS n FROM system.databases WHERE name = {db:String}', { db: database });
  return Number(row?.n) === 1;
}

before(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'pu-chdb-migrate-'));
  const shared = process.env.PU_TEST_CLICKHOUSE_URL;
  if (shared) {
    serverUrl = shared;
  } else {
    server = await startEmbeddedClickHouse({ dataPath: path.join(workDir, 'data'), auth: { username: 'default', password: randomBytes(18).toString('base64url') } });
    serverUrl = server.authenticatedUrl;
  }
});

after(async () => {
  const admin = clientFor('default');
  for (const name of databases) await admin.command({ query: `DROP DATABASE IF EXISTS ${name}` }).catch(() => {});
  await Promise.all(clients.map((c) => c.close()));
  await server?.close();
  await rm(workDir, { recursive: true, force: true });
});

describe('ClickHouse migrations', () => {
  test('clickHouseMigrationsDir is absolute and holds the numbered migrations (the four reference tables first)', async () => {
    assert.ok(path.isAbsolute(clickHouseMigrationsDir));
    assert.deepEqual((await readdir(clickHouseMigrationsDir)).filter((f) => f.endsWith('.sql')).sort(), FILES);
  });

  test('creates the database and the reference tables exactly (columns, engine, keys, TTL, settings)', async () => {
    const c = clientFor(db('mig_main'));
    const result = await migrateClickHouse(c, { database: db('mig_main') });
    assert.deepEqual(result, { applied: FILES, skipped: [] });

    const columns = await rows<{ table: string; name: string; type: string; position: number | string }>(
      c,
      'SELECT table, name, type, position FROM system.columns WHERE database = {db:String} AND table IN {t:Array(String)} ORDER BY table, position',
      { db: db('mig_main'), t: TABLE_NAMES },
    );
    for (const table of TABLE_NAMES) {
      const actual = columns.filter((r) => r.table === table).map((r) => [r.name, r.type, Number(r.position)]);
      const expected = (REFERENCE_COLUMNS[table] ?? []).map(([name, type], i) => [name, type, i + 1]);
      assert.deepEqual(actual, expected, `columns of ${table}`);
    }

    const tables = await rows<{ name: string; engine: string; sorting_key: string; primary_key: string; partition_key: string; create_table_query: string }>(
      c,
      'SELECT name, engine, sorting_key, primary_key, partition_key, create_table_query FROM system.tables WHERE database = {db:String} AND name IN {t:Array(String)}',
      { db: db('mig_main'), t: TABLE_NAMES },
    );
    assert.equal(tables.length, 4);
    for (const t of tables) {
      const ref = REFERENCE_TABLES[t.name];
      assert.ok(ref, t.name);
      assert.equal(t.engine, 'MergeTree', `${t.name} engine`);
      assert.equal(t.sorting_key, ref.key, `${t.name} ORDER BY`);
      assert.equal(t.primary_key, ref.key, `${t.name} PRIMARY KEY`);
      assert.equal(t.partition_key, '', `${t.name} must have no PARTITION BY`);
      assert.equal(/\bTTL expiration_datetime\b/.test(t.create_table_query), ref.ttl, `${t.name} TTL`);
      const settings = /SETTINGS (.*)$/.exec(t.create_table_query)?.[1] ?? '';
      for (const s of ref.settings) assert.ok(settings.includes(s), `${t.name} SETTINGS ${s} in ${settings}`);
      if (!ref.settings.some((s) => s.startsWith('index_granularity'))) assert.ok(!settings.includes('index_granularity = 128'));
    }

    const tracked = await rows<{ version: number; name: string; checksum: string; applied_at: string }>(
      c,
      `SELECT version, name, checksum, applied_at FROM ${db('mig_main')}.pepeunit_schema_migrations ORDER BY version`,
    );
    assert.deepEqual(tracked.map((r) => [r.version, r.name]), FILES.map((f, i) => [i + 1, f]));
    for (const row of tracked) {
      const bytes = await readFile(path.join(clickHouseMigrationsDir, row.name));
      assert.equal(row.checksum, createHash('sha256').update(bytes).digest('hex'));
      assert.ok(Math.abs(new Date(`${row.applied_at}Z`).getTime() - Date.now()) < 60_000, 'applied_at is now (UTC)');
    }
    const [types] = await rows<{ version: string; applied_at: string }>(
      c,
      `SELECT toTypeName(version) AS version, toTypeName(applied_at) AS applied_at FROM ${db('mig_main')}.pepeunit_schema_migrations LIMIT 1`,
    );
    assert.deepEqual(types, { version: 'UInt32', applied_at: 'DateTime64(3)' });
  });

  test('the tables accept the reference rows positionally, and TTL keeps recent rows', async () => {
    const c = clientFor(db('mig_main'));
    const now = Date.now();
    const iso = (ms: number) => new Date(ms).toISOString();
    await c.command({
      query: `INSERT INTO window_entry VALUES ('00000000-0000-0000-0000-000000000001', '21.5', 'Number', '${iso(now)}', '${iso(now + 3_600_000)}', 4)`,
    });
    await c.command({
      query: `INSERT INTO aggregation_entry VALUES ('00000000-0000-0000-0000-000000000001', 1.25, 'Avg', 300, '${iso(now)}', '${iso(now - 300_000)}', '${iso(now)}')`,
    });
    const [w] = await rows<{ state: string; state_type: string }>(c, 'SELECT state, state_type FROM window_entry');
    assert.deepEqual(w, { state: '21.5', state_type: 'Number' });
    const [a] = await rows<{ aggregation_type: string; time_window_size: number }>(c, 'SELECT aggregation_type, time_window_size FROM aggregation_entry');
    assert.deepEqual(a, { aggregation_type: 'Avg', time_window_size: 300 });
  });

  test('a second run applies nothing and leaves system.tables / system.columns identical', async () => {
    const c = clientFor(db('mig_main'));
    const before = await schemaSnapshot(c, db('mig_main'));
    const result = await migrateClickHouse(c, { database: db('mig_main') });
    assert.deepEqual(result, { applied: [], skipped: FILES });
    assert.deepEqual(await schemaSnapshot(c, db('mig_main')), before);
    const [count] = await rows<{ n: number | string }>(c, `SELECT count() AS n FROM ${db('mig_main')}.pepeunit_schema_migrations`);
    assert.equal(Number(count?.n), FILES.length);
  });

  test('an applied file that was edited is refused, naming the file, and nothing else is applied', async () => {
    const dir = await copyMigrations('edited');
    const c = clientFor(db('mig_edit'));
    await migrateClickHouse(c, { database: db('mig_edit'), dir });
    await appendFile(path.join(dir, '002_n_last_entry.sql'), '\n-- an innocent-looking edit\n');
    await writeFile(path.join(dir, '099_new_table.sql'), 'CREATE TABLE IF NOT EXISTS must_not_exist (a UInt8) ENGINE = MergeTree ORDER BY a;\n');
    await assert.rejects(migrateClickHouse(c, { database: db('mig_edit'), dir }), (err: unknown) => {
      assert.ok(err instanceof ClickHouseMigrationError);
      assert.equal(err.file, '002_n_last_entry.sql');
      assert.match(err.message, /'002_n_last_entry\.sql' was edited after being applied/);
      assert.match(err.message, /add a new numbered migration instead/);
      return true;
    });
    const [exists] = await rows<{ n: number | string }>(c, "SELECT count() AS n FROM system.tables WHERE database = {db:String} AND name = 'must_not_exist'", { db: db('mig_edit') });
    assert.equal(Number(exists?.n), 0);
  });

  test('a new migration is applied alone; multi-statement files are split safely', async () => {
    const dir = await copyMigrations('grown');
    const c = clientFor(db('mig_grown'));
    await migrateClickHouse(c, { database: db('mig_grown'), dir });
    await writeFile(
      path.join(dir, '090_load_history.sql'),
      `-- two statements; the ';' in the comment and in the string must not split
CREATE TABLE IF NOT EXISTS load_history (unit_uuid UUID, note String DEFAULT 'a;b', mps Float64) ENGINE = MergeTree ORDER BY unit_uuid;
/* block comment; with a semicolon */
;
INSERT INTO load_history (unit_uuid, mps) VALUES ('00000000-0000-0000-0000-000000000002', 1.5);
-- trailing comment only
`,
    );
    const result = await migrateClickHouse(c, { database: db('mig_grown'), dir });
    assert.deepEqual(result, { applied: ['090_load_history.sql'], skipped: FILES });
    assert.deepEqual(await rows(c, 'SELECT note, mps FROM load_history'), [{ note: 'a;b', mps: 1.5 }]);
  });

  test('a failing statement is reported with its file and is not recorded (fixed file applies next time)', async () => {
    const dir = await copyMigrations('broken');
    const file = path.join(dir, '090_broken.sql');
    await writeFile(file, 'CREATE TABLE IF NOT EXISTS broken (a UInt8) ENGINE = MergeTree ORDER BY a;\nSELEC oops;\n');
    const c = clientFor(db('mig_broken'));
    await assert.rejects(migrateClickHouse(c, { database: db('mig_broken'), dir }), (err: unknown) => {
      assert.ok(err instanceof ClickHouseMigrationError);
      assert.equal(err.file, '090_broken.sql');
      assert.match(err.message, /migration '090_broken\.sql' \(statement 2 of 2\) failed/);
      return true;
    });
    await writeFile(file, 'CREATE TABLE IF NOT EXISTS broken (a UInt8) ENGINE = MergeTree ORDER BY a;\n');
    assert.deepEqual(await migrateClickHouse(c, { database: db('mig_broken'), dir }), { applied: ['090_broken.sql'], skipped: FILES });
  });

  test('duplicate version numbers and badly named files are refused before anything is created', async () => {
    const dir = await copyMigrations('duplicate');
    await writeFile(path.join(dir, '004_other.sql'), 'SELECT 1;');
    const c = clientFor(db('mig_dup'));
    await assert.rejects(migrateClickHouse(c, { database: db('mig_dup'), dir }), (err: unknown) => {
      assert.ok(err instanceof ClickHouseMigrationError);
      assert.match(err.message, /Duplicate ClickHouse migration version 4: '004_aggregation_entry\.sql' and '004_other\.sql'/);
      return true;
    });
    assert.equal(await databaseExists(clientFor('default'), db('mig_dup')), false);

    const badDir = await copyMigrations('badname');
    await writeFile(path.join(badDir, 'add_table.sql'), 'SELECT 1;');
    await assert.rejects(migrateClickHouse(c, { database: db('mig_dup'), dir: badDir }), /Unexpected file 'add_table\.sql'/);
  });

  test('two runners at once both succeed and every migration is recorded once', async () => {
    const a = clientFor(db('mig_race'));
    const b = clientFor(db('mig_race'));
    const [ra, rb] = await Promise.all([migrateClickHouse(a, { database: db('mig_race') }), migrateClickHouse(b, { database: db('mig_race') })]);
    for (const r of [ra, rb]) assert.deepEqual([...r.applied, ...r.skipped].sort(), FILES);
    assert.deepEqual([...new Set([...ra.applied, ...rb.applied])].sort(), FILES);
    const tracked = await rows<{ version: number }>(a, `SELECT version FROM ${db('mig_race')}.pepeunit_schema_migrations FINAL ORDER BY version`);
    assert.deepEqual(tracked.map((r) => r.version), FILES.map((f) => Number(f.slice(0, 3))));
    assert.deepEqual(await migrateClickHouse(a, { database: db('mig_race') }), { applied: [], skipped: FILES });
  });

  test('adopts an existing reference database: tables and data are kept', async () => {
    const c = clientFor(db('mig_adopt'));
    await c.command({ query: `CREATE DATABASE ${db('mig_adopt')}`, http_headers: { 'X-ClickHouse-Database': 'default' } });
    // What the reference's own runner leaves behind: its tracking table and the final tables.
    await c.command({ query: 'CREATE TABLE schema_versions (version UInt32, md5 String, script String, created_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY tuple(created_at)' });
    for (const file of REFERENCE_FILES) {
      const sql = (await readFile(path.join(clickHouseMigrationsDir, file), 'utf8')).replace('IF NOT EXISTS ', '');
      await c.command({ query: sql.replace(/;\s*$/, '') });
    }
    const now = Date.now();
    await c.command({
      query: `INSERT INTO unit_logs VALUES (generateUUIDv4(), 'Info', '00000000-0000-0000-0000-000000000003', 'kept', '${new Date(now).toISOString()}', '${new Date(now + 86_400_000).toISOString()}')`,
    });
    const result = await migrateClickHouse(c, { database: db('mig_adopt') });
    assert.deepEqual(result, { applied: FILES, skipped: [] });
    assert.deepEqual(await rows(c, 'SELECT text FROM unit_logs'), [{ text: 'kept' }]);
  });
});
