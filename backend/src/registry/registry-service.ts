/**
 * The repository registry (pepeunit-backend.md §5.3, §6): one entry per external repository
 * URL, search instead of create, per-user credentials of private entries, sync requests and
 * their status. The syncs themselves run in RegistrySyncService.
 */
import type { Pool } from 'pg';
import type { BackendConfig } from '@pepeunit/common';
import type { GitLogger as Logger } from '../git/index.js';
import { NoAccessError, RepositoryRegistryError, ValidationError } from '../errors.js';
import type { Agent } from '../plugins/auth.js';
import type { Cipher } from '../security/cipher.js';
import { requireCreator } from '../services/access.js';
import { paging, searchConditions } from '../services/validators.js';
import { registryStorageKey } from '../services/repo-storage.js';
import { isoNaive } from '../schemas/common.js';
import type { GitPlatform, GitStore } from '../git/index.js';
import type {
  BranchCommitsQuery,
  CommitRead,
  Credentials,
  CredentialsWithStatus,
  RegistriesQuery,
  RegistryCreate,
  RegistryRead,
  RegistrySearchQuery,
  SyncAllAccepted,
  SyncProgress,
  SyncStatusRead,
} from '../schemas/repository-registry.js';
import {
  MASKED_TOKEN,
  readCredentialMap,
  updateCredentialMap,
  writeCredentialMap,
  type CredentialMap,
  type CredentialStatus,
} from './credentials.js';
import { gitCall, type PlatformApi } from './platform.js';
import type { RegistrySyncService, SyncActor, SyncOutcome, SyncStatus } from './sync-service.js';
import { normalizeRepositoryUrl } from './url.js';
import type { DestinationGuard } from '../git/destinations.js';
import type { DomainRules } from './domain-rules.js';

export interface RegistryRow {
  uuid: string;
  platform: GitPlatform;
  repository_url: string;
  is_public_repository: boolean;
  cipher_credentials_private_repository: string | null;
  releases_data: string | null;
  local_repository_size: number;
  sync_status: SyncStatus | null;
  sync_error: string | null;
  sync_last_datetime: Date | null;
  create_datetime: Date;
  last_update_datetime: Date;
  creator_uuid: string | null;
  sync_finished_datetime: Date | null;
  sync_progress: SyncProgress | null;
  default_branch: string | null;
  branches: string[] | null;
  head_commit: string | null;
  title: string | null;
  description: string | null;
  readme_heading: string | null;
  readme_paragraph: string | null;
  toml_metadata: Record<string, unknown> | null;
}

/** Every column but the encrypted credentials and the search text. */
const COLUMNS = `uuid, platform, repository_url, is_public_repository, cipher_credentials_private_repository, releases_data,
  local_repository_size, sync_status, sync_error, sync_last_datetime, create_datetime, last_update_datetime, creator_uuid,
  sync_finished_datetime, sync_progress, default_branch, branches, head_commit, title, description, readme_heading,
  readme_paragraph, toml_metadata`;

export interface RegistryServiceOptions {
  pg: Pool;
  config: BackendConfig;
  cipher: Cipher;
  gitStore: GitStore;
  sync: RegistrySyncService;
  platformApi: PlatformApi;
  logger: Logger;
  /** The SSRF guard and the admin's domain rules (plugins/git-store.ts). */
  destinations: { readonly guard: DestinationGuard; readonly rules: DomainRules };
}

export class RegistryService {
  private readonly pg: Pool;
  private readonly config: BackendConfig;
  private readonly cipher: Cipher;
  private readonly gitStore: GitStore;
  private readonly sync: RegistrySyncService;
  private readonly platformApi: PlatformApi;
  private readonly logger: Logger;
  readonly destinations: RegistryServiceOptions['destinations'];

  constructor(options: RegistryServiceOptions) {
    this.destinations = options.destinations;
    this.pg = options.pg;
    this.config = options.config;
    this.cipher = options.cipher;
    this.gitStore = options.gitStore;
    this.sync = options.sync;
    this.platformApi = options.platformApi;
    this.logger = options.logger;
  }

