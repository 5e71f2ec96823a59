/**
 * Repos (pepeunit-backend.md §5.4, §6.8, §6.9): a user's configuration (branch, commit,
 * auto-update, tag-only, compilable, visibility) on top of a registry entry.
 *
 * Where a Repo's files are: public repositories in the registry entry's shared clone, private
 * ones in the Repo's own copy (`services/repo-storage.ts`). Every read goes through
 * `storageKey(repo)`, by commit, with no work tree — safe while a sync runs.
 *
 * The Units code uses it through `app.repos` (`get`, `storageKey`, `targetVersion`,
 * `branchHistory`, `releases`, the firmware-update hook `setUnitsFirmwareUpdater`); reading a
 * Repo's files and the target version of one Unit is `domain/repo-versions.ts`, the one
 * Repo-source implementation.
 */
import { inTransaction } from '@pepeunit/common';
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import type { BackendConfig } from '@pepeunit/common';
import type { GitLogger as Logger } from '../git/index.js';
import { NoAccessError, RepoError, ValidationError } from '../errors.js';
import type { Agent } from '../plugins/auth.js';
import { checkVisibility, requireCreator, visibilityCondition, visibilityFilter } from '../services/access.js';
import { nameRule, paging, searchConditions } from '../services/validators.js';
import { privateRepoStorageKey, registryStorageKey, repoStorageKey, repoVersionSettings } from '../services/repo-storage.js';
import { VISIBILITY_PRIORITY, type VisibilityLevel } from '../domain/enums.js';
import { isoNaive } from '../schemas/common.js';
import {
  assertBranchAvailable,
  assertCommitInBranch,
  targetRepoVersion,
  type BranchHistory,
  type GitStore,
  type ReleasesData,
  type RepoVersionSettings,
  type TargetVersion,
} from '../git/index.js';
import type { AvailablePlatformsQuery, PlatformRead, RepoCreate, RepoRead, ReposQuery, RepoUpdate, RepoVersions } from '../schemas/repos.js';
import { grantPermission } from '../domain/permissions.js';
import { gitCall } from './platform.js';
import type { RegistryService } from './registry-service.js';
import type { RegistrySyncService, SyncOutcome } from './sync-service.js';

/** A `repos` row joined with what it needs from its registry entry. */
export interface RepoRow {
  uuid: string;
  visibility_level: VisibilityLevel;
  name: string;
  create_datetime: Date;
  default_branch: string | null;
  is_auto_update_repo: boolean;
  default_commit: string | null;
  is_only_tag_update: boolean;
  is_compilable_repo: boolean;
  last_update_datetime: Date;
  creator_uuid: string | null;
  repository_registry_uuid: string;
  /** Sync state of the Repo's own copy (private repositories only). */
  own_sync_status: string | null;
  own_sync_error: string | null;
  own_sync_last_datetime: Date | null;
  own_sync_finished_datetime: Date | null;
  own_local_repository_size: number;
  /** From the registry entry. */
  is_public_repository: boolean;
  repository_url: string;
  platform: string;
  releases_data: string | null;
  registry_sync_status: string | null;
  registry_sync_error: string | null;
  registry_sync_last_datetime: Date | null;
  registry_sync_finished_datetime: Date | null;
}

const SELECT_REPO = `SELECT r.uuid, r.visibility_level, r.name, r.create_datetime, r.default_branch, r.is_auto_update_repo,
       r.default_commit, r.is_only_tag_update, r.is_compilable_repo, r.last_update_datetime, r.creator_uuid,
       r.repository_registry_uuid, r.sync_status AS own_sync_status, r.sync_error AS own_sync_error,
       r.sync_last_datetime AS own_sync_last_datetime, r.sync_finished_datetime AS own_sync_finished_datetime,
       r.local_repository_size AS own_local_repository_size,
       rr.is_public_repository, rr.repository_url, rr.platform, rr.releases_data,
       rr.sync_status AS registry_sync_status, rr.sync_error AS registry_sync_error,
       rr.sync_last_datetime AS registry_sync_last_datetime, rr.sync_finished_datetime AS registry_sync_finished_datetime
  FROM repos r JOIN repository_registry rr ON rr.uuid = r.repository_registry_uuid`;

/** What `PATCH /repos/update_units_firmware` and `POST /repos/bulk_update` call for one Repo. */
export type UnitsFirmwareUpdater = (repo: RepoRow, context: { reason: string }) => Promise<void>;

