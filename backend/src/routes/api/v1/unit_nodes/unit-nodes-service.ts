/**
 * Unit nodes over REST (pepeunit-backend.md §5.6, §7.6): read, list, settings, setting the
 * state of Input nodes (published to the node topic), and Output→Input edges with their
 * connection limits, automatic permissions (§4.5) and SchemaUpdate notifications.
 */
import { randomUUID } from 'node:crypto';
import type { AccessCut } from '../../../../plugins/acl.js';
import type { FastifyInstance } from 'fastify';
import { isPipeableTopicName, unitNodeTopic } from '@pepeunit/common';
import { DataPipeError, NoAccessError, UnitNodeError, ValidationError } from '../../../../errors.js';
import type { Agent } from '../../../../plugins/auth.js';
import { checkVisibility, requireCreator, visibilityCondition, visibilityFilter } from '../../../../services/access.js';
import { paging, searchConditions } from '../../../../services/validators.js';
import { VISIBILITY_PRIORITY, type VisibilityLevel } from '../../../../domain/enums.js';
import type { UnitNodeEdgeRead, UnitNodeRead, UnitNodesQuery, UnitNodeUpdate } from '../../../../schemas/unit-nodes.js';
import { grantPermission } from '../../../../domain/permissions.js';
import { inTransaction } from '../../../../domain/unit-rows.js';
import { notifyUnit, publishMqtt } from '../../../../domain/unit-firmware.js';
import { toUnitNodeRead, type UnitNodeEdgeRow, type UnitNodeRow } from '../../../../domain/unit-node-rows.js';

type UserAgent = Extract<Agent, { type: 'User' }>;

export function toEdgeRead(row: UnitNodeEdgeRow): UnitNodeEdgeRead {
  return { uuid: row.uuid, node_output_uuid: row.node_output_uuid, node_input_uuid: row.node_input_uuid };
}

export class UnitNodesService {
  constructor(private readonly app: FastifyInstance) {}

  private async load(uuid: string): Promise<UnitNodeRow> {
    const { rows } = await this.app.pg.query<UnitNodeRow>('SELECT * FROM units_nodes WHERE uuid = $1', [uuid]);
    if (!rows[0]) throw new ValidationError(`UnitNode ${uuid} does not exist`);
    return rows[0];
  }

  async get(agent: Agent, uuid: string): Promise<UnitNodeRead> {
    const node = await this.load(uuid);
    await checkVisibility(this.app.pg, agent, 'UnitNode', node);
    return toUnitNodeRead(node);
  }

  async list(agent: Agent, query: UnitNodesQuery): Promise<{ count: number; unit_nodes: UnitNodeRead[] }> {
    const { app } = this;
    const values: unknown[] = [];
    const where: string[] = [visibilityCondition('n', visibilityFilter(agent, 'UnitNode', query.visibility_level), values)];
    if (query.uuids?.length) {
      values.push(query.uuids);
      where.push(`n.uuid = ANY($${values.length}::uuid[])`);
    }
    if (query.unit_uuid) {
      values.push(query.unit_uuid);
      where.push(`n.unit_uuid = $${values.length}`);
    }
    if (query.type?.length) {
      values.push(query.type);
      where.push(`n.type = ANY($${values.length}::varchar[])`);
    }
    if (query.output_uuid) {
      values.push(query.output_uuid);
      where.push(`n.uuid IN (SELECT e.node_input_uuid FROM units_nodes_edges e WHERE e.node_output_uuid = $${values.length})`);
    }
    where.push(...searchConditions(query.search_string, ['n.topic_name'], values));
    const clause = `WHERE ${where.join(' AND ')}`;
    const count = await app.pg.query<{ n: string }>(`SELECT count(*) AS n FROM units_nodes n ${clause}`, values);
    const order = query.order_by_create_date === 'asc' ? 'ASC' : 'DESC';
    const page = paging(query, app.config, values);
    const { rows } = await app.pg.query<UnitNodeRow>(`SELECT n.* FROM units_nodes n ${clause} ORDER BY n.create_datetime ${order}, n.uuid ${page}`, values);
    return { count: Number(count.rows[0]!.n), unit_nodes: rows.map(toUnitNodeRead) };
  }

