import type { AccessCut } from '../plugins/acl.js';
import type { Pool, PoolClient } from 'pg';
import type { BackendConfig } from '@pepeunit/common';
import { CustomPermissionError, ValidationError } from '../errors.js';
import type { Agent } from '../plugins/auth.js';
import { requireCreatorOrAdmin } from '../services/access.js';
import { paging } from '../services/validators.js';
import { PERMISSION_AGENTS, PERMISSION_RESOURCES, type PermissionAgentType, type PermissionResourceType } from './enums.js';
import type { PermissionCreate, PermissionRead, ResourceAgentsQuery } from '../schemas/permission.js';

type Db = Pool | PoolClient;

const RESOURCE_TABLE: Record<PermissionResourceType, string> = { Repo: 'repos', Unit: 'units', UnitNode: 'units_nodes' };
const RESOURCE_COLUMN: Record<PermissionResourceType, string> = { Repo: 'resource_repo_uuid', Unit: 'resource_unit_uuid', UnitNode: 'resource_unit_node_uuid' };
const AGENT_TABLE: Record<PermissionAgentType, string> = { User: 'users', Unit: 'units' };
const AGENT_COLUMN: Record<PermissionAgentType, string> = { User: 'agent_user_uuid', Unit: 'agent_unit_uuid' };

interface PermissionRow {
  uuid: string;
  agent_type: PermissionAgentType;
  agent_user_uuid: string | null;
  agent_unit_uuid: string | null;
  resource_type: PermissionResourceType;
  resource_repo_uuid: string | null;
  resource_unit_uuid: string | null;
  resource_unit_node_uuid: string | null;
}

export function toPermissionRead(row: PermissionRow): PermissionRead {
  return {
    uuid: row.uuid,
    agent_uuid: (row.agent_user_uuid ?? row.agent_unit_uuid)!,
    agent_type: row.agent_type,
    resource_uuid: (row.resource_repo_uuid ?? row.resource_unit_uuid ?? row.resource_unit_node_uuid)!,
    resource_type: row.resource_type,
  };
}

function agentType(value: string): PermissionAgentType {
  if (!(PERMISSION_AGENTS as readonly string[]).includes(value)) throw new CustomPermissionError(`Agent type ${value} is not supported, available: ${PERMISSION_AGENTS.join(', ')}`);
  return value as PermissionAgentType;
}

function resourceType(value: string): PermissionResourceType {
  if (!(PERMISSION_RESOURCES as readonly string[]).includes(value)) throw new CustomPermissionError(`Resource type ${value} is not supported, available: ${PERMISSION_RESOURCES.join(', ')}`);
  return value as PermissionResourceType;
}

/** Inserts a permission unless it exists (used for the automatic grants of §4.5). */
export async function grantPermission(db: Db, agent: { type: PermissionAgentType; uuid: string }, resource: { type: PermissionResourceType; uuid: string }): Promise<void> {
  await db.query(
    `INSERT INTO permissions (uuid, agent_type, ${AGENT_COLUMN[agent.type]}, resource_type, ${RESOURCE_COLUMN[resource.type]})
     SELECT gen_random_uuid(), $1, $2, $3, $4
     WHERE NOT EXISTS (SELECT 1 FROM permissions WHERE ${AGENT_COLUMN[agent.type]} = $2 AND ${RESOURCE_COLUMN[resource.type]} = $4)`,
    [agent.type, agent.uuid, resource.type, resource.uuid],
  );
}

/** Resource–agent access lists (pepeunit-backend.md §4.5), managed only by the resource's creator or an admin. */
export class PermissionService {
  constructor(
    private readonly pg: Pool,
    private readonly config: BackendConfig,
    private readonly onChange: (reason: string, cut?: AccessCut) => Promise<void>,
  ) {}

  private async resource(type: PermissionResourceType, uuid: string): Promise<{ uuid: string; creator_uuid: string | null } & Record<string, unknown>> {
    const { rows } = await this.pg.query(`SELECT * FROM ${RESOURCE_TABLE[type]} WHERE uuid = $1`, [uuid]);
    if (!rows[0]) throw new ValidationError(`${type} ${uuid} does not exist`);
    return rows[0] as { uuid: string; creator_uuid: string | null };
  }

