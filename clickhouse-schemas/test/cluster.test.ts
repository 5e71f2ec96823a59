/**
 * The cluster variant of the ClickHouse migrations (src/cluster.ts): the rewrite rules on a
 * table of cases, golden files of every shipped migration for a one-shard and a two-shard
 * cluster, the single-node files unchanged, and the real engine (chdb configured like a
 * cluster member, in a child process) parsing and creating what the rewrite produces.
 *
 * Regenerate the golden files after a deliberate change: PU_UPDATE_GOLDEN=1 npm test -- cluster.test
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ClusterRenderError,
  newClusterRenderState,
  renderMigrationForCluster,
  renderStatementForCluster,
  type ClickHouseClusterLayout,
} from '../src/cluster.js';
import { readClickHouseMigrations } from '../src/migrate.js';
import { REFERENCE_CLICKHOUSE_TABLES } from '../src/reference-schema.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const goldenDir = path.join(here, 'golden', 'cluster');
const ONE_SHARD: ClickHouseClusterLayout = { cluster: 'pepeunit', shards: 1 };
const TWO_SHARDS: ClickHouseClusterLayout = { cluster: 'pepeunit', shards: 2 };
const PATH_ARGS = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'";

function render(sql: string, layout: ClickHouseClusterLayout = ONE_SHARD, state = newClusterRenderState()): string[] {
  return renderStatementForCluster(sql, layout, 'pepeunit', state);
}

describe('cluster rewrite rules', () => {
  const cases: Array<{ name: string; sql: string; layout?: ClickHouseClusterLayout; expected: string[] }> = [
    {
      name: 'MergeTree() becomes ReplicatedMergeTree with the Keeper path and replica macros, ON CLUSTER after the name',
      sql: 'CREATE TABLE IF NOT EXISTS t (a UInt32) ENGINE = MergeTree() ORDER BY a',
      expected: [`CREATE TABLE IF NOT EXISTS t ON CLUSTER 'pepeunit' (a UInt32) ENGINE = ReplicatedMergeTree(${PATH_ARGS}) ORDER BY a`],
    },
    {
      name: 'an engine without brackets and one with arguments keep their arguments after the replication ones',
      sql: 'CREATE TABLE t (a UInt32, v UInt64) ENGINE = ReplacingMergeTree(v) ORDER BY a',
      expected: [`CREATE TABLE t ON CLUSTER 'pepeunit' (a UInt32, v UInt64) ENGINE = ReplicatedReplacingMergeTree(${PATH_ARGS}, v) ORDER BY a`],
    },
    {
      name: 'ENGINE without "=" and without brackets',
      sql: 'CREATE TABLE t (a UInt32) ENGINE SummingMergeTree ORDER BY a',
      expected: [`CREATE TABLE t ON CLUSTER 'pepeunit' (a UInt32) ENGINE ReplicatedSummingMergeTree(${PATH_ARGS}) ORDER BY a`],
    },
    {
      name: 'words inside strings and comments are left alone',
      sql: "-- ENGINE = MergeTree in a comment\nCREATE TABLE t (a String DEFAULT 'ENGINE = MergeTree()') ENGINE = MergeTree ORDER BY a COMMENT 'ORDER BY x'",
      expected: [
        `-- ENGINE = MergeTree in a comment\nCREATE TABLE t ON CLUSTER 'pepeunit' (a String DEFAULT 'ENGINE = MergeTree()') ENGINE = ReplicatedMergeTree(${PATH_ARGS}) ORDER BY a COMMENT 'ORDER BY x'`,
      ],
    },
    {
      name: 'two shards: a _local replicated table and a Distributed table under the reference name, sharded by the first ORDER BY column',
      sql: 'CREATE TABLE IF NOT EXISTS t (u UUID, d DateTime) ENGINE = MergeTree() ORDER BY (u, d) TTL d',
      layout: TWO_SHARDS,
      expected: [
        `CREATE TABLE IF NOT EXISTS t_local ON CLUSTER 'pepeunit' (u UUID, d DateTime) ENGINE = ReplicatedMergeTree(${PATH_ARGS}) ORDER BY (u, d) TTL d`,
        "CREATE TABLE IF NOT EXISTS t ON CLUSTER 'pepeunit' AS t_local\nENGINE = Distributed('pepeunit', 'pepeunit', 't_local', cityHash64(u))",
      ],
    },
    {
      name: 'two shards, ORDER BY a function call: the whole first expression is the key',
      sql: 'CREATE TABLE t (d DateTime, u UUID) ENGINE = MergeTree ORDER BY toDate(d)',
      layout: TWO_SHARDS,
      expected: [
        `CREATE TABLE t_local ON CLUSTER 'pepeunit' (d DateTime, u UUID) ENGINE = ReplicatedMergeTree(${PATH_ARGS}) ORDER BY toDate(d)`,
        "CREATE TABLE t ON CLUSTER 'pepeunit' AS t_local\nENGINE = Distributed('pepeunit', 'pepeunit', 't_local', cityHash64(toDate(d)))",
      ],
    },
    {
      name: 'two shards, ORDER BY tuple(): random sharding',
      sql: 'CREATE TABLE t (a UInt32) ENGINE = MergeTree ORDER BY tuple()',
      layout: TWO_SHARDS,
      expected: [
        `CREATE TABLE t_local ON CLUSTER 'pepeunit' (a UInt32) ENGINE = ReplicatedMergeTree(${PATH_ARGS}) ORDER BY tuple()`,
        "CREATE TABLE t ON CLUSTER 'pepeunit' AS t_local\nENGINE = Distributed('pepeunit', 'pepeunit', 't_local', rand())",
      ],
    },
    {
      name: 'engines outside the MergeTree family only get ON CLUSTER (no replication, no Distributed)',
      sql: 'CREATE TABLE IF NOT EXISTS buffer_in (a UInt32) ENGINE = Null',
      layout: TWO_SHARDS,
      expected: ["CREATE TABLE IF NOT EXISTS buffer_in ON CLUSTER 'pepeunit' (a UInt32) ENGINE = Null"],
    },
    {
      name: 'ALTER on one shard keeps the name',
      sql: 'ALTER TABLE unit_logs ADD COLUMN IF NOT EXISTS x UInt8',
      expected: ["ALTER TABLE unit_logs ON CLUSTER 'pepeunit' ADD COLUMN IF NOT EXISTS x UInt8"],
    },
    {
      name: 'quoted identifiers stay quoted',
      sql: 'CREATE TABLE `my table` (a UInt32) ENGINE = MergeTree ORDER BY a',
      expected: [`CREATE TABLE \`my table\` ON CLUSTER 'pepeunit' (a UInt32) ENGINE = ReplicatedMergeTree(${PATH_ARGS}) ORDER BY a`],
    },
  ];
  for (const c of cases) {
    test(c.name, () => assert.deepEqual(render(c.sql, c.layout), c.expected));
  }

  test('two shards: a column change goes to the _local table and the Distributed table; a TTL change only to _local; DROP removes both', () => {
    const state = newClusterRenderState();
    render('CREATE TABLE t (a UInt32, d DateTime) ENGINE = MergeTree ORDER BY a', TWO_SHARDS, state);
    assert.deepEqual(render('ALTER TABLE t ADD COLUMN b String', TWO_SHARDS, state), [
      "ALTER TABLE t_local ON CLUSTER 'pepeunit' ADD COLUMN b String",
      "ALTER TABLE t ON CLUSTER 'pepeunit' ADD COLUMN b String",
    ]);
    assert.deepEqual(render('ALTER TABLE t MODIFY TTL d + INTERVAL 1 DAY', TWO_SHARDS, state), ["ALTER TABLE t_local ON CLUSTER 'pepeunit' MODIFY TTL d + INTERVAL 1 DAY"]);
    assert.deepEqual(render('DROP TABLE IF EXISTS t', TWO_SHARDS, state), [
      "DROP TABLE IF EXISTS t ON CLUSTER 'pepeunit'",
      "DROP TABLE IF EXISTS t_local ON CLUSTER 'pepeunit'",
    ]);
    // A table the state does not know as sharded (created by a non-MergeTree engine) keeps its name.
    assert.deepEqual(render('ALTER TABLE other ADD COLUMN b String', TWO_SHARDS, state), ["ALTER TABLE other ON CLUSTER 'pepeunit' ADD COLUMN b String"]);
  });

  const refused: Array<{ name: string; sql: string; layout?: ClickHouseClusterLayout; message: RegExp }> = [
    { name: 'database-qualified names', sql: 'CREATE TABLE db.t (a UInt32) ENGINE = MergeTree ORDER BY a', message: /database-qualified/ },
    { name: 'statements already ON CLUSTER', sql: "CREATE TABLE t ON CLUSTER 'x' (a UInt32) ENGINE = MergeTree ORDER BY a", message: /already has ON CLUSTER/ },
    { name: 'engines already replicated', sql: "CREATE TABLE t (a UInt32) ENGINE = ReplicatedMergeTree('/p', 'r') ORDER BY a", message: /already uses ReplicatedMergeTree/ },
    { name: 'CREATE TABLE without an engine', sql: 'CREATE TABLE t (a UInt32) ORDER BY a', message: /no ENGINE clause/ },
    { name: 'statements without a cluster variant', sql: 'CREATE MATERIALIZED VIEW mv TO t AS SELECT 1', message: /has no cluster variant yet/ },
    { name: 'INSERTs', sql: 'INSERT INTO t VALUES (1)', message: /has no cluster variant yet/ },
    { name: 'a bad cluster name', sql: 'CREATE TABLE t (a UInt32) ENGINE = MergeTree ORDER BY a', layout: { cluster: "x' OR 1", shards: 1 }, message: /Invalid ClickHouse cluster name/ },
    { name: 'zero shards', sql: 'CREATE TABLE t (a UInt32) ENGINE = MergeTree ORDER BY a', layout: { cluster: 'pepeunit', shards: 0 }, message: /Invalid number of shards/ },
  ];
  for (const c of refused) {
    test(`refuses ${c.name}`, () => assert.throws(() => render(c.sql, c.layout), (err: unknown) => err instanceof ClusterRenderError && c.message.test(err.message)));
  }

  test('a refused statement is reported with its file and statement number', () => {
    assert.throws(
      () => renderMigrationForCluster('CREATE TABLE a (x UInt8) ENGINE = MergeTree ORDER BY x;\nCREATE VIEW v AS SELECT 1;', ONE_SHARD, 'pepeunit', newClusterRenderState(), '009_view.sql'),
      /^ClusterRenderError: 009_view\.sql \(statement 2\): 'CREATE VIEW v \.\.\.' has no cluster variant yet/,
    );
  });
});

describe('shipped migrations', () => {
  // sha256 of the released files: the single-node SQL is what databases recorded when they applied it.
  const RELEASED: Record<string, string> = {
    '001_unit_logs.sql': '0ca241cc01e39f93ef604ad34562361f8760176a95dfc471806671bd14d0d01c',
    '002_n_last_entry.sql': 'a8b8dee17583eb2b624450c0c21e697766e6272c6793088567cce32d79e12a57',
    '003_window_entry.sql': '4321951f311c6ee8353385e17f30e86dd668c49368132fd8413473dd77e5bd1a',
    '004_aggregation_entry.sql': '0076f0dcc3130b6f46a0236d1778c0c9ad0350a2f548af4871fdba8422f1cb52',
  };

  test('the single-node files are unchanged (their recorded checksums stay valid)', async () => {
    const files = await readClickHouseMigrations();
    for (const [name, checksum] of Object.entries(RELEASED)) {
      const file = files.find((f) => f.name === name);
      assert.ok(file, `${name} is shipped`);
      assert.equal(file.checksum, checksum, `${name} was edited after release`);
      assert.equal(createHash('sha256').update(await readFile(file.path)).digest('hex'), checksum);
    }
  });

  for (const [label, layout] of [
    ['1-shard', ONE_SHARD],
    ['2-shards', TWO_SHARDS],
  ] as const) {
    test(`every migration renders for a ${label} cluster exactly as the golden file`, async () => {
      const files = await readClickHouseMigrations();
      const dir = path.join(goldenDir, label);
      const state = newClusterRenderState();
      const update = process.env.PU_UPDATE_GOLDEN === '1';
      if (update) await mkdir(dir, { recursive: true });
      for (const file of files) {
        const rendered = renderMigrationForCluster(file.sql, layout, 'pepeunit', state, file.name).join(';\n\n') + ';\n';
        const goldenFile = path.join(dir, file.name);
        if (update) await writeFile(goldenFile, rendered);
        const golden = await readFile(goldenFile, 'utf8').catch(() => {
          throw new Error(`no golden file ${path.relative(process.cwd(), goldenFile)}: review the cluster variant of ${file.name}, then run with PU_UPDATE_GOLDEN=1`);
        });
        assert.equal(rendered, golden, `cluster variant of ${file.name} (${label}) differs from ${goldenFile}`);
      }
      assert.deepEqual((await readdir(dir)).sort(), files.map((f) => f.name).sort(), 'one golden file per migration, no leftovers');
    });
  }
});

interface EngineReport {
  macros: Array<{ macro: string; substitution: string }>;
  unknownCluster: string | null;
  unknownClusterCreatedDatabase: string;
  clusterOnSingle: string | null;
  singleOnCluster: string | null;
  clusterRunStatement: string | null;
  fatal?: string;
  [database: string]: unknown;
}
interface DdlReport {
  parsed: string[];
  tables: Array<{ name: string; engine: string; engine_full: string }>;
  columns: Array<{ table: string; name: string; type: string }>;
}

describe('the real engine (chdb configured as a cluster member)', { timeout: 180_000 }, () => {
  let report: EngineReport;

  test('runs the cluster checks in a child process', async () => {
    const workDir = await mkdtemp(path.join(process.env.PU_TEST_DATA_DIR ?? tmpdir(), 'pu-ch-cluster-'));
    try {
      const stdout = await new Promise<string>((resolve, reject) => {
        execFile(
          process.execPath,
          ['--import', 'tsx', path.join(here, 'cluster-engine.child.ts'), workDir],
          { timeout: 120_000, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 },
          (err, out, errOut) => (err ? reject(new Error(`cluster child failed: ${err.message}\n${errOut}`)) : resolve(out)),
        );
      });
      report = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as EngineReport;
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
    assert.equal(report.fatal, undefined);
    assert.deepEqual(report.macros.map((m) => m.macro), ['cluster', 'replica', 'shard']);
  });

  test('the runner refuses an unknown cluster before creating anything', () => {
    assert.match(report.unknownCluster ?? '', /^ClickHouseMigrationError: ClickHouse cluster 'nope' \(PU_CLICKHOUSE_CLUSTER\) is not defined on this server/);
    assert.equal(Number(report.unknownClusterCreatedDatabase), 0);
  });

  test('the runner refuses to mix modes on one database, naming the fix', () => {
    assert.match(report.clusterOnSingle ?? '', /was migrated on a single server .* but PU_CLICKHOUSE_CLUSTER is 'pu'/);
    assert.match(report.singleOnCluster ?? '', /was migrated on a cluster \(pepeunit_schema_migrations is ReplicatedReplacingMergeTree\) but PU_CLICKHOUSE_CLUSTER is not set/);
  });

  test('in cluster mode the runner sends the files ON CLUSTER (which chdb itself cannot execute)', () => {
    assert.match(report.clusterRunStatement ?? '', /migration '001_unit_logs\.sql' \(statement 1 of 1\) failed .*Replicated DDL queries are disabled/);
  });

  test('ClickHouse parses every rendered statement with its ON CLUSTER clause', () => {
    for (const database of ['db_ddl_1', 'db_ddl_2']) {
      const ddl = report[database] as DdlReport;
      const cluster = database === 'db_ddl_1' ? 'pu' : 'pu2';
      // 1 shard: 4 tables + 2 ALTERs of 005 + 4 tables of 006/007; 2 shards: 8 local + 8 Distributed tables + the ALTERs of the local one
      assert.equal(ddl.parsed.length, database === 'db_ddl_1' ? 10 : 18);
      for (const q of ddl.parsed) assert.match(q, new RegExp(`^(CREATE TABLE IF NOT EXISTS|ALTER TABLE) \\w+ ON CLUSTER ${cluster}[\\n ]`));
      assert.equal(ddl.parsed.filter((q) => q.startsWith('ALTER TABLE window_entry') && q.includes('idx_window_entry_expiration')).length, 2);
    }
  });

  const referenceColumns = (table: string) => REFERENCE_CLICKHOUSE_TABLES.find((t) => t.name === table)?.columns.map(([name, type]) => ({ table, name, type })) ?? [];

  test('one shard: the reference tables under their names, replicated, with the reference columns', () => {
    const ddl = report.db_ddl_1 as DdlReport;
    assert.deepEqual(ddl.tables.map((t) => [t.name, t.engine]), [
      ['aggregation_entry', 'ReplicatedMergeTree'],
      ['n_last_entry', 'ReplicatedMergeTree'],
      ['node_state', 'ReplicatedMergeTree'],
      ['unit_load_daily', 'ReplicatedAggregatingMergeTree'],
      ['unit_load_hourly', 'ReplicatedAggregatingMergeTree'],
      ['unit_load_minute', 'ReplicatedAggregatingMergeTree'],
      ['unit_logs', 'ReplicatedMergeTree'],
      ['window_entry', 'ReplicatedMergeTree'],
    ]);
    const unitLogs = ddl.tables.find((t) => t.name === 'unit_logs');
    assert.match(unitLogs?.engine_full ?? '', /^ReplicatedMergeTree\('\/clickhouse\/tables\/\{shard\}\/db_ddl_1\/unit_logs', '\{replica\}'\) ORDER BY \(unit_uuid, create_datetime\) TTL expiration_datetime SETTINGS merge_with_ttl_timeout = 600/);
    for (const table of ['unit_logs', 'n_last_entry', 'window_entry', 'aggregation_entry']) {
      assert.deepEqual(ddl.columns.filter((c) => c.table === table), referenceColumns(table), `${table} columns`);
    }
  });

  test('two shards: Distributed tables under the reference names over replicated _local tables, same columns', () => {
    const ddl = report.db_ddl_2 as DdlReport;
    for (const table of ['unit_logs', 'n_last_entry', 'window_entry', 'aggregation_entry']) {
      const distributed = ddl.tables.find((t) => t.name === table);
      const key = table === 'unit_logs' ? 'unit_uuid' : 'unit_node_uuid';
      assert.equal(distributed?.engine_full, `Distributed('pu2', 'db_ddl_2', '${table}_local', cityHash64(${key}))`);
      assert.equal(ddl.tables.find((t) => t.name === `${table}_local`)?.engine, 'ReplicatedMergeTree');
      assert.deepEqual(ddl.columns.filter((c) => c.table === table), referenceColumns(table), `${table} columns`);
      assert.deepEqual(
        ddl.columns.filter((c) => c.table === `${table}_local`).map((c) => ({ ...c, table })),
        referenceColumns(table),
        `${table}_local columns`,
      );
    }
  });
});
