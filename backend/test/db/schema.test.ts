/**
 * The Postgres migrations against a real server: the resulting schema is compared with the
 * reference tables written out below, transcribed by hand from
 * /work/shared/reference/pepeunit-backend.md §1.1 and §1.2 (not generated from the SQL).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { migratePostgres, postgresMigrationsDir, POSTGRES_SCHEMA_TABLE } from '../../src/db/migrate.js';
import { dropFreshDatabases, freshDatabase, withDb } from '../pg-databases.js';


// ---- expected data, transcribed from the reference document ------------------------------

const V = 'character varying';
const TS = 'timestamp without time zone';
type ColumnSpec = [name: string, type: string, nullable: boolean, serverDefault?: string];

const REFERENCE_COLUMNS: Record<string, ColumnSpec[]> = {
  users: [
    ['uuid', 'uuid', false],
    ['role', V, false],
    ['status', V, false],
    ['login', V, false],
    ['telegram_chat_id', V, true],
    ['hashed_password', V, false],
    ['cipher_dynamic_salt', V, false],
    ['create_datetime', TS, false],
    ['grafana_org_name', 'uuid', false, 'gen_random_uuid()'],
    ['grafana_org_id', V, true],
  ],
  repository_registry: [
    ['uuid', 'uuid', false],
    ['platform', V, false],
    ['repository_url', V, false],
    ['is_public_repository', 'boolean', false],
    ['cipher_credentials_private_repository', V, true],
    ['releases_data', V, true],
    ['local_repository_size', 'integer', false],
    ['sync_status', V, true],
    ['sync_error', V, true],
    ['sync_last_datetime', TS, true],
    ['create_datetime', TS, false],
    ['last_update_datetime', TS, false],
    ['creator_uuid', 'uuid', true],
  ],
  repos: [
    ['uuid', 'uuid', false],
    ['visibility_level', V, false],
    ['name', V, false],
    ['create_datetime', TS, false],
    ['default_branch', V, true],
    ['is_auto_update_repo', 'boolean', false],
    ['default_commit', V, true],
    ['is_only_tag_update', 'boolean', false],
    ['is_compilable_repo', 'boolean', false, 'false'],
    ['last_update_datetime', TS, false],
    ['creator_uuid', 'uuid', true],
    ['repository_registry_uuid', 'uuid', false],
  ],
  units: [
    ['uuid', 'uuid', false],
    ['visibility_level', V, false],
    ['name', V, false],
    ['create_datetime', TS, false],
    ['last_update_datetime', TS, false],
    ['is_auto_update_from_repo_unit', 'boolean', false],
    ['target_firmware_platform', V, true],
    ['repo_branch', V, true],
    ['repo_commit', V, true],
    ['unit_state_dict', V, true],
    ['current_commit_version', V, true],
    ['cipher_env_dict', V, true],
    ['cipher_state_storage', V, true],
    ['firmware_update_status', V, true],
    ['firmware_update_error', V, true],
    ['last_firmware_update_datetime', TS, true],
    ['creator_uuid', 'uuid', true],
    ['repo_uuid', 'uuid', true],
  ],
  units_nodes: [
    ['uuid', 'uuid', false],
    ['type', V, false],
    ['visibility_level', V, false],
    ['is_rewritable_input', 'boolean', false],
    ['max_connections', 'integer', false, '10'],
    ['topic_name', V, false],
    ['create_datetime', TS, false],
    ['state', V, true],
    ['last_update_datetime', TS, false, "'2025-01-25 00:00:00'::timestamp without time zone"],
    ['is_data_pipe_active', 'boolean', false, 'false'],
    ['data_pipe_yml', V, true],
    ['data_pipe_status', V, true],
    ['data_pipe_error', V, true],
    ['creator_uuid', 'uuid', true],
    ['unit_uuid', 'uuid', true],
  ],
  units_nodes_edges: [
    ['uuid', 'uuid', false],
    ['node_output_uuid', 'uuid', true],
    ['node_input_uuid', 'uuid', true],
    ['creator_uuid', 'uuid', true],
  ],
  permissions: [
    ['uuid', 'uuid', false],
    ['agent_type', V, false],
    ['agent_user_uuid', 'uuid', true],
    ['agent_unit_uuid', 'uuid', true],
    ['resource_type', V, false],
    ['resource_repo_uuid', 'uuid', true],
    ['resource_unit_uuid', 'uuid', true],
    ['resource_unit_node_uuid', 'uuid', true],
  ],
  dashboards: [
    ['uuid', 'uuid', false],
    ['grafana_uuid', 'uuid', false],
    ['name', V, false],
    ['dashboard_url', V, true],
    ['inc_last_version', 'integer', true],
    ['sync_status', V, true],
    ['sync_error', V, true],
    ['sync_last_datetime', TS, true],
    ['create_datetime', TS, false],
    ['creator_uuid', 'uuid', true],
  ],
  dashboard_panels: [
    ['uuid', 'uuid', false],
    ['type', V, false],
    ['title', V, false],
    ['create_datetime', TS, false],
    ['creator_uuid', 'uuid', true],
    ['dashboard_uuid', 'uuid', true],
  ],
  mtm_panels_unit_nodes: [
    ['uuid', 'uuid', false],
    ['is_last_data', 'boolean', false],
    ['is_forced_to_json', 'boolean', false, 'false'],
    ['create_datetime', TS, false],
    ['creator_uuid', 'uuid', true],
    ['unit_node_uuid', 'uuid', true],
    ['dashboard_panels_uuid', 'uuid', true],
  ],
};
const REFERENCE_TABLES = Object.keys(REFERENCE_COLUMNS);

/** [table, column, target table, ON DELETE rule]; every target column is `uuid`. */
const REFERENCE_FOREIGN_KEYS: Array<[string, string, string, string]> = [
  ['repository_registry', 'creator_uuid', 'users', 'SET NULL'],
  ['repos', 'creator_uuid', 'users', 'CASCADE'],
  ['repos', 'repository_registry_uuid', 'repository_registry', 'CASCADE'],
  ['units', 'creator_uuid', 'users', 'CASCADE'],
  ['units', 'repo_uuid', 'repos', 'CASCADE'],
  ['units_nodes', 'creator_uuid', 'users', 'CASCADE'],
  ['units_nodes', 'unit_uuid', 'units', 'CASCADE'],
  ['units_nodes_edges', 'node_output_uuid', 'units_nodes', 'CASCADE'],
  ['units_nodes_edges', 'node_input_uuid', 'units_nodes', 'CASCADE'],
  ['units_nodes_edges', 'creator_uuid', 'users', 'CASCADE'],
  ['permissions', 'agent_user_uuid', 'users', 'CASCADE'],
  ['permissions', 'agent_unit_uuid', 'units', 'CASCADE'],
  ['permissions', 'resource_repo_uuid', 'repos', 'CASCADE'],
  ['permissions', 'resource_unit_uuid', 'units', 'CASCADE'],
  ['permissions', 'resource_unit_node_uuid', 'units_nodes', 'CASCADE'],
  ['dashboards', 'creator_uuid', 'users', 'CASCADE'],
  ['dashboard_panels', 'creator_uuid', 'users', 'CASCADE'],
  ['dashboard_panels', 'dashboard_uuid', 'dashboards', 'CASCADE'],
  ['mtm_panels_unit_nodes', 'creator_uuid', 'users', 'CASCADE'],
  ['mtm_panels_unit_nodes', 'unit_node_uuid', 'units_nodes', 'CASCADE'],
  ['mtm_panels_unit_nodes', 'dashboard_panels_uuid', 'dashboard_panels', 'CASCADE'],
];