  // -------------------------------------------------------------------------------------------
  // Reading

  async get(uuid: string): Promise<RegistryRow> {
    const { rows } = await this.pg.query<RegistryRow>(`SELECT ${COLUMNS} FROM repository_registry WHERE uuid = $1`, [uuid]);
    if (!rows[0]) throw new ValidationError(`RepositoryRegistry ${uuid} does not exist`);
    return rows[0];
  }

  async findByUrl(normalizedUrl: string): Promise<RegistryRow | null> {
    const { rows } = await this.pg.query<RegistryRow>(
      `SELECT ${COLUMNS} FROM repository_registry WHERE repository_url = $1 OR lower(repository_url) = lower($1)
        ORDER BY (repository_url = $1) DESC LIMIT 1`,
      [normalizedUrl],
    );
    return rows[0] ?? null;
  }

  /** RegistryRead: never the credentials. `branches` come from the last sync (or the clone for older rows). */
  async toRead(row: RegistryRow): Promise<RegistryRead> {
    let branches = row.branches;
    if (!Array.isArray(branches)) branches = await this.gitStore.branches(registryStorageKey(row.uuid)).catch(() => []);
    return {
      uuid: row.uuid,
      platform: row.platform,
      repository_url: row.repository_url,
      is_public_repository: row.is_public_repository,
      releases_data: row.releases_data,
      local_repository_size: row.local_repository_size,
      sync_status: row.sync_status,
      sync_error: row.sync_error,
      sync_last_datetime: isoNaive(row.sync_last_datetime),
      create_datetime: isoNaive(row.create_datetime)!,
      last_update_datetime: isoNaive(row.last_update_datetime)!,
      creator_uuid: row.creator_uuid,
      branches,
      sync_finished_datetime: isoNaive(row.sync_finished_datetime),
      default_branch: row.default_branch,
      title: row.title,
      description: row.description,
      readme_heading: row.readme_heading,
      readme_paragraph: row.readme_paragraph,
      toml_metadata: row.toml_metadata,
    };
  }

  /** §4.4 check_visibility for registries: private entries are hidden from the anonymous Bot. */
  requireVisible(agent: Agent, row: RegistryRow): void {
    if (row.is_public_repository) return;
    if (agent.type === 'Bot' || agent.type === 'Grafana' || agent.type === 'GrafanaUnitNode') {
      throw new NoAccessError('Private RepositoryRegistry is not available for this agent');
    }
  }

  credentialMap(row: RegistryRow): CredentialMap {
    return readCredentialMap(this.cipher, row.cipher_credentials_private_repository);
  }

  /**
   * §4.4 check_repository_registry_access: a User; for a private entry the caller's own
   * credentials must be `Valid`.
   */
  requireAccess(agent: Agent, row: RegistryRow): void {
    if (agent.type !== 'User') throw new NoAccessError(`Agent type ${agent.type} has no access to this operation`);
    if (row.is_public_repository) return;
    const map = this.credentialMap(row);
    if (Object.keys(map).length === 0) throw new NoAccessError('This RepositoryRegistry has no Credentials');
    const entry = map[agent.uuid];
    if (!entry) throw new NoAccessError('This User has no external Platform Credentials for this RepositoryRegistry');
    if (entry.status !== 'Valid') throw new NoAccessError(`Status Credentials external Platform: ${entry.status}`);
  }

  /**
   * Who may sync an entry: admins; its creator; for a public entry, anyone who owns a Repo on
   * it; for a private entry, anyone holding Valid credentials.
   */
  async controls(agent: Agent, row: RegistryRow): Promise<boolean> {
    if (agent.type === 'Backend') return true;
    if (agent.type !== 'User') return false;
    if (agent.role === 'Admin' || row.creator_uuid === agent.uuid) return true;
    if (!row.is_public_repository) return this.credentialMap(row)[agent.uuid]?.status === 'Valid';
    const { rowCount } = await this.pg.query('SELECT 1 FROM repos WHERE repository_registry_uuid = $1 AND creator_uuid = $2 LIMIT 1', [row.uuid, agent.uuid]);
    return (rowCount ?? 0) > 0;
  }

