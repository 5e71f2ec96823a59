/**
 * GitStore: the one physical copy of each external repository (§6.1) and every read from it.
 *
 * Layout: `<rootPath>/<key>` is a BARE clone (no work tree). Public registries use the
 * registry UUID as key and are shared by every Repo built on that URL; private repositories
 * simply use their own key (e.g. `private-<repo uuid>`).
 *
 * Why bare + explicit refspecs instead of `clone --mirror`: a mirror copies every ref the
 * server has (GitHub's `refs/pull/*`, GitLab's `refs/merge-requests/*`, ...), which can
 * multiply the size on disk; we only need branches and tags. The first sync runs
 * `git clone --bare` into a temporary sibling directory and renames it into place; later
 * syncs run `git fetch --prune <url> +refs/heads/*:refs/heads/* +refs/tags/*:refs/tags/*`
 * in the existing clone. Git writes objects before it moves refs (atomic renames), so reads
 * by commit (`cat-file`, `ls-tree`, `archive`) are never disturbed by a running sync.
 *
 * Credentials never touch argv, the clone's config or a log line: they are sent as an
 * `http.extraHeader` set through `GIT_CONFIG_COUNT/KEY/VALUE` environment variables of the
 * git process, and every message derived from git output is scrubbed.
 */
import { silentSink, type LogSink } from '@pepeunit/common';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { simpleGit, type SimpleGit } from 'simple-git';
import { GitReadError, GitSyncError, scrubSecrets } from './errors.js';
import { runGit, streamGit, type RunGitResult } from './git-process.js';
import type { CheckedDestination, DestinationGuard } from './destinations.js';
import { extractRepositoryMetadata, type RepositoryMetadata } from './metadata.js';
import {
  assertBranchName,
  assertCommitish,
  assertStorageKey,
  normalizeRepoPath,
} from './validation.js';
import { formatList, type BranchHistory, type CommitWithTag } from './versions.js';

export type GitLogger = LogSink;

export interface GitCredentials {
  username: string;
  patToken: string;
}

export interface SyncProgress {
  /** `clone`, `fetch`, git's own stages (`counting`, `compressing`, `receiving`, `resolving`), `measure`, `metadata`, `done`. */
  stage: string;
  percent?: number;
  message: string;
}

export interface SyncOptions {
  credentials?: GitCredentials | null;
  onProgress?: (progress: SyncProgress) => void;
}

export interface SyncResult {
  key: string;
  /** The URL without any userinfo. */
  url: string;
  action: 'cloned' | 'fetched' | 'recloned';
  sizeBytes: number;
  defaultBranch: string | null;
  branches: string[];
  headCommit: string | null;
  durationMs: number;
  /** README/pepeunit.toml summary of the default branch head; null when there is no branch. */
  metadata: RepositoryMetadata | null;
}

export interface GitStoreOptions {
  rootPath: string;
  maxRepoSizeBytes: number;
  logger?: GitLogger;
  /** Deadline of one git network command (clone or fetch). Default 10 min. */
  gitTimeoutMs?: number;
  /** Deadline of one local read command. Default 60 s. */
  readTimeoutMs?: number;
  /** URL schemes git may use. Default `['https', 'http']`; tests add `file`. */
  allowedProtocols?: readonly string[];
  /** Concurrent git processes per clone for reads. Default 8. */
  maxConcurrentReads?: number;
  /** How often the on-disk size is checked while git downloads. Default 1000 ms. */
  sizeCheckIntervalMs?: number;
  /**
   * Where network git may connect (SSRF guard): http(s) hosts are resolved and checked before
   * every clone/fetch, the checked address is pinned (`http.curloptResolve`) and redirects are
   * off. Without it, git resolves by itself (tests of the git layer alone).
   */
  destinations?: DestinationGuard;
}

export interface TagInfo {
  name: string;
  commit: string;
}

export interface TreeEntry {
  path: string;
  mode: string;
  type: 'blob' | 'tree' | 'commit';
  oid: string;
  /** Blob size in bytes; null for submodules. */
  size: number | null;
}

const MB = 2 ** 20;

interface InFlightSync {
  promise: Promise<SyncResult>;
  listeners: Set<(progress: SyncProgress) => void>;
}

export class GitStore {
  readonly rootPath: string;
  readonly maxRepoSizeBytes: number;
  private readonly logger: GitLogger;
  private readonly gitTimeoutMs: number;
  private readonly readTimeoutMs: number;
  private readonly allowedProtocols: readonly string[];
  private readonly maxConcurrentReads: number;
  private readonly sizeCheckIntervalMs: number;
  private readonly destinations: DestinationGuard | undefined;
  private readonly inFlight = new Map<string, InFlightSync>();
  private readonly readers = new Map<string, SimpleGit>();

