import type { RepoVersionSettings } from '../git/versions.js';

/**
 * Which GitStore clone holds a Repo's files: public repositories are stored once per registry
 * entry (key = registry uuid) and shared by every Repo on that URL; private repositories keep
 * their own copy per Repo (key = `private-<repo uuid>`), as in the reference.
 */
export function registryStorageKey(registryUuid: string): string {
  return registryUuid;
}

export function privateRepoStorageKey(repoUuid: string): string {
  return `private-${repoUuid}`;
}

export function repoStorageKey(repo: { uuid: string }, registry: { uuid: string; is_public_repository: boolean }): string {
  return registry.is_public_repository ? registryStorageKey(registry.uuid) : privateRepoStorageKey(repo.uuid);
}

/** The version-relevant settings of a `repos` row, as the pure functions of git/versions.ts take them. */
export function repoVersionSettings(repo: {
  default_branch: string | null;
  default_commit: string | null;
  is_auto_update_repo: boolean;
  is_only_tag_update: boolean;
  is_compilable_repo: boolean;
}): RepoVersionSettings {
  return {
    defaultBranch: repo.default_branch,
    defaultCommit: repo.default_commit,
    isAutoUpdateRepo: repo.is_auto_update_repo,
    isOnlyTagUpdate: repo.is_only_tag_update,
    isCompilableRepo: repo.is_compilable_repo,
  };
}