  async requireControl(agent: Agent, row: RegistryRow): Promise<void> {
    if (!(await this.controls(agent, row))) {
      throw new NoAccessError(
        'Only an admin, the creator of this RepositoryRegistry, the creator of a Repo on it (public) or a holder of valid credentials (private) can sync it',
      );
    }
  }

  // -------------------------------------------------------------------------------------------
  // Create = search first

  /**
   * Registers a URL, or returns the existing entry for it (`created: false`): the URL is the
   * unique key after normalisation. A new entry is synced before returning (its status tells
   * how that went). For an existing private entry the caller's credentials are added.
   */
  async create(agent: Extract<Agent, { type: 'User' }>, body: RegistryCreate): Promise<{ row: RegistryRow; created: boolean }> {
    const url = normalizeRepositoryUrl(body.repository_url, this.config.gitAllowedProtocols);
    const credentials = body.credentials ?? null;
    const existing = await this.findByUrl(url);
    if (!existing && /^https?:/.test(url)) {
      // The admin's domain rules, then where the host resolves (SSRF): before any request is made.
      await this.destinations.rules.assertRegistrable(new URL(url).hostname);
      await this.destinations.guard.check(url);
    }
    if (existing) return { row: await this.joinExisting(agent, existing, credentials), created: false };

    let status: CredentialStatus | null = null;
    if (!body.is_public_repository) {
      if (!credentials || !credentials.username.trim() || !credentials.pat_token.trim()) {
        throw new RepositoryRegistryError('Credentials is not valid: a private repository needs a username and a personal access token');
      }
      status = await this.verifyCredentials(body.platform, url, credentials);
    }
    const cipherCredentials =
      status === null || credentials === null
        ? null
        : writeCredentialMap(this.cipher, { [agent.uuid]: { credentials: { username: credentials.username, pat_token: credentials.pat_token }, status } });
    const { rows } = await this.pg.query<{ uuid: string }>(
      `INSERT INTO repository_registry (uuid, platform, repository_url, is_public_repository, cipher_credentials_private_repository,
              local_repository_size, create_datetime, last_update_datetime, creator_uuid, search_text)
       VALUES (gen_random_uuid(), $1, $2::varchar, $3, $4, 0, (now() AT TIME ZONE 'utc'), (now() AT TIME ZONE 'utc'), $5, lower($2::varchar))
       ON CONFLICT (repository_url) DO NOTHING RETURNING uuid`,
      [body.platform, url, body.is_public_repository, cipherCredentials, agent.uuid],
    );
    if (!rows[0]) {
      // registered by someone else a moment ago
      const winner = await this.findByUrl(url);
      if (!winner) throw new RepositoryRegistryError(`Url "${url}" could not be registered; try again`);
      return { row: await this.joinExisting(agent, winner, credentials), created: false };
    }
    const uuid = rows[0].uuid;
    this.logger.info({ registry: uuid, url, platform: body.platform, isPublic: body.is_public_repository }, 'registry entry created');
    const actor: SyncActor = body.is_public_repository ? { type: 'backend' } : { type: 'user', uuid: agent.uuid, acceptNotVerified: true };
    await this.sync.syncRegistry(uuid, actor, 'create').catch((error: unknown) => {
      this.logger.warn({ registry: uuid, err: (error as Error).message }, 'first sync of a new registry entry could not run');
    });
    return { row: await this.get(uuid), created: true };
  }

  private async joinExisting(agent: Extract<Agent, { type: 'User' }>, row: RegistryRow, credentials: Credentials | null): Promise<RegistryRow> {
    if (row.is_public_repository) return row;
    if (!credentials) {
      throw new RepositoryRegistryError(
        `Url "${row.repository_url}" is already registered as a private repository: pass your credentials to use it`,
      );
    }
    await this.setCredentials(agent, row.uuid, credentials);
    return this.get(row.uuid);
  }