  constructor(options: GitStoreOptions) {
    if (!options.rootPath) throw new Error('GitStore: rootPath is required');
    if (!(options.maxRepoSizeBytes > 0)) throw new Error('GitStore: maxRepoSizeBytes must be positive');
    this.rootPath = options.rootPath;
    this.maxRepoSizeBytes = options.maxRepoSizeBytes;
    this.logger = options.logger ?? silentSink;
    this.gitTimeoutMs = options.gitTimeoutMs ?? 10 * 60_000;
    this.readTimeoutMs = options.readTimeoutMs ?? 60_000;
    this.allowedProtocols = (options.allowedProtocols ?? ['https', 'http']).map((p) => p.toLowerCase());
    this.maxConcurrentReads = options.maxConcurrentReads ?? 8;
    this.sizeCheckIntervalMs = options.sizeCheckIntervalMs ?? 1000;
    this.destinations = options.destinations;
  }

  // -------------------------------------------------------------------------------------------
  // Sync

  /**
   * Clones (first time) or fetches (later) `url` into `<rootPath>/<key>`. Single-flight per
   * key: while a sync runs, further calls return the same promise (their `onProgress` is
   * attached too; their url/credentials are ignored).
   */
  sync(key: string, url: string, options: SyncOptions = {}): Promise<SyncResult> {
    const running = this.inFlight.get(key);
    if (running) {
      if (options.onProgress) running.listeners.add(options.onProgress);
      this.logger.debug({ key }, 'git sync already running; joining it');
      return running.promise;
    }
    const listeners = new Set<(progress: SyncProgress) => void>();
    if (options.onProgress) listeners.add(options.onProgress);
    const emit = (progress: SyncProgress): void => {
      for (const listener of listeners) {
        try {
          listener(progress);
        } catch {
          // a failing progress consumer must not break the sync
        }
      }
    };
    const promise = this.runSync(key, url, options.credentials ?? null, emit).finally(() => {
      this.inFlight.delete(key);
    });
    this.inFlight.set(key, { promise, listeners });
    return promise;
  }

  /** True while a sync of `key` runs in this process. */
  isSyncing(key: string): boolean {
    return this.inFlight.has(key);
  }

  private async runSync(
    key: string,
    rawUrl: string,
    explicitCredentials: GitCredentials | null,
    emit: (progress: SyncProgress) => void,
  ): Promise<SyncResult> {
    const startedAt = Date.now();
    try {
      assertStorageKey(key);
    } catch (error) {
      throw new GitSyncError('Failed', (error as Error).message);
    }
    const { url, credentials } = this.parseRemoteUrl(rawUrl, explicitCredentials);
    const secrets = secretsOf(credentials);
    const target = this.pathOf(key);
    await mkdir(this.rootPath, { recursive: true });

    let action: SyncResult['action'];
    try {
      if (await this.isHealthyClone(target)) {
        try {
          await this.fetchInto(key, target, url, credentials, secrets, emit);
          action = 'fetched';
        } catch (error) {
          if (!(error instanceof GitSyncError) || error.kind !== 'Corrupt') throw error;
          this.logger.warn({ key, url, reason: error.message }, 'stored clone is corrupt; cloning again');
          await this.cloneFresh(key, target, url, credentials, secrets, emit);
          action = 'recloned';
        }
      } else {
        const existed = await pathExists(target);
        if (existed) this.logger.warn({ key, url }, 'stored clone is not a valid git repository; cloning again');
        await this.cloneFresh(key, target, url, credentials, secrets, emit);
        action = existed ? 'recloned' : 'cloned';
      }

      emit({ stage: 'measure', message: 'Measuring repository size on disk' });
      const sizeBytes = await directorySize(target);
      if (sizeBytes > this.maxRepoSizeBytes) {
        await this.removeDirectory(target);
        throw sizeLimitError(sizeBytes, this.maxRepoSizeBytes);
      }

      emit({ stage: 'metadata', message: 'Reading branches and repository metadata' });
      const branches = await this.branches(key);
      const defaultBranch = await this.defaultBranch(key, branches);
      let headCommit: string | null = null;
      let metadata: RepositoryMetadata | null = null;
      if (defaultBranch !== null) {
        headCommit = await this.resolveCommit(key, `refs/heads/${defaultBranch}`);
        if (headCommit !== null) metadata = await this.readMetadata(key, headCommit);
      }
      const result: SyncResult = {
        key,
        url,
        action,
        sizeBytes,
        defaultBranch,
        branches,
        headCommit,
        durationMs: Date.now() - startedAt,
        metadata,
      };
      emit({ stage: 'done', percent: 100, message: `Repository ${action}, ${formatMb(sizeBytes)} MB` });
      this.logger.info(
        { key, url, action, sizeBytes, branches: branches.length, durationMs: result.durationMs },
        'git sync finished',
      );
      return result;
    } catch (error) {
      const syncError =
        error instanceof GitSyncError
          ? new GitSyncError(error.kind, scrubSecrets(error.message, secrets))
          : error instanceof GitReadError
            ? new GitSyncError('Failed', scrubSecrets(error.message, secrets))
            : new GitSyncError('Failed', `Git sync failed: ${scrubSecrets(String((error as Error)?.message ?? error), secrets)}`);
      this.logger.warn({ key, url, kind: syncError.kind, error: syncError.message }, 'git sync failed');
      throw syncError;
    }
  }

