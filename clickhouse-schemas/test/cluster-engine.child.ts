/**
 * Runs the cluster variant of the migrations against the real engine (chdb) configured like a
 * cluster member: macros, `remote_servers` (one-shard `pu`, two-shard `pu2`) and ClickHouse's
 * in-memory test Keeper. Run by cluster.test.ts in its own process: chdb binds one data
 * directory per process, and a replicated table left open keeps the engine from closing, so the
 * parent can always kill this process. Prints one JSON report line on stdout.
 *
 *   node --import tsx clickhouse-schemas/test/cluster-engine.child.ts <work dir>
 *
 * What chdb cannot do (checked, see docs/INSTALL.md): it has no DDL worker, so `ON CLUSTER` is
 * refused ("Replicated DDL queries are disabled"), and its replicated tables stay read-only. So
 * the rendered DDL runs here with the `ON CLUSTER` clause removed; the clause itself is checked by
 * ClickHouse's own parser (formatQuery).
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import { startEmbeddedClickHouse } from '../src/embedded-server.js';
import { createClickHouse } from '../src/client.js';
import { clusterTrackingTableDdl, newClusterRenderState, renderMigrationForCluster } from '../src/cluster.js';
import { CLICKHOUSE_MIGRATIONS_TABLE, migrateClickHouse, readClickHouseMigrations } from '../src/migrate.js';

const workDir = process.argv[2];
if (!workDir) throw new Error('usage: cluster-engine.child.ts <work dir>');

const CONFIG = `<clickhouse>
  <macros><cluster>pu</cluster><shard>01</shard><replica>ch1</replica></macros>
  <zookeeper><implementation>testkeeper</implementation></zookeeper>
  <remote_servers>
    <pu><shard><internal_replication>true</internal_replication><replica><host>localhost</host><port>9000</port></replica></shard></pu>
    <pu2>
      <shard><internal_replication>true</internal_replication><replica><host>localhost</host><port>9000</port></replica></shard>
      <shard><internal_replication>true</internal_replication><replica><host>localhost</host><port>9000</port></replica></shard>
    </pu2>
  </remote_servers>
</clickhouse>
`;

async function errorOf(run: () => Promise<unknown>): Promise<string | null> {
  try {
    await run();
    return null;
  } catch (err) {
    return `${(err as Error).name}: ${(err as Error).message}`;
  }
}

async function rows<T>(client: ClickHouseClient, query: string, params: Record<string, unknown> = {}): Promise<T[]> {
  return (await client.query({ query, format: 'JSONEachRow', query_params: params })).json<T>();
}

const configFile = path.join(workDir, 'cluster.xml');
await writeFile(configFile, CONFIG);
const server = await startEmbeddedClickHouse({ dataPath: path.join(workDir, 'data'), configFile, auth: { username: 'default', password: randomBytes(18).toString('base64url') } });
const admin = createClickHouse(server.authenticatedUrl, 'default');
const report: Record<string, unknown> = {};
const files = await readClickHouseMigrations();
try {
  report.macros = await rows(admin, 'SELECT macro, substitution FROM system.macros ORDER BY macro');

  // 1. The runner refuses a cluster this server does not know, before creating anything.
  report.unknownCluster = await errorOf(() => migrateClickHouse(createClickHouse(server.authenticatedUrl, 'db_unknown'), { database: 'db_unknown', cluster: 'nope' }));
  report.unknownClusterCreatedDatabase = (await rows<{ n: string }>(admin, "SELECT count() AS n FROM system.databases WHERE name = 'db_unknown'"))[0]?.n;

  // 2. A database migrated on one server is not silently "continued" on a cluster.
  await migrateClickHouse(createClickHouse(server.authenticatedUrl, 'db_single'), { database: 'db_single', cluster: '' });
  report.clusterOnSingle = await errorOf(() => migrateClickHouse(createClickHouse(server.authenticatedUrl, 'db_single'), { database: 'db_single', cluster: 'pu' }));

  // 3. ... nor the reverse: a replicated tracking table means cluster mode.
  await admin.command({ query: 'CREATE DATABASE db_cluster' });
  await admin.command({
    query: clusterTrackingTableDdl(CLICKHOUSE_MIGRATIONS_TABLE, { cluster: 'pu', shards: 1 }).replace(" ON CLUSTER 'pu'", ''),
    http_headers: { 'X-ClickHouse-Database': 'db_cluster' },
  });
  report.singleOnCluster = await errorOf(() => migrateClickHouse(createClickHouse(server.authenticatedUrl, 'db_cluster'), { database: 'db_cluster', cluster: '' }));
  // In cluster mode the runner goes on and sends the first file ON CLUSTER, which chdb cannot run.
  report.clusterRunStatement = await errorOf(() => migrateClickHouse(createClickHouse(server.authenticatedUrl, 'db_cluster'), { database: 'db_cluster', cluster: 'pu' }));

  // 4. The rendered DDL: parsed by ClickHouse with ON CLUSTER, executed without it.
  for (const [database, layout] of [
    ['db_ddl_1', { cluster: 'pu', shards: 1 }],
    ['db_ddl_2', { cluster: 'pu2', shards: 2 }],
  ] as const) {
    await admin.command({ query: `CREATE DATABASE ${database}` });
    const state = newClusterRenderState();
    const parsed: string[] = [];
    for (const file of files) {
      for (const statement of renderMigrationForCluster(file.sql, layout, database, state, file.name)) {
        const [formatted] = await rows<{ q: string }>(admin, 'SELECT formatQuery({sql:String}) AS q', { sql: statement });
        parsed.push(formatted?.q ?? '');
        // Replicated tables without Keeper are read-only here: changes to them are parsed, not run.
        if (/^\s*(--[^\n]*\n\s*)*CREATE\b/i.test(statement)) {
          await admin.command({ query: statement.replace(` ON CLUSTER '${layout.cluster}'`, ''), http_headers: { 'X-ClickHouse-Database': database } });
        }
      }
    }
    report[database] = {
      parsed,
      tables: await rows(admin, 'SELECT name, engine, engine_full FROM system.tables WHERE database = {db:String} ORDER BY name', { db: database }),
      columns: await rows(admin, 'SELECT table, name, type FROM system.columns WHERE database = {db:String} ORDER BY table, position', { db: database }),
    };
  }
} catch (err) {
  report.fatal = (err as Error).stack ?? String(err);
} finally {
  // Replicated tables must be gone before the engine closes (they keep it open otherwise).
  for (const database of ['db_cluster', 'db_ddl_1', 'db_ddl_2', 'db_single', 'db_unknown']) {
    await admin.command({ query: `DROP DATABASE IF EXISTS ${database} SYNC` }).catch(() => {});
  }
  await admin.close();
  await server.close();
}
process.stdout.write(JSON.stringify(report) + '\n');