  /** Valid/Error from the platform API; NotVerified when there is no API to ask (the next sync verifies). */
  private async verifyCredentials(platform: GitPlatform, url: string, credentials: Credentials): Promise<CredentialStatus> {
    const client = this.platformApi.client(platform, url, { username: credentials.username, patToken: credentials.pat_token });
    if (!client) return 'NotVerified';
    return (await gitCall(() => client.isValidToken())) ? 'Valid' : 'Error';
  }

  // -------------------------------------------------------------------------------------------
  // Credentials of private entries (§6.5)

  async setCredentials(agent: Extract<Agent, { type: 'User' }>, uuid: string, credentials: Credentials): Promise<CredentialStatus> {
    const row = await this.get(uuid);
    if (row.is_public_repository) throw new RepositoryRegistryError('This Repository is Public');
    if (!credentials.username.trim() || !credentials.pat_token.trim()) throw new RepositoryRegistryError('Credentials is not valid');
    // get_credentials shows the token masked; sending the mask back means "keep my token" (a
    // form that round-trips), never "my token is ********".
    let patToken = credentials.pat_token;
    if (patToken === MASKED_TOKEN) {
      const current = this.credentialMap(row)[agent.uuid];
      if (!current) throw new RepositoryRegistryError('Credentials is not valid: send the token itself, not its mask');
      patToken = current.credentials.pat_token;
    }
    const stored = { username: credentials.username, pat_token: patToken };
    // verified before storing: a failing API call changes nothing
    const status = await this.verifyCredentials(row.platform, row.repository_url, stored);
    await updateCredentialMap(this.pg, this.cipher, uuid, (map) => {
      map[agent.uuid] = { credentials: stored, status };
    });
    this.logger.info({ registry: uuid, user: agent.uuid, status }, 'registry credentials set');
    return status;
  }

  /** The caller's own entry with the token masked, or null. */
  async getCredentials(agent: Extract<Agent, { type: 'User' }>, uuid: string): Promise<CredentialsWithStatus | null> {
    const row = await this.get(uuid);
    if (row.is_public_repository) throw new RepositoryRegistryError('This Repository is Public');
    const entry = this.credentialMap(row)[agent.uuid];
    if (!entry) return null;
    return { credentials: { username: entry.credentials.username, pat_token: MASKED_TOKEN }, status: entry.status };
  }

  // -------------------------------------------------------------------------------------------
  // Lists and search

  async list(agent: Agent, query: RegistriesQuery): Promise<{ count: number; rows: RegistryRow[] }> {
    const where: string[] = [];
    const values: unknown[] = [];
    if (agent.type === 'Bot' || agent.type === 'Grafana' || agent.type === 'GrafanaUnitNode') where.push('is_public_repository');
    if (query.uuids?.length) {
      values.push(query.uuids);
      where.push(`uuid = ANY($${values.length}::uuid[])`);
    }
    if (query.creator_uuid) {
      values.push(query.creator_uuid);
      where.push(`creator_uuid = $${values.length}`);
    }
    if (query.is_public_repository !== undefined) {
      values.push(query.is_public_repository);
      where.push(`is_public_repository = $${values.length}`);
    }
    where.push(...searchConditions(query.search_string, ['repository_url'], values));
    const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const count = await this.pg.query<{ n: number }>(`SELECT count(*)::int AS n FROM repository_registry ${clause}`, values);
    const page = paging(query, this.config, values);
    const order: string[] = [];
    if (query.order_by_create_date) order.push(`create_datetime ${query.order_by_create_date === 'asc' ? 'ASC' : 'DESC'}`);
    if (query.order_by_last_update) order.push(`last_update_datetime ${query.order_by_last_update === 'asc' ? 'ASC' : 'DESC'}`);
    if (order.length === 0) order.push('create_datetime DESC');
    const { rows } = await this.pg.query<RegistryRow>(`SELECT ${COLUMNS} FROM repository_registry ${clause} ORDER BY ${order.join(', ')}, uuid ${page}`, values);
    return { count: count.rows[0]?.n ?? 0, rows };
  }