  /** Reference rules (§7.6) in the reference order; the unit's visibility bounds the node's. */
  async update(agent: UserAgent, uuid: string, body: UnitNodeUpdate): Promise<UnitNodeRead> {
    const { app } = this;
    const node = await this.load(uuid);
    requireCreator(agent, node);
    if (body.is_data_pipe_active === true && !isPipeableTopicName(node.topic_name)) {
      throw new DataPipeError('DataPipe cannot be activated if the topic does not have the suffix /pepeunit');
    }
    if (body.is_rewritable_input !== undefined && body.is_rewritable_input !== null) assertType(node, 'Input');
    if (body.max_connections !== undefined && body.max_connections !== null && body.max_connections < 1) {
      throw new UnitNodeError('max_connections must be at least 1');
    }
    const visibility = (body.visibility_level ?? node.visibility_level) as VisibilityLevel;
    const unit = await app.pg.query<{ visibility_level: VisibilityLevel }>('SELECT visibility_level FROM units WHERE uuid = $1', [node.unit_uuid]);
    const unitVisibility = unit.rows[0]?.visibility_level;
    if (unitVisibility && VISIBILITY_PRIORITY[unitVisibility] > VISIBILITY_PRIORITY[visibility]) {
      throw new ValidationError('The visibility level of the parent object Unit is lower than that of the child object UnitNode');
    }
    const { rows } = await app.pg.query<UnitNodeRow>(
      `UPDATE units_nodes SET visibility_level = $2,
              is_rewritable_input = COALESCE($3, is_rewritable_input),
              is_data_pipe_active = COALESCE($4, is_data_pipe_active),
              max_connections = COALESCE($5, max_connections),
              last_update_datetime = (now() AT TIME ZONE 'utc')
        WHERE uuid = $1 RETURNING *`,
      [uuid, visibility, body.is_rewritable_input ?? null, body.is_data_pipe_active ?? null, body.max_connections ?? null],
    );
    // Made Private: subscribers without a permission must stop reading it now, not at their next reconnect.
    const tightened = visibility === 'Private' && node.visibility_level !== 'Private';
    let cut: AccessCut | undefined;
    if (tightened && node.unit_uuid) {
      const allowed = await app.pg.query<{ unit: string }>('SELECT agent_unit_uuid::text AS unit FROM permissions WHERE resource_unit_node_uuid = $1 AND agent_unit_uuid IS NOT NULL', [uuid]);
      cut = { topic: { topic: unitNodeTopic(app.config.domain, node.uuid, node.topic_name), keepUnits: [node.unit_uuid, ...allowed.rows.map((r) => r.unit)] } };
    }
    await app.acl.invalidate('unit node updated', cut);
    // Reference (§7.6): a request carrying is_data_pipe_active on a /pepeunit node tells the
    // DataPipe consumers (NOTIFY, Redis stream when configured); a no-op when the FF is off.
    if (body.is_data_pipe_active !== undefined && body.is_data_pipe_active !== null && isPipeableTopicName(node.topic_name) && app.hasDecorator('datapipe')) {
      await app.datapipe.notifyChanged(uuid, body.is_data_pipe_active ? 'Update' : 'Delete');
    }
    return toUnitNodeRead(rows[0]!);
  }

  /**
   * Publishes `state` to an Input node's topic and stores it (§7.6). Unit callers need the
   * node's `is_rewritable_input`; everybody needs to see the node.
   */
  async setStateInput(agent: Agent, uuid: string, state: string | null | undefined): Promise<UnitNodeRead> {
    const { app } = this;
    const node = await this.load(uuid);
    assertType(node, 'Input');
    if (agent.type === 'Unit' && !node.is_rewritable_input) throw new NoAccessError('This Input UnitNode is not rewritable by Units');
    await checkVisibility(app.pg, agent, 'UnitNode', node);
    const value = state ?? '';
    await publishMqtt(app, unitNodeTopic(app.config.domain, node.uuid, node.topic_name), value);
    const { rows } = await app.pg.query<UnitNodeRow>(
      `UPDATE units_nodes SET state = $2, last_update_datetime = (now() AT TIME ZONE 'utc') WHERE uuid = $1 RETURNING *`,
      [uuid, state ?? null],
    );
    return toUnitNodeRead(rows[0]!);
  }