const REFERENCE_UNIQUE: Array<[string, string]> = [
  ['users', 'login'],
  ['users', 'telegram_chat_id'],
  ['repository_registry', 'repository_url'],
  ['repos', 'name'],
  ['units', 'name'],
];

/** Enum columns with the reference values (§1.2) that our CHECK constraints must allow. */
const VISIBILITY = ['Public', 'Internal', 'Private'];
const REFERENCE_ENUM_CHECKS: Array<[string, string, string[]]> = [
  ['users', 'role', ['User', 'Admin']],
  ['users', 'status', ['Unverified', 'Verified', 'Blocked']],
  ['repository_registry', 'platform', ['Gitlab', 'Github']],
  ['repository_registry', 'sync_status', ['Updated', 'Processing', 'Error']],
  ['repos', 'visibility_level', VISIBILITY],
  ['units', 'visibility_level', VISIBILITY],
  ['units', 'firmware_update_status', ['RequestSent', 'Error', 'Success']],
  ['units_nodes', 'type', ['Output', 'Input']],
  ['units_nodes', 'visibility_level', VISIBILITY],
  ['units_nodes', 'data_pipe_status', ['Active', 'Inactive', 'Error']],
  ['permissions', 'agent_type', ['User', 'Unit']],
  ['permissions', 'resource_type', ['Repo', 'Unit', 'UnitNode']],
  ['dashboards', 'sync_status', ['Success', 'Processing', 'Error']],
];

