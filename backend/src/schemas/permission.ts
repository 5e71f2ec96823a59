import { Type, type Static } from '@sinclair/typebox';
import { Uuid, Pagination } from './common.js';

/** Types are plain strings here so a wrong value gets the reference's 422 domain error, not a schema error. */
export const PermissionCreate = Type.Object(
  { agent_uuid: Uuid, agent_type: Type.String({ maxLength: 32 }), resource_uuid: Uuid, resource_type: Type.String({ maxLength: 32 }) },
  { additionalProperties: false },
);
export type PermissionCreate = Static<typeof PermissionCreate>;

export const PermissionRead = Type.Object({
  uuid: Uuid,
  agent_uuid: Uuid,
  agent_type: Type.String(),
  resource_uuid: Uuid,
  resource_type: Type.String(),
});
export type PermissionRead = Static<typeof PermissionRead>;

export const ResourceAgentsQuery = Type.Object({
  resource_uuid: Uuid,
  resource_type: Type.String({ maxLength: 32 }),
  agent_type: Type.Optional(Type.String({ maxLength: 32 })),
  ...Pagination,
});
export type ResourceAgentsQuery = Static<typeof ResourceAgentsQuery>;

export const PermissionsResult = Type.Object({ count: Type.Integer(), permissions: Type.Array(PermissionRead) });
export const PermissionDeleteQuery = Type.Object({ agent_uuid: Uuid, resource_uuid: Uuid });