  /**
   * Search instead of create: public entries whose URL, title, description, README heading or
   * paragraph, or pepeunit.toml fields contain every word. Entries whose title, README heading
   * or URL match come first. Private entries are never listed here.
   */
  async search(query: RegistrySearchQuery): Promise<{ count: number; rows: RegistryRow[] }> {
    const values: unknown[] = [];
    const where = ['is_public_repository'];
    if (query.platform) {
      values.push(query.platform);
      where.push(`platform = $${values.length}`);
    }
    const words = (query.search_string ?? '').toLowerCase();
    where.push(...searchConditions(words, ['search_text'], values));
    const clause = `WHERE ${where.join(' AND ')}`;
    const count = await this.pg.query<{ n: number }>(`SELECT count(*)::int AS n FROM repository_registry ${clause}`, values);
    let rank = '';
    const firstWord = words.split(/\s+/).find(Boolean);
    if (firstWord) {
      values.push(`%${firstWord.replace(/[\\%_]/g, (m) => `\\${m}`)}%`);
      const p = `$${values.length}`;
      rank = `(coalesce(title, '') ILIKE ${p} OR coalesce(readme_heading, '') ILIKE ${p} OR repository_url ILIKE ${p}) DESC, `;
    }
    const page = paging(query, this.config, values);
    const { rows } = await this.pg.query<RegistryRow>(
      `SELECT ${COLUMNS} FROM repository_registry ${clause} ORDER BY ${rank}create_datetime DESC, uuid ${page}`,
      values,
    );
    return { count: count.rows[0]?.n ?? 0, rows };
  }

  /** §6.7: commits of a branch, newest first, with tags; paged in memory like the reference. */
  async branchCommits(agent: Agent, uuid: string, query: BranchCommitsQuery): Promise<CommitRead[]> {
    const row = await this.get(uuid);
    this.requireAccess(agent, row);
    const offset = query.offset ?? 0;
    const limit = query.limit ?? 10;
    if (limit > this.config.maxPaginationSize) throw new ValidationError(`limit must be <= ${this.config.maxPaginationSize}`);
    let commits = await gitCall(() => this.gitStore.commits(registryStorageKey(row.uuid), query.repo_branch));
    if (query.only_tag) commits = commits.filter((commit) => commit.tag !== null);
    const pageOfCommits = limit > 0 ? commits.slice(offset, offset + limit) : commits.slice(offset);
    return pageOfCommits.map((commit) => ({ commit: commit.commit, summary: commit.summary, tag: commit.tag }));
  }

  // -------------------------------------------------------------------------------------------
  // Sync requests and status

  /** A user's "sync this one": they must control the entry; joins a running sync. */
  async syncByUser(agent: Extract<Agent, { type: 'User' }>, uuid: string): Promise<SyncOutcome> {
    const row = await this.get(uuid);
    await this.requireControl(agent, row);
    // a controller without own credentials (admin, creator) syncs with the first valid ones
    const own = !row.is_public_repository && this.credentialMap(row)[agent.uuid] !== undefined;
    const actor: SyncActor = own ? { type: 'user', uuid: agent.uuid } : { type: 'backend' };
    return this.sync.syncRegistry(uuid, actor, 'user');
  }

