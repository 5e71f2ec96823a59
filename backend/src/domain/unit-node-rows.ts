/**
 * `units_nodes` rows: mapping to UnitNodeRead, creation from a schema (§7.2 step 7),
 * reconciliation with a new target schema (§7.3 "sync to version"), and ClickHouse clean-up
 * of the DataPipe rows of deleted nodes. Shared by units/ and unit_nodes/.
 */
import { randomUUID } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import type { FastifyInstance } from 'fastify';
import { isPipeableTopicName, type BackendConfig } from '@pepeunit/common';
import { defaultLastValueConfig, serialiseDataPipeConfig } from '@pepeunit/common/datapipe/index';
import { grantPermission } from './permissions.js';
import { isoNaive } from '../schemas/common.js';
import type { UnitNodeRead } from '../schemas/unit-nodes.js';
import { VISIBILITY_PRIORITY, type VisibilityLevel } from './enums.js';
import type { SchemaExample } from './unit-schema.js';
import { loadUnitNodeStreamRow, type UnitNodeStreamRow } from '../services/datapipe-events.js';

type Db = Pool | PoolClient;

export interface UnitNodeRow {
  uuid: string;
  type: 'Input' | 'Output';
  visibility_level: VisibilityLevel;
  is_rewritable_input: boolean;
  max_connections: number;
  topic_name: string;
  create_datetime: Date;
  state: string | null;
  last_update_datetime: Date;
  is_data_pipe_active: boolean;
  data_pipe_yml: string | null;
  data_pipe_status: string | null;
  data_pipe_error: string | null;
  creator_uuid: string | null;
  unit_uuid: string | null;
}

export interface UnitNodeEdgeRow {
  uuid: string;
  node_output_uuid: string;
  node_input_uuid: string;
  creator_uuid: string | null;
}

export function toUnitNodeRead(row: UnitNodeRow): UnitNodeRead {
  return {
    uuid: row.uuid,
    type: row.type,
    visibility_level: row.visibility_level,
    is_rewritable_input: row.is_rewritable_input,
    max_connections: row.max_connections,
    topic_name: row.topic_name,
    last_update_datetime: isoNaive(row.last_update_datetime)!,
    is_data_pipe_active: row.is_data_pipe_active,
    data_pipe_yml: row.data_pipe_yml,
    data_pipe_status: row.data_pipe_status,
    data_pipe_error: row.data_pipe_error,
    create_datetime: isoNaive(row.create_datetime)!,
    state: row.state,
    unit_uuid: row.unit_uuid,
    creator_uuid: row.creator_uuid,
  };
}

/** The unit columns node creation needs. */
export interface NodeOwnerUnit {
  uuid: string;
  visibility_level: string;
  creator_uuid: string | null;
}

/** Default config of new `/pepeunit` nodes when PU_FF_DATAPIPE_DEFAULT_LAST_VALUE_ENABLE (§7.2). */
export function defaultDataPipeFor(config: BackendConfig, topicName: string): string | null {
  if (!config.featureFlags.datapipeDefaultLastValue || !isPipeableTopicName(topicName)) return null;
  return serialiseDataPipeConfig(defaultLastValueConfig());
}

/**
 * Inserts one node per name of `input_topic` (Input) and `output_topic` (Output) not already in
 * `existing` (type + topic name), with the unit's visibility and creator, max_connections 10,
 * and the permissions Unit→node and creator User→node. Returns the new node uuids.
 */
export async function createUnitNodes(
  client: PoolClient,
  unit: NodeOwnerUnit,
  schema: SchemaExample,
  config: BackendConfig,
  existing: ReadonlySet<string> = new Set(),
): Promise<string[]> {
  const created: string[] = [];
  const wanted: [type: 'Input' | 'Output', name: string][] = [
    ...schema.input_topic.map((name) => ['Input', name] as ['Input', string]),
    ...schema.output_topic.map((name) => ['Output', name] as ['Output', string]),
  ];
  for (const [type, name] of wanted) {
    if (existing.has(`${type}\0${name}`)) continue;
    const uuid = randomUUID();
    const pipe = defaultDataPipeFor(config, name);
    await client.query(
      `INSERT INTO units_nodes (uuid, type, visibility_level, is_rewritable_input, max_connections, topic_name, create_datetime,
                                last_update_datetime, is_data_pipe_active, data_pipe_yml, data_pipe_status, creator_uuid, unit_uuid)
       VALUES ($1, $2, $3, false, 10, $4, (now() AT TIME ZONE 'utc'), (now() AT TIME ZONE 'utc'), $5, $6, 'Inactive', $7, $8)`,
      [uuid, type, unit.visibility_level, name, pipe !== null, pipe, unit.creator_uuid, unit.uuid],
    );
    await grantPermission(client, { type: 'Unit', uuid: unit.uuid }, { type: 'UnitNode', uuid });
    if (unit.creator_uuid) await grantPermission(client, { type: 'User', uuid: unit.creator_uuid }, { type: 'UnitNode', uuid });
    created.push(uuid);
  }
  return created;
}

