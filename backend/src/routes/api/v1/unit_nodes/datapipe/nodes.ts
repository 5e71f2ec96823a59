/**
 * The unit node behind a DataPipe request: loading it, who may do what with it, and its
 * stored config.
 *
 * Access rules (the reference's gaps of §8.2.4 fixed):
 * - config get/set, CSV import, data delete: the node's creator (a User agent) only;
 * - data reads and the CSV export: the creator, the node's own Unit, or any other User/Unit the
 *   node's visibility admits (Public; Internal; Private with a permission on the node), i.e.
 *   exactly who may subscribe to the node's topic. The reference let any Unit read any node.
 */
import type { Pool } from 'pg';
import {
  ProcessingPolicyType,
  parsePythonJson,
  validateDataPipeConfig,
  type DataPipeConfig,
} from '@pepeunit/common/datapipe';
import { DataPipeError, NoAccessError, ValidationError } from '../../../../../errors.js';
import type { Agent } from '../../../../../plugins/auth.js';
import { checkVisibility, requireAgent } from '../../../../../services/access.js';
import { DataPipeDetailedError } from './errors.js';

export interface DataPipeNode {
  uuid: string;
  type: string;
  visibility_level: string;
  topic_name: string;
  is_data_pipe_active: boolean;
  data_pipe_yml: string | null;
  creator_uuid: string | null;
  unit_uuid: string | null;
  state: string | null;
  /** `last_update_datetime` as epoch milliseconds (the column holds naive UTC). */
  last_update_ms: number;
}

const NODE_SQL = `
  SELECT uuid::text AS uuid, type, visibility_level, topic_name, is_data_pipe_active, data_pipe_yml,
         creator_uuid::text AS creator_uuid, unit_uuid::text AS unit_uuid, state,
         (extract(epoch FROM last_update_datetime) * 1000)::float8 AS last_update_ms
    FROM units_nodes WHERE uuid = $1`;

export async function loadNode(pg: Pool, uuid: string): Promise<DataPipeNode> {
  const { rows } = await pg.query<DataPipeNode>(NODE_SQL, [uuid]);
  const node = rows[0];
  if (!node) throw new ValidationError('The object does not exist');
  return { ...node, last_update_ms: Math.round(Number(node.last_update_ms)) };
}

/** Only the creator (a User) may change or read the config, import or delete data. */
export function requireNodeCreator(agent: Agent, node: DataPipeNode): void {
  requireAgent(agent, ['User']);
  if (node.creator_uuid !== agent.uuid) throw new NoAccessError('Agent is not the creator of this entity');
}

/** Reads: the creator, the node's own unit, or an agent the node's visibility admits. */
export async function requireNodeReader(pg: Pool, agent: Agent, node: DataPipeNode): Promise<void> {
  requireAgent(agent, ['User', 'Unit']);
  if (agent.type === 'User' && node.creator_uuid === agent.uuid) return;
  if (agent.type === 'Unit' && node.unit_uuid === agent.uuid) return;
  await checkVisibility(pg, agent, 'UnitNode', node);
}

/** DataPipe exists only for topics ending with `/pepeunit` (§0). */
export function requirePipeTopic(node: DataPipeNode): void {
  if (!node.topic_name.endsWith('/pepeunit')) {
    throw new DataPipeError('DataPipe is only available for unit nodes whose topic ends with /pepeunit');
  }
}

export function requireActive(node: DataPipeNode): void {
  if (!node.is_data_pipe_active) throw new DataPipeError('Data pipe is not active');
}

/**
 * The node's stored config, re-validated (as the reference does before CSV import/export):
 * the pipe must be active and filled, and the JSON valid. `max_size`'s upper bound is not
 * re-checked: it depends on PU_MQTT_MAX_PAYLOAD_SIZE, which the operator may have lowered since.
 */
export function storedConfig(node: DataPipeNode): DataPipeConfig {
  requireActive(node);
  if (node.data_pipe_yml === null) throw new DataPipeError('Data pipe is not filled');
  let doc: unknown;
  try {
    doc = parsePythonJson(node.data_pipe_yml);
  } catch {
    throw new DataPipeError('The stored DataPipe config is not valid JSON; set the config again');
  }
  const result = validateDataPipeConfig(doc, { maxPayloadSizeKb: Number.POSITIVE_INFINITY });
  if (!result.config) throw new DataPipeDetailedError(`${result.errors.length} validation errors for DataPipeConfig`, result.errors);
  return result.config;
}

/** The config if the node has a readable one, else null (reads do not require an active pipe). */
export function currentConfigOrNull(node: DataPipeNode): DataPipeConfig | null {
  if (node.data_pipe_yml === null) return null;
  try {
    const result = validateDataPipeConfig(parsePythonJson(node.data_pipe_yml), { maxPayloadSizeKb: Number.POSITIVE_INFINITY });
    return result.config;
  } catch {
    return null;
  }
}

/** Policies whose data is in ClickHouse (CSV export/import work only for these). */
export function requireClickHousePolicy(config: DataPipeConfig): Exclude<DataPipeConfig['processing_policy']['policy_type'], 'LastValue'> {
  const policy = config.processing_policy.policy_type;
  if (policy === ProcessingPolicyType.LastValue) throw new DataPipeError('LastValue type is not supported on this function');
  return policy;
}
