/**
 * The storage-weighted aggregation metric (docs/BILLING.md). Topics whose DataPipe stores rows in
 * ClickHouse (NRecords -> n_last_entry, TimeWindow -> window_entry, Aggregation ->
 * aggregation_entry) cost storage in proportion to the rows they keep, so they are billed in
 * "topic-equivalents": one topic-equivalent is ROWS_PER_TOPIC_DAY rows (one row a minute) stored
 * per day of the period. A node that stores a row a minute for the whole period counts 1, one
 * that stores a row every second counts 60, one that stores nothing counts 0.
 * Rows are counted by `create_datetime` in [from, to) for the nodes of the user's units.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import type { Pool } from 'pg';

export const ROWS_PER_TOPIC_DAY = 1440;
const STORAGE_TABLES = ['n_last_entry', 'window_entry', 'aggregation_entry'] as const;
/** Node uuids per ClickHouse query (keeps the query text bounded). */
const CHUNK = 5000;

export interface NodeRows {
  unit_node_uuid: string;
  unit_uuid: string;
  rows: number;
}

const chTime = (d: Date) => d.toISOString().replace('T', ' ').replace('Z', '');

export async function storedRowsByNode(pg: Pool, clickhouse: ClickHouseClient, userUuid: string, from: Date, to: Date): Promise<NodeRows[]> {
  const nodes = await pg.query<{ uuid: string; unit_uuid: string }>(
    `SELECT n.uuid, n.unit_uuid FROM units_nodes n JOIN units u ON u.uuid = n.unit_uuid WHERE u.creator_uuid = $1 ORDER BY n.uuid`,
    [userUuid],
  );
  const unitOf = new Map(nodes.rows.map((n) => [n.uuid, n.unit_uuid]));
  const counts = new Map<string, number>();
  const ids = nodes.rows.map((n) => n.uuid);
  for (let i = 0; i < ids.length; i += CHUNK) {
    const chunk = ids.slice(i, i + CHUNK);
    const union = STORAGE_TABLES.map(
      (table) => `SELECT toString(unit_node_uuid) AS node, count() AS rows FROM ${table}
                   WHERE unit_node_uuid IN {nodes:Array(UUID)} AND create_datetime >= {from:DateTime64(3)} AND create_datetime < {to:DateTime64(3)}
                   GROUP BY unit_node_uuid`,
    ).join(' UNION ALL ');
    const result = await clickhouse.query({
      query: `SELECT node, sum(rows) AS rows FROM (${union}) GROUP BY node`,
      query_params: { nodes: chunk, from: chTime(from), to: chTime(to) },
      format: 'JSONEachRow',
    });
    for (const row of await result.json<{ node: string; rows: string | number }>()) counts.set(row.node, Number(row.rows));
  }
  return [...counts.entries()]
    .filter(([, rows]) => rows > 0)
    .map(([node, rows]) => ({ unit_node_uuid: node, unit_uuid: unitOf.get(node) ?? '', rows }))
    .sort((a, b) => (a.unit_node_uuid < b.unit_node_uuid ? -1 : 1));
}
