/**
 * `.pepeignore` matcher with gitignore semantics (git-scm.com/docs/gitignore), used to strip
 * files from interpretable firmware archives (pepeunit-backend.md §7.5).
 *
 * Rules implemented:
 * - blank lines and lines starting with `#` are ignored; `\#` and `\!` escape those characters;
 * - trailing spaces are dropped unless escaped with a backslash;
 * - `!` negates: a later matching pattern re-includes what an earlier one excluded;
 * - a trailing `/` makes the pattern match directories only;
 * - a `/` at the start or in the middle anchors the pattern to the repository root; otherwise
 *   it matches at any depth (against the last path component(s));
 * - `*` matches anything but `/`, `?` one character but `/`, `[...]` a character class
 *   (`[!...]` / `[^...]` negated, never `/`); a backslash escapes the next character;
 * - `**`: a leading double-star-slash matches in every directory, a trailing slash-double-star
 *   everything inside, slash-double-star-slash zero or more directories; other runs of asterisks
 *   behave like `*`;
 * - the last matching pattern decides; a path inside an excluded directory stays excluded (git
 *   cannot re-include a file whose parent directory is excluded) — `isExcluded` callers walk
 *   top-down and drop excluded directories whole.
 */

export interface IgnoreRule {
  readonly pattern: string;
  readonly negate: boolean;
  readonly directoryOnly: boolean;
  readonly regex: RegExp;
}

/** Longest accepted `.pepeignore` (characters) and number of rules; beyond that the rest is ignored. */
const MAX_FILE_LENGTH = 256 * 1024;
const MAX_RULES = 2000;
const MAX_PATTERN_LENGTH = 4096;

export function parseIgnoreRules(text: string): IgnoreRule[] {
  const rules: IgnoreRule[] = [];
  for (const rawLine of text.slice(0, MAX_FILE_LENGTH).split('\n')) {
    if (rules.length >= MAX_RULES) break;
    const rule = parseLine(rawLine.replace(/\r$/, ''));
    if (rule) rules.push(rule);
  }
  return rules;
}

function parseLine(rawLine: string): IgnoreRule | null {
  let line = trimTrailingSpaces(rawLine);
  if (line === '' || line.startsWith('#') || line.length > MAX_PATTERN_LENGTH) return null;
  let negate = false;
  if (line.startsWith('!')) {
    negate = true;
    line = line.slice(1);
  }
  let directoryOnly = false;
  if (line.endsWith('/') && !isEscapedAt(line, line.length - 1)) {
    directoryOnly = true;
    line = line.replace(/\/+$/, '');
  }
  if (line === '') return null;
  // A slash at the beginning or in the middle anchors the pattern to the root.
  const anchored = line.includes('/');
  if (line.startsWith('/')) line = line.replace(/^\/+/, '');
  if (line === '') return null;
  const body = globToRegexBody(line);
  if (body === null) return null;
  const source = anchored ? `^${body}$` : `^(?:.*/)?${body}$`;
  return { pattern: rawLine.trim(), negate, directoryOnly, regex: new RegExp(source, 's') };
}

/** Drops trailing spaces that are not escaped with a backslash ("a\ " keeps one space). */
function trimTrailingSpaces(line: string): string {
  let end = line.length;
  while (end > 0 && line[end - 1] === ' ' && !isEscapedAt(line, end - 1)) end--;
  return line.slice(0, end);
}

/** True when the character at `index` is preceded by an odd number of backslashes. */
function isEscapedAt(text: string, index: number): boolean {
  let count = 0;
  for (let i = index - 1; i >= 0 && text[i] === '\\'; i--) count++;
  return count % 2 === 1;
}

const REGEX_SPECIAL = /[.*+?^${}()|[\]\\/]/g;
const escapeRegex = (text: string): string => text.replace(REGEX_SPECIAL, '\\$&');

