/**
 * @pepeunit/clickhouse-schemas: the ClickHouse tables (numbered migrations and their runner),
 * the client factory every service uses, and the embedded ClickHouse (chdb over HTTP).
 */
export { createClickHouse, parseClickHouseUrl, DEFAULT_CLICKHOUSE_SETTINGS } from './client.js';
export type { ClickHouseConnectionInfo, CreateClickHouseOptions } from './client.js';
export {
  migrateClickHouse,
  readClickHouseMigrations,
  clickHouseMigrationsDir,
  ClickHouseMigrationError,
  CLICKHOUSE_MIGRATIONS_TABLE,
  readClusterLayout,
} from './migrate.js';
export type { ClickHouseMigrationFile, MigrateClickHouseOptions, MigrateClickHouseResult } from './migrate.js';
export {
  renderMigrationForCluster,
  renderStatementForCluster,
  newClusterRenderState,
  clusterTrackingTableDdl,
  ClusterRenderError,
  REPLICATED_TABLE_PATH,
  LOCAL_TABLE_SUFFIX,
} from './cluster.js';
export type { ClickHouseClusterLayout, ClusterRenderState } from './cluster.js';
export { startEmbeddedClickHouse } from './embedded-server.js';
export type { EmbeddedClickHouse, EmbeddedClickHouseOptions } from './embedded-server.js';
export { REFERENCE_CLICKHOUSE_TABLES } from './reference-schema.js';
export type { ReferenceTable } from './reference-schema.js';
export { splitSqlStatements } from './sql-lexer.js';
export type { ClickHouseLogger } from './logger.js';
export { DATAPIPE_POLICY_TABLES, DATAPIPE_TABLES, deleteDataPipeNodeRows } from './datapipe-tables.js';
export type { DataPipeStoragePolicy, DataPipeTable } from './datapipe-tables.js';
