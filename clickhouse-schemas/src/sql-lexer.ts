/**
 * A small ClickHouse SQL lexer: just enough to split a script into statements, find a
 * trailing `FORMAT <name>` clause and tell whether text after a `;` is another statement.
 * It understands everything that can hide a `;` in ClickHouse SQL: '…' strings (backslash
 * escapes and doubled quotes), "…" and `…` identifiers, `--` / `# ` / `#!` line comments,
 * nested block comments and $tag$…$tag$ heredocs.
 */

export type SqlTokenKind = 'word' | 'string' | 'quoted_identifier' | 'number' | 'semicolon' | 'open' | 'close' | 'other';

export interface SqlToken {
  readonly kind: SqlTokenKind;
  readonly text: string;
  /** Offset of the first character in the source. */
  readonly start: number;
  /** Offset just after the last character. */
  readonly end: number;
}

export class SqlLexError extends Error {
  constructor(message: string, readonly position: number) {
    super(message);
    this.name = 'SqlLexError';
  }
}

const isWordStart = (c: string) => /[A-Za-z_\u0080-\uffff]/.test(c);
const isWordPart = (c: string) => /[A-Za-z0-9_$\u0080-\uffff]/.test(c);
const isDigit = (c: string) => c >= '0' && c <= '9';

/** Index just after a quoted run opened at `start` with `quote`, honouring `\x` escapes and doubled quotes. */
function skipQuoted(sql: string, start: number, quote: string): number {
  let i = start + 1;
  while (i < sql.length) {
    const c = sql[i];
    if (c === '\\') {
      i += 2;
      continue;
    }
    if (c === quote) {
      if (sql[i + 1] === quote) {
        i += 2;
        continue;
      }
      return i + 1;
    }
    i += 1;
  }
  throw new SqlLexError(`unterminated ${quote === "'" ? 'string literal' : 'quoted identifier'} starting at position ${start}`, start);
}

/** Index just after a (possibly nested) block comment opened at `start`. */
function skipBlockComment(sql: string, start: number): number {
  let depth = 0;
  let i = start;
  while (i < sql.length) {
    if (sql.startsWith('/*', i)) {
      depth += 1;
      i += 2;
    } else if (sql.startsWith('*/', i)) {
      depth -= 1;
      i += 2;
      if (depth === 0) return i;
    } else {
      i += 1;
    }
  }
  throw new SqlLexError(`unterminated block comment starting at position ${start}`, start);
}

/** Tokenises `sql`; comments and whitespace are dropped. Throws SqlLexError on unterminated quotes/comments. */
export function tokenizeSql(sql: string): SqlToken[] {
  const tokens: SqlToken[] = [];
  let i = 0;
  const push = (kind: SqlTokenKind, start: number, end: number) => {
    tokens.push({ kind, text: sql.slice(start, end), start, end });
  };
  while (i < sql.length) {
    const c = sql[i] as string;
    const next = sql[i + 1];
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v') {
      i += 1;
    } else if (c === '-' && next === '-') {
      const nl = sql.indexOf('\n', i);
      i = nl === -1 ? sql.length : nl + 1;
    } else if (c === '#' && (next === ' ' || next === '!')) {
      const nl = sql.indexOf('\n', i);
      i = nl === -1 ? sql.length : nl + 1;
    } else if (c === '/' && next === '*') {
      i = skipBlockComment(sql, i);
    } else if (c === "'") {
      const end = skipQuoted(sql, i, "'");
      push('string', i, end);
      i = end;
    } else if (c === '"' || c === '`') {
      const end = skipQuoted(sql, i, c);
      push('quoted_identifier', i, end);
      i = end;
    } else if (c === '$') {
      // Heredoc: $tag$ ... $tag$ (tag may be empty).
      const m = /^\$([A-Za-z0-9_]*)\$/.exec(sql.slice(i, i + 64));
      if (m) {
        const tag = m[0];
        const close = sql.indexOf(tag, i + tag.length);
        if (close === -1) throw new SqlLexError(`unterminated heredoc ${tag} starting at position ${i}`, i);
        push('string', i, close + tag.length);
        i = close + tag.length;
      } else {
        push('other', i, i + 1);
        i += 1;
      }
    } else if (c === ';') {
      push('semicolon', i, i + 1);
      i += 1;
    } else if (c === '(' || c === '[' || c === '{') {
      push('open', i, i + 1);
      i += 1;
    } else if (c === ')' || c === ']' || c === '}') {
      push('close', i, i + 1);
      i += 1;
    } else if (isDigit(c)) {
      let j = i + 1;
      while (j < sql.length && /[0-9A-Za-z_.]/.test(sql[j] as string)) {
        // exponent sign: 1e-5
        if ((sql[j] === 'e' || sql[j] === 'E') && (sql[j + 1] === '-' || sql[j + 1] === '+')) j += 1;
        j += 1;
      }
      push('number', i, j);
      i = j;
    } else if (isWordStart(c)) {
      let j = i + 1;
      while (j < sql.length && isWordPart(sql[j] as string)) j += 1;
      push('word', i, j);
      i = j;
    } else {
      push('other', i, i + 1);
      i += 1;
    }
  }
  return tokens;
}

