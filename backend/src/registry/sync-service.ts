/**
 * Syncs of the physical copies: a registry entry's clone (key = registry uuid, shared by every
 * public Repo on that URL) and a private Repo's own copy (key = `private-<repo uuid>`).
 *
 * Guarantees:
 * - One sync per copy at a time. Inside a process, concurrent requests join the running one
 *   (same promise). Across replicas, a session advisory lock (`pg_try_advisory_lock` on a hash
 *   of the copy's id) is held for the whole sync; a replica that cannot take it reports the row
 *   as it is (`Processing`) and the caller polls `sync_status`.
 * - Every sync ends its row in `Updated` or `Error` (try/finally). A row left in `Processing`
 *   by a crashed process is healed (set to `Error`, "interrupted") as soon as its lock is free:
 *   at start-up and whenever its status is read.
 * - Progress: the latest step of every running sync is kept in memory (served by the status
 *   endpoint), written to the row's `sync_progress` and logged at info level, each at most
 *   every few seconds.
 * - Credentials are decrypted only for the sync that needs them and are never logged.
 */
import { ADVISORY_LOCKS } from '@pepeunit/common';
import pg, { type Pool } from 'pg';
import type { BackendConfig } from '@pepeunit/common';
import type { GitLogger as Logger } from '../git/index.js';
import { normalizePostgresUrl } from '@pepeunit/common/postgres';
import { GitRepoError, PepeunitError, RepositoryRegistryError, ValidationError } from '../errors.js';
import type { Cipher } from '../security/cipher.js';
import {
  GitPlatformClientError as PlatformClientFailure,
  GitSyncError,
  scrubSecrets,
  type GitCredentials,
  type GitPlatform,
  type GitStore,
  type RepositoryMetadata,
  type SyncProgress as GitSyncProgress,
} from '../git/index.js';
import { privateRepoStorageKey, registryStorageKey } from '../services/repo-storage.js';
import {
  firstValidCredentials,
  readCredentialMap,
  setCredentialStatus,
  toGitCredentials,
  type CredentialMap,
  type StoredCredential,
} from './credentials.js';
import { PlatformApi, toDomainError } from './platform.js';

export type SyncStatus = 'Updated' | 'Processing' | 'Error';

/** Who a sync runs for: the Backend agent (first Valid credentials) or one user (their own). */
export type SyncActor =
  | { type: 'backend' }
  | {
      type: 'user';
      uuid: string;
      /** Use the user's credentials even if not verified yet (right after setting them); the sync verifies them. */
      acceptNotVerified?: boolean;
    };

export type SyncTrigger = 'create' | 'user' | 'admin' | 'periodic' | 'startup' | 'backend';

export interface SyncOutcome {
  status: SyncStatus;
  error: string | null;
  /** False when another replica holds the sync (the row's current state is reported) or it was throttled. */
  ranHere: boolean;
  /** True when this call joined a sync that was already running in this process. */
  joined: boolean;
  /** True when a user asked again within PU_MIN_INTERVAL_SYNC_REPOSITORY seconds of a successful sync. */
  throttled: boolean;
}

export interface LiveProgress {
  stage: string;
  percent: number | null;
  message: string;
  updated_at: string;
}

export interface SyncAllSummary {
  ran: boolean;
  reason?: string;
  registries: { total: number; updated: number; errors: number; skipped: number };
  privateRepos: { total: number; updated: number; errors: number; skipped: number };
  durationMs: number;
}

type SyncTable = 'repository_registry' | 'repos';

/** What a finished sync refreshed: a registry entry's shared clone or one private Repo's copy. */
export type SyncedCopy = { readonly registryUuid: string; readonly repoUuid?: undefined } | { readonly repoUuid: string; readonly registryUuid?: undefined };

interface Target {
  /** Lock and progress id: `registry:<uuid>` or `repo:<uuid>`. */
  id: string;
  table: SyncTable;
  uuid: string;
}

interface RegistrySyncRow {
  uuid: string;
  platform: GitPlatform;
  repository_url: string;
  is_public_repository: boolean;
  cipher_credentials_private_repository: string | null;
  sync_status: SyncStatus | null;
  sync_error: string | null;
  sync_finished_datetime: Date | null;
}

