/**
 * Everything units need from a Repo and its git clone, in ONE place: the `repos` and
 * `repository_registry` rows (plain SQL), the clone key, branch histories, target versions
 * (§6.8, §7.3), `schema_example.json` / `env_example.json` at a commit, and the releases of
 * compilable repos. The lead may later swap this module for the registry engineer's service;
 * the rest of units/ and unit_nodes/ only use `loadRepoSource` and `RepoVersions`.
 *
 * Every error of the git layer leaves as a reference domain error: GitRepoError (422, code 5)
 * for missing branches/commits/files/versions and unsynced clones, CustomJSONDecodeError
 * (422, code 9) for files that are not valid JSON.
 */
import type { Pool, PoolClient } from 'pg';
import {
  GitReadError,
  GitSyncError,
  VersionError,
  assertBranchAvailable,
  assertCommitInBranch,
  formatList,
  targetRepoVersion,
  targetUnitVersion,
  type BranchHistory,
  type GitStore,
  type RepoVersionSettings,
  type TargetVersion,
  type UnitVersionSettings,
} from '../git/index.js';
import { CustomJSONDecodeError, GitRepoError, ValidationError } from '../errors.js';
import { repoStorageKey, repoVersionSettings } from '../services/repo-storage.js';

type Db = Pool | PoolClient;

export interface RepoRow {
  uuid: string;
  visibility_level: string;
  name: string;
  default_branch: string | null;
  is_auto_update_repo: boolean;
  default_commit: string | null;
  is_only_tag_update: boolean;
  is_compilable_repo: boolean;
  creator_uuid: string | null;
  repository_registry_uuid: string;
}

export interface RegistryRow {
  uuid: string;
  repository_url: string;
  is_public_repository: boolean;
  releases_data: string | null;
}

/** A Repo, its registry entry and the GitStore key of the clone holding its files. */
export interface RepoSource {
  readonly repo: RepoRow;
  readonly registry: RegistryRow;
  readonly key: string;
}

/** Loads the Repo and its registry entry; ValidationError when either is missing. */
export async function loadRepoSource(db: Db, repoUuid: string | null): Promise<RepoSource> {
  if (!repoUuid) throw new ValidationError('Repo None does not exist');
  const repoResult = await db.query<RepoRow>(
    `SELECT uuid, visibility_level, name, default_branch, is_auto_update_repo, default_commit, is_only_tag_update,
            is_compilable_repo, creator_uuid, repository_registry_uuid
       FROM repos WHERE uuid = $1`,
    [repoUuid],
  );
  const repo = repoResult.rows[0];
  if (!repo) throw new ValidationError(`Repo ${repoUuid} does not exist`);
  const registryResult = await db.query<RegistryRow>(
    'SELECT uuid, repository_url, is_public_repository, releases_data FROM repository_registry WHERE uuid = $1',
    [repo.repository_registry_uuid],
  );
  const registry = registryResult.rows[0];
  if (!registry) throw new ValidationError(`RepositoryRegistry ${repo.repository_registry_uuid} does not exist`);
  return { repo, registry, key: repoStorageKey(repo, registry) };
}

export function repoSettings(repo: RepoRow): RepoVersionSettings {
  return repoVersionSettings(repo);
}

export interface UnitVersionColumns {
  is_auto_update_from_repo_unit: boolean;
  repo_branch: string | null;
  repo_commit: string | null;
}

export function unitSettings(unit: UnitVersionColumns): UnitVersionSettings {
  return {
    isAutoUpdateFromRepoUnit: unit.is_auto_update_from_repo_unit,
    repoBranch: unit.repo_branch,
    repoCommit: unit.repo_commit,
  };
}

/** Maps git-layer errors to reference domain errors; anything else is rethrown untouched. */
export function toDomainError(error: unknown): unknown {
  if (error instanceof VersionError) return new GitRepoError(error.message);
  if (error instanceof GitReadError) {
    if (error.kind === 'InvalidJson') return new CustomJSONDecodeError(error.message);
    return new GitRepoError(error.message);
  }
  if (error instanceof GitSyncError) return new GitRepoError(error.message);
  return error;
}

async function domain<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    throw toDomainError(error);
  }
}

/** Release assets of a compilable repo: `{tag: [[asset name, url], ...]}`. */
export type Releases = Record<string, [string, string][]>;

/**
 * Reads of one Repo's clone with memoisation for the duration of one operation (a request,
 * or one repo-wide firmware update), so N units of a repo cost one branch listing.
 */
export class RepoVersions {
  private readonly histories = new Map<string, Promise<BranchHistory>>();
  private readonly files = new Map<string, Promise<unknown>>();

