/**
 * GitHub/GitLab API access of the registry (§6.6) and the mapping of git-layer errors to the
 * reference error classes (GitRepoError 422/5, GitPlatformClientError 422/14, JSON 422/9).
 */
import { Agent, type Dispatcher } from 'undici';
import type { DestinationGuard } from '../../../../git/destinations.js';
import type { BackendConfig } from '@pepeunit/common';
import {
  CustomJSONDecodeError,
  GitPlatformClientError,
  GitRepoError,
  PepeunitError,
} from '../../../../errors.js';
import {
  GitPlatformClientError as PlatformClientFailure,
  GitReadError,
  GitSyncError,
  VersionError,
  createPlatformClient,
  scrubSecrets,
  type GitPlatform,
  type GitPlatformClient,
  type PlatformCredentials,
} from '../../../../git/index.js';

/**
 * Where the platform APIs are. By default the API base is derived from the repository URL
 * (api.github.com, `<host>/api/v3`, `<host>/api/v4`). `baseUrl` points both at one server
 * instead (GitHub endpoints at its root, GitLab's under `/api/v4`), for tests and mirrors;
 * it is read from `PU_GIT_PLATFORM_API_BASE_URL` when the config knows that variable.
 */
export class PlatformApi {
  baseUrl: string | null;
  readonly instanceToken: PlatformCredentials | null;
  timeoutMs = 15_000;

  private readonly dispatcher: Dispatcher | undefined;

  /** `guard`: every connection of the platform clients resolves through it (SSRF). */
  constructor(config: BackendConfig, guard?: DestinationGuard) {
    this.dispatcher = guard ? new Agent({ connect: { lookup: guard.connectLookup() as never } }) : undefined;
    const configured = config.gitPlatform.apiBaseUrl;
    this.baseUrl = configured !== '' ? configured.replace(/\/+$/, '') : null;
    const name = config.gitPlatform.githubTokenName;
    const pat = config.gitPlatform.githubTokenPat;
    this.instanceToken = name && pat ? { username: name, patToken: pat } : null;
  }

  /**
   * A client for the repository, or null when there is no API to ask: `file://` repositories
   * (tests, local mirrors) without a configured base URL.
   */
  client(platform: GitPlatform, repositoryUrl: string, credentials: PlatformCredentials | null): GitPlatformClient | null {
    const scheme = repositoryUrl.slice(0, repositoryUrl.indexOf(':')).toLowerCase();
    if (scheme !== 'http' && scheme !== 'https' && this.baseUrl === null) return null;
    const apiBaseUrl = this.baseUrl === null ? undefined : platform === 'Gitlab' ? `${this.baseUrl}/api/v4` : this.baseUrl;
    try {
      return createPlatformClient(platform, {
        repositoryUrl,
        credentials,
        instanceToken: this.instanceToken,
        timeoutMs: this.timeoutMs,
        ...(apiBaseUrl ? { apiBaseUrl } : {}),
        ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
      });
    } catch (error) {
      throw toDomainError(error);
    }
  }
}

/** Git-layer and platform errors as reference domain errors; other errors are returned unchanged. */
export function toDomainError(error: unknown, secrets: readonly string[] = []): unknown {
  if (error instanceof PepeunitError) return error;
  if (error instanceof GitSyncError) return new GitRepoError(scrubSecrets(error.message, secrets));
  if (error instanceof GitReadError) {
    return error.kind === 'InvalidJson' ? new CustomJSONDecodeError(error.message) : new GitRepoError(error.message);
  }
  if (error instanceof VersionError) return new GitRepoError(error.message);
  if (error instanceof PlatformClientFailure) return new GitPlatformClientError(scrubSecrets(error.message, secrets));
  return error;
}

/** Runs `fn`, converting git-layer errors into reference domain errors. */
export async function gitCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw toDomainError(error);
  }
}
