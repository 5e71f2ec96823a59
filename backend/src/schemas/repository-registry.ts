import { Type, type Static } from '@sinclair/typebox';
import { Uuid, Nullable, Pagination, OrderBy, StringEnum } from './common.js';

export const GitPlatform = StringEnum(['Gitlab', 'Github']);
export const RegistrySyncStatus = StringEnum(['Updated', 'Processing', 'Error']);
export const CredentialStatus = StringEnum(['Valid', 'NotVerified', 'Error']);

/** A personal access token of a private repository; stored encrypted, never returned. */
export const Credentials = Type.Object(
  { username: Type.String({ minLength: 1, maxLength: 256 }), pat_token: Type.String({ minLength: 1, maxLength: 4096 }) },
  { additionalProperties: false },
);
export type Credentials = Static<typeof Credentials>;

export const RegistryCreate = Type.Object(
  {
    platform: GitPlatform,
    repository_url: Type.String({ minLength: 1, maxLength: 2048 }),
    is_public_repository: Type.Boolean(),
    credentials: Type.Optional(Nullable(Credentials)),
  },
  { additionalProperties: false },
);
export type RegistryCreate = Static<typeof RegistryCreate>;

/** Live progress of a running sync (git's own stages plus ours: clone, fetch, measure, metadata, releases, done). */
export const SyncProgress = Type.Object({
  stage: Type.String(),
  percent: Nullable(Type.Number()),
  message: Type.String(),
  updated_at: Type.String(),
});
export type SyncProgress = Static<typeof SyncProgress>;

/** The reference RegistryRead plus what a sync learns (ours: default_branch ... toml_metadata, sync_finished_datetime). */
export const RegistryRead = Type.Object({
  uuid: Uuid,
  platform: Type.String(),
  repository_url: Type.String(),
  is_public_repository: Type.Boolean(),
  releases_data: Nullable(Type.String()),
  local_repository_size: Type.Integer(),
  sync_status: Nullable(Type.String()),
  sync_error: Nullable(Type.String()),
  sync_last_datetime: Nullable(Type.String()),
  create_datetime: Type.String(),
  last_update_datetime: Type.String(),
  creator_uuid: Nullable(Uuid),
  branches: Type.Array(Type.String()),
  sync_finished_datetime: Nullable(Type.String()),
  default_branch: Nullable(Type.String()),
  title: Nullable(Type.String()),
  description: Nullable(Type.String()),
  readme_heading: Nullable(Type.String()),
  readme_paragraph: Nullable(Type.String()),
  toml_metadata: Nullable(Type.Record(Type.String(), Type.Unknown())),
});
export type RegistryRead = Static<typeof RegistryRead>;

export const RegistriesQuery = Type.Object({
  uuids: Type.Optional(Type.Array(Uuid)),
  creator_uuid: Type.Optional(Uuid),
  search_string: Type.Optional(Type.String({ maxLength: 512 })),
  is_public_repository: Type.Optional(Type.Boolean()),
  order_by_create_date: Type.Optional(OrderBy),
  order_by_last_update: Type.Optional(OrderBy),
  ...Pagination,
});
export type RegistriesQuery = Static<typeof RegistriesQuery>;

export const RegistriesResult = Type.Object({ count: Type.Integer(), repositories_registry: Type.Array(RegistryRead) });

/** `GET /repository_registry/search`: public entries matched by URL, title, description, README and pepeunit.toml. */
export const RegistrySearchQuery = Type.Object({
  search_string: Type.Optional(Type.String({ maxLength: 512 })),
  platform: Type.Optional(GitPlatform),
  ...Pagination,
});
export type RegistrySearchQuery = Static<typeof RegistrySearchQuery>;

export const BranchCommitsQuery = Type.Object({
  repo_branch: Type.String({ minLength: 1, maxLength: 255 }),
  only_tag: Type.Optional(Type.Boolean({ default: false })),
  offset: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647, default: 0 })),
  limit: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647, default: 10 })),
});
export type BranchCommitsQuery = Static<typeof BranchCommitsQuery>;

export const CommitRead = Type.Object({ commit: Type.String(), summary: Type.String(), tag: Nullable(Type.String()) });
export type CommitRead = Static<typeof CommitRead>;

/** `get_credentials`: the caller's entry with the token masked (credentials are never returned). */
export const CredentialsWithStatus = Type.Object({
  credentials: Type.Object({ username: Type.String(), pat_token: Type.String() }),
  status: CredentialStatus,
});
export type CredentialsWithStatus = Static<typeof CredentialsWithStatus>;

export const SyncStatusRead = Type.Object({
  uuid: Uuid,
  sync_status: Nullable(Type.String()),
  sync_error: Nullable(Type.String()),
  sync_last_datetime: Nullable(Type.String()),
  sync_finished_datetime: Nullable(Type.String()),
  local_repository_size: Type.Integer(),
  is_running: Type.Boolean(),
  progress: Nullable(SyncProgress),
});
export type SyncStatusRead = Static<typeof SyncStatusRead>;

export const SyncAllAccepted = Type.Object({
  accepted: Type.Boolean(),
  already_running: Type.Boolean(),
  registries: Type.Integer(),
  private_repos: Type.Integer(),
  started_at: Type.String(),
});
export type SyncAllAccepted = Static<typeof SyncAllAccepted>;