/** Concurrent syncs per process; more wait in line. Each holds one connection of the lock pool. */
const MAX_CONCURRENT_SYNCS = 2;
const PROGRESS_INTERVAL_MS = 5000;
const INTERRUPTED_MESSAGE = new GitRepoError('Sync was interrupted (the process running it stopped); start the sync again').detail;
/** Advisory lock (two int4 halves, "PEPE" + "REG\x01") electing the replica that syncs everything. */
export const SYNC_ALL_LOCK_KEY = ADVISORY_LOCKS.registrySyncAll;
const MB = 2 ** 20;
const INT4_MAX = 2 ** 31 - 1;

class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

export interface RegistrySyncServiceOptions {
  pg: Pool;
  config: BackendConfig;
  cipher: Cipher;
  gitStore: GitStore;
  logger: Logger;
  platformApi: PlatformApi;
}

export class RegistrySyncService {
  readonly platformApi: PlatformApi;
  private readonly pg: Pool;
  private readonly config: BackendConfig;
  private readonly cipher: Cipher;
  private readonly gitStore: GitStore;
  private readonly logger: Logger;
  private readonly lockPool: Pool;
  private readonly limiter = new Limiter(MAX_CONCURRENT_SYNCS);
  private readonly running = new Map<string, Promise<SyncOutcome>>();
  private readonly progress = new Map<string, LiveProgress>();
  private syncAllRun: Promise<SyncAllSummary> | null = null;
  private closing = false;
  private readonly syncedListeners: Array<(synced: SyncedCopy) => void> = [];

  constructor(options: RegistrySyncServiceOptions) {
    this.pg = options.pg;
    this.config = options.config;
    this.cipher = options.cipher;
    this.gitStore = options.gitStore;
    this.logger = options.logger;
    this.platformApi = options.platformApi;
    // Advisory locks are held for a whole sync: a pool of their own keeps them from starving requests.
    this.lockPool = new pg.Pool({
      connectionString: normalizePostgresUrl(options.config.postgresUrl),
      max: MAX_CONCURRENT_SYNCS + 2,
      idleTimeoutMillis: 10_000,
      application_name: 'pepeunit-registry-sync',
    });
    this.lockPool.on('error', (err) => this.logger.warn({ err: err.message }, 'idle registry-sync lock connection error'));
  }

  /**
   * Called after every successful sync of a copy in this process (a registry clone or a private
   * Repo copy): automatic unit updates follow the versions it brought.
   */
  onSynced(listener: (synced: SyncedCopy) => void): void {
    this.syncedListeners.push(listener);
  }

  // -------------------------------------------------------------------------------------------
  // Entry points

  /** Syncs a registry entry's clone (joins a running sync of it). */
  syncRegistry(registryUuid: string, actor: SyncActor, trigger: SyncTrigger): Promise<SyncOutcome> {
    const target: Target = { id: `registry:${registryUuid}`, table: 'repository_registry', uuid: registryUuid };
    return this.singleFlight(target, () => this.executeRegistry(target, actor, trigger));
  }

  /** Syncs a private Repo's own copy with its creator's credentials (joins a running sync of it). */
  syncPrivateRepo(repoUuid: string, actor: SyncActor, trigger: SyncTrigger): Promise<SyncOutcome> {
    const target: Target = { id: `repo:${repoUuid}`, table: 'repos', uuid: repoUuid };
    return this.singleFlight(target, () => this.executePrivateRepo(target, actor, trigger));
  }

  /** True while this process runs (or queues) a sync of the registry entry / private Repo. */
  isRunningHere(kind: 'registry' | 'repo', uuid: string): boolean {
    return this.running.has(`${kind}:${uuid}`);
  }

  /** Latest progress of a sync running in this process. */
  liveProgress(kind: 'registry' | 'repo', uuid: string): LiveProgress | null {
    return this.progress.get(`${kind}:${uuid}`) ?? null;
  }

  /**
   * Whether a sync of the copy runs anywhere. A row left in `Processing` whose lock is free is
   * healed to `Error` here (its process died), so a status read never reports a ghost sync.
   */
  async isRunning(kind: 'registry' | 'repo', uuid: string, rowStatus: string | null): Promise<boolean> {
    if (this.isRunningHere(kind, uuid)) return true;
    if (rowStatus !== 'Processing') return false;
    const table: SyncTable = kind === 'registry' ? 'repository_registry' : 'repos';
    const { idle } = await this.healIfInterrupted({ id: `${kind}:${uuid}`, table, uuid });
    return !idle;
  }