  private parseRemoteUrl(
    rawUrl: string,
    explicitCredentials: GitCredentials | null,
  ): { url: string; credentials: GitCredentials | null } {
    let parsed: URL;
    try {
      parsed = new URL(rawUrl);
    } catch {
      throw new GitSyncError('InvalidUrl', `Repository URL "${scrubSecrets(String(rawUrl))}" is not a valid URL`);
    }
    const scheme = parsed.protocol.replace(/:$/, '').toLowerCase();
    if (!this.allowedProtocols.includes(scheme)) {
      throw new GitSyncError(
        'InvalidUrl',
        `Repository URL scheme "${scheme}" is not allowed (allowed: ${this.allowedProtocols.join(', ')})`,
      );
    }
    let credentials = explicitCredentials;
    if (parsed.username !== '' || parsed.password !== '') {
      // Credentials embedded in the URL (reference style) are moved out of it.
      if (!credentials) {
        credentials = {
          username: decodeURIComponent(parsed.username),
          patToken: decodeURIComponent(parsed.password),
        };
      }
      parsed.username = '';
      parsed.password = '';
    }
    parsed.hash = '';
    return { url: parsed.toString(), credentials };
  }

  private async cloneFresh(
    key: string,
    target: string,
    url: string,
    credentials: GitCredentials | null,
    secrets: string[],
    emit: (progress: SyncProgress) => void,
  ): Promise<void> {
    const temporary = join(this.rootPath, `.tmp-${key}-${randomBytes(6).toString('hex')}`);
    emit({ stage: 'clone', message: `Cloning ${url}` });
    this.logger.info({ key, url }, 'git clone started');
    try {
      await this.runNetworkGit(
        'clone',
        ['clone', '--bare', '--progress', '--', url, temporary],
        this.rootPath,
        temporary,
        credentials,
        secrets,
        url,
        emit,
      );
      // Tags that do not point into a branch are not fetched by clone; fetch them all.
      await this.runNetworkGit('fetch', fetchArgs(url), temporary, temporary, credentials, secrets, url, emit);
      const sizeBytes = await directorySize(temporary);
      if (sizeBytes > this.maxRepoSizeBytes) throw sizeLimitError(sizeBytes, this.maxRepoSizeBytes);
      await this.moveIntoPlace(temporary, target);
    } catch (error) {
      await this.removeDirectory(temporary);
      throw error;
    }
  }

  private async moveIntoPlace(temporary: string, target: string): Promise<void> {
    if (!(await pathExists(target))) {
      try {
        await rename(temporary, target);
      } catch (error) {
        // Another process (same storage, other replica) placed a clone meanwhile: keep theirs.
        const code = (error as NodeJS.ErrnoException).code;
        if ((code === 'ENOTEMPTY' || code === 'EEXIST') && (await this.isHealthyClone(target))) {
          await this.removeDirectory(temporary);
          return;
        }
        throw error;
      }
      return;
    }
    // Replacing a broken clone: move it aside first (rename cannot replace a non-empty dir).
    const trash = join(this.rootPath, `.trash-${randomBytes(6).toString('hex')}`);
    await rename(target, trash);
    await rename(temporary, target);
    await this.removeDirectory(trash);
  }

  private async fetchInto(
    key: string,
    target: string,
    url: string,
    credentials: GitCredentials | null,
    secrets: string[],
    emit: (progress: SyncProgress) => void,
  ): Promise<void> {
    emit({ stage: 'fetch', message: `Fetching ${url}` });
    this.logger.info({ key, url }, 'git fetch started');
    try {
      await this.runNetworkGit('fetch', fetchArgs(url), target, target, credentials, secrets, url, emit);
    } catch (error) {
      if (error instanceof GitSyncError && error.kind === 'SizeLimit') await this.removeDirectory(target);
      throw error;
    }
  }