/**
 * Splits a multi-statement script on top-level `;`. Statements that are empty or contain only
 * comments are dropped; each returned statement is trimmed and has no trailing `;`.
 */
export function splitSqlStatements(sql: string): string[] {
  const tokens = tokenizeSql(sql);
  const statements: string[] = [];
  let start = 0;
  let hasContent = false;
  for (const token of tokens) {
    if (token.kind === 'semicolon') {
      if (hasContent) statements.push(sql.slice(start, token.start).trim());
      start = token.end;
      hasContent = false;
    } else {
      hasContent = true;
    }
  }
  if (hasContent) statements.push(sql.slice(start).trim());
  return statements;
}

/** First keyword of a statement, upper-cased (`SELECT`, `INSERT`, …), skipping leading `(`. */
export function firstKeyword(tokens: readonly SqlToken[]): string | undefined {
  for (const t of tokens) {
    if (t.kind === 'open') continue;
    return t.kind === 'word' ? t.text.toUpperCase() : undefined;
  }
  return undefined;
}

/**
 * The output format named by a trailing `FORMAT <name>` clause of a (non-INSERT) statement,
 * or undefined. Only a top-level FORMAT followed by a name and then nothing, `;` or a
 * SETTINGS clause counts, so a column called `format` is not mistaken for the clause.
 */
export function findOutputFormat(tokens: readonly SqlToken[]): string | undefined {
  let depth = 0;
  let found: string | undefined;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i] as SqlToken;
    if (t.kind === 'open') depth += 1;
    else if (t.kind === 'close') depth = Math.max(0, depth - 1);
    else if (depth === 0 && t.kind === 'word' && t.text.toUpperCase() === 'FORMAT') {
      const name = tokens[i + 1];
      const after = tokens[i + 2];
      if (
        name &&
        (name.kind === 'word' || name.kind === 'quoted_identifier') &&
        (!after || after.kind === 'semicolon' || (after.kind === 'word' && after.text.toUpperCase() === 'SETTINGS'))
      ) {
        found = name.kind === 'quoted_identifier' ? name.text.slice(1, -1) : name.text;
      }
    }
  }
  return found;
}

/**
 * Offset of a second statement in `sql` (text after a top-level `;` that is not just
 * whitespace/comments), or -1. ClickHouse's HTTP interface refuses multi-statements.
 */
export function secondStatementOffset(tokens: readonly SqlToken[]): number {
  let sawSemicolon = false;
  for (const t of tokens) {
    if (t.kind === 'semicolon') {
      sawSemicolon = true;
      continue;
    }
    if (sawSemicolon) return t.start;
  }
  return -1;
}
