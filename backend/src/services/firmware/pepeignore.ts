/**
 * `.pepeignore` matcher with gitignore semantics (git-scm.com/docs/gitignore), used to strip
 * files from interpretable firmware archives (pepeunit-backend.md §7.5). The matching is the
 * `ignore` package's (the gitignore implementation eslint and others use), configured
 * case-sensitive like git on Linux; `backend/test/firmware/pepeignore.test.ts` checks it against
 * real git.
 *
 * A path inside an excluded directory stays excluded (git cannot re-include a file whose parent
 * directory is excluded); `applyIgnoreRules` walks top-down and drops excluded directories whole.
 */
import ignore, { type Ignore } from 'ignore';

/**
 * Bounds on what a repository can make us compile: the first 256 KiB of the file, the first
 * 2,000 lines, lines of at most 4,096 characters (longer ones are dropped, not truncated, so no
 * half pattern matches). Every pattern becomes a regular expression, so unbounded input would
 * be unbounded work per path.
 */
const MAX_FILE_LENGTH = 256 * 1024;
const MAX_LINES = 2000;
const MAX_PATTERN_LENGTH = 4096;

/** The lines of a `.pepeignore` within the bounds above. */
function boundedIgnoreLines(text: string): string[] {
  return text
    .slice(0, MAX_FILE_LENGTH)
    .split(/\r?\n/)
    .slice(0, MAX_LINES)
    .filter((line) => line.length <= MAX_PATTERN_LENGTH);
}

/** A parsed `.pepeignore`: `isExcluded(relativePath, isDirectory)` answers for one path. */
export class IgnoreMatcher {
  readonly #rules: Ignore;

  constructor(text: string) {
    this.#rules = ignore({ ignorecase: false }).add(boundedIgnoreLines(text));
  }

  /** `relativePath` uses `/`; a leading `./` or `/` and trailing slashes are ignored. */
  isExcluded(relativePath: string, isDirectory: boolean): boolean {
    const path = relativePath.replace(/^(?:\.\/)+/, '').replace(/^\/+/, '').replace(/\/+$/, '');
    if (path === '') return false;
    // The library tells directories by a trailing slash (for directory-only patterns like `build/`).
    return this.#rules.ignores(isDirectory ? `${path}/` : path);
  }
}