const ALEMBIC_HEAD = '99db704045c6';

// ---- helpers ------------------------------------------------------------------------------


/** Every column, constraint and index of the current schema, as comparable text. */
async function schemaFingerprint(url: string): Promise<string[]> {
  return withDb(url, async (client) => {
    const columns = await client.query(
      `SELECT table_name, column_name, ordinal_position, data_type, character_maximum_length, is_nullable, column_default
       FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position`,
    );
    const constraints = await client.query(
      `SELECT conrelid::regclass::text AS table_name, conname, contype, convalidated, pg_get_constraintdef(oid) AS def
       FROM pg_constraint WHERE connamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
       ORDER BY 1, 2`,
    );
    const indexes = await client.query(
      `SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 1, 2`,
    );
    return [
      ...columns.rows.map((row) => `column ${JSON.stringify(row)}`),
      ...constraints.rows.map((row) => `constraint ${JSON.stringify(row)}`),
      ...indexes.rows.map((row) => `index ${JSON.stringify(row)}`),
    ];
  });
}

function sorted<T>(values: T[]): T[] {
  return [...values].sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
}

after(async () => {
  await dropFreshDatabases();
});

// ---- tests --------------------------------------------------------------------------------

describe('postgres migrations: reference schema', () => {
  let url = '';
  let firstRun: Awaited<ReturnType<typeof migratePostgres>>;

  before(async () => {
    url = await freshDatabase();
    firstRun = await migratePostgres(url);
  });

  it('applies every numbered migration file on a fresh database', async () => {
    const files = await readdir(postgresMigrationsDir);
    const versions = files
      .filter((file) => /^\d+\.do\..*\.sql$/.test(file))
      .map((file) => Number(file.split('.')[0]))
      .sort((a, b) => a - b);
    assert.ok(versions.length >= 1);
    assert.deepEqual(firstRun.appliedVersions, versions);
    assert.equal(firstRun.fromVersion, 0);
    assert.equal(firstRun.toVersion, versions.at(-1));
    const recorded = await withDb(url, (client) => client.query(`SELECT version FROM ${POSTGRES_SCHEMA_TABLE} WHERE version > 0 ORDER BY version`));
    assert.deepEqual(recorded.rows.map((row) => Number(row.version)), versions);
  });

  it('creates the ten reference tables plus alembic_version and the version table (our own tables may be added)', async () => {
    const tables = await withDb(url, (client) =>
      client.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`),
    );
    const names = new Set(tables.rows.map((row) => row.table_name as string));
    for (const table of [...REFERENCE_TABLES, 'alembic_version', POSTGRES_SCHEMA_TABLE]) assert.ok(names.has(table), `${table} missing`);
  });

  it('has every reference column with its exact type, nullability and server default', async () => {
    const rows = await withDb(url, (client) =>
      client.query(
        `SELECT table_name, column_name, data_type, character_maximum_length, is_nullable, column_default
         FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ANY($1)`,
        [REFERENCE_TABLES],
      ),
    );
    const referenceColumns = new Set(Object.entries(REFERENCE_COLUMNS).flatMap(([table, columns]) => columns.map(([column]) => `${table}.${column}`)));
    // Columns we add to reference tables must not break writers that only know the reference
    // columns (the Python tooling, the Go DataPipe): nullable or with a server default.
    for (const row of rows.rows.filter((r) => !referenceColumns.has(`${r.table_name}.${r.column_name}`))) {
      assert.ok(row.is_nullable === 'YES' || row.column_default !== null, `added column ${row.table_name}.${row.column_name} must be nullable or have a default`);
    }
    const actual = rows.rows.filter((r) => referenceColumns.has(`${r.table_name}.${r.column_name}`)).map((row) => ({
      table: row.table_name,
      column: row.column_name,
      type: row.data_type,
      maxLength: row.character_maximum_length,
      nullable: row.is_nullable === 'YES',
      serverDefault: row.column_default,
    }));
    const expected = Object.entries(REFERENCE_COLUMNS).flatMap(([table, columns]) =>
      columns.map(([column, type, nullable, serverDefault]) => ({
        table,
        column,
        type,
        maxLength: null, // all string columns are unbounded varchar
        nullable,
        serverDefault: serverDefault ?? null,
      })),
    );
    assert.deepEqual(sorted(actual), sorted(expected));
  });

  it('has uuid primary keys and the reference UNIQUE constraints, nothing more', async () => {
    const keys = await withDb(url, (client) =>
      client.query(
        `SELECT tc.table_name, tc.constraint_type, tc.constraint_name, kcu.column_name
         FROM information_schema.table_constraints tc
         JOIN information_schema.key_column_usage kcu
           ON kcu.constraint_name = tc.constraint_name AND kcu.constraint_schema = tc.constraint_schema AND kcu.table_name = tc.table_name
         WHERE tc.table_schema = current_schema() AND tc.table_name = ANY($1) AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE')`,
        [REFERENCE_TABLES],
      ),
    );
    const primary = keys.rows.filter((row) => row.constraint_type === 'PRIMARY KEY');
    assert.deepEqual(
      sorted(primary.map((row) => [row.table_name, row.column_name, row.constraint_name])),
      sorted(REFERENCE_TABLES.map((table) => [table, 'uuid', `${table}_pkey`])),
    );
    const unique = keys.rows.filter((row) => row.constraint_type === 'UNIQUE');
    assert.deepEqual(sorted(unique.map((row) => [row.table_name, row.column_name])), sorted(REFERENCE_UNIQUE));
    // PostgreSQL's default names, as in a database created by the reference's alembic chain
    for (const row of unique) assert.equal(row.constraint_name, `${row.table_name}_${row.column_name}_key`);
  });

  it('has every reference foreign key with its target and ON DELETE rule', async () => {
    const fks = await withDb(url, (client) =>
      client.query(
        `SELECT kcu.table_name, kcu.column_name, ccu.table_name AS target_table, ccu.column_name AS target_column,
                rc.delete_rule, rc.constraint_name
         FROM information_schema.referential_constraints rc
         JOIN information_schema.key_column_usage kcu
           ON kcu.constraint_name = rc.constraint_name AND kcu.constraint_schema = rc.constraint_schema
         JOIN information_schema.constraint_column_usage ccu
           ON ccu.constraint_name = rc.constraint_name AND ccu.constraint_schema = rc.constraint_schema
         WHERE rc.constraint_schema = current_schema() AND kcu.table_name = ANY($1)`,
        [REFERENCE_TABLES],
      ),
    );
    assert.deepEqual(
      sorted(fks.rows.map((row) => [row.table_name, row.column_name, row.target_table, row.delete_rule])),
      sorted(REFERENCE_FOREIGN_KEYS),
    );
    for (const row of fks.rows) {
      assert.equal(row.target_column, 'uuid');
      assert.equal(row.constraint_name, `${row.table_name}_${row.column_name}_fkey`);
    }
  });

  it('has the redundant ix_<table>_uuid indexes and an index on every foreign-key column', async () => {
    const indexes = await withDb(url, (client) =>
      client.query(`SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()`),
    );
    for (const table of REFERENCE_TABLES) {
      const ix = indexes.rows.find((row) => row.indexname === `ix_${table}_uuid`);
      assert.ok(ix, `ix_${table}_uuid missing`);
      assert.equal(ix.tablename, table);
      assert.match(ix.indexdef, /^CREATE INDEX .* USING btree \(uuid\)$/, 'non-unique btree on uuid');
    }
    for (const [table, column] of REFERENCE_FOREIGN_KEYS) {
      const leading = indexes.rows.some(
        (row) => row.tablename === table && new RegExp(`USING btree \\(${column}[,)]`).test(row.indexdef),
      );
      assert.ok(leading, `no index leads with ${table}.${column}`);
    }
  });

  it('stamps alembic_version with the reference head', async () => {
    const rows = await withDb(url, (client) => client.query('SELECT version_num FROM alembic_version'));
    assert.deepEqual(rows.rows, [{ version_num: ALEMBIC_HEAD }]);
  });

  it('checks enum columns against exactly the reference values, validated on a fresh database', async () => {
    const checks = await withDb(url, (client) =>
      client.query(
        `SELECT conrelid::regclass::text AS table_name, conname, convalidated, pg_get_constraintdef(oid) AS def
         FROM pg_constraint WHERE contype = 'c' AND connamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())`,
      ),
    );
    for (const [table, column, values] of REFERENCE_ENUM_CHECKS) {
      const check = checks.rows.find((row) => row.table_name === table && row.conname === `ck_${table}_${column}`);
      assert.ok(check, `check on ${table}.${column} missing`);
      assert.equal(check.convalidated, true);
      assert.match(check.def, new RegExp(`\\(${column}\\)`));
      const allowed = [...check.def.matchAll(/'([^']*)'/g)].map((match) => match[1]);
      assert.deepEqual(allowed.sort(), [...values].sort(), `${table}.${column}`);
    }
  });

  it('applies server defaults, enum checks and ON DELETE rules to real rows', async () => {
    await withDb(url, async (client) => {
      const now = '2026-01-01 00:00:00';
      const user = randomUUID();
      await client.query(
        `INSERT INTO users (uuid, role, status, login, hashed_password, cipher_dynamic_salt, create_datetime)
         VALUES ($1, 'User', 'Verified', 'someone', 'h', 's', $2)`,
        [user, now],
      );
      const orgName = await client.query('SELECT grafana_org_name FROM users WHERE uuid = $1', [user]);
      assert.match(orgName.rows[0].grafana_org_name, /^[0-9a-f-]{36}$/);

      await assert.rejects(
        client.query(
          `INSERT INTO users (uuid, role, status, login, hashed_password, cipher_dynamic_salt, create_datetime)
           VALUES ($1, 'Superuser', 'Verified', 'other', 'h', 's', $2)`,
          [randomUUID(), now],
        ),
        (error: { code?: string }) => error.code === '23514',
      );
      await assert.rejects(
        client.query(
          `INSERT INTO users (uuid, role, status, login, hashed_password, cipher_dynamic_salt, create_datetime)
           VALUES ($1, 'User', 'Verified', 'someone', 'h', 's', $2)`,
          [randomUUID(), now],
        ),
        (error: { code?: string }) => error.code === '23505',
      );

      const registry = randomUUID();
      await client.query(
        `INSERT INTO repository_registry (uuid, platform, repository_url, is_public_repository, local_repository_size,
           create_datetime, last_update_datetime, creator_uuid)
         VALUES ($1, 'Gitlab', 'https://example.com/a.git', true, 0, $2, $2, $3)`,
        [registry, now, user],
      );
      const repo = randomUUID();
      await client.query(
        `INSERT INTO repos (uuid, visibility_level, name, create_datetime, is_auto_update_repo, is_only_tag_update,
           last_update_datetime, creator_uuid, repository_registry_uuid)
         VALUES ($1, 'Public', 'repo_one', $2, true, false, $2, $3, $4)`,
        [repo, now, user, registry],
      );
      const unit = randomUUID();
      await client.query(
        `INSERT INTO units (uuid, visibility_level, name, create_datetime, last_update_datetime,
           is_auto_update_from_repo_unit, creator_uuid, repo_uuid)
         VALUES ($1, 'Public', 'unit_one', $2, $2, true, $3, $4)`,
        [unit, now, user, repo],
      );
      const node = randomUUID();
      await client.query(
        `INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, topic_name, create_datetime, creator_uuid, unit_uuid)
         VALUES ($1, 'Input', 'Public', false, 'set/pepeunit', $2, $3, $4)`,
        [node, now, user, unit],
      );
      const defaults = await client.query(
        `SELECT max_connections, is_data_pipe_active, to_char(last_update_datetime, 'YYYY-MM-DD HH24:MI:SS') AS last_update
         FROM units_nodes WHERE uuid = $1`,
        [node],
      );
      assert.deepEqual(defaults.rows[0], { max_connections: 10, is_data_pipe_active: false, last_update: '2025-01-25 00:00:00' });
      const compilable = await client.query('SELECT is_compilable_repo FROM repos WHERE uuid = $1', [repo]);
      assert.equal(compilable.rows[0].is_compilable_repo, false);

      await client.query('DELETE FROM users WHERE uuid = $1', [user]);
      const left = await client.query(
        `SELECT (SELECT count(*) FROM repos)::int AS repos, (SELECT count(*) FROM units)::int AS units,
                (SELECT count(*) FROM units_nodes)::int AS nodes,
                (SELECT count(*) FROM repository_registry WHERE uuid = $1 AND creator_uuid IS NULL)::int AS orphaned_registries`,
        [registry],
      );
      // the registry survives its creator (SET NULL); what the user created is gone (CASCADE)
      assert.deepEqual(left.rows[0], { repos: 0, units: 0, nodes: 0, orphaned_registries: 1 });
    });
  });

  it('is a no-op on the second run and leaves the schema fingerprint unchanged', async () => {
    const before = await schemaFingerprint(url);
    const again = await migratePostgres(url);
    assert.deepEqual(again.appliedVersions, []);
    assert.equal(again.fromVersion, firstRun.toVersion);
    assert.equal(again.toVersion, firstRun.toVersion);
    assert.deepEqual(await schemaFingerprint(url), before);
  });
});

