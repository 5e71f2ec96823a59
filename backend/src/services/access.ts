/**
 * Authorization primitives (pepeunit-backend.md §4.4): agent type and role checks, creator
 * ownership, visibility. Default deny: anything not explicitly allowed raises NoAccessError.
 */
import type { Pool, PoolClient } from 'pg';
import { NoAccessError } from '../errors.js';
import type { Agent, AgentType } from '../plugins/auth.js';
import type { PermissionResourceType, UserRole, VisibilityLevel } from '../domain/enums.js';

type Db = Pool | PoolClient;

export function requireAgent<T extends AgentType>(agent: Agent, types: readonly T[], roles: readonly UserRole[] = ['User', 'Admin']): asserts agent is Extract<Agent, { type: T }> {
  if (!(types as readonly AgentType[]).includes(agent.type)) {
    throw new NoAccessError(`Agent type ${agent.type} has no access to this operation`);
  }
  if (agent.type === 'User' && !roles.includes(agent.role)) {
    throw new NoAccessError(`Role ${agent.role} has no access to this operation`);
  }
}

/** Creator ownership: a User agent must be the entity's creator; admins are not exempt (reference). */
export function requireCreator(agent: Agent, entity: { creator_uuid: string | null }): void {
  if (agent.type === 'User' && entity.creator_uuid !== agent.uuid) {
    throw new NoAccessError('Agent is not the creator of this entity');
  }
}

/** Creator or admin: used for managing permissions of a resource (reference bug fixed). */
export function requireCreatorOrAdmin(agent: Agent, entity: { creator_uuid: string | null }): void {
  if (agent.type === 'User' && (entity.creator_uuid === agent.uuid || agent.role === 'Admin')) return;
  throw new NoAccessError('Only the creator of the resource or an admin can manage its permissions');
}

const RESOURCE_COLUMN: Record<PermissionResourceType, string> = {
  Repo: 'resource_repo_uuid',
  Unit: 'resource_unit_uuid',
  UnitNode: 'resource_unit_node_uuid',
};

export async function hasPermission(db: Db, agentUuid: string, resourceType: PermissionResourceType, resourceUuid: string): Promise<boolean> {
  const column = RESOURCE_COLUMN[resourceType];
  const { rowCount } = await db.query(
    `SELECT 1 FROM permissions WHERE ${column} = $2 AND (agent_user_uuid = $1 OR agent_unit_uuid = $1) LIMIT 1`,
    [agentUuid, resourceUuid],
  );
  return (rowCount ?? 0) > 0;
}

/** Visibility check of one entity for the agent. */
export async function checkVisibility(
  db: Db,
  agent: Agent,
  resourceType: PermissionResourceType,
  entity: { uuid: string; visibility_level: VisibilityLevel | string },
): Promise<void> {
  if (agent.type === 'Backend' || entity.visibility_level === 'Public') return;
  if (entity.visibility_level === 'Internal') {
    if (agent.type === 'User' || agent.type === 'Unit') return;
    throw new NoAccessError('Internal visibility level is not allowed');
  }
  if (entity.visibility_level === 'Private' && (agent.type === 'User' || agent.type === 'Unit')) {
    if (await hasPermission(db, agent.uuid, resourceType, entity.uuid)) return;
  }
  throw new NoAccessError('Private visibility level is not allowed');
}

/**
 * Visibility filter for lists: Bot sees Public; other agents see Public and Internal plus the
 * Private resources they hold a permission for. Requested levels narrow this (the reference
 * ignored them for agents without permissions; we honour them).
 */
export async function visibilityFilter(
  db: Db,
  agent: Agent,
  resourceType: PermissionResourceType,
  requested: readonly VisibilityLevel[] | undefined,
): Promise<{ levels: VisibilityLevel[]; privateUuids: string[] }> {
  const wanted = new Set<VisibilityLevel>(requested && requested.length > 0 ? requested : ['Public', 'Internal', 'Private']);
  if (agent.type === 'Bot' || agent.type === 'Grafana' || agent.type === 'GrafanaUnitNode') {
    return { levels: wanted.has('Public') ? ['Public'] : [], privateUuids: [] };
  }
  if (agent.type === 'Backend') return { levels: [...wanted], privateUuids: [] };
  const levels = [...wanted].filter((l) => l !== 'Private');
  let privateUuids: string[] = [];
  if (wanted.has('Private')) {
    const column = RESOURCE_COLUMN[resourceType];
    const { rows } = await db.query<{ uuid: string }>(
      `SELECT ${column} AS uuid FROM permissions WHERE (agent_user_uuid = $1 OR agent_unit_uuid = $1) AND resource_type = $2 AND ${column} IS NOT NULL`,
      [agent.uuid, resourceType],
    );
    privateUuids = rows.map((r) => r.uuid);
  }
  return { levels, privateUuids };
}