  // -------------------------------------------------------------------------------------------
  // Everything: periodic job, admin "sync everything now", start-up clone of missing copies

  /** True while a sync-everything run is active in this process. */
  get syncAllRunning(): boolean {
    return this.syncAllRun !== null;
  }

  /**
   * Syncs every registry entry and every private Repo copy, one at a time, as the Backend
   * agent. Elected across replicas with an advisory lock: if another process runs it, returns
   * `{ran: false}`. `onlyMissing` syncs only copies that are not on disk (start-up).
   */
  syncAll(options: { reason: SyncTrigger; onlyMissing?: boolean }): Promise<SyncAllSummary> {
    if (this.syncAllRun) return this.syncAllRun;
    const run = this.executeSyncAll(options).finally(() => {
      this.syncAllRun = null;
    });
    this.syncAllRun = run;
    return run;
  }

  /** Counts of what a sync-everything run covers (for the admin endpoint's answer). */
  async countAll(): Promise<{ registries: number; privateRepos: number }> {
    const { rows } = await this.pg.query<{ registries: number; private_repos: number }>(
      `SELECT (SELECT count(*)::int FROM repository_registry) AS registries,
              (SELECT count(*)::int FROM repos r JOIN repository_registry rr ON rr.uuid = r.repository_registry_uuid
                WHERE NOT rr.is_public_repository) AS private_repos`,
    );
    return { registries: rows[0]?.registries ?? 0, privateRepos: rows[0]?.private_repos ?? 0 };
  }

  /** Whether another process holds the sync-everything election lock (or this one runs it). */
  async syncAllLockedElsewhere(): Promise<boolean> {
    if (this.syncAllRun) return true;
    const client = await this.lockPool.connect();
    let release: Error | undefined;
    try {
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS locked', [...SYNC_ALL_LOCK_KEY]);
      if (rows[0]?.locked) {
        await client.query('SELECT pg_advisory_unlock($1, $2)', [...SYNC_ALL_LOCK_KEY]);
        return false;
      }
      return true;
    } catch (error) {
      release = error as Error;
      throw error;
    } finally {
      client.release(release);
    }
  }