  /**
   * Runs clone/fetch with a hard deadline, progress parsing and a size watchdog that aborts
   * the download as soon as `watchedPath` grows over the limit.
   */
  private async runNetworkGit(
    operation: 'clone' | 'fetch',
    args: string[],
    cwd: string,
    watchedPath: string,
    credentials: GitCredentials | null,
    secrets: string[],
    url: string,
    emit: (progress: SyncProgress) => void,
  ): Promise<void> {
    const abort = new AbortController();
    let oversizeBytes = 0;
    let checking = false;
    const watchdog = setInterval(() => {
      if (checking) return;
      checking = true;
      directorySize(watchedPath)
        .then((size) => {
          if (size > this.maxRepoSizeBytes && !abort.signal.aborted) {
            oversizeBytes = size;
            abort.abort();
          }
        })
        .catch(() => {})
        .finally(() => {
          checking = false;
        });
    }, this.sizeCheckIntervalMs);
    watchdog.unref();

    const progress = createProgressParser(emit);
    let result: RunGitResult;
    let pinned: CheckedDestination | null = null;
    try {
      // Resolve and check the host once, then make git use that very address (no DNS rebinding).
      pinned = this.destinations && /^https?:/i.test(url) ? await this.destinations.check(url) : null;
    } catch (error) {
      clearInterval(watchdog);
      throw error;
    }
    try {
      result = await runGit(args, {
        cwd,
        env: this.networkEnv(credentials, operation === 'fetch' ? cwd : null, pinned),
        timeoutMs: this.gitTimeoutMs,
        signal: abort.signal,
        onStderr: (text) => progress(scrubSecrets(text, secrets)),
      });
    } finally {
      clearInterval(watchdog);
    }
    if (result.code === 0) return;
    if (oversizeBytes > 0) throw sizeLimitError(oversizeBytes, this.maxRepoSizeBytes);
    // The details stay in the server's log; users get a message without network details.
    this.logger.warn({ url, operation, code: result.code, stderr: firstErrorLine(scrubSecrets(result.stderr, secrets)) }, 'git network command failed');
    throw classifyGitFailure(operation, url, result, credentials !== null, this.gitTimeoutMs, secrets);
  }

  /** Environment of network git commands: isolated from user/system config, no prompts. */
  private networkEnv(credentials: GitCredentials | null, gitDir: string | null, pinned: CheckedDestination | null = null): NodeJS.ProcessEnv {
    const env = baseGitEnv(true);
    Object.assign(env, {
      LC_ALL: 'C',
      LANG: 'C',
      GIT_TERMINAL_PROMPT: '0',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_ALLOW_PROTOCOL: this.allowedProtocols.join(':'),
      // abort transfers slower than 1 kB/s for 60 s
      GIT_HTTP_LOW_SPEED_LIMIT: '1000',
      GIT_HTTP_LOW_SPEED_TIME: '60',
    });
    if (gitDir !== null) env.GIT_DIR = gitDir;
    const config: [string, string][] = [
      ['gc.autoDetach', 'false'],
      ['credential.helper', ''],
    ];
    if (pinned) {
      const address = pinned.family === 6 ? `[${pinned.address}]` : pinned.address;
      config.push(['http.curloptResolve', `${pinned.host}:${pinned.port}:${address}`], ['http.followRedirects', 'false']);
    }
    if (credentials) {
      const basic = Buffer.from(`${credentials.username}:${credentials.patToken}`).toString('base64');
      config.push(['http.extraHeader', `Authorization: Basic ${basic}`]);
    }
    env.GIT_CONFIG_COUNT = String(config.length);
    config.forEach(([configKey, value], index) => {
      env[`GIT_CONFIG_KEY_${index}`] = configKey;
      env[`GIT_CONFIG_VALUE_${index}`] = value;
    });
    return env;
  }

  private async isHealthyClone(target: string): Promise<boolean> {
    if (!(await this.looksLikeClone(target))) return false;
    const env = this.readEnv(target);
    const bare = await runGit(['rev-parse', '--is-bare-repository'], { cwd: target, env, timeoutMs: this.readTimeoutMs });
    if (bare.code !== 0 || bare.stdout.toString().trim() !== 'true') return false;
    const refs = await runGit(['for-each-ref', '--count=1'], { cwd: target, env, timeoutMs: this.readTimeoutMs });
    return refs.code === 0 && refs.stderr.trim() === '';
  }

  private async looksLikeClone(target: string): Promise<boolean> {
    try {
      const [head, objects] = await Promise.all([stat(join(target, 'HEAD')), stat(join(target, 'objects'))]);
      return head.isFile() && objects.isDirectory();
    } catch {
      return false;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Storage management

  pathOf(key: string): string {
    assertStorageKey(key);
    return join(this.rootPath, key);
  }

  /** True when a clone for `key` is stored (it may still be empty). */
  async exists(key: string): Promise<boolean> {
    return this.looksLikeClone(this.pathOf(key));
  }

  /** Keys of every stored clone (for "clone missing registries" at start-up). */
  async listKeys(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.rootPath);
    } catch {
      return [];
    }
    const keys: string[] = [];
    for (const name of names.sort()) {
      if (name.startsWith('.')) continue;
      if (await this.looksLikeClone(join(this.rootPath, name))) keys.push(name);
    }
    return keys;
  }

  /** Deletes the clone of `key` (waits for a running sync of it first). */
  async remove(key: string): Promise<void> {
    const target = this.pathOf(key);
    const running = this.inFlight.get(key);
    if (running) await running.promise.catch(() => undefined);
    this.readers.delete(key);
    await this.removeDirectory(target);
    this.logger.info({ key }, 'stored clone removed');
  }