  async create(caller: Agent, body: PermissionCreate): Promise<PermissionRead> {
    const aType = agentType(body.agent_type);
    const rType = resourceType(body.resource_type);
    const resource = await this.resource(rType, body.resource_uuid);
    const agent = await this.pg.query(`SELECT uuid FROM ${AGENT_TABLE[aType]} WHERE uuid = $1`, [body.agent_uuid]);
    if (!agent.rowCount) throw new ValidationError(`${aType} ${body.agent_uuid} does not exist`);
    requireCreatorOrAdmin(caller, resource);
    const { rows } = await this.pg.query<PermissionRow>(
      `INSERT INTO permissions (uuid, agent_type, ${AGENT_COLUMN[aType]}, resource_type, ${RESOURCE_COLUMN[rType]})
       SELECT gen_random_uuid(), $1, $2, $3, $4
       WHERE NOT EXISTS (SELECT 1 FROM permissions WHERE ${AGENT_COLUMN[aType]} = $2 AND ${RESOURCE_COLUMN[rType]} = $4)
       RETURNING *`,
      [aType, body.agent_uuid, rType, body.resource_uuid],
    );
    if (!rows[0]) throw new CustomPermissionError('Permission is exist');
    await this.onChange('permission created');
    return toPermissionRead(rows[0]);
  }

  async resourceAgents(caller: Agent, query: ResourceAgentsQuery): Promise<{ count: number; permissions: PermissionRead[] }> {
    const rType = resourceType(query.resource_type);
    const resource = await this.resource(rType, query.resource_uuid);
    requireCreatorOrAdmin(caller, resource);
    const values: unknown[] = [query.resource_uuid];
    let where = `${RESOURCE_COLUMN[rType]} = $1`;
    if (query.agent_type) {
      values.push(agentType(query.agent_type));
      where += ` AND agent_type = $${values.length}`;
    }
    const count = await this.pg.query<{ n: string }>(`SELECT count(*) AS n FROM permissions WHERE ${where}`, values);
    const page = paging(query, this.config, values);
    const { rows } = await this.pg.query<PermissionRow>(`SELECT * FROM permissions WHERE ${where} ORDER BY agent_type, uuid ${page}`, values);
    return { count: Number(count.rows[0]!.n), permissions: rows.map(toPermissionRead) };
  }

  async delete(caller: Agent, agentUuid: string, resourceUuid: string): Promise<void> {
    const { rows } = await this.pg.query<PermissionRow>(
      `SELECT * FROM permissions WHERE (agent_user_uuid = $1 OR agent_unit_uuid = $1)
         AND (resource_repo_uuid = $2 OR resource_unit_uuid = $2 OR resource_unit_node_uuid = $2) LIMIT 1`,
      [agentUuid, resourceUuid],
    );
    const permission = rows[0];
    if (!permission) throw new ValidationError('Permission does not exist');
    const resource = await this.resource(permission.resource_type, resourceUuid);
    // An agent may give up its own access; anyone else must own the resource (or be an admin).
    if (!(caller.type === 'User' && caller.uuid === agentUuid)) requireCreatorOrAdmin(caller, resource);
    if (agentUuid === resourceUuid) throw new ValidationError("A resource's access to itself cannot be removed");
    if (resource.creator_uuid === agentUuid) throw new ValidationError('The access of the creator of the resource cannot be removed');
    if (permission.agent_type === 'Unit') {
      if (permission.resource_type === 'Repo') {
        const parent = await this.pg.query('SELECT 1 FROM units WHERE uuid = $1 AND repo_uuid = $2', [agentUuid, resourceUuid]);
        if (parent.rowCount) throw new ValidationError("The access of a Unit to its parent Repo cannot be removed");
      }
      if (permission.resource_type === 'UnitNode' && resource.unit_uuid === agentUuid) {
        throw new ValidationError('The access of a Unit to its own UnitNodes cannot be removed');
      }
    }
    await this.pg.query('DELETE FROM permissions WHERE uuid = $1', [permission.uuid]);
    // A unit that lost access may hold a subscription made while it had it: cut its sessions.
    await this.onChange('permission deleted', permission.agent_type === 'Unit' ? { units: [agentUuid] } : undefined);
  }
}
