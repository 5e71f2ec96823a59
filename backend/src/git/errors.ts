/**
 * Errors raised by the git layer. Every message is meant to reach a user as is: it says what
 * went wrong and never contains credentials (URLs are passed through `redactUrl` first).
 * The HTTP layer maps both classes to the reference `GitRepoError` (422, code 5).
 */

export type GitSyncErrorKind =
  | 'InvalidUrl'
  | 'Unreachable'
  | 'NotFound'
  | 'AuthFailed'
  | 'SizeLimit'
  | 'Timeout'
  | 'Corrupt'
  | 'Failed';

/** A sync (clone or fetch) could not complete. No partial clone is left behind on first clones. */
export class GitSyncError extends Error {
  override readonly name = 'GitSyncError';
  constructor(
    readonly kind: GitSyncErrorKind,
    message: string,
  ) {
    super(message);
  }
}

export type GitReadErrorKind =
  | 'InvalidArgument'
  | 'NotSynced'
  | 'BranchNotFound'
  | 'CommitNotFound'
  | 'FileNotFound'
  | 'InvalidJson'
  | 'Failed';

/** Reading from a stored clone failed (bad argument, missing branch/commit/file, broken JSON). */
export class GitReadError extends Error {
  override readonly name = 'GitReadError';
  constructor(
    readonly kind: GitReadErrorKind,
    message: string,
  ) {
    super(message);
  }
}

/** Removes `user:password@` from every URL found in `text`. */
export function redactUrl(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/\s@]*@/gi, '$1');
}

/**
 * Removes URL userinfo and every literal secret (and its base64/URL-encoded forms) from `text`.
 * Used on anything derived from git's stderr before it reaches a log line or an error.
 */
export function scrubSecrets(text: string, secrets: readonly (string | undefined | null)[] = []): string {
  let result = redactUrl(text);
  for (const secret of secrets) {
    if (!secret || secret.length < 3) continue;
    const forms = new Set([secret, encodeURIComponent(secret), Buffer.from(secret).toString('base64')]);
    for (const form of forms) result = result.split(form).join('***');
  }
  return result;
}