/**
 * Makes the unit's nodes match `schema`: creates nodes for new names, deletes nodes whose
 * names disappeared (edges and permissions cascade). Returns created and deleted uuids, and the
 * rows (stream form, read before deletion) of deleted nodes whose DataPipe was active.
 */
export async function reconcileUnitNodes(
  client: PoolClient,
  unit: NodeOwnerUnit,
  schema: SchemaExample,
  config: BackendConfig,
): Promise<{ created: string[]; deleted: string[]; deletedPipes: UnitNodeStreamRow[] }> {
  const { rows } = await client.query<{ uuid: string; type: 'Input' | 'Output'; topic_name: string; is_data_pipe_active: boolean }>(
    'SELECT uuid, type, topic_name, is_data_pipe_active FROM units_nodes WHERE unit_uuid = $1 ORDER BY create_datetime, uuid',
    [unit.uuid],
  );
  const keep = new Set<string>([
    ...schema.input_topic.map((name) => `Input\0${name}`),
    ...schema.output_topic.map((name) => `Output\0${name}`),
  ]);
  const existing = new Set<string>();
  const deleted: string[] = [];
  const deletedPipes: UnitNodeStreamRow[] = [];
  for (const row of rows) {
    const key = `${row.type}\0${row.topic_name}`;
    if (keep.has(key) && !existing.has(key)) {
      existing.add(key);
      continue;
    }
    deleted.push(row.uuid); // gone from the schema (or a duplicate of the same name)
    if (row.is_data_pipe_active) {
      const streamRow = await activePipeRow(client, row.uuid);
      if (streamRow) deletedPipes.push(streamRow);
    }
  }
  if (deleted.length > 0) await client.query('DELETE FROM units_nodes WHERE uuid = ANY($1::uuid[])', [deleted]);
  const created = await createUnitNodes(client, unit, schema, config, existing);
  return { created, deleted, deletedPipes };
}

/** The stream form of a node (for DataPipe "Delete" notifications sent after the row is gone). */
export async function activePipeRow(db: Db, nodeUuid: string): Promise<UnitNodeStreamRow | null> {
  // loadUnitNodeStreamRow only runs `db.query`, which a pooled client has too.
  return loadUnitNodeStreamRow(db as Pool, nodeUuid);
}

/**
 * Tells the DataPipe consumers (ingest NOTIFY, Redis stream, rules reconciler) about nodes
 * created with an active pipe (default LastValue) and deleted nodes whose pipe was active, so
 * they do not wait for a periodic reload. Best effort: `notifyChanged` never rejects.
 */
export async function announceDataPipeNodes(app: FastifyInstance, created: readonly string[], deletedPipes: readonly UnitNodeStreamRow[]): Promise<void> {
  if (!app.hasDecorator('datapipe')) return;
  if (created.length > 0) {
    const active = await app.pg.query<{ uuid: string }>('SELECT uuid FROM units_nodes WHERE uuid = ANY($1::uuid[]) AND is_data_pipe_active', [[...created]]);
    for (const { uuid } of active.rows) await app.datapipe.notifyChanged(uuid, 'Update');
  }
  for (const row of deletedPipes) await app.datapipe.notifyChanged(row.uuid, 'Delete', { node: row });
}

/** A child may never be less restrictive than its parent: raise the unit's nodes to its level. */
export async function raiseNodesVisibility(db: Db, unitUuid: string, unitVisibility: VisibilityLevel): Promise<number> {
  const lower = (Object.keys(VISIBILITY_PRIORITY) as VisibilityLevel[]).filter((level) => VISIBILITY_PRIORITY[level] < VISIBILITY_PRIORITY[unitVisibility]);
  if (lower.length === 0) return 0;
  const result = await db.query(
    `UPDATE units_nodes SET visibility_level = $2, last_update_datetime = (now() AT TIME ZONE 'utc')
      WHERE unit_uuid = $1 AND visibility_level = ANY($3::varchar[])`,
    [unitUuid, unitVisibility, lower],
  );
  return result.rowCount ?? 0;
}

/** Nodes of a unit and the edges into its Input nodes, for schema.json. */
export async function nodesAndEdgesForSchema(
  db: Db,
  unitUuid: string,
): Promise<{ nodes: { uuid: string; type: string; topic_name: string }[]; edges: { node_input_uuid: string; node_output_uuid: string; output_topic_name: string }[] }> {
  const nodes = await db.query<{ uuid: string; type: string; topic_name: string }>(
    'SELECT uuid, type, topic_name FROM units_nodes WHERE unit_uuid = $1 ORDER BY create_datetime, uuid',
    [unitUuid],
  );
  const edges = await db.query<{ node_input_uuid: string; node_output_uuid: string; output_topic_name: string }>(
    `SELECT e.node_input_uuid, e.node_output_uuid, o.topic_name AS output_topic_name
       FROM units_nodes_edges e
       JOIN units_nodes i ON i.uuid = e.node_input_uuid
       JOIN units_nodes o ON o.uuid = e.node_output_uuid
      WHERE i.unit_uuid = $1
      ORDER BY o.create_datetime, e.uuid`,
    [unitUuid],
  );
  return { nodes: nodes.rows, edges: edges.rows };
}