  /** Bytes on disk of the clone (sum of file sizes, recursively); 0 when absent. */
  async sizeOnDisk(key: string): Promise<number> {
    return directorySize(this.pathOf(key));
  }

  /** Removes temporary directories left by a crashed process. Call at start-up. */
  async cleanupTemporary(): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.rootPath);
    } catch {
      return 0;
    }
    const stale = names.filter((name) => name.startsWith('.tmp-') || name.startsWith('.trash-'));
    for (const name of stale) await this.removeDirectory(join(this.rootPath, name));
    return stale.length;
  }

  private async removeDirectory(path: string): Promise<void> {
    await rm(path, { recursive: true, force: true, maxRetries: 3 });
  }

  // -------------------------------------------------------------------------------------------
  // Reads (object database only; safe while a sync runs)

  /** Branch names (`refs/heads/*`), `HEAD` excluded explicitly. */
  async branches(key: string): Promise<string[]> {
    const git = await this.reader(key);
    const output = await this.readRaw(git, ['for-each-ref', '--format=%(refname)', 'refs/heads/']);
    return output
      .split('\n')
      .filter((line) => line.startsWith('refs/heads/'))
      .map((line) => line.slice('refs/heads/'.length))
      .filter((name) => name !== 'HEAD');
  }

  /** Tags pointing (possibly through annotated tag objects) to commits, in version order. */
  async tags(key: string): Promise<TagInfo[]> {
    const git = await this.reader(key);
    const output = await this.readRaw(git, [
      'for-each-ref',
      '--sort=v:refname',
      '--format=%(refname:lstrip=2)%00%(objecttype)%00%(objectname)%00%(*objecttype)%00%(*objectname)',
      'refs/tags/',
    ]);
    const tags: TagInfo[] = [];
    for (const line of output.split('\n')) {
      if (line === '') continue;
      const [name = '', type, object = '', peeledType, peeledObject = ''] = line.split('\0');
      if (type === 'commit') tags.push({ name, commit: object });
      else if (type === 'tag' && peeledType === 'commit') tags.push({ name, commit: peeledObject });
    }
    return tags;
  }

  /**
   * Commits of a branch, newest first, each with the tag pointing at it (§6.7). When several
   * tags point at one commit, the highest in version order wins (e.g. `1.0.10` over `1.0.9`).
   * Unknown branch ⇒ GitReadError "Branch <b> not found, available: [...]".
   */
  async commits(key: string, branch: string): Promise<CommitWithTag[]> {
    assertBranchName(branch);
    const available = await this.branches(key);
    if (!available.includes(branch)) throw branchNotFound(branch, available);
    return this.branchCommits(key, branch);
  }

  /** Branch list plus the branch's commits (empty if missing), the input of versions.ts. */
  async branchHistory(key: string, branch: string): Promise<BranchHistory> {
    const availableBranches = await this.branches(key);
    const known = typeof branch === 'string' && availableBranches.includes(branch);
    return {
      branch,
      availableBranches,
      commits: known ? await this.branchCommits(key, branch) : [],
    };
  }

  private async branchCommits(key: string, branch: string): Promise<CommitWithTag[]> {
    const git = await this.reader(key);
    const [log, tags] = await Promise.all([
      this.readRaw(git, ['log', '-z', '--no-color', '--format=%H%x1f%s', `refs/heads/${branch}`, '--']),
      this.tags(key),
    ]);
    const tagByCommit = new Map<string, string>();
    for (const tag of tags) tagByCommit.set(tag.commit, tag.name); // version order: last wins
    const commits: CommitWithTag[] = [];
    for (const record of log.split('\0')) {
      const trimmed = record.replace(/^\n/, '');
      if (trimmed === '') continue;
      const separator = trimmed.indexOf('\x1f');
      const commit = trimmed.slice(0, separator);
      commits.push({ commit, summary: trimmed.slice(separator + 1), tag: tagByCommit.get(commit) ?? null });
    }
    return commits;
  }

  /** Full object name of a commit given as hex (7–40) or a ref; null when it does not exist. */
  async resolveCommit(key: string, commitish: string): Promise<string | null> {
    if (!commitish.startsWith('refs/')) assertCommitish(commitish);
    else assertBranchName(commitish.replace(/^refs\/(heads|tags)\//, ''));
    const git = await this.reader(key);
    try {
      const output = await this.readRaw(git, ['rev-parse', '--verify', '--end-of-options', `${commitish}^{commit}`]);
      const sha = output.trim();
      return /^[0-9a-f]{40,64}$/.test(sha) ? sha : null;
    } catch (error) {
      if (error instanceof GitReadError && error.kind === 'Failed') return null;
      throw error;
    }
  }

  /** Content of `path` at `commit`; null when the path does not exist (or is a directory). */
  async readFile(key: string, commit: string, path: string): Promise<Buffer | null> {
    assertCommitish(commit);
    const normalized = normalizeRepoPath(path);
    const git = await this.reader(key);
    try {
      return (await git.binaryCatFile(['blob', `${commit}:${normalized}`])) as Buffer;
    } catch (error) {
      if ((await this.resolveCommit(key, commit)) === null) throw commitNotFound(commit);
      const message = String((error as Error)?.message ?? '');
      if (/does not exist|exists on disk, but not in|bad file|not a valid object name|expected blob|unable to read/i.test(message)) {
        return null;
      }
      throw this.readFailure('cat-file', error);
    }
  }

  /**
   * Parsed JSON file at a commit. Missing ⇒ "File <path> not found in repo commit <sha>";
   * invalid ⇒ "Data <path> is invalid: <reason>".
   */
  async readJson<T = unknown>(key: string, commit: string, path: string): Promise<T> {
    const content = await this.readFile(key, commit, path);
    if (content === null) throw new GitReadError('FileNotFound', `File ${path} not found in repo commit ${commit}`);
    try {
      return JSON.parse(content.toString('utf8').replace(/^\uFEFF/, '')) as T;
    } catch (error) {
      throw new GitReadError('InvalidJson', `Data ${path} is invalid: ${(error as Error).message}`);
    }
  }

  /** Every file (recursively) of the tree at `commit`. */
  async listTree(key: string, commit: string): Promise<TreeEntry[]> {
    assertCommitish(commit);
    const git = await this.reader(key);
    const sha = await this.resolveCommit(key, commit);
    if (sha === null) throw commitNotFound(commit);
    const output = await this.readRaw(git, ['ls-tree', '-r', '-l', '-z', '--full-tree', sha]);
    const entries: TreeEntry[] = [];
    for (const record of output.split('\0')) {
      if (record === '') continue;
      const tab = record.indexOf('\t');
      const [mode = '', type = '', oid = '', size = '-'] = record.slice(0, tab).split(/ +/);
      entries.push({
        path: record.slice(tab + 1),
        mode,
        type: type as TreeEntry['type'],
        oid,
        size: size === '-' ? null : Number(size),
      });
    }
    return entries;
  }

  /**
   * `git archive` of the tree at `commit` as a stream (files at the archive root).
   * The commit is resolved first, so a bad commit rejects instead of producing a broken stream.
   */
  async archive(key: string, commit: string, format: 'tar' | 'zip'): Promise<Readable> {
    assertCommitish(commit);
    if (format !== 'tar' && format !== 'zip') throw new GitReadError('InvalidArgument', `Unsupported archive format "${String(format)}"`);
    const sha = await this.resolveCommit(key, commit);
    if (sha === null) throw commitNotFound(commit);
    const target = this.pathOf(key);
    return streamGit(
      ['archive', `--format=${format}`, sha],
      { cwd: target, env: this.isolatedEnv(target), timeoutMs: this.gitTimeoutMs },
      (stderr) => new GitReadError('Failed', `git archive failed: ${firstErrorLine(stderr)}`),
    );
  }

  /**
   * Writes the files of `commit` into `destination` (created if needed) without touching the
   * clone: a private temporary index is used, so this is safe during syncs and in parallel.
   * This is what firmware builds (§7.5) start from instead of copying the clone + checkout.
   */
  async exportTree(key: string, commit: string, destination: string): Promise<void> {
    assertCommitish(commit);
    const sha = await this.resolveCommit(key, commit);
    if (sha === null) throw commitNotFound(commit);
    const target = this.pathOf(key);
    await mkdir(destination, { recursive: true });
    const indexFile = join(destination, `.pu-index-${randomBytes(6).toString('hex')}`);
    const env = { ...this.isolatedEnv(target), GIT_INDEX_FILE: indexFile };
    try {
      const readTree = await runGit(['read-tree', sha], { cwd: target, env, timeoutMs: this.readTimeoutMs });
      if (readTree.code !== 0) throw new GitReadError('Failed', `git read-tree failed: ${firstErrorLine(readTree.stderr)}`);
      // core.symlinks=false: a symlink in the repository becomes a small text file, so nothing
      // in the exported tree can point outside it.
      const checkout = await runGit(['-c', 'core.symlinks=false', '--work-tree', destination, 'checkout-index', '--all', '--force'], {
        cwd: target,
        env,
        timeoutMs: this.gitTimeoutMs,
      });
      if (checkout.code !== 0) throw new GitReadError('Failed', `git checkout-index failed: ${firstErrorLine(checkout.stderr)}`);
    } finally {
      await rm(indexFile, { force: true });
    }
  }

  private async defaultBranch(key: string, branches: string[]): Promise<string | null> {
    if (branches.length === 0) return null;
    const target = this.pathOf(key);
    const head = await runGit(['symbolic-ref', '--quiet', 'HEAD'], {
      cwd: target,
      env: this.readEnv(target),
      timeoutMs: this.readTimeoutMs,
    });
    const name = head.stdout.toString().trim().replace(/^refs\/heads\//, '');
    if (head.code === 0 && branches.includes(name)) return name;
    for (const candidate of ['main', 'master']) if (branches.includes(candidate)) return candidate;
    return branches[0] ?? null;
  }

  private async readMetadata(key: string, commit: string): Promise<RepositoryMetadata> {
    const git = await this.reader(key);
    const rootNames = (await this.readRaw(git, ['ls-tree', '-z', '--name-only', commit]))
      .split('\0')
      .filter((name) => name !== '');
    const readmeName =
      rootNames.find((name) => name === 'README.md') ??
      rootNames.find((name) => name.toLowerCase() === 'readme.md') ??
      rootNames.find((name) => /^readme(\.markdown|\.txt)?$/i.test(name));
    const [readme, toml] = await Promise.all([
      readmeName ? this.readFile(key, commit, readmeName) : Promise.resolve(null),
      rootNames.includes('pepeunit.toml') ? this.readFile(key, commit, 'pepeunit.toml') : Promise.resolve(null),
    ]);
    const metadata = extractRepositoryMetadata(readme?.toString('utf8') ?? null, toml?.toString('utf8') ?? null);
    if (metadata.warnings.length > 0) this.logger.debug({ key, warnings: metadata.warnings }, 'repository metadata warnings');
    return metadata;
  }

  /** Environment of local commands: ambient GIT_* removed, the clone pinned with GIT_DIR. */
  private readEnv(gitDir: string): NodeJS.ProcessEnv {
    const env = baseGitEnv(false);
    env.LC_ALL = 'C';
    env.GIT_DIR = gitDir;
    env.GIT_CONFIG_NOSYSTEM = '1';
    return env;
  }

  /**
   * Local commands that may run filters (`archive`, `checkout-index`): also ignore the
   * system/user git config, so e.g. a globally installed LFS smudge filter never runs.
   */
  private isolatedEnv(gitDir: string): NodeJS.ProcessEnv {
    return { ...this.readEnv(gitDir), GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' };
  }

  private async reader(key: string): Promise<SimpleGit> {
    const target = this.pathOf(key);
    if (!(await this.looksLikeClone(target))) {
      this.readers.delete(key);
      throw new GitReadError('NotSynced', `Repository ${key} is not synced yet (no local clone)`);
    }
    let git = this.readers.get(key);
    if (!git) {
      git = simpleGit({
        baseDir: target,
        maxConcurrentProcesses: this.maxConcurrentReads,
        // GIT_DIR pins every command to this clone: git never searches parent directories.
        allowEnvironment: ['GIT_DIR', 'GIT_CONFIG_NOSYSTEM'],
        timeout: { block: this.readTimeoutMs },
      }).env(this.readEnv(target) as Record<string, string>);
      this.readers.set(key, git);
    }
    return git;
  }

  private async readRaw(git: SimpleGit, args: string[]): Promise<string> {
    try {
      return await git.raw(args);
    } catch (error) {
      throw this.readFailure(args[0] ?? 'git', error);
    }
  }

  private readFailure(command: string, error: unknown): GitReadError {
    const message = firstErrorLine(String((error as Error)?.message ?? error));
    return new GitReadError('Failed', `git ${command} failed: ${message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// helpers

function fetchArgs(url: string): string[] {
  return ['fetch', '--prune', '--progress', '--no-write-fetch-head', '--', url, '+refs/heads/*:refs/heads/*', '+refs/tags/*:refs/tags/*'];
}

function secretsOf(credentials: GitCredentials | null): string[] {
  if (!credentials) return [];
  return [credentials.patToken, `${credentials.username}:${credentials.patToken}`];
}

function sizeLimitError(sizeBytes: number, limitBytes: number): GitSyncError {
  return new GitSyncError(
    'SizeLimit',
    `Repository size ${formatMb(sizeBytes)} MB exceeds the limit of ${formatMb(limitBytes)} MB`,
  );
}

function formatMb(bytes: number): string {
  return (bytes / MB).toFixed(2);
}

function branchNotFound(branch: string, available: readonly string[]): GitReadError {
  return new GitReadError('BranchNotFound', `Branch ${branch} not found, available: ${formatList(available)}`);
}

function commitNotFound(commit: string): GitReadError {
  return new GitReadError('CommitNotFound', `Commit ${commit} not found in repository`);
}

function firstErrorLine(text: string): string {
  const lines = text
    .split(/[\r\n]+/)
    .map((line) => line.trim())
    .filter((line) => line !== '');
  const important = lines.find((line) => /^(fatal|error):/i.test(line)) ?? lines[0] ?? 'unknown error';
  return important.replace(/^(fatal|error):\s*/i, '');
}

const CORRUPTION = /corrupt|bad object|missing (blob|tree|commit|object)|loose object|unable to read|not a git repository|invalid (sha1|object)|packfile .* cannot be accessed|did not send all necessary objects|bad (packed )?ref|broken link|fsck error/i;
const AUTH = /could not read (username|password)|authentication failed|access denied|invalid username or password|returned error: 40[13]|terminal prompts disabled|401 unauthorized|403 forbidden/i;
const NOT_FOUND = /repository not found|does not appear to be a git repository|returned error: 404|not found|no such file or directory/i;
const UNREACHABLE = /could not resolve (host|proxy)|failed to connect|couldn't connect|connection refused|connection timed out|timed out|network is unreachable|no route to host|ssl|tls|certificate|connection reset|empty reply|unable to access|operation too slow/i;

function classifyGitFailure(
  operation: 'clone' | 'fetch',
  url: string,
  result: RunGitResult,
  hasCredentials: boolean,
  timeoutMs: number,
  secrets: string[],
): GitSyncError {
  const stderr = scrubSecrets(result.stderr, secrets);
  const detail = firstErrorLine(stderr);
  if (result.timedOut) {
    return new GitSyncError('Timeout', `Git ${operation} of ${url} timed out after ${Math.round(timeoutMs / 1000)} s`);
  }
  if (/transport '[^']*' not allowed/i.test(stderr)) {
    return new GitSyncError('InvalidUrl', `Repository URL ${url} uses a protocol that is not allowed`);
  }
  if (AUTH.test(stderr)) {
    return new GitSyncError(
      'AuthFailed',
      hasCredentials
        ? `Authentication failed for ${url}: check the username and personal access token`
        : `Repository ${url} requires authentication: it is private or does not exist`,
    );
  }
  if (operation === 'fetch' && CORRUPTION.test(stderr)) {
    return new GitSyncError('Corrupt', `Stored clone of ${url} is corrupt: ${detail}`);
  }
  if (NOT_FOUND.test(stderr)) {
    return new GitSyncError('NotFound', `Repository ${url} not found or not accessible: ${detail}`);
  }
  if (UNREACHABLE.test(stderr)) {
    // No addresses, ports or connection states for users (they would map internal networks).
    return new GitSyncError('Unreachable', `Repository host of ${url} is not reachable`);
  }
  if (CORRUPTION.test(stderr)) {
    return new GitSyncError('Corrupt', `Repository ${url} could not be read: ${detail}`);
  }
  return new GitSyncError('Failed', `Git ${operation} of ${url} failed${/\b(\d{1,3}\.){3}\d{1,3}\b|port \d+|connect|resolve/i.test(detail) ? '' : `: ${detail}`}`);
}

/**
 * Turns git's progress output ("Receiving objects:  45% (9/20)") into SyncProgress events,
 * at most one per stage and percent value.
 */
function createProgressParser(emit: (progress: SyncProgress) => void): (text: string) => void {
  let buffer = '';
  let last = '';
  return (text: string) => {
    buffer += text;
    const parts = buffer.split(/[\r\n]/);
    buffer = parts.pop() ?? '';
    if (buffer.length > 4096) buffer = buffer.slice(-4096);
    for (const part of parts) {
      const line = part.replace(/^remote:\s*/, '').trim();
      const match = /^([A-Za-z][A-Za-z ]*?):\s+(\d{1,3})% \((\d+)\/(\d+)\)/.exec(line);
      if (!match) continue;
      const stage = (match[1] ?? '').split(' ')[0]!.toLowerCase();
      const percent = Number(match[2]);
      const signature = `${stage}:${percent}`;
      if (signature === last) continue;
      last = signature;
      emit({ stage, percent, message: line.replace(/,\s*done\.?$/, '') });
    }
  };
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Sum of file sizes below `path` (symlinks counted by their own size, not followed). */
export async function directorySize(path: string): Promise<number> {
  let total = 0;
  const pending = [path];
  while (pending.length > 0) {
    const current = pending.pop()!;
    let entries;
    try {
      entries = await readdir(current, { withFileTypes: true });
    } catch {
      continue; // vanished while git was writing, or not a directory
    }
    const sizes = await Promise.all(
      entries.map(async (entry) => {
        const entryPath = join(current, entry.name);
        if (entry.isDirectory()) {
          pending.push(entryPath);
          return 0;
        }
        try {
          return (await lstat(entryPath)).size;
        } catch {
          return 0;
        }
      }),
    );
    for (const size of sizes) total += size;
  }
  return total;
}

/**
 * The only ambient variables git children see. Everything else (EDITOR, PAGER, SSH_ASKPASS,
 * GIT_*, npm's variables, ...) stays out: git never runs a program the environment names, and
 * simple-git's own guard (which refuses such variables) never trips on the operator's shell.
 */
const AMBIENT_GIT_VARIABLES = ['PATH', 'HOME', 'TMPDIR', 'TZ'];
const PROXY_VARIABLES = ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'no_proxy', 'all_proxy'];

function baseGitEnv(network: boolean): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const name of network ? [...AMBIENT_GIT_VARIABLES, ...PROXY_VARIABLES] : AMBIENT_GIT_VARIABLES) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}
