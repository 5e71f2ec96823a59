import { Type, type Static } from '@sinclair/typebox';
import { Uuid, Nullable, Pagination, OrderBy, StringEnum } from './common.js';

export const UserRole = StringEnum(['User', 'Admin']);
export const UserStatus = StringEnum(['Unverified', 'Verified', 'Blocked']);

export const UserCreate = Type.Object({ login: Type.String({ maxLength: 256 }), password: Type.String({ maxLength: 1024 }) }, { additionalProperties: false });
export const UserUpdate = Type.Object(
  {
    login: Type.Optional(Nullable(Type.String({ maxLength: 256 }))),
    password: Type.Optional(Nullable(Type.String({ maxLength: 1024 }))),
    /** Ours: required with `password`; tokens issued before the change are revoked. */
    current_password: Type.Optional(Nullable(Type.String({ maxLength: 1024 }))),
  },
  { additionalProperties: false },
);
export const UserAuth = Type.Object({ credentials: Type.String({ maxLength: 256 }), password: Type.String({ maxLength: 1024 }) }, { additionalProperties: false });
export const AccessToken = Type.Object({ token: Type.String() });

export const UserRead = Type.Object({
  uuid: Uuid,
  role: UserRole,
  status: UserStatus,
  login: Type.String(),
  grafana_org_name: Uuid,
  grafana_org_id: Nullable(Type.String()),
  create_datetime: Type.String(),
});
export type UserRead = Static<typeof UserRead>;

export const UsersQuery = Type.Object({
  uuids: Type.Optional(Type.Array(Uuid)),
  search_string: Type.Optional(Type.String({ maxLength: 256 })),
  role: Type.Optional(Type.Array(UserRole)),
  status: Type.Optional(Type.Array(UserStatus)),
  order_by_create_date: Type.Optional(OrderBy),
  ...Pagination,
});
export type UsersQuery = Static<typeof UsersQuery>;

export const UsersResult = Type.Object({ count: Type.Integer(), users: Type.Array(UserRead) });
