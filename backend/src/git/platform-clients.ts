/**
 * GitHub and GitLab REST clients (§6.6) on undici: repository size, token validation and
 * release assets. The API base URL is derived from the repository URL as the reference does
 * (GitHub: api.github.com, or `<host>/api/v3` for GitHub Enterprise; GitLab: `<host>/api/v4`)
 * and can be overridden (tests point it at a local server).
 *
 * Credentials travel only in headers (GitHub: Basic `username:pat`, or the instance token
 * for public repositories; GitLab: `PRIVATE-TOKEN`). Error messages never contain them.
 */
import { request, type Dispatcher } from 'undici';

export type GitPlatform = 'Github' | 'Gitlab';

export interface PlatformCredentials {
  username: string;
  patToken: string;
}

/** `[asset name, download url]`, the reference `releases_data` item. */
export type ReleaseAsset = [name: string, url: string];
/** `{ "<tag>": [[name, url], ...] }`, stored as JSON in `repository_registry.releases_data`. */
export type ReleasesData = Record<string, ReleaseAsset[]>;

export interface PlatformClientOptions {
  repositoryUrl: string;
  /** The caller's (or first valid) credentials of a private registry. */
  credentials?: PlatformCredentials | null;
  /** GitHub only: instance token for calls without credentials (PU_GITHUB_TOKEN_NAME/PAT). */
  instanceToken?: PlatformCredentials | null;
  /** Override of the API root, e.g. `http://127.0.0.1:1234/api/v4` (GitLab) or `http://127.0.0.1:1234` (GitHub). */
  apiBaseUrl?: string;
  /** Per-request timeout. Default 15 s. */
  timeoutMs?: number;
  dispatcher?: Dispatcher;
  /** Upper bound on release pages fetched (100 releases each). Default 50. */
  maxReleasePages?: number;
}

export interface GitPlatformClient {
  readonly platform: GitPlatform;
  readonly apiBaseUrl: string;
  /** Repository size in bytes as reported by the platform; 0 when the platform does not say. */
  getRepoSize(): Promise<number>;
  /** Whether the credentials can read the repository. Rate limits/outages throw instead. */
  isValidToken(): Promise<boolean>;
  getReleases(): Promise<ReleasesData>;
}

export type GitPlatformClientErrorKind = 'InvalidUrl' | 'InvalidCredentials' | 'RateLimit' | 'Unavailable' | 'InvalidResponse';

/** Maps to the reference `GitPlatformClientError` (422, code 14). */
export class GitPlatformClientError extends Error {
  override readonly name = 'GitPlatformClientError';
  constructor(
    readonly kind: GitPlatformClientErrorKind,
    message: string,
    readonly status: number | null = null,
  ) {
    super(message);
  }
}

const RATE_LIMIT_MESSAGE = 'Rate limit external API';
const INVALID_CREDENTIALS_MESSAGE = 'Invalid Credentials';
const PER_PAGE = 100;
const USER_AGENT = 'pepeunit-ts';

/** `owner/repo` (GitLab: `group/subgroup/project`) from a repository URL, `.git` removed. */
export function repositoryPath(repositoryUrl: string): string {
  const url = parseUrl(repositoryUrl);
  const path = decodeURIComponent(url.pathname)
    .replace(/^\/+|\/+$/g, '')
    .replace(/\.git$/, '');
  if (path.split('/').filter(Boolean).length < 2) {
    throw new GitPlatformClientError('InvalidUrl', `Repository URL must contain the owner and the repository name`);
  }
  return path;
}

export function defaultApiBaseUrl(platform: GitPlatform, repositoryUrl: string): string {
  const url = parseUrl(repositoryUrl);
  if (platform === 'Github') {
    const host = url.hostname.toLowerCase();
    return host === 'github.com' || host === 'www.github.com' ? 'https://api.github.com' : `${url.protocol}//${url.host}/api/v3`;
  }
  return `${url.protocol}//${url.host}/api/v4`;
}

export function createPlatformClient(platform: GitPlatform, options: PlatformClientOptions): GitPlatformClient {
  if (platform === 'Github') return new GithubClient(options);
  if (platform === 'Gitlab') return new GitlabClient(options);
  throw new GitPlatformClientError('InvalidUrl', `Unknown git platform "${String(platform)}"; expected Github or Gitlab`);
}