describe('postgres migrations: runner behaviour', () => {
  it('serialises concurrent runs: one applies everything, the others nothing, same schema', async () => {
    const reference = await freshDatabase();
    await migratePostgres(reference);
    const url = await freshDatabase();
    const results = await Promise.all([migratePostgres(url), migratePostgres(url), migratePostgres(url)]);
    const appliers = results.filter((result) => result.appliedVersions.length > 0);
    assert.equal(appliers.length, 1);
    assert.equal(results.filter((result) => result.appliedVersions.length === 0).length, 2);
    assert.deepEqual(await schemaFingerprint(url), await schemaFingerprint(reference));
  });

  it('undo files revert to an empty schema and a re-run rebuilds the same schema', async () => {
    const url = await freshDatabase();
    const up = await migratePostgres(url);
    const fingerprint = await schemaFingerprint(url);
    const down = await migratePostgres(url, { targetVersion: 0 });
    assert.deepEqual(down.appliedVersions, [...up.appliedVersions].reverse());
    assert.equal(down.toVersion, 0);
    const tables = await withDb(url, (client) =>
      client.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`),
    );
    assert.deepEqual(tables.rows.map((row) => row.table_name), [POSTGRES_SCHEMA_TABLE]);
    await migratePostgres(url);
    assert.deepEqual(await schemaFingerprint(url), fingerprint);
  });

  it('adopts a database created by the reference at alembic head', async () => {
    const reference = await freshDatabase();
    await migratePostgres(reference);
    const url = await freshDatabase();
    await migratePostgres(url, { targetVersion: 1 });
    // what remains is the reference schema as alembic leaves it: drop our bookkeeping
    await withDb(url, (client) => client.query(`DROP TABLE ${POSTGRES_SCHEMA_TABLE}`));
    const adopted = await migratePostgres(url);
    assert.equal(adopted.fromVersion, 0);
    assert.ok(adopted.appliedVersions.includes(1));
    assert.deepEqual(await schemaFingerprint(url), await schemaFingerprint(reference));
  });

  it('refuses a reference database at another alembic revision and changes nothing', async () => {
    const url = await freshDatabase();
    await withDb(url, (client) =>
      client.query(`CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); INSERT INTO alembic_version VALUES ('f7530b7880cc')`),
    );
    await assert.rejects(migratePostgres(url), /alembic revision f7530b7880cc.*alembic upgrade head/s);
    const tables = await withDb(url, (client) =>
      client.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`),
    );
    assert.deepEqual(tables.rows.map((row) => row.table_name), ['alembic_version']);
  });

  it('refuses edited migrations and databases newer than this build', async () => {
    const url = await freshDatabase();
    const result = await migratePostgres(url);
    const countTables = async () =>
      (await withDb(url, (client) => client.query(`SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = current_schema()`))).rows[0].n as number;
    const tablesBefore = await countTables();
    await withDb(url, (client) => client.query(`UPDATE ${POSTGRES_SCHEMA_TABLE} SET md5 = 'edited' WHERE version = 1`));
    await assert.rejects(migratePostgres(url), /checksum failed for migration \[1\]/i);
    await withDb(url, (client) =>
      client.query(`DELETE FROM ${POSTGRES_SCHEMA_TABLE} WHERE version = 1; INSERT INTO ${POSTGRES_SCHEMA_TABLE} (version, name, md5) VALUES (999, 'future', 'x')`),
    );
    await assert.rejects(migratePostgres(url), /version 999, newer than this build knows \(\d+\)/);
    assert.equal(await countTables(), tablesBefore, 'nothing was undone');
    assert.ok(result.toVersion < 999);
  });

  it('accepts SQLAlchemy URLs and reports unreachable servers clearly', async () => {
    const url = await freshDatabase();
    const sqlalchemy = url.replace(/^postgres(ql)?:\/\//, 'postgresql+asyncpg://');
    const result = await migratePostgres(sqlalchemy);
    assert.ok(result.appliedVersions.length > 0);
    await assert.rejects(
      migratePostgres('postgresql+psycopg2://u:secret@127.0.0.1:1/db'),
      (error: Error) => /Cannot connect to PostgreSQL/.test(error.message) && !error.message.includes('secret'),
    );
  });
});
