/**
 * "Target version" rules of a Repo (§6.8) and of a Unit (§7.3) as pure functions over the
 * branch history read from the GitStore (`GitStore.branchHistory(key, branch)`).
 *
 * Differences from the reference, on purpose:
 * - auto-update by tags takes the NEWEST TAGGED COMMIT of the branch (the reference relied
 *   on the order of its tag list);
 * - an auto-update Repo that follows commits on an empty branch says so, instead of the
 *   misleading "The tags are not in the repository".
 */

export interface CommitWithTag {
  commit: string;
  summary: string;
  tag: string | null;
}

export interface TargetVersion {
  commit: string;
  tag: string | null;
}

/** The columns of `repos` that decide its target version. */
export interface RepoVersionSettings {
  defaultBranch: string | null;
  defaultCommit: string | null;
  isAutoUpdateRepo: boolean;
  isOnlyTagUpdate: boolean;
  isCompilableRepo: boolean;
}

/** The columns of `units` that decide its target version. */
export interface UnitVersionSettings {
  isAutoUpdateFromRepoUnit: boolean;
  repoBranch: string | null;
  repoCommit: string | null;
}

/** Branch list plus the commits (newest first) of `branch`; `commits` is empty if it is missing. */
export interface BranchHistory {
  branch: string | null;
  availableBranches: readonly string[];
  commits: readonly CommitWithTag[];
}

export type VersionErrorKind = 'BranchNotFound' | 'CommitNotInBranch' | 'CommitWithoutTag' | 'VersionMissing';

/** Maps to the reference `GitRepoError` (422). */
export class VersionError extends Error {
  override readonly name = 'VersionError';
  constructor(
    readonly kind: VersionErrorKind,
    message: string,
  ) {
    super(message);
  }
}

/** Which branch history the caller must load to compute a Unit's target version. */
export function unitVersionBranch(unit: UnitVersionSettings, repo: RepoVersionSettings): string | null {
  return unit.isAutoUpdateFromRepoUnit ? repo.defaultBranch : unit.repoBranch;
}

/** Throws "Branch <b> not found, available: [...]" unless `branch` is one of `availableBranches`. */
export function assertBranchAvailable(branch: string | null | undefined, availableBranches: readonly string[]): asserts branch is string {
  if (!branch || !availableBranches.includes(branch)) {
    throw new VersionError(
      'BranchNotFound',
      `Branch ${branch || 'None'} not found, available: ${formatList(availableBranches)}`,
    );
  }
}

/** Throws "Commit <sha> not in branch <b>" unless the commit is part of the history. */
export function assertCommitInBranch(commit: string | null | undefined, history: BranchHistory): CommitWithTag {
  const found = commit ? findCommit(history.commits, commit) : null;
  if (!found) {
    throw new VersionError('CommitNotInBranch', `Commit ${commit || 'None'} not in branch ${history.branch ?? 'None'}`);
  }
  return found;
}

export function findCommit(commits: readonly CommitWithTag[], commit: string): CommitWithTag | null {
  const wanted = commit.toLowerCase();
  return commits.find((item) => item.commit.toLowerCase() === wanted) ?? null;
}

export function newestTaggedCommit(commits: readonly CommitWithTag[]): CommitWithTag | null {
  return commits.find((item) => item.tag !== null) ?? null;
}

/**
 * Target version of a Repo (§6.8), from the history of `repo.defaultBranch`:
 * - auto-update: compilable or tag-only ⇒ newest tagged commit; otherwise newest commit;
 * - manual: `defaultCommit` must be on the branch; compilable ⇒ it must carry a tag.
 */
export function targetRepoVersion(repo: RepoVersionSettings, history: BranchHistory): TargetVersion {
  assertBranchAvailable(repo.defaultBranch, history.availableBranches);
  assertHistoryOf(history, repo.defaultBranch);

  let target: CommitWithTag | null;
  if (repo.isAutoUpdateRepo) {
    if (repo.isCompilableRepo || repo.isOnlyTagUpdate) {
      target = newestTaggedCommit(history.commits);
      if (!target) throw new VersionError('VersionMissing', 'Version is missing: The tags are not in the repository');
    } else {
      target = history.commits[0] ?? null;
      if (!target) throw new VersionError('VersionMissing', `Version is missing: Branch ${repo.defaultBranch} has no commits`);
    }
  } else {
    target = assertCommitInBranch(repo.defaultCommit, history);
    if (repo.isCompilableRepo && target.tag === null) {
      throw new VersionError('CommitWithoutTag', `Commit ${target.commit} without Tag`);
    }
  }
  return { commit: target.commit, tag: target.tag };
}

/**
 * Target version of a Unit (§7.3). `history` must be the history of
 * `unitVersionBranch(unit, repo)`: the Repo's default branch for auto-update Units, the
 * Unit's own `repoBranch` otherwise.
 */
export function targetUnitVersion(
  unit: UnitVersionSettings,
  repo: RepoVersionSettings,
  history: BranchHistory,
): TargetVersion {
  if (unit.isAutoUpdateFromRepoUnit) return targetRepoVersion(repo, history);

  assertBranchAvailable(unit.repoBranch, history.availableBranches);
  assertHistoryOf(history, unit.repoBranch);
  const target = unit.repoCommit ? findCommit(history.commits, unit.repoCommit) : null;
  if (!target) {
    throw new VersionError(
      'VersionMissing',
      `Version is missing: Commit ${unit.repoCommit || 'None'} not in branch ${unit.repoBranch}`,
    );
  }
  if (repo.isCompilableRepo && target.tag === null) {
    throw new VersionError('CommitWithoutTag', `Commit ${target.commit} without Tag`);
  }
  return { commit: target.commit, tag: target.tag };
}

function assertHistoryOf(history: BranchHistory, branch: string): void {
  if (history.branch !== branch) {
    // A wiring mistake, not user input: the caller loaded the wrong branch.
    throw new Error(`Branch history of "${history.branch}" given, "${branch}" expected`);
  }
}

/** `['a', 'b']`, the list format of the reference messages. */
export function formatList(items: readonly string[]): string {
  return `[${items.map((item) => `'${item}'`).join(', ')}]`;
}