  constructor(
    private readonly store: GitStore,
    readonly source: RepoSource,
  ) {}

  get repo(): RepoRow {
    return this.source.repo;
  }

  history(branch: string | null): Promise<BranchHistory> {
    const name = branch ?? '';
    let pending = this.histories.get(name);
    if (!pending) {
      pending = domain(
        name === ''
          ? this.store.branches(this.source.key).then((availableBranches) => ({ branch: null, availableBranches, commits: [] }))
          : this.store.branchHistory(this.source.key, name),
      );
      this.histories.set(name, pending);
    }
    return pending;
  }

  /** GitRepoError "Branch <b> not found, available: [...]" unless the branch exists. */
  async assertBranch(branch: string | null): Promise<void> {
    const history = await this.history(branch);
    try {
      assertBranchAvailable(branch, history.availableBranches);
    } catch (error) {
      throw toDomainError(error);
    }
  }

  /** GitRepoError unless `commit` (full hash) is on `branch`. */
  async assertCommitInBranch(branch: string | null, commit: string | null): Promise<void> {
    await this.assertBranch(branch);
    const history = await this.history(branch);
    try {
      assertCommitInBranch(commit, history);
    } catch (error) {
      throw toDomainError(error);
    }
  }

  async repoTarget(): Promise<TargetVersion> {
    const history = await this.history(this.repo.default_branch);
    try {
      return targetRepoVersion(repoSettings(this.repo), history);
    } catch (error) {
      throw toDomainError(error);
    }
  }

  /** Target version of a unit (§7.3): the repo's for auto-updated units, its pinned commit otherwise. */
  async unitTarget(unit: UnitVersionColumns): Promise<TargetVersion> {
    const settings = unitSettings(unit);
    const history = await this.history(settings.isAutoUpdateFromRepoUnit ? this.repo.default_branch : settings.repoBranch);
    try {
      return targetUnitVersion(settings, repoSettings(this.repo), history);
    } catch (error) {
      throw toDomainError(error);
    }
  }

  /** Parsed JSON file at a commit (GitRepoError if missing, CustomJSONDecodeError if invalid). */
  readJson(commit: string, path: string): Promise<unknown> {
    const cacheKey = `${commit}\0${path}`;
    let pending = this.files.get(cacheKey);
    if (!pending) {
      pending = domain(this.store.readJson(this.source.key, commit, path));
      this.files.set(cacheKey, pending);
    }
    return pending;
  }

  /** `env_example.json` at `commit`; must be a JSON object. */
  async envExample(commit: string): Promise<Record<string, unknown>> {
    const value = await this.readJson(commit, 'env_example.json');
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new GitRepoError(`env_example.json in repo commit ${commit} must be a JSON object`);
    }
    return value as Record<string, unknown>;
  }

  /** `schema_example.json` at `commit`, unvalidated (see unit-schema.ts). */
  schemaExampleRaw(commit: string): Promise<unknown> {
    return this.readJson(commit, 'schema_example.json');
  }

  /** `releases_data` of the registry (compilable repos). */
  releases(): Releases {
    const raw = this.source.registry.releases_data;
    if (!raw) throw new GitRepoError('Repository has no releases: compilable repos need release assets');
    try {
      const parsed = JSON.parse(raw) as unknown;
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
      return parsed as Releases;
    } catch {
      throw new CustomJSONDecodeError('Data Releases for compile repo is invalid');
    }
  }

  /**
   * Compilable repos only: the target tag must have assets and `platform` must be one of them
   * (reference messages "Target Tag has no platforms" / "Not find platform X, available: [...]").
   * Returns the asset link, or null for interpretable repos.
   */
  async firmwarePlatformLink(unit: UnitVersionColumns & { target_firmware_platform: string | null }, target?: TargetVersion): Promise<string | null> {
    if (!this.repo.is_compilable_repo) return null;
    const releases = this.releases();
    const version = target ?? (await this.unitTarget(unit));
    const assets = version.tag !== null ? releases[version.tag] : undefined;
    if (!Array.isArray(assets) || assets.length === 0) throw new GitRepoError('Target Tag has no platforms');
    const found = assets.find((asset) => Array.isArray(asset) && asset[0] === unit.target_firmware_platform);
    if (!found) {
      throw new GitRepoError(
        `Not find platform ${unit.target_firmware_platform ?? 'None'}, available: ${formatList(assets.map((asset) => String(asset[0])))}`,
      );
    }
    return String(found[1]);
  }

  /** Exporter for firmware builds (the tree at a commit). */
  exportTree(commit: string, destination: string): Promise<void> {
    return domain(this.store.exportTree(this.source.key, commit, destination));
  }
}