abstract class BaseClient {
  abstract readonly platform: GitPlatform;
  readonly apiBaseUrl: string;
  protected readonly path: string;
  protected readonly credentials: PlatformCredentials | null;
  protected readonly timeoutMs: number;
  protected readonly dispatcher: Dispatcher | undefined;
  protected readonly maxReleasePages: number;

  constructor(platform: GitPlatform, options: PlatformClientOptions) {
    this.path = repositoryPath(options.repositoryUrl);
    this.apiBaseUrl = (options.apiBaseUrl ?? defaultApiBaseUrl(platform, options.repositoryUrl)).replace(/\/+$/, '');
    this.credentials = options.credentials ?? null;
    this.timeoutMs = options.timeoutMs ?? 15_000;
    this.dispatcher = options.dispatcher;
    this.maxReleasePages = options.maxReleasePages ?? 50;
  }

  protected abstract authHeaders(): Record<string, string>;
  protected abstract errorFor(status: number, headers: Record<string, string | string[] | undefined>): GitPlatformClientError;

  protected async getJson(pathAndQuery: string): Promise<unknown> {
    let response: Dispatcher.ResponseData;
    try {
      response = await request(`${this.apiBaseUrl}${pathAndQuery}`, {
        method: 'GET',
        headers: { 'user-agent': USER_AGENT, accept: 'application/json', ...this.authHeaders() },
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
        ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
      });
    } catch (error) {
      // Whether the port was closed, filtered or refused by the destination guard is not the
      // caller's business (it would map internal networks): one message for all.
      throw new GitPlatformClientError('Unavailable', `${this.platform} API is unreachable`);
    }
    if (response.statusCode < 200 || response.statusCode >= 300) {
      await response.body.dump().catch(() => undefined);
      throw this.errorFor(response.statusCode, response.headers);
    }
    try {
      return await response.body.json();
    } catch {
      throw new GitPlatformClientError('InvalidResponse', `${this.platform} API returned an invalid JSON response`, response.statusCode);
    }
  }

  protected commonError(status: number): GitPlatformClientError {
    if (status === 429) return new GitPlatformClientError('RateLimit', RATE_LIMIT_MESSAGE, status);
    if (status === 401 || status === 403 || status === 404) {
      return new GitPlatformClientError('InvalidCredentials', INVALID_CREDENTIALS_MESSAGE, status);
    }
    return new GitPlatformClientError('Unavailable', `${this.platform} API responded with HTTP ${status}`, status);
  }

  async isValidToken(): Promise<boolean> {
    try {
      const project = await this.getJson(this.projectPath());
      return isRecord(project) && project.id !== undefined && project.id !== null;
    } catch (error) {
      if (error instanceof GitPlatformClientError && error.kind === 'InvalidCredentials') return false;
      throw error;
    }
  }

  protected abstract projectPath(): string;
}

export class GithubClient extends BaseClient implements GitPlatformClient {
  readonly platform = 'Github' as const;
  private readonly instanceToken: PlatformCredentials | null;

  constructor(options: PlatformClientOptions) {
    super('Github', options);
    const token = options.instanceToken;
    this.instanceToken = token && token.username && token.patToken ? token : null;
  }

  protected authHeaders(): Record<string, string> {
    const auth = this.credentials ?? this.instanceToken;
    const headers: Record<string, string> = { accept: 'application/vnd.github.v3+json' };
    if (auth) headers.authorization = `Basic ${Buffer.from(`${auth.username}:${auth.patToken}`).toString('base64')}`;
    return headers;
  }

  protected errorFor(status: number): GitPlatformClientError {
    // GitHub answers 403 when the (primary or secondary) rate limit is exhausted.
    if (status === 403) return new GitPlatformClientError('RateLimit', RATE_LIMIT_MESSAGE, status);
    return this.commonError(status);
  }

  protected projectPath(): string {
    return `/repos/${this.path.split('/').map(encodeURIComponent).join('/')}`;
  }

  /** `size` is in KB on GitHub. */
  async getRepoSize(): Promise<number> {
    const repository = await this.getJson(this.projectPath());
    if (!isRecord(repository) || typeof repository.size !== 'number') {
      throw new GitPlatformClientError('InvalidCredentials', INVALID_CREDENTIALS_MESSAGE);
    }
    return repository.size * 1024;
  }

