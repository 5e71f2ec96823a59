// Tokenizer for EMQX rule SQL, following the lexical rules of emqx/rulesql (`sql_lex.xrl`) as
// EMQX 5.8 ships it (reference/emqx-5.md §3.2):
// - `'...'` is a STRING literal; `"..."` is a NAME (a variable or a FROM topic), never a string;
// - the quotes are removed by trimming every leading/trailing quote character, with no escape
//   processing (`'it''s'` stays `it''s`), exactly as rulesql's `unquote/1`;
// - keywords are case-insensitive; `div` and `mod` are operators; only lowercase `true`/`false`
//   are constants (decided at evaluation, they lex as names);
// - `-` directly followed by digits is part of the number (`x-1` is a syntax error in EMQX too);
// - `-- comment` up to the end of the line is skipped.

export type TokenType =
  | 'STRING'
  | 'NAME'
  | 'INTNUM'
  | 'APPROXNUM'
  | 'COMPARISON'
  | 'KEYWORD'
  | 'PUNCT'
  | 'RANGE'
  | 'EOF';

export interface Token {
  type: TokenType;
  /** Keyword in upper case, operator/punctuation text, unquoted string/name value, number text. */
  value: string;
  /** The source text of the token. */
  text: string;
  /** Offset in the SQL text. */
  offset: number;
  /** True for NAME tokens written with double quotes. */
  quoted?: boolean;
}

export const KEYWORDS = new Set([
  'AND',
  'AS',
  'CASE',
  'IF',
  'ELSE',
  'ELSIF',
  'FROM',
  'IN',
  'NOT',
  'OR',
  'SELECT',
  'WHEN',
  'THEN',
  'FOREACH',
  'INCASE',
  'END',
  'DO',
  'WHERE',
]);

export class SqlSyntaxError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
    this.name = 'SqlSyntaxError';
  }
}

/** rulesql's `unquote/1`: trims every `'` at both ends, then every `"`. */
export function unquote(text: string): string {
  return text.replace(/^'+|'+$/g, '').replace(/^"+|"+$/g, '');
}

const COMPARISONS = ['=~', '~=', '!=', '<>', '<=', '>=', '=', '<', '>'];
const PUNCTUATION = new Set(['-', '+', '*', '/', '(', ')', '[', ']', ',', '.']);

const NAME_RE = /[A-Za-z][A-Za-z0-9_$@~]*/y;
// `{SD}+` in rulesql where SD = -?digits: "1-2" lexes as one (invalid) integer token.
const INT_RE = /(?:-?[0-9]+)+/y;
const APPROX_RE = /(?:(?:\.-?[0-9]+)|(?:(?:-?[0-9]+)+\.?(?:-?[0-9]+)*))(?:[eE][+-]?(?:-?[0-9]+)+)?[fFdD]?/y;
const RANGE_RE = /\[(-?[0-9]+)\.\.(-?[0-9]+)\]/y;

function matchAt(re: RegExp, text: string, offset: number): string | undefined {
  re.lastIndex = offset;
  const match = re.exec(text);
  return match ? match[0] : undefined;
}

function describeChar(char: string): string {
  return /[\x20-\x7e]/.test(char) ? `'${char}'` : `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

export function tokenize(sql: string): Token[] {
  const tokens: Token[] = [];
  let offset = 0;
  const length = sql.length;
  while (offset < length) {
    const char = sql[offset] as string;
    // white space
    if (char === ' ' || char === '\t' || char === '\r' || char === '\n') {
      offset += 1;
      continue;
    }
    // comments: `--` up to and including a newline
    if (char === '-' && sql[offset + 1] === '-') {
      const end = sql.indexOf('\n', offset);
      if (end === -1) throw new SqlSyntaxError(`illegal characters "--" (a comment needs a trailing newline)`, offset);
      offset = end + 1;
      continue;
    }
    if (char === "'") {
      const end = sql.indexOf("'", offset + 1);
      if (end === -1) throw new SqlSyntaxError(`unterminated string starting at offset ${offset}`, offset);
      // `'a''b'` is one token (rulesql allows doubled quotes inside a string).
      let stop = end;
      while (sql[stop + 1] === "'") {
        const next = sql.indexOf("'", stop + 2);
        if (next === -1) break;
        stop = next;
      }
      const text = sql.slice(offset, stop + 1);
      tokens.push({ type: 'STRING', value: unquote(text), text, offset });
      offset = stop + 1;
      continue;
    }
    if (char === '"') {
      const end = sql.indexOf('"', offset + 1);
      if (end === -1) throw new SqlSyntaxError(`unterminated name starting at offset ${offset}`, offset);
      let stop = end;
      while (sql[stop + 1] === '"') {
        const next = sql.indexOf('"', stop + 2);
        if (next === -1) break;
        stop = next;
      }
      const text = sql.slice(offset, stop + 1);
      tokens.push({ type: 'NAME', value: unquote(text), text, offset, quoted: true });
      offset = stop + 1;
      continue;
    }
    // Longest match among comparison / punctuation / numbers / names, as leex does.
    const candidates: Token[] = [];
    for (const op of COMPARISONS) {
      if (sql.startsWith(op, offset)) {
        candidates.push({ type: 'COMPARISON', value: op, text: op, offset });
        break;
      }
    }
    if (PUNCTUATION.has(char)) candidates.push({ type: 'PUNCT', value: char, text: char, offset });
    const range = matchAt(RANGE_RE, sql, offset);
    if (range) candidates.push({ type: 'RANGE', value: range, text: range, offset });
    const name = matchAt(NAME_RE, sql, offset);
    if (name) {
      const upper = name.toUpperCase();
      if (name === 'div' || name === 'mod') candidates.push({ type: 'PUNCT', value: name, text: name, offset });
      else if (KEYWORDS.has(upper)) candidates.push({ type: 'KEYWORD', value: upper, text: name, offset });
      else candidates.push({ type: 'NAME', value: name, text: name, offset });
    }
    const int = matchAt(INT_RE, sql, offset);
    if (int) candidates.push({ type: 'INTNUM', value: int, text: int, offset });
    const approx = matchAt(APPROX_RE, sql, offset);
    if (approx) candidates.push({ type: 'APPROXNUM', value: approx, text: approx, offset });
    if (candidates.length === 0) throw new SqlSyntaxError(`illegal character ${describeChar(char)} at offset ${offset}`, offset);
    // leex: the longest match wins; among equal lengths, the earliest rule (order above).
    let best = candidates[0] as Token;
    for (const candidate of candidates) if (candidate.text.length > best.text.length) best = candidate;
    if ((best.type === 'INTNUM' || best.type === 'APPROXNUM') && /[0-9]-/.test(best.text)) {
      throw new SqlSyntaxError(`invalid number ${best.text} (write a space around the minus operator)`, offset);
    }
    tokens.push(best);
    offset += best.text.length;
  }
  tokens.push({ type: 'EOF', value: '', text: '', offset: length });
  return tokens;
}