  async syncStatus(agent: Agent, uuid: string): Promise<SyncStatusRead> {
    let row = await this.get(uuid);
    this.requireVisible(agent, row);
    const running = await this.sync.isRunning('registry', uuid, row.sync_status);
    if (!running && row.sync_status === 'Processing') row = await this.get(uuid); // healed meanwhile
    const live = this.sync.liveProgress('registry', uuid);
    return {
      uuid: row.uuid,
      sync_status: row.sync_status,
      sync_error: row.sync_error,
      sync_last_datetime: isoNaive(row.sync_last_datetime),
      sync_finished_datetime: isoNaive(row.sync_finished_datetime),
      local_repository_size: row.local_repository_size,
      is_running: running,
      progress: live ?? (running ? row.sync_progress : null),
    };
  }

  /** Admin "sync everything now": starts in the background and answers with what it covers. */
  async syncAll(): Promise<SyncAllAccepted> {
    const startedAt = new Date().toISOString();
    const alreadyRunning = await this.sync.syncAllLockedElsewhere();
    const counts = await this.sync.countAll();
    if (!alreadyRunning) {
      this.sync.syncAll({ reason: 'admin' }).catch((error: unknown) => this.logger.error({ err: (error as Error).message }, 'sync of everything failed'));
    }
    return {
      accepted: !alreadyRunning,
      already_running: alreadyRunning,
      registries: counts.registries,
      private_repos: counts.privateRepos,
      started_at: startedAt,
    };
  }

  // -------------------------------------------------------------------------------------------
  // Delete

  /** Creator only; refused while Repos use the entry; removes the clone too. */
  async delete(agent: Agent, uuid: string): Promise<void> {
    const row = await this.get(uuid);
    requireCreator(agent, row);
    await this.sync.whileIdle('registry', uuid, async () => {
      const repos = await this.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM repos WHERE repository_registry_uuid = $1', [uuid]);
      const n = repos.rows[0]?.n ?? 0;
      if (n > 0) throw new ValidationError(`The array was expected to be empty: this RepositoryRegistry still has ${n} Repo${n === 1 ? '' : 's'}`);
      await this.pg.query('DELETE FROM repository_registry WHERE uuid = $1', [uuid]);
      await this.gitStore.remove(registryStorageKey(uuid));
    });
    this.logger.info({ registry: uuid }, 'registry entry deleted');
  }

  // -------------------------------------------------------------------------------------------
  // Start-up

  /**
   * Moves credentials of Repos migrated from the pre-registry schema (migration 003) into
   * their registry entry's map, under the Repo's creator, as NotVerified.
   */
  async adoptLegacyCredentials(): Promise<number> {
    const { rows } = await this.pg.query<{ uuid: string; creator_uuid: string | null; registry: string; legacy: string }>(
      'SELECT uuid, creator_uuid, repository_registry_uuid AS registry, legacy_cipher_credentials AS legacy FROM repos WHERE legacy_cipher_credentials IS NOT NULL',
    );
    let adopted = 0;
    for (const repo of rows) {
      let parsed: { username?: unknown; pat_token?: unknown; credentials?: { username?: unknown; pat_token?: unknown } };
      try {
        parsed = JSON.parse(this.cipher.decrypt(repo.legacy)) as typeof parsed;
      } catch {
        this.logger.warn({ repo: repo.uuid }, 'credentials of a migrated private Repo cannot be decrypted with this PU_ENCRYPT_KEY; left in place');
        continue;
      }
      const source = parsed?.credentials ?? parsed;
      if (repo.creator_uuid && typeof source?.username === 'string' && typeof source?.pat_token === 'string') {
        const creator = repo.creator_uuid;
        const credentials = { username: source.username, pat_token: source.pat_token };
        await updateCredentialMap(this.pg, this.cipher, repo.registry, (map) => {
          map[creator] ??= { credentials, status: 'NotVerified' };
        });
        adopted++;
      } else {
        this.logger.warn({ repo: repo.uuid }, 'credentials of a migrated private Repo have an unknown format; dropped');
      }
      await this.pg.query('UPDATE repos SET legacy_cipher_credentials = NULL WHERE uuid = $1', [repo.uuid]);
    }
    if (adopted > 0) this.logger.info({ adopted }, 'credentials of migrated private Repos moved into the registry');
    return adopted;
  }
}
