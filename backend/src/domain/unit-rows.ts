import type { Pool, PoolClient } from 'pg';
import { NoAccessError, ValidationError } from '../errors.js';
import type { Agent } from '../plugins/auth.js';
import { isoNaive } from '../schemas/common.js';
import type { UnitRead } from '../schemas/units.js';
import type { UnitNodeRead } from '../schemas/unit-nodes.js';
import type { VisibilityLevel } from './enums.js';

type Db = Pool | PoolClient;

export interface UnitRow {
  uuid: string;
  visibility_level: VisibilityLevel;
  name: string;
  create_datetime: Date;
  last_update_datetime: Date;
  is_auto_update_from_repo_unit: boolean;
  target_firmware_platform: string | null;
  repo_branch: string | null;
  repo_commit: string | null;
  unit_state_dict: string | null;
  current_commit_version: string | null;
  cipher_env_dict: string | null;
  cipher_state_storage: string | null;
  firmware_update_status: string | null;
  firmware_update_error: string | null;
  last_firmware_update_datetime: Date | null;
  /** Ours: the commit the last Update asked for (automatic updates). */
  firmware_update_target_commit?: string | null;
  creator_uuid: string | null;
  repo_uuid: string | null;
}

const STATE_KEYS = ['ifconfig', 'millis', 'mem_free', 'mem_alloc', 'freq', 'statvfs', 'pu_commit_version'] as const;

/** `units.unit_state_dict` as the reference's `unit_state` object; null when absent or unreadable. */
export function parseUnitState(text: string | null): UnitRead['unit_state'] {
  if (!text) return null;
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return null;
    const source = parsed as Record<string, unknown>;
    const state: Record<string, unknown> = {};
    for (const key of STATE_KEYS) state[key] = key in source ? source[key] : null;
    return state as UnitRead['unit_state'];
  } catch {
    return null;
  }
}

/** The columns `toUnitRead` reads (lists select only these: no encrypted env/storage blobs). */
export const UNIT_READ_COLUMNS = [
  'uuid', 'visibility_level', 'name', 'create_datetime', 'is_auto_update_from_repo_unit', 'target_firmware_platform', 'repo_branch', 'repo_commit',
  'unit_state_dict', 'current_commit_version', 'last_update_datetime', 'creator_uuid', 'repo_uuid', 'firmware_update_status', 'firmware_update_error',
  'last_firmware_update_datetime',
] as const;

export type UnitReadRow = Pick<UnitRow, (typeof UNIT_READ_COLUMNS)[number]>;

export function toUnitRead(row: UnitReadRow, unitNodes: UnitNodeRead[] = []): UnitRead {
  return {
    uuid: row.uuid,
    visibility_level: row.visibility_level,
    name: row.name,
    create_datetime: isoNaive(row.create_datetime)!,
    is_auto_update_from_repo_unit: row.is_auto_update_from_repo_unit,
    target_firmware_platform: row.target_firmware_platform,
    repo_branch: row.repo_branch,
    repo_commit: row.repo_commit,
    unit_state: parseUnitState(row.unit_state_dict),
    current_commit_version: row.current_commit_version,
    last_update_datetime: isoNaive(row.last_update_datetime)!,
    creator_uuid: row.creator_uuid,
    repo_uuid: row.repo_uuid,
    firmware_update_status: row.firmware_update_status,
    firmware_update_error: row.firmware_update_error,
    last_firmware_update_datetime: isoNaive(row.last_firmware_update_datetime),
    unit_nodes: unitNodes,
  };
}

/** The unit row; ValidationError "Unit <uuid> does not exist" when missing. `forUpdate` locks it. */
export async function loadUnit(db: Db, uuid: string, forUpdate = false): Promise<UnitRow> {
  const { rows } = await db.query<UnitRow>(`SELECT * FROM units WHERE uuid = $1${forUpdate ? ' FOR UPDATE' : ''}`, [uuid]);
  if (!rows[0]) throw new ValidationError(`Unit ${uuid} does not exist`);
  return rows[0];
}

/**
 * Creator-or-self ownership (reference OwnershipType Creator + Unit): a User must be the unit's
 * creator, a Unit may act only on itself; every other agent is refused.
 */
export function requireUnitOwnerOrSelf(agent: Agent, unit: { uuid: string; creator_uuid: string | null }): void {
  if (agent.type === 'User') {
    if (unit.creator_uuid !== agent.uuid) throw new NoAccessError('Agent is not the creator of this entity');
    return;
  }
  if (agent.type === 'Unit') {
    if (agent.uuid !== unit.uuid) throw new NoAccessError('A Unit can only act on itself');
    return;
  }
  throw new NoAccessError(`Agent type ${agent.type} has no access to this operation`);
}

/** Transactions are the common utility (one copy for every package). */
export { inTransaction } from '@pepeunit/common';