  /**
   * Output → Input edge. The limits are checked inside a transaction holding row locks on both
   * nodes (taken in uuid order), so concurrent requests are serialised per node and the
   * `max_connections + 1`-th edge is refused with nothing written.
   */
  async createEdge(agent: UserAgent, outputUuid: string, inputUuid: string): Promise<UnitNodeEdgeRead> {
    const { app } = this;
    const output = await this.load(outputUuid);
    assertType(output, 'Output');
    await checkVisibility(app.pg, agent, 'UnitNode', output);
    const input = await this.load(inputUuid);
    assertType(input, 'Input');
    await checkVisibility(app.pg, agent, 'UnitNode', input);

    const edge = await inTransaction(app.pg, async (client) => {
      const locked = await client.query<{ uuid: string; max_connections: number }>(
        'SELECT uuid, max_connections FROM units_nodes WHERE uuid = ANY($1::uuid[]) ORDER BY uuid FOR UPDATE',
        [[outputUuid, inputUuid]],
      );
      const limits = new Map(locked.rows.map((row) => [row.uuid, row.max_connections]));
      if (!limits.has(outputUuid)) throw new ValidationError(`UnitNode ${outputUuid} does not exist`);
      if (!limits.has(inputUuid)) throw new ValidationError(`UnitNode ${inputUuid} does not exist`);
      const counts = await client.query<{ incoming: string; outgoing: string; same: string }>(
        `SELECT count(*) FILTER (WHERE node_input_uuid = $1) AS incoming,
                count(*) FILTER (WHERE node_output_uuid = $2) AS outgoing,
                count(*) FILTER (WHERE node_input_uuid = $1 AND node_output_uuid = $2) AS same
           FROM units_nodes_edges WHERE node_input_uuid = $1 OR node_output_uuid = $2`,
        [inputUuid, outputUuid],
      );
      const { incoming, outgoing, same } = counts.rows[0]!;
      if (Number(same) > 0) throw new UnitNodeError('Edge exist');
      const inputLimit = limits.get(inputUuid)!;
      if (Number(incoming) >= inputLimit) {
        throw new UnitNodeError(`Maximum number of incoming connections (${inputLimit}) reached for input node ${inputUuid}`);
      }
      const outputLimit = limits.get(outputUuid)!;
      if (Number(outgoing) >= outputLimit) {
        throw new UnitNodeError(`Maximum number of outgoing connections (${outputLimit}) reached for output node ${outputUuid}`);
      }
      if (output.unit_uuid) await grantPermission(client, { type: 'Unit', uuid: output.unit_uuid }, { type: 'UnitNode', uuid: inputUuid });
      if (input.unit_uuid) await grantPermission(client, { type: 'Unit', uuid: input.unit_uuid }, { type: 'UnitNode', uuid: outputUuid });
      if (output.unit_uuid && input.unit_uuid && output.unit_uuid !== input.unit_uuid) {
        await grantPermission(client, { type: 'Unit', uuid: output.unit_uuid }, { type: 'Unit', uuid: input.unit_uuid });
      }
      const { rows } = await client.query<UnitNodeEdgeRow>(
        'INSERT INTO units_nodes_edges (uuid, node_output_uuid, node_input_uuid, creator_uuid) VALUES ($1, $2, $3, $4) RETURNING *',
        [randomUUID(), outputUuid, inputUuid, agent.uuid],
      );
      return rows[0]!;
    });
    await app.acl.invalidate('unit node edge created');
    await notifyUnit(app, input.unit_uuid, 'SchemaUpdate');
    return toEdgeRead(edge);
  }

  /**
   * Deletes the edge (input_uuid, output_uuid). The edge's creator may delete it; anybody else
   * must be the creator of the input node. The output unit's access to the input node goes too,
   * unless another edge still links that unit to the node.
   */
  async deleteEdge(agent: UserAgent, inputUuid: string, outputUuid: string): Promise<void> {
    const { app } = this;
    const { rows } = await app.pg.query<UnitNodeEdgeRow>(
      'SELECT * FROM units_nodes_edges WHERE node_input_uuid = $1 AND node_output_uuid = $2 ORDER BY uuid',
      [inputUuid, outputUuid],
    );
    if (rows.length === 0) throw new ValidationError(`Edge from ${outputUuid} to ${inputUuid} does not exist`);
    const input = await this.load(inputUuid);
    const output = await this.load(outputUuid);
    if (!rows.some((row) => row.creator_uuid === agent.uuid)) requireCreator(agent, input);
    await inTransaction(app.pg, async (client) => {
      await client.query('DELETE FROM units_nodes_edges WHERE node_input_uuid = $1 AND node_output_uuid = $2', [inputUuid, outputUuid]);
      if (output.unit_uuid && output.unit_uuid !== input.unit_uuid) {
        const still = await client.query(
          `SELECT 1 FROM units_nodes_edges e JOIN units_nodes o ON o.uuid = e.node_output_uuid
            WHERE e.node_input_uuid = $1 AND o.unit_uuid = $2 LIMIT 1`,
          [inputUuid, output.unit_uuid],
        );
        if (!still.rowCount) {
          await client.query('DELETE FROM permissions WHERE agent_unit_uuid = $1 AND resource_unit_node_uuid = $2', [output.unit_uuid, inputUuid]);
        }
      }
    });
    // The output unit may have lost its access to the input node (and the input unit to the output): cut both units' sessions.
    await app.acl.invalidate('unit node edge deleted', { units: [output.unit_uuid, input.unit_uuid].filter((u): u is string => typeof u === 'string' && u !== '') });
    await notifyUnit(app, input.unit_uuid, 'SchemaUpdate');
  }

  /** Edges touching the unit's nodes visible to the agent. */
  async unitEdges(agent: Agent, unitUuid: string): Promise<{ count: number; unit_node_edges: UnitNodeEdgeRead[] }> {
    const { app } = this;
    const values: unknown[] = [unitUuid];
    const visible = visibilityCondition('n', visibilityFilter(agent, 'UnitNode', undefined), values);
    const { rows } = await app.pg.query<UnitNodeEdgeRow>(
      `WITH nodes AS (SELECT n.uuid FROM units_nodes n WHERE n.unit_uuid = $1 AND ${visible})
       SELECT e.* FROM units_nodes_edges e
        WHERE e.node_input_uuid IN (SELECT uuid FROM nodes) OR e.node_output_uuid IN (SELECT uuid FROM nodes)
        ORDER BY e.uuid`,
      values,
    );
    return { count: rows.length, unit_node_edges: rows.map(toEdgeRead) };
  }
}

function assertType(node: UnitNodeRow, type: 'Input' | 'Output'): void {
  if (node.type !== type) throw new UnitNodeError(`This Node ${node.uuid} is not ${type}`);
}