export function toRepoRead(row: RepoRow): RepoRead {
  const own = !row.is_public_repository;
  return {
    uuid: row.uuid,
    visibility_level: row.visibility_level,
    name: row.name,
    create_datetime: isoNaive(row.create_datetime)!,
    default_branch: row.default_branch,
    is_auto_update_repo: row.is_auto_update_repo,
    default_commit: row.default_commit,
    is_only_tag_update: row.is_only_tag_update,
    is_compilable_repo: row.is_compilable_repo,
    last_update_datetime: isoNaive(row.last_update_datetime)!,
    creator_uuid: row.creator_uuid,
    repository_registry_uuid: row.repository_registry_uuid,
    is_public_repository: row.is_public_repository,
    sync_status: own ? row.own_sync_status : row.registry_sync_status,
    sync_error: own ? row.own_sync_error : row.registry_sync_error,
    sync_last_datetime: isoNaive(own ? row.own_sync_last_datetime : row.registry_sync_last_datetime),
    sync_finished_datetime: isoNaive(own ? row.own_sync_finished_datetime : row.registry_sync_finished_datetime),
  };
}

export interface RepoServiceOptions {
  pg: Pool;
  config: BackendConfig;
  gitStore: GitStore;
  registries: RegistryService;
  sync: RegistrySyncService;
  logger: Logger;
}

export class RepoService {
  private readonly pg: Pool;
  private readonly config: BackendConfig;
  private readonly gitStore: GitStore;
  private readonly registries: RegistryService;
  private readonly sync: RegistrySyncService;
  private readonly logger: Logger;
  private unitsFirmwareUpdater: UnitsFirmwareUpdater = async () => {};
  private repoChangedListener: (repoUuid: string) => void = () => {};

  constructor(options: RepoServiceOptions) {
    this.pg = options.pg;
    this.config = options.config;
    this.gitStore = options.gitStore;
    this.registries = options.registries;
    this.sync = options.sync;
    this.logger = options.logger;
  }

  // -------------------------------------------------------------------------------------------
  // API for other modules (Units)

  async get(uuid: string): Promise<RepoRow> {
    const { rows } = await this.pg.query<RepoRow>(`${SELECT_REPO} WHERE r.uuid = $1`, [uuid]);
    if (!rows[0]) throw new ValidationError(`Repo ${uuid} does not exist`);
    return rows[0];
  }

  /** GitStore key of the copy this Repo reads: the registry clone (public) or its own copy (private). */
  storageKey(repo: Pick<RepoRow, 'uuid' | 'repository_registry_uuid' | 'is_public_repository'>): string {
    return repoStorageKey(repo, { uuid: repo.repository_registry_uuid, is_public_repository: repo.is_public_repository });
  }

  versionSettings(repo: RepoRow): RepoVersionSettings {
    return repoVersionSettings(repo);
  }

  /** Branch list and the commits (newest first, with tags) of `branch` in the Repo's copy. */
  branchHistory(repo: RepoRow, branch: string | null): Promise<BranchHistory> {
    return gitCall(async () => {
      if (branch === null) return { branch: null, availableBranches: await this.gitStore.branches(this.storageKey(repo)), commits: [] };
      return this.gitStore.branchHistory(this.storageKey(repo), branch);
    });
  }

  /** §6.8: `{commit, tag}` the Repo's auto-updated Units should run. GitRepoError when there is none. */
  async targetVersion(repo: RepoRow): Promise<TargetVersion> {
    const history = await this.branchHistory(repo, repo.default_branch);
    return gitCall(async () => targetRepoVersion(this.versionSettings(repo), history));
  }

