import { Type, type Static } from '@sinclair/typebox';
import { Uuid, Nullable, Pagination, OrderBy, Visibility } from './common.js';

export const RepoCreate = Type.Object(
  {
    repository_registry_uuid: Uuid,
    default_branch: Type.String({ minLength: 1, maxLength: 255 }),
    visibility_level: Visibility,
    name: Type.String({ maxLength: 256 }),
    is_compilable_repo: Type.Optional(Type.Boolean({ default: false })),
  },
  { additionalProperties: false },
);
export type RepoCreate = Static<typeof RepoCreate>;

export const RepoUpdate = Type.Object(
  {
    visibility_level: Type.Optional(Nullable(Visibility)),
    name: Type.Optional(Nullable(Type.String({ maxLength: 256 }))),
    is_auto_update_repo: Type.Optional(Nullable(Type.Boolean())),
    default_branch: Type.Optional(Nullable(Type.String({ maxLength: 255 }))),
    default_commit: Type.Optional(Nullable(Type.String({ maxLength: 64 }))),
    is_only_tag_update: Type.Optional(Nullable(Type.Boolean())),
    is_compilable_repo: Type.Optional(Nullable(Type.Boolean())),
  },
  { additionalProperties: false },
);
export type RepoUpdate = Static<typeof RepoUpdate>;

/**
 * The reference RepoRead plus the badge (ours): sync status, error and times of the copy the
 * Repo reads from — the shared registry clone for public repositories, the Repo's own copy for
 * private ones.
 */
export const RepoRead = Type.Object({
  uuid: Uuid,
  visibility_level: Type.String(),
  name: Type.String(),
  create_datetime: Type.String(),
  default_branch: Nullable(Type.String()),
  is_auto_update_repo: Type.Boolean(),
  default_commit: Nullable(Type.String()),
  is_only_tag_update: Type.Boolean(),
  is_compilable_repo: Type.Boolean(),
  last_update_datetime: Type.String(),
  creator_uuid: Nullable(Uuid),
  repository_registry_uuid: Uuid,
  is_public_repository: Type.Boolean(),
  sync_status: Nullable(Type.String()),
  sync_error: Nullable(Type.String()),
  sync_last_datetime: Nullable(Type.String()),
  sync_finished_datetime: Nullable(Type.String()),
});
export type RepoRead = Static<typeof RepoRead>;

export const ReposQuery = Type.Object({
  repository_registry_uuid: Type.Optional(Uuid),
  uuids: Type.Optional(Type.Array(Uuid)),
  creator_uuid: Type.Optional(Uuid),
  creators_uuids: Type.Optional(Type.Array(Uuid)),
  search_string: Type.Optional(Type.String({ maxLength: 512 })),
  is_auto_update_repo: Type.Optional(Type.Boolean()),
  visibility_level: Type.Optional(Type.Array(Visibility)),
  order_by_create_date: Type.Optional(OrderBy),
  order_by_last_update: Type.Optional(OrderBy),
  ...Pagination,
});
export type ReposQuery = Static<typeof ReposQuery>;

export const ReposResult = Type.Object({ count: Type.Integer(), repos: Type.Array(RepoRead) });

export const AvailablePlatformsQuery = Type.Object({
  target_commit: Type.Optional(Type.String({ maxLength: 64 })),
  target_tag: Type.Optional(Type.String({ maxLength: 255 })),
});
export type AvailablePlatformsQuery = Static<typeof AvailablePlatformsQuery>;

export const PlatformRead = Type.Object({ name: Type.String(), link: Type.String() });
export type PlatformRead = Static<typeof PlatformRead>;

export const RepoVersions = Type.Object({
  unit_count: Type.Integer(),
  versions: Type.Array(Type.Object({ commit: Type.String(), unit_count: Type.Integer(), tag: Nullable(Type.String()) })),
});
export type RepoVersions = Static<typeof RepoVersions>;

export const TargetVersionRead = Type.Object({ commit: Type.String(), tag: Nullable(Type.String()) });
export type TargetVersionRead = Static<typeof TargetVersionRead>;