  /**
   * Runs `fn` while holding the copy's sync lock, so no sync (here or on another replica) runs
   * meanwhile; refuses with a clear message when one does. Used before deleting a copy.
   */
  async whileIdle<T>(kind: 'registry' | 'repo', uuid: string, fn: () => Promise<T>): Promise<T> {
    const busy = new RepositoryRegistryError('A sync of this repository is running; try again when it has finished');
    if (this.isRunningHere(kind, uuid)) throw busy;
    const target: Target = { id: `${kind}:${uuid}`, table: kind === 'registry' ? 'repository_registry' : 'repos', uuid };
    const client = await this.lockPool.connect();
    let releaseError: Error | undefined;
    try {
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked', [lockName(target)]);
      if (!rows[0]?.locked) throw busy;
      try {
        return await fn();
      } finally {
        await client.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [lockName(target)]).catch((error: Error) => {
          releaseError = error;
        });
      }
    } finally {
      client.release(releaseError);
    }
  }

  /** Start-up: rows left in `Processing` by a stopped process are set to `Error` (when their lock is free). */
  async resetStuck(): Promise<number> {
    const { rows } = await this.pg.query<{ kind: 'registry' | 'repo'; uuid: string }>(
      `SELECT 'registry' AS kind, uuid FROM repository_registry WHERE sync_status = 'Processing'
       UNION ALL SELECT 'repo' AS kind, uuid FROM repos WHERE sync_status = 'Processing'`,
    );
    let healed = 0;
    for (const row of rows) {
      if (this.isRunningHere(row.kind, row.uuid)) continue;
      const table: SyncTable = row.kind === 'registry' ? 'repository_registry' : 'repos';
      if ((await this.healIfInterrupted({ id: `${row.kind}:${row.uuid}`, table, uuid: row.uuid })).healed) healed++;
    }
    if (healed > 0) this.logger.warn({ healed }, 'registry syncs interrupted by a stopped process were set to Error');
    return healed;
  }

  /** Waits (bounded) for running syncs, then closes the lock connections. */
  async close(timeoutMs = 10_000): Promise<void> {
    this.closing = true;
    const pending = [...this.running.values(), ...(this.syncAllRun ? [this.syncAllRun] : [])];
    if (pending.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled(pending),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, timeoutMs);
          timer.unref();
        }),
      ]);
      clearTimeout(timer);
    }
    await this.lockPool.end().catch(() => undefined);
  }

  // -------------------------------------------------------------------------------------------
  // Internals

  private singleFlight(target: Target, run: () => Promise<SyncOutcome>): Promise<SyncOutcome> {
    const running = this.running.get(target.id);
    if (running) return running.then((outcome) => ({ ...outcome, joined: true }));
    if (this.closing) return Promise.reject(new RepositoryRegistryError('The backend is shutting down; sync again later'));
    const promise = this.limiter.run(run).finally(() => {
      this.running.delete(target.id);
      this.progress.delete(target.id);
    });
    this.running.set(target.id, promise);
    return promise;
  }

  private async executeSyncAll(options: { reason: SyncTrigger; onlyMissing?: boolean }): Promise<SyncAllSummary> {
    const started = Date.now();
    const summary: SyncAllSummary = {
      ran: false,
      registries: { total: 0, updated: 0, errors: 0, skipped: 0 },
      privateRepos: { total: 0, updated: 0, errors: 0, skipped: 0 },
      durationMs: 0,
    };
    const election = await this.lockPool.connect();
    let releaseError: Error | undefined;
    let elected = false;
    try {
      const { rows } = await election.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS locked', [...SYNC_ALL_LOCK_KEY]);
      elected = rows[0]?.locked === true;
      if (!elected) {
        this.logger.info({ reason: options.reason }, 'registry sync of everything skipped: another process is running it');
        return { ...summary, reason: 'another process is running it' };
      }
      summary.ran = true;
      const registries = await this.pg.query<{ uuid: string; repository_url: string }>(
        'SELECT uuid, repository_url FROM repository_registry ORDER BY create_datetime, uuid',
      );
      const privateRepos = await this.pg.query<{ uuid: string; name: string }>(
        `SELECT r.uuid, r.name FROM repos r JOIN repository_registry rr ON rr.uuid = r.repository_registry_uuid
          WHERE NOT rr.is_public_repository ORDER BY r.create_datetime, r.uuid`,
      );
      summary.registries.total = registries.rows.length;
      summary.privateRepos.total = privateRepos.rows.length;
      this.logger.info(
        { reason: options.reason, onlyMissing: options.onlyMissing ?? false, registries: registries.rowCount, privateRepos: privateRepos.rowCount },
        'registry sync of everything started',
      );
      for (const [index, row] of registries.rows.entries()) {
        if (this.closing) break;
        if (options.onlyMissing && (await this.gitStore.exists(registryStorageKey(row.uuid)))) {
          summary.registries.skipped++;
          continue;
        }
        const outcome = await this.syncRegistry(row.uuid, { type: 'backend' }, options.reason).catch((error: unknown) => failedOutcome(error));
        tally(summary.registries, outcome);
        this.logger.info(
          { registry: row.uuid, url: row.repository_url, position: `${index + 1}/${registries.rows.length}`, status: outcome.status, error: outcome.error },
          'registry entry synced',
        );
      }
      for (const [index, row] of privateRepos.rows.entries()) {
        if (this.closing) break;
        if (options.onlyMissing && (await this.gitStore.exists(privateRepoStorageKey(row.uuid)))) {
          summary.privateRepos.skipped++;
          continue;
        }
        const outcome = await this.syncPrivateRepo(row.uuid, { type: 'backend' }, options.reason).catch((error: unknown) => failedOutcome(error));
        tally(summary.privateRepos, outcome);
        this.logger.info(
          { repo: row.uuid, name: row.name, position: `${index + 1}/${privateRepos.rows.length}`, status: outcome.status, error: outcome.error },
          'private repo copy synced',
        );
      }
      summary.durationMs = Date.now() - started;
      this.logger.info({ reason: options.reason, ...summary }, 'registry sync of everything finished');
      return summary;
    } catch (error) {
      releaseError = error as Error;
      throw error;
    } finally {
      if (elected && !releaseError) {
        await election.query('SELECT pg_advisory_unlock($1, $2)', [...SYNC_ALL_LOCK_KEY]).catch((error: Error) => {
          releaseError = error;
        });
      }
      // a connection that failed is destroyed, which drops any lock it held
      election.release(releaseError);
    }
  }

  /**
   * Lock, mark `Processing`, run `body`, and always record the end state. `body` returns the
   * columns to set on success; any error it throws is recorded as `Error` with its message.
   */
  private async locked(
    target: Target,
    trigger: SyncTrigger,
    prepare: () => Promise<{ throttled: boolean; secrets: string[] } | null>,
    body: (emit: (progress: GitSyncProgress) => void, secrets: string[]) => Promise<void>,
  ): Promise<SyncOutcome> {
    const lock = await this.lockPool.connect();
    let lockError: Error | undefined;
    let locked = false;
    try {
      const { rows } = await lock.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked', [lockName(target)]);
      locked = rows[0]?.locked === true;
      if (!locked) {
        const state = await this.rowState(target);
        this.logger.info({ target: target.id, trigger }, 'sync already running in another process; reporting its state');
        return { status: state?.sync_status ?? 'Processing', error: state?.sync_error ?? null, ranHere: false, joined: true, throttled: false };
      }
      const prepared = await prepare();
      if (prepared === null) throw new ValidationError(`${target.table === 'repos' ? 'Repo' : 'RepositoryRegistry'} ${target.uuid} does not exist`);
      if (prepared.throttled) {
        const state = await this.rowState(target);
        return { status: state?.sync_status ?? 'Updated', error: state?.sync_error ?? null, ranHere: false, joined: false, throttled: true };
      }
      return await this.run(target, trigger, prepared.secrets, body);
    } catch (error) {
      if (!(error instanceof PepeunitError)) lockError = error as Error;
      throw error;
    } finally {
      if (locked) {
        await lock.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [lockName(target)]).catch((error: Error) => {
          lockError = error;
        });
      }
      lock.release(lockError);
    }
  }

  private async run(
    target: Target,
    trigger: SyncTrigger,
    secrets: string[],
    body: (emit: (progress: GitSyncProgress) => void, secrets: string[]) => Promise<void>,
  ): Promise<SyncOutcome> {
    const startedAt = Date.now();
    const initial: LiveProgress = { stage: 'starting', percent: null, message: 'Sync started', updated_at: new Date().toISOString() };
    await this.pg.query(
      `UPDATE ${target.table} SET sync_status = 'Processing', sync_error = NULL, sync_progress = $2,
              sync_last_datetime = (now() AT TIME ZONE 'utc') WHERE uuid = $1`,
      [target.uuid, JSON.stringify(initial)],
    );
    this.progress.set(target.id, initial);
    this.logger.info({ target: target.id, trigger }, 'sync started');

    let lastLog = Date.now();
    let lastWrite = Date.now();
    const emit = (step: GitSyncProgress): void => {
      const progress: LiveProgress = {
        stage: step.stage,
        percent: step.percent ?? null,
        message: scrubSecrets(step.message, secrets),
        updated_at: new Date().toISOString(),
      };
      this.progress.set(target.id, progress);
      const now = Date.now();
      if (now - lastLog >= PROGRESS_INTERVAL_MS) {
        lastLog = now;
        this.logger.info({ target: target.id, stage: progress.stage, percent: progress.percent, message: progress.message }, 'sync progress');
      }
      if (now - lastWrite >= PROGRESS_INTERVAL_MS) {
        lastWrite = now;
        this.pg
          .query(`UPDATE ${target.table} SET sync_progress = $2 WHERE uuid = $1 AND sync_status = 'Processing'`, [target.uuid, JSON.stringify(progress)])
          .catch((error: Error) => this.logger.debug({ target: target.id, err: error.message }, 'could not store sync progress'));
      }
    };

    let status: SyncStatus = 'Error';
    let error: string | null = new GitRepoError('Sync did not finish').detail;
    try {
      await body(emit, secrets);
      status = 'Updated';
      error = null;
    } catch (failure) {
      error = formatSyncError(failure, secrets);
      if (toDomainError(failure, secrets) instanceof PepeunitError) {
        this.logger.warn({ target: target.id, trigger, error }, 'sync failed');
      } else {
        this.logger.error({ target: target.id, trigger, error }, 'sync failed unexpectedly');
      }
    } finally {
      // Never leave the row in Processing: retry the final write once, the start-up/status
      // healing covers the case where the database is unreachable.
      const finish = () =>
        this.pg.query(
          `UPDATE ${target.table} SET sync_status = $2, sync_error = $3, sync_progress = NULL,
                  sync_finished_datetime = (now() AT TIME ZONE 'utc') WHERE uuid = $1`,
          [target.uuid, status, error],
        );
      await finish().catch(() => finish().catch((finalError: Error) => this.logger.error({ target: target.id, err: finalError.message }, 'could not record the end of a sync')));
    }
    this.logger.info({ target: target.id, trigger, status, error, durationMs: Date.now() - startedAt }, 'sync finished');
    if (status === 'Updated') {
      const synced: SyncedCopy = target.table === 'repository_registry' ? { registryUuid: target.uuid } : { repoUuid: target.uuid };
      for (const listener of this.syncedListeners) {
        try {
          listener(synced);
        } catch (listenerError) {
          this.logger.warn({ target: target.id, err: (listenerError as Error).message }, 'a sync listener failed');
        }
      }
    }
    return { status, error, ranHere: true, joined: false, throttled: false };
  }

  private async executeRegistry(target: Target, actor: SyncActor, trigger: SyncTrigger): Promise<SyncOutcome> {
    let row: RegistrySyncRow | undefined;
    return this.locked(
      target,
      trigger,
      async () => {
        row = (await this.pg.query<RegistrySyncRow>(
          `SELECT uuid, platform, repository_url, is_public_repository, cipher_credentials_private_repository,
                  sync_status, sync_error, sync_finished_datetime FROM repository_registry WHERE uuid = $1`,
          [target.uuid],
        )).rows[0];
        if (!row) return null;
        const throttled = trigger === 'user' && (await this.recentlySynced(row, registryStorageKey(row.uuid)));
        return { throttled, secrets: [] };
      },
      async (emit, secrets) => {
        const registry = row!;
        const chosen = registry.is_public_repository ? null : this.registryCredentials(registry, actor);
        const credentials = chosen ? toGitCredentials(chosen.entry) : null;
        if (credentials) secrets.push(credentials.patToken, `${credentials.username}:${credentials.patToken}`);
        const client = this.platformApi.client(registry.platform, registry.repository_url, credentials);
        const limit = this.gitStore.maxRepoSizeBytes;
        if (client) {
          emit({ stage: 'precheck', message: `Asking the ${registry.platform} API for the repository size` });
          const reported = await client.getRepoSize().catch((error: unknown) => {
            if (error instanceof PlatformClientFailure && error.kind === 'InvalidCredentials' && !credentials) {
              // the reference said "Invalid Credentials" for a public repository that does not exist
              throw new GitRepoError(`Repository ${registry.repository_url} not found: the ${registry.platform} API does not know it (HTTP ${error.status ?? 'error'})`);
            }
            throw error;
          });
          if (reported < 0 || reported > limit) {
            throw new GitRepoError(`Repository size ${formatMb(reported)} MB reported by the ${registry.platform} API exceeds the limit of ${formatMb(limit)} MB`);
          }
        }
        let result;
        try {
          result = await this.gitStore.sync(registryStorageKey(registry.uuid), registry.repository_url, { credentials, onProgress: emit });
        } catch (error) {
          if (chosen && chosen.entry.status === 'NotVerified' && error instanceof GitSyncError && error.kind === 'AuthFailed') {
            await setCredentialStatus(this.pg, this.cipher, registry.uuid, chosen.userUuid, 'Error', chosen.entry.credentials).catch(() => undefined);
          }
          throw error;
        }
        if (chosen && chosen.entry.status === 'NotVerified') {
          // no platform API could verify them; a successful authenticated clone does
          await setCredentialStatus(this.pg, this.cipher, registry.uuid, chosen.userUuid, 'Valid', chosen.entry.credentials);
        }
        const metadata = result.metadata;
        await this.pg.query(
          `UPDATE repository_registry SET local_repository_size = $2, default_branch = $3, branches = $4, head_commit = $5,
                  title = $6, description = $7, readme_heading = $8, readme_paragraph = $9, toml_metadata = $10,
                  search_text = $11, last_update_datetime = (now() AT TIME ZONE 'utc')
            WHERE uuid = $1`,
          [
            registry.uuid,
            Math.min(result.sizeBytes, INT4_MAX),
            result.defaultBranch,
            JSON.stringify(result.branches),
            result.headCommit,
            metadata?.title ?? null,
            metadata?.description ?? null,
            metadata?.readmeHeading ?? null,
            metadata?.readmeParagraph ?? null,
            tomlMetadataOf(metadata),
            searchTextOf(registry.repository_url, metadata),
          ],
        );
        if (client) {
          emit({ stage: 'releases', message: `Reading releases from the ${registry.platform} API` });
          const releases = await client.getReleases();
          await this.pg.query('UPDATE repository_registry SET releases_data = $2 WHERE uuid = $1', [
            registry.uuid,
            Object.keys(releases).length > 0 ? JSON.stringify(releases) : null,
          ]);
        }
      },
    );
  }

  private async executePrivateRepo(target: Target, actor: SyncActor, trigger: SyncTrigger): Promise<SyncOutcome> {
    let row: (RegistrySyncRow & { repo_uuid: string; creator_uuid: string | null }) | undefined;
    return this.locked(
      target,
      trigger,
      async () => {
        row = (await this.pg.query(
          `SELECT rr.uuid, rr.platform, rr.repository_url, rr.is_public_repository, rr.cipher_credentials_private_repository,
                  r.sync_status, r.sync_error, r.sync_finished_datetime, r.uuid AS repo_uuid, r.creator_uuid
             FROM repos r JOIN repository_registry rr ON rr.uuid = r.repository_registry_uuid WHERE r.uuid = $1`,
          [target.uuid],
        )).rows[0];
        if (!row) return null;
        if (row.is_public_repository) throw new RepositoryRegistryError('This Repo reads the shared copy of a public repository: sync its registry entry');
        const throttled = trigger === 'user' && (await this.recentlySynced(row, privateRepoStorageKey(target.uuid)));
        return { throttled, secrets: [] };
      },
      async (emit, secrets) => {
        const repo = row!;
        const map = readCredentialMap(this.cipher, repo.cipher_credentials_private_repository);
        const entry = repo.creator_uuid ? map[repo.creator_uuid] : undefined;
        const acceptNotVerified = actor.type === 'user' && actor.uuid === repo.creator_uuid && actor.acceptNotVerified === true;
        if (!entry || !(entry.status === 'Valid' || (acceptNotVerified && entry.status === 'NotVerified'))) {
          throw new RepositoryRegistryError(
            `The creator of this Repo has no valid credentials for its private repository${entry ? ` (status: ${entry.status})` : ''}; set them with set_credentials`,
          );
        }
        const credentials = toGitCredentials(entry);
        secrets.push(credentials.patToken, `${credentials.username}:${credentials.patToken}`);
        const result = await this.gitStore.sync(privateRepoStorageKey(target.uuid), repo.repository_url, { credentials, onProgress: emit });
        await this.pg.query('UPDATE repos SET local_repository_size = $2 WHERE uuid = $1', [target.uuid, Math.min(result.sizeBytes, INT4_MAX)]);
      },
    );
  }

  /** §6.5: the credentials a sync of a private registry entry uses. Throws a clear message otherwise. */
  private registryCredentials(row: RegistrySyncRow, actor: SyncActor): { userUuid: string; entry: StoredCredential } {
    const map: CredentialMap = readCredentialMap(this.cipher, row.cipher_credentials_private_repository);
    if (Object.keys(map).length === 0) throw new RepositoryRegistryError('Credentials not Exist: this private RepositoryRegistry has no credentials');
    if (actor.type === 'backend') {
      const first = firstValidCredentials(map);
      if (!first) throw new RepositoryRegistryError('No valid credentials in credential list');
      return first;
    }
    const entry = map[actor.uuid];
    if (!entry) throw new RepositoryRegistryError('This User has no Credentials for this private repository');
    if (entry.status === 'Error') throw new RepositoryRegistryError('Credentials has no permission, status: Error');
    if (entry.status === 'NotVerified' && !actor.acceptNotVerified) {
      throw new RepositoryRegistryError('Credentials has no permission, status: NotVerified');
    }
    return { userUuid: actor.uuid, entry };
  }

  private async recentlySynced(row: { sync_status: SyncStatus | null; sync_finished_datetime: Date | null }, key: string): Promise<boolean> {
    const interval = this.config.minIntervalSyncRepository * 1000;
    if (interval <= 0 || row.sync_status !== 'Updated' || !row.sync_finished_datetime) return false;
    const finished = naiveUtcMillis(row.sync_finished_datetime);
    if (Date.now() - finished > interval) return false;
    return this.gitStore.exists(key);
  }

  private async rowState(target: Target): Promise<{ sync_status: SyncStatus | null; sync_error: string | null } | undefined> {
    const { rows } = await this.pg.query<{ sync_status: SyncStatus | null; sync_error: string | null }>(
      `SELECT sync_status, sync_error FROM ${target.table} WHERE uuid = $1`,
      [target.uuid],
    );
    return rows[0];
  }

  /**
   * Sets a `Processing` row whose lock is free to `Error`. `idle`: no sync of the copy runs
   * anywhere; `healed`: the row was changed.
   */
  private async healIfInterrupted(target: Target): Promise<{ idle: boolean; healed: boolean }> {
    const client = await this.lockPool.connect();
    let releaseError: Error | undefined;
    try {
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked', [lockName(target)]);
      if (!rows[0]?.locked) return { idle: false, healed: false };
      try {
        if (this.isRunningHere(target.table === 'repos' ? 'repo' : 'registry', target.uuid)) return { idle: false, healed: false };
        const updated = await client.query(
          `UPDATE ${target.table} SET sync_status = 'Error', sync_error = $2, sync_progress = NULL,
                  sync_finished_datetime = (now() AT TIME ZONE 'utc') WHERE uuid = $1 AND sync_status = 'Processing'`,
          [target.uuid, INTERRUPTED_MESSAGE],
        );
        return { idle: true, healed: (updated.rowCount ?? 0) > 0 };
      } finally {
        await client.query('SELECT pg_advisory_unlock(hashtextextended($1, 0))', [lockName(target)]);
      }
    } catch (error) {
      releaseError = error as Error;
      throw error;
    } finally {
      client.release(releaseError);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// helpers

function lockName(target: Target): string {
  return `pepeunit:sync:${target.id}`;
}

function tally(counter: SyncAllSummary['registries'], outcome: SyncOutcome): void {
  if (outcome.status === 'Updated') counter.updated++;
  else if (outcome.status === 'Error') counter.errors++;
  else counter.skipped++;
}

function failedOutcome(error: unknown): SyncOutcome {
  return { status: 'Error', error: formatSyncError(error, []), ranHere: false, joined: false, throttled: false };
}

/** The reference stores the formatted message (`422: 5: Git Repo Validation Error: ...`). */
export function formatSyncError(error: unknown, secrets: readonly string[]): string {
  const domain = toDomainError(error, secrets);
  if (domain instanceof PepeunitError) return domain.detail;
  const message = scrubSecrets(String((error as Error)?.message ?? error), secrets);
  return new GitRepoError(`Sync failed unexpectedly: ${message}`).detail;
}

function formatMb(bytes: number): string {
  return (bytes / MB).toFixed(2);
}

/** `timestamp without time zone` values hold naive UTC; pg parses them as local time. */
export function naiveUtcMillis(value: Date): number {
  return value.getTime() - value.getTimezoneOffset() * 60_000;
}

function tomlMetadataOf(metadata: RepositoryMetadata | null): string | null {
  if (!metadata) return null;
  const toml = metadata.toml;
  const empty =
    toml.name === null && toml.description === null && toml.language === null && toml.version === null && toml.license === null &&
    toml.hardware.length === 0 && toml.firmware.length === 0 && toml.stack.length === 0 && toml.authors.length === 0;
  return empty ? null : JSON.stringify(toml);
}

/** Lower-case text the search matches: URL, title, description, README summary and pepeunit.toml values. */
export function searchTextOf(url: string, metadata: RepositoryMetadata | null): string {
  const parts: (string | null)[] = [url];
  if (metadata) {
    const toml = metadata.toml;
    parts.push(metadata.title, metadata.description, metadata.readmeHeading, metadata.readmeParagraph);
    parts.push(toml.name, toml.description, toml.language, toml.version, toml.license);
    for (const item of [...toml.hardware, ...toml.firmware, ...toml.stack]) parts.push(item.name);
    for (const author of toml.authors) parts.push(author.name);
  }
  return parts
    .filter((part): part is string => typeof part === 'string' && part !== '')
    .join('\n')
    .toLowerCase()
    .slice(0, 64 * 1024);
}

export type { GitCredentials };