  /** All pages (the reference read only the first 30 releases). */
  async getReleases(): Promise<ReleasesData> {
    const result: ReleasesData = {};
    for (let page = 1; page <= this.maxReleasePages; page++) {
      const items = await this.getJson(`${this.projectPath()}/releases?per_page=${PER_PAGE}&page=${page}`);
      if (!Array.isArray(items)) throw new GitPlatformClientError('InvalidResponse', 'Github API returned an unexpected releases list');
      for (const release of items) {
        if (!isRecord(release) || typeof release.tag_name !== 'string') continue;
        const assets = Array.isArray(release.assets) ? release.assets : [];
        result[release.tag_name] = assets
          .filter(isRecord)
          .filter((asset) => typeof asset.name === 'string' && typeof asset.browser_download_url === 'string')
          .map((asset) => [asset.name as string, asset.browser_download_url as string]);
      }
      if (items.length < PER_PAGE) break;
    }
    return result;
  }
}

export class GitlabClient extends BaseClient implements GitPlatformClient {
  readonly platform = 'Gitlab' as const;

  constructor(options: PlatformClientOptions) {
    super('Gitlab', options);
  }

  protected authHeaders(): Record<string, string> {
    return this.credentials ? { 'private-token': this.credentials.patToken } : {};
  }

  protected errorFor(status: number): GitPlatformClientError {
    return this.commonError(status);
  }

  protected projectPath(): string {
    return `/projects/${encodeURIComponent(this.path)}`;
  }

  private async projectId(): Promise<number | string> {
    const project = await this.getJson(this.projectPath());
    if (!isRecord(project) || (typeof project.id !== 'number' && typeof project.id !== 'string')) {
      throw new GitPlatformClientError('InvalidCredentials', INVALID_CREDENTIALS_MESSAGE);
    }
    return project.id;
  }

  /**
   * `statistics.repository_size`. GitLab hides statistics from anonymous users and from
   * members below Reporter; then 0 is returned and the on-disk size check decides.
   */
  async getRepoSize(): Promise<number> {
    const project = await this.getJson(`${this.projectPath()}?statistics=true`);
    if (!isRecord(project) || project.id === undefined || project.id === null) {
      throw new GitPlatformClientError('InvalidCredentials', INVALID_CREDENTIALS_MESSAGE);
    }
    const statistics = project.statistics;
    if (isRecord(statistics) && typeof statistics.repository_size === 'number') return statistics.repository_size;
    return 0;
  }

  /** Pages of 100 until an empty or short page: sources `(format, url)` then links `(name, url)`. */
  async getReleases(): Promise<ReleasesData> {
    const id = await this.projectId();
    const result: ReleasesData = {};
    for (let page = 1; page <= this.maxReleasePages; page++) {
      const items = await this.getJson(`/projects/${encodeURIComponent(String(id))}/releases?page=${page}&per_page=${PER_PAGE}`);
      if (!Array.isArray(items)) throw new GitPlatformClientError('InvalidResponse', 'Gitlab API returned an unexpected releases list');
      for (const release of items) {
        if (!isRecord(release) || typeof release.tag_name !== 'string') continue;
        const assets = isRecord(release.assets) ? release.assets : {};
        const sources = Array.isArray(assets.sources) ? assets.sources.filter(isRecord) : [];
        const links = Array.isArray(assets.links) ? assets.links.filter(isRecord) : [];
        result[release.tag_name] = [
          ...sources
            .filter((source) => typeof source.format === 'string' && typeof source.url === 'string')
            .map((source): ReleaseAsset => [source.format as string, source.url as string]),
          ...links
            .filter((link) => typeof link.name === 'string' && typeof link.url === 'string')
            .map((link): ReleaseAsset => [link.name as string, link.url as string]),
        ];
      }
      if (items.length < PER_PAGE) break;
    }
    return result;
  }
}

function parseUrl(repositoryUrl: string): URL {
  try {
    const url = new URL(repositoryUrl);
    url.username = '';
    url.password = '';
    return url;
  } catch {
    throw new GitPlatformClientError('InvalidUrl', 'Repository URL is not a valid URL');
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
