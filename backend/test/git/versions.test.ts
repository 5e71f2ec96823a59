import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  VersionError,
  targetRepoVersion,
  targetUnitVersion,
  unitVersionBranch,
  type BranchHistory,
  type RepoVersionSettings,
  type UnitVersionSettings,
} from '../../src/git/versions.js';

// main, newest first: c4 (no tag), c3 (1.1.0), c2 (no tag), c1 (1.0.0)
const MAIN: BranchHistory = {
  branch: 'main',
  availableBranches: ['dev', 'main'],
  commits: [
    { commit: 'c4'.padEnd(40, '4'), summary: 'four', tag: null },
    { commit: 'c3'.padEnd(40, '3'), summary: 'three', tag: '1.1.0' },
    { commit: 'c2'.padEnd(40, '2'), summary: 'two', tag: null },
    { commit: 'c1'.padEnd(40, '1'), summary: 'one', tag: '1.0.0' },
  ],
};
const [C4, C3, C2, C1] = MAIN.commits.map((c) => c.commit) as [string, string, string, string];
const UNTAGGED: BranchHistory = { branch: 'dev', availableBranches: ['dev', 'main'], commits: [{ commit: 'd1'.padEnd(40, 'd'), summary: 'd', tag: null }] };
const EMPTY: BranchHistory = { branch: 'main', availableBranches: ['main'], commits: [] };

function repo(overrides: Partial<RepoVersionSettings> = {}): RepoVersionSettings {
  return {
    defaultBranch: 'main',
    defaultCommit: null,
    isAutoUpdateRepo: true,
    isOnlyTagUpdate: false,
    isCompilableRepo: false,
    ...overrides,
  };
}

function expectError(fn: () => unknown, kind: VersionError['kind'], message: string): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof VersionError, String(error));
    assert.equal(error.kind, kind);
    assert.equal(error.message, message);
    return true;
  });
}

describe('targetRepoVersion', () => {
  const cases: { name: string; repo: RepoVersionSettings; history: BranchHistory; expected: { commit: string; tag: string | null } }[] = [
    { name: 'auto, latest commit', repo: repo(), history: MAIN, expected: { commit: C4, tag: null } },
    { name: 'auto, tags only ⇒ newest tagged commit', repo: repo({ isOnlyTagUpdate: true }), history: MAIN, expected: { commit: C3, tag: '1.1.0' } },
    { name: 'auto, compilable ⇒ newest tagged commit', repo: repo({ isCompilableRepo: true }), history: MAIN, expected: { commit: C3, tag: '1.1.0' } },
    { name: 'manual, untagged commit', repo: repo({ isAutoUpdateRepo: false, defaultCommit: C2 }), history: MAIN, expected: { commit: C2, tag: null } },
    { name: 'manual, tagged commit', repo: repo({ isAutoUpdateRepo: false, defaultCommit: C1 }), history: MAIN, expected: { commit: C1, tag: '1.0.0' } },
    {
      name: 'manual compilable, tagged commit (case-insensitive sha)',
      repo: repo({ isAutoUpdateRepo: false, isCompilableRepo: true, defaultCommit: C3.toUpperCase() }),
      history: MAIN,
      expected: { commit: C3, tag: '1.1.0' },
    },
  ];
  for (const { name, repo: settings, history, expected } of cases) {
    test(name, () => assert.deepEqual(targetRepoVersion(settings, history), expected));
  }

  test('errors carry the reference messages', () => {
    expectError(() => targetRepoVersion(repo({ defaultBranch: 'nope' }), MAIN), 'BranchNotFound', "Branch nope not found, available: ['dev', 'main']");
    expectError(() => targetRepoVersion(repo({ defaultBranch: null }), MAIN), 'BranchNotFound', "Branch None not found, available: ['dev', 'main']");
    expectError(
      () => targetRepoVersion(repo({ defaultBranch: 'dev', isOnlyTagUpdate: true }), UNTAGGED),
      'VersionMissing',
      'Version is missing: The tags are not in the repository',
    );
    expectError(() => targetRepoVersion(repo(), EMPTY), 'VersionMissing', 'Version is missing: Branch main has no commits');
    expectError(
      () => targetRepoVersion(repo({ isAutoUpdateRepo: false, isCompilableRepo: true, defaultCommit: C4 }), MAIN),
      'CommitWithoutTag',
      `Commit ${C4} without Tag`,
    );
    expectError(
      () => targetRepoVersion(repo({ isAutoUpdateRepo: false, defaultCommit: 'f'.repeat(40) }), MAIN),
      'CommitNotInBranch',
      `Commit ${'f'.repeat(40)} not in branch main`,
    );
    expectError(() => targetRepoVersion(repo({ isAutoUpdateRepo: false }), MAIN), 'CommitNotInBranch', 'Commit None not in branch main');
  });

  test('a history of another branch is a wiring mistake', () => {
    assert.throws(() => targetRepoVersion(repo(), { ...UNTAGGED, branch: 'dev' }), /Branch history of "dev" given, "main" expected/);
  });
});

describe('targetUnitVersion', () => {
  const manual = (overrides: Partial<UnitVersionSettings> = {}): UnitVersionSettings => ({
    isAutoUpdateFromRepoUnit: false,
    repoBranch: 'main',
    repoCommit: C2,
    ...overrides,
  });

  test('auto units follow the repo target', () => {
    const unit: UnitVersionSettings = { isAutoUpdateFromRepoUnit: true, repoBranch: 'dev', repoCommit: null };
    assert.equal(unitVersionBranch(unit, repo()), 'main');
    assert.deepEqual(targetUnitVersion(unit, repo({ isOnlyTagUpdate: true }), MAIN), { commit: C3, tag: '1.1.0' });
  });

  test('manual units use their own branch and commit', () => {
    assert.equal(unitVersionBranch(manual({ repoBranch: 'dev' }), repo()), 'dev');
    assert.deepEqual(targetUnitVersion(manual(), repo(), MAIN), { commit: C2, tag: null });
    assert.deepEqual(targetUnitVersion(manual({ repoCommit: C1 }), repo({ isCompilableRepo: true }), MAIN), { commit: C1, tag: '1.0.0' });
  });

  test('manual unit errors', () => {
    expectError(() => targetUnitVersion(manual({ repoBranch: 'gone' }), repo(), MAIN), 'BranchNotFound', "Branch gone not found, available: ['dev', 'main']");
    expectError(() => targetUnitVersion(manual({ repoCommit: C2 }), repo({ isCompilableRepo: true }), MAIN), 'CommitWithoutTag', `Commit ${C2} without Tag`);
    expectError(
      () => targetUnitVersion(manual({ repoCommit: 'e'.repeat(40) }), repo(), MAIN),
      'VersionMissing',
      `Version is missing: Commit ${'e'.repeat(40)} not in branch main`,
    );
    expectError(() => targetUnitVersion(manual({ repoCommit: null }), repo(), MAIN), 'VersionMissing', 'Version is missing: Commit None not in branch main');
  });
});