/** Translates one gitignore glob (no leading `/`, no trailing `/`) to a regex body over `/`-separated paths. */
export function globToRegexBody(glob: string): string | null {
  let out = '';
  let i = 0;
  const n = glob.length;
  while (i < n) {
    const ch = glob[i]!;
    if (ch === '*') {
      let j = i;
      while (j < n && glob[j] === '*') j++;
      const run = j - i;
      const atSegmentStart = i === 0 || glob[i - 1] === '/';
      const atSegmentEnd = j === n || glob[j] === '/';
      if (run >= 2 && atSegmentStart && atSegmentEnd) {
        if (j === n) {
          // `**` as the whole pattern, or trailing `/**` after the `/` already emitted:
          // "abc/**" => "abc/.*" matches everything inside abc, not abc itself.
          out += '.*';
          i = j;
        } else {
          // `**/` (leading or middle): zero or more directories.
          out += '(?:.*/)?';
          i = j + 1; // consume the slash
        }
        continue;
      }
      out += '[^/]*';
      i = j;
      continue;
    }
    if (ch === '?') {
      out += '[^/]';
      i++;
      continue;
    }
    if (ch === '[') {
      const cls = parseCharClass(glob, i);
      if (cls) {
        out += cls.regex;
        i = cls.end;
        continue;
      }
      out += '\\[';
      i++;
      continue;
    }
    if (ch === '\\') {
      if (i + 1 < n) {
        out += escapeRegex(glob[i + 1]!);
        i += 2;
      } else {
        // A trailing lone backslash matches nothing in git; treat the pattern as invalid.
        return null;
      }
      continue;
    }
    out += escapeRegex(ch);
    i++;
  }
  return out;
}

/** `[...]` starting at `start`; null when there is no closing bracket (then `[` is literal). */
function parseCharClass(glob: string, start: number): { regex: string; end: number } | null {
  let i = start + 1;
  let negate = false;
  if (glob[i] === '!' || glob[i] === '^') {
    negate = true;
    i++;
  }
  let body = '';
  let first = true;
  while (i < glob.length) {
    const ch = glob[i]!;
    if (ch === ']' && !first) {
      if (body === '') return null;
      // Classes never match the separator.
      return { regex: negate ? `[^/${body}]` : `(?!/)[${body}]`, end: i + 1 };
    }
    first = false;
    if (ch === '\\' && i + 1 < glob.length) {
      body += escapeClassChar(glob[i + 1]!);
      i += 2;
      continue;
    }
    if (ch === '[' && glob[i + 1] === ':') {
      const close = glob.indexOf(':]', i + 2);
      if (close > 0) {
        const name = glob.slice(i + 2, close);
        const posix = POSIX_CLASSES[name];
        if (posix) {
          body += posix;
          i = close + 2;
          continue;
        }
      }
    }
    if (ch === '-' && body !== '' && glob[i + 1] !== ']' && i + 1 < glob.length) {
      body += '-';
      i++;
      continue;
    }
    body += escapeClassChar(ch);
    i++;
  }
  return null;
}

function escapeClassChar(ch: string): string {
  return /[\]\\^-]/.test(ch) ? `\\${ch}` : ch;
}

const POSIX_CLASSES: Record<string, string> = {
  alnum: 'A-Za-z0-9',
  alpha: 'A-Za-z',
  blank: ' \\t',
  digit: '0-9',
  lower: 'a-z',
  upper: 'A-Z',
  space: ' \\t\\n\\r\\f\\v',
  xdigit: '0-9A-Fa-f',
  punct: '!-\\/:-@\\[-`{-~',
};

/** A parsed `.pepeignore`: `isExcluded(relativePath, isDirectory)` answers for one path. */
export class IgnoreMatcher {
  readonly rules: readonly IgnoreRule[];
  constructor(text: string) {
    this.rules = parseIgnoreRules(text);
  }

  /** Last matching rule wins; `relativePath` uses `/` and has no leading `./` or `/`. */
  isExcluded(relativePath: string, isDirectory: boolean): boolean {
    const path = relativePath.replace(/^\.\//, '').replace(/^\/+/, '').replace(/\/+$/, '');
    let excluded = false;
    for (const rule of this.rules) {
      if (rule.directoryOnly && !isDirectory) continue;
      if (rule.regex.test(path)) excluded = !rule.negate;
    }
    return excluded;
  }
}