  /** Release assets by tag (`releases_data` of the registry entry), or null when there are none. */
  releases(repo: RepoRow): ReleasesData | null {
    if (!repo.releases_data) return null;
    try {
      const parsed = JSON.parse(repo.releases_data) as unknown;
      return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as ReleasesData) : null;
    } catch {
      return null;
    }
  }

  /** Registers what "update the Units of a Repo" does (the Units module). Default: nothing. */
  /** Called after an automatically updated Repo's settings changed (its target may have moved). */
  setRepoChangedListener(listener: (repoUuid: string) => void): void {
    this.repoChangedListener = listener;
  }

  setUnitsFirmwareUpdater(updater: UnitsFirmwareUpdater): void {
    this.unitsFirmwareUpdater = updater;
  }

  // -------------------------------------------------------------------------------------------
  // Routes

  async getVisible(agent: Agent, uuid: string): Promise<RepoRow> {
    const repo = await this.get(uuid);
    await checkVisibility(this.pg, agent, 'Repo', repo);
    return repo;
  }

  /** §6.9 create: registry access, name rules, the branch must exist; private ⇒ its own copy is cloned. */
  async create(agent: Extract<Agent, { type: 'User' }>, body: RepoCreate): Promise<RepoRow> {
    const registry = await this.registries.get(body.repository_registry_uuid);
    this.registries.requireAccess(agent, registry);
    this.checkName(body.name);
    await this.checkNameFree(body.name, null);
    const registryKey = registryStorageKey(registry.uuid);
    if (!(await this.gitStore.exists(registryKey))) {
      // never synced or its clone was lost: sync (or join the running sync) before validating
      const own = !registry.is_public_repository;
      await this.sync.syncRegistry(registry.uuid, own ? { type: 'user', uuid: agent.uuid } : { type: 'backend' }, 'user');
    }
    const branches = await gitCall(() => this.gitStore.branches(registryKey));
    await gitCall(async () => assertBranchAvailable(body.default_branch, branches));

    const uuid = randomUUID();
    try {
      await inTransaction(this.pg, async (client) => {
        await client.query(
        `INSERT INTO repos (uuid, visibility_level, name, create_datetime, default_branch, is_auto_update_repo, default_commit,
                is_only_tag_update, is_compilable_repo, last_update_datetime, creator_uuid, repository_registry_uuid)
         VALUES ($1, $2, $3, (now() AT TIME ZONE 'utc'), $4, true, NULL, true, $5, (now() AT TIME ZONE 'utc'), $6, $7)`,
        [uuid, body.visibility_level, body.name, body.default_branch, body.is_compilable_repo ?? false, agent.uuid, registry.uuid],
      );
        await grantPermission(client, { type: 'User', uuid: agent.uuid }, { type: 'Repo', uuid });
      });
    } catch (error) {
      if ((error as { code?: string }).code === '23505') throw new RepoError('Name is not unique');
      throw error;
    }
    this.logger.info({ repo: uuid, registry: registry.uuid, name: body.name }, 'repo created');
    if (!registry.is_public_repository) {
      await this.sync.syncPrivateRepo(uuid, { type: 'user', uuid: agent.uuid }, 'create').catch((error: unknown) => {
        this.logger.warn({ repo: uuid, err: (error as Error).message }, 'first sync of a private Repo copy could not run');
      });
    }
    return this.get(uuid);
  }

  /** §6.9 update (creator only), then a manual Repo pinned to a commit updates its Units. */
  async update(agent: Agent, uuid: string, patch: RepoUpdate): Promise<RepoRow> {
    const repo = await this.get(uuid);
    requireCreator(agent, repo);
    const next: RepoRow = {
      ...repo,
      visibility_level: patch.visibility_level ?? repo.visibility_level,
      name: patch.name ?? repo.name,
      is_auto_update_repo: patch.is_auto_update_repo ?? repo.is_auto_update_repo,
      default_branch: patch.default_branch ?? repo.default_branch,
      default_commit: patch.default_commit ?? repo.default_commit,
      is_only_tag_update: patch.is_only_tag_update ?? repo.is_only_tag_update,
      is_compilable_repo: patch.is_compilable_repo ?? repo.is_compilable_repo,
    };
    if (next.name !== repo.name) {
      this.checkName(next.name);
      await this.checkNameFree(next.name, uuid);
    }
    if (next.visibility_level !== repo.visibility_level) await this.checkChildVisibility(uuid, next.visibility_level);

    const history = await this.branchHistory(next, next.default_branch);
    await gitCall(async () => {
      if (patch.default_branch != null) assertBranchAvailable(next.default_branch, history.availableBranches);
      if (!next.is_auto_update_repo) {
        if (!next.default_branch || !next.default_commit) {
          throw new RepoError('Repo updated manually requires branch and commit to be filled out');
        }
      } else if (next.is_compilable_repo && !next.is_only_tag_update) {
        throw new RepoError('Compiled repositories use only tags when updating automatically');
      }
      if (patch.default_commit != null || !next.is_auto_update_repo) {
        assertBranchAvailable(next.default_branch, history.availableBranches);
        assertCommitInBranch(next.default_commit, history);
      }
      targetRepoVersion(this.versionSettings(next), history);
    });

    try {
      await this.pg.query(
        `UPDATE repos SET visibility_level = $2, name = $3, is_auto_update_repo = $4, default_branch = $5, default_commit = $6,
                is_only_tag_update = $7, is_compilable_repo = $8, last_update_datetime = (now() AT TIME ZONE 'utc')
          WHERE uuid = $1`,
        [uuid, next.visibility_level, next.name, next.is_auto_update_repo, next.default_branch, next.default_commit, next.is_only_tag_update, next.is_compilable_repo],
      );
    } catch (error) {
      if ((error as { code?: string }).code === '23505') throw new RepoError('Name is not unique');
      throw error;
    }
    const saved = await this.get(uuid);
    if (!saved.is_auto_update_repo && saved.default_branch && saved.default_commit) {
      await this.runUpdater(saved, 'repo pinned to a commit');
    } else if (saved.is_auto_update_repo) {
      this.repoChangedListener(saved.uuid);
    }
    return saved;
  }

  async list(agent: Agent, query: ReposQuery): Promise<{ count: number; rows: RepoRow[] }> {
    const where: string[] = [];
    const values: unknown[] = [];
    where.push(visibilityCondition('r', visibilityFilter(agent, 'Repo', query.visibility_level), values));
    if (query.repository_registry_uuid) {
      values.push(query.repository_registry_uuid);
      where.push(`r.repository_registry_uuid = $${values.length}`);
    }
    if (query.uuids?.length) {
      values.push(query.uuids);
      where.push(`r.uuid = ANY($${values.length}::uuid[])`);
    }
    if (query.creator_uuid) {
      values.push(query.creator_uuid);
      where.push(`r.creator_uuid = $${values.length}`);
    }
    if (query.creators_uuids?.length) {
      values.push(query.creators_uuids);
      where.push(`r.creator_uuid = ANY($${values.length}::uuid[])`);
    }
    if (query.is_auto_update_repo !== undefined) {
      values.push(query.is_auto_update_repo);
      where.push(`r.is_auto_update_repo = $${values.length}`);
    }
    where.push(...searchConditions(query.search_string, ['r.name', 'rr.repository_url', 'r.default_branch'], values));
    const clause = `WHERE ${where.join(' AND ')}`;
    const count = await this.pg.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM repos r JOIN repository_registry rr ON rr.uuid = r.repository_registry_uuid ${clause}`,
      values,
    );
    const page = paging(query, this.config, values);
    const order: string[] = [];
    if (query.order_by_create_date) order.push(`r.create_datetime ${query.order_by_create_date === 'asc' ? 'ASC' : 'DESC'}`);
    if (query.order_by_last_update) order.push(`r.last_update_datetime ${query.order_by_last_update === 'asc' ? 'ASC' : 'DESC'}`);
    if (order.length === 0) order.push('r.create_datetime DESC');
    const { rows } = await this.pg.query<RepoRow>(`${SELECT_REPO} ${clause} ORDER BY ${order.join(', ')}, r.uuid ${page}`, values);
    return { count: count.rows[0]?.n ?? 0, rows };
  }

  /** §6.9 available_platforms: release assets of a tag, of a tagged commit, or of the target tag. */
  async availablePlatforms(agent: Agent, uuid: string, query: AvailablePlatformsQuery): Promise<PlatformRead[]> {
    const repo = await this.getVisible(agent, uuid);
    const releases = this.releases(repo);
    if (!repo.is_compilable_repo || !releases) return [];
    let tag: string | null;
    if (query.target_tag) {
      tag = query.target_tag;
    } else if (query.target_commit) {
      const wanted = query.target_commit.toLowerCase();
      const tags = await gitCall(() => this.gitStore.tags(this.storageKey(repo)));
      tag = null;
      for (const item of tags) if (item.commit.toLowerCase().startsWith(wanted) && wanted.length >= 7) tag = item.name; // version order: last wins
    } else {
      tag = (await this.targetVersion(repo)).tag;
    }
    if (tag === null) return [];
    return (releases[tag] ?? []).map(([name, link]) => ({ name, link }));
  }

  /** §6.9 versions: the Repo's Units grouped by the commit they report, with tags. */
  async versions(agent: Agent, uuid: string): Promise<RepoVersions> {
    const repo = await this.getVisible(agent, uuid);
    const { rows } = await this.pg.query<{ commit: string; n: number }>(
      `SELECT current_commit_version AS commit, count(*)::int AS n FROM units
        WHERE repo_uuid = $1 AND current_commit_version IS NOT NULL GROUP BY current_commit_version ORDER BY n DESC, commit`,
      [uuid],
    );
    const tagByCommit = new Map<string, string>();
    if (rows.length > 0) {
      const tags = await this.gitStore.tags(this.storageKey(repo)).catch(() => []);
      for (const tag of tags) tagByCommit.set(tag.commit, tag.name);
    }
    return {
      unit_count: rows.reduce((sum, row) => sum + row.n, 0),
      versions: rows.map((row) => ({ commit: row.commit, unit_count: row.n, tag: tagByCommit.get(row.commit) ?? null })),
    };
  }

  /** "Sync this one" for a Repo: its own copy (private) or its registry entry's clone (public). */
  async syncByUser(agent: Extract<Agent, { type: 'User' }>, uuid: string): Promise<SyncOutcome> {
    const repo = await this.get(uuid);
    if (repo.creator_uuid !== agent.uuid && agent.role !== 'Admin') {
      throw new NoAccessError('Only the creator of this Repo or an admin can sync it');
    }
    if (repo.is_public_repository) return this.sync.syncRegistry(repo.repository_registry_uuid, { type: 'backend' }, 'user');
    return this.sync.syncPrivateRepo(uuid, { type: 'user', uuid: agent.uuid }, 'user');
  }

  /** `PATCH /repos/update_units_firmware/{uuid}`: creator only; runs the registered updater. */
  async updateUnitsFirmware(agent: Agent, uuid: string): Promise<void> {
    const repo = await this.get(uuid);
    requireCreator(agent, repo);
    await this.unitsFirmwareUpdater(repo, { reason: 'requested by the creator' });
  }

  /** `POST /repos/bulk_update`: every auto-updated Repo, in the background; failures are logged per Repo. */
  bulkUpdate(): void {
    void (async () => {
      const { rows } = await this.pg.query<RepoRow>(`${SELECT_REPO} WHERE r.is_auto_update_repo ORDER BY r.create_datetime`);
      let failed = 0;
      for (const repo of rows) if (!(await this.runUpdater(repo, 'bulk update'))) failed++;
      this.logger.info({ repos: rows.length, failed }, 'bulk update of units firmware finished');
    })().catch((error: unknown) => this.logger.error({ err: (error as Error).message }, 'bulk update of units firmware failed'));
  }

  /** Creator only; refused while Units exist; a private Repo's own copy is removed too. */
  async delete(agent: Agent, uuid: string): Promise<void> {
    const repo = await this.get(uuid);
    requireCreator(agent, repo);
    const remove = async () => {
      const units = await this.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM units WHERE repo_uuid = $1', [uuid]);
      const n = units.rows[0]?.n ?? 0;
      if (n > 0) throw new ValidationError(`The array was expected to be empty: this Repo still has ${n} Unit${n === 1 ? '' : 's'}`);
      await this.pg.query('DELETE FROM repos WHERE uuid = $1', [uuid]);
    };
    if (repo.is_public_repository) {
      await remove();
    } else {
      await this.sync.whileIdle('repo', uuid, async () => {
        await remove();
        await this.gitStore.remove(privateRepoStorageKey(uuid));
      });
    }
    this.logger.info({ repo: uuid }, 'repo deleted');
  }

  // -------------------------------------------------------------------------------------------

  private checkName(name: string): void {
    if (!nameRule(this.config).test(name)) throw new RepoError('Name is not correct: 4-20 characters from A-Z a-z 0-9 _ . -');
  }

  private async checkNameFree(name: string, except: string | null): Promise<void> {
    const { rowCount } = await this.pg.query('SELECT 1 FROM repos WHERE name = $1 AND uuid IS DISTINCT FROM $2', [name, except]);
    if (rowCount) throw new RepoError('Name is not unique');
  }

  /** A child Unit may never be less restrictive than its Repo (§0.5). */
  private async checkChildVisibility(uuid: string, level: VisibilityLevel): Promise<void> {
    const { rows } = await this.pg.query<{ name: string; visibility_level: VisibilityLevel }>(
      'SELECT name, visibility_level FROM units WHERE repo_uuid = $1',
      [uuid],
    );
    const looser = rows.find((unit) => (VISIBILITY_PRIORITY[unit.visibility_level] ?? 0) < VISIBILITY_PRIORITY[level]);
    if (looser) {
      throw new ValidationError(
        `The visibility level of the parent object Repo (${level}) is lower than that of the child object Unit ${looser.name} (${looser.visibility_level}): make the Unit at least as restrictive first`,
      );
    }
  }

  private async runUpdater(repo: RepoRow, reason: string): Promise<boolean> {
    try {
      await this.unitsFirmwareUpdater(repo, { reason });
      return true;
    } catch (error) {
      this.logger.warn({ repo: repo.uuid, reason, err: (error as Error).message }, 'updating the units of a repo failed');
      return false;
    }
  }
}
