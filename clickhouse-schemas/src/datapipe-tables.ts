/**
 * The one home of the DataPipe storage contract (issue 11): which ClickHouse table holds the rows
 * of each storing policy (migrations 002-004), and the one way to delete a node's rows, used by
 * the backend (node deleted, data deleted over REST) and by anyone else who needs it.
 */
import type { ClickHouseClient } from '@clickhouse/client';

export type DataPipeStoragePolicy = 'NRecords' | 'TimeWindow' | 'Aggregation';

/** Policy -> table. LastValue is stored in Postgres (`units_nodes.state`), never here. */
export const DATAPIPE_POLICY_TABLES: Readonly<Record<DataPipeStoragePolicy, 'n_last_entry' | 'window_entry' | 'aggregation_entry'>> = {
  NRecords: 'n_last_entry',
  TimeWindow: 'window_entry',
  Aggregation: 'aggregation_entry',
};

export type DataPipeTable = (typeof DATAPIPE_POLICY_TABLES)[DataPipeStoragePolicy];

/** Every DataPipe table, in migration order. */
export const DATAPIPE_TABLES: readonly DataPipeTable[] = ['n_last_entry', 'window_entry', 'aggregation_entry'];

interface InfoLogger {
  info(obj: object, msg: string): void;
}

/** A ClickHouse error that means the statement is not supported by this server version. */
function isUnsupported(err: unknown): boolean {
  const e = err as { code?: string; type?: string; message?: string };
  const text = `${e.type ?? ''} ${e.message ?? ''}`;
  return /SYNTAX_ERROR|NOT_IMPLEMENTED|SUPPORT_IS_DISABLED|UNKNOWN_SETTING|Lightweight delete|lightweight/i.test(text) || e.code === '62' || e.code === '48';
}

const lightweightDeleteSupport = new WeakMap<ClickHouseClient, boolean>();

/**
 * Deletes every row of the given nodes in the three tables and returns once the rows are gone
 * for readers. Lightweight `DELETE FROM` (ClickHouse >= 23.3, synchronous by default), falling
 * back to `ALTER TABLE ... DELETE` with `mutations_sync = 2` (all replicas) on servers without it.
 */
export async function deleteDataPipeNodeRows(clickhouse: ClickHouseClient, nodeUuids: readonly string[], logger?: InfoLogger): Promise<void> {
  if (nodeUuids.length === 0) return;
  const where = 'unit_node_uuid IN {nodes:Array(UUID)}';
  const query_params = { nodes: [...nodeUuids] };
  for (const table of DATAPIPE_TABLES) {
    if (lightweightDeleteSupport.get(clickhouse) !== false) {
      try {
        await clickhouse.command({ query: `DELETE FROM ${table} WHERE ${where}`, query_params });
        lightweightDeleteSupport.set(clickhouse, true);
        continue;
      } catch (err) {
        if (!isUnsupported(err)) throw err;
        logger?.info({ err: (err as Error).message }, 'lightweight DELETE not supported; using ALTER TABLE ... DELETE');
        lightweightDeleteSupport.set(clickhouse, false);
      }
    }
    await clickhouse.command({ query: `ALTER TABLE ${table} DELETE WHERE ${where}`, query_params, clickhouse_settings: { mutations_sync: '2' } });
  }
}
