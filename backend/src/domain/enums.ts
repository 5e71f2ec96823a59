/** Enumerations of the reference domain (pepeunit-backend.md §1.2), stored as their string values. */
export const VisibilityLevel = { Public: 'Public', Internal: 'Internal', Private: 'Private' } as const;
export type VisibilityLevel = (typeof VisibilityLevel)[keyof typeof VisibilityLevel];
export const VISIBILITY_PRIORITY: Record<VisibilityLevel, number> = { Public: 0, Internal: 1, Private: 2 };

export const UserRole = { User: 'User', Admin: 'Admin' } as const;
export type UserRole = (typeof UserRole)[keyof typeof UserRole];

export const UserStatus = { Unverified: 'Unverified', Verified: 'Verified', Blocked: 'Blocked' } as const;
export type UserStatus = (typeof UserStatus)[keyof typeof UserStatus];

export const PermissionEntity = { User: 'User', Unit: 'Unit', Repo: 'Repo', UnitNode: 'UnitNode' } as const;
export type PermissionEntity = (typeof PermissionEntity)[keyof typeof PermissionEntity];
export const PERMISSION_AGENTS = ['User', 'Unit'] as const;
export const PERMISSION_RESOURCES = ['Repo', 'Unit', 'UnitNode'] as const;
export type PermissionAgentType = (typeof PERMISSION_AGENTS)[number];
export type PermissionResourceType = (typeof PERMISSION_RESOURCES)[number];

export const UnitNodeType = { Input: 'Input', Output: 'Output' } as const;
export type UnitNodeType = (typeof UnitNodeType)[keyof typeof UnitNodeType];

export const OrderByDate = { asc: 'asc', desc: 'desc' } as const;
