/**
 * Argument validation for everything that reaches a git command line. User input is checked
 * here so nothing can be read by git as an option (`-x`), a revision range, or a path outside
 * the repository; commands additionally put user values after `--` or `--end-of-options`.
 */
import { GitReadError } from './errors.js';

const MAX_REF_LENGTH = 255;
const MAX_PATH_LENGTH = 4096;

/** Storage keys are directory names: registry UUIDs or `private-<repo uuid>` style names. */
export function assertStorageKey(key: unknown): asserts key is string {
  if (
    typeof key !== 'string' ||
    !/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(key) ||
    key.endsWith('.lock') ||
    key.includes('..')
  ) {
    throw new GitReadError('InvalidArgument', `Invalid repository storage key "${String(key)}"`);
  }
}

/**
 * Branch/tag names following `git check-ref-format --branch` rules, plus: no leading `-`
 * and not `HEAD` (the reference treated the first remote ref as HEAD; we exclude it by name).
 */
export function isValidRefName(name: unknown): name is string {
  if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > MAX_REF_LENGTH) return false;
  if (name === '@' || name === 'HEAD' || name.startsWith('-')) return false;
  if (name.startsWith('/') || name.endsWith('/') || name.endsWith('.') || name.includes('//')) return false;
  if (name.includes('..') || name.includes('@{')) return false;
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x20\x7f~^:?*[\\]/.test(name)) return false;
  for (const component of name.split('/')) {
    if (component.startsWith('.') || component.endsWith('.lock')) return false;
  }
  return true;
}

export function assertBranchName(branch: unknown): asserts branch is string {
  if (!isValidRefName(branch)) {
    throw new GitReadError('InvalidArgument', `Invalid branch name "${String(branch)}"`);
  }
}

/** A full or abbreviated object name (7–40 hex, 64 for SHA-256 repositories). */
export function isHexCommit(value: unknown): value is string {
  return typeof value === 'string' && /^[0-9a-fA-F]{7,64}$/.test(value);
}

/** Commit arguments: a hex object name or a valid ref name (resolved later; must exist). */
export function assertCommitish(commit: unknown): asserts commit is string {
  if (!isHexCommit(commit) && !isValidRefName(commit)) {
    throw new GitReadError('InvalidArgument', `Invalid commit "${String(commit)}"`);
  }
}

/**
 * Normalises a path inside the repository: `/`-separated, no leading `/`, no `.` or empty
 * segments, no `..` segment, no NUL/backslash. Returns the normalised form.
 */
export function normalizeRepoPath(path: unknown): string {
  if (typeof path !== 'string' || path.length === 0 || path.length > MAX_PATH_LENGTH) {
    throw new GitReadError('InvalidArgument', `Invalid path "${String(path)}"`);
  }
  if (path.includes('\0') || path.includes('\\') || path.startsWith('/')) {
    throw new GitReadError('InvalidArgument', `Invalid path "${path}": must be relative to the repository root`);
  }
  const segments = path.split('/').filter((segment) => segment !== '' && segment !== '.');
  if (segments.length === 0) throw new GitReadError('InvalidArgument', `Invalid path "${path}"`);
  if (segments.includes('..')) {
    throw new GitReadError('InvalidArgument', `Invalid path "${path}": ".." is not allowed`);
  }
  return segments.join('/');
}
