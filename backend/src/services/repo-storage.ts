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
