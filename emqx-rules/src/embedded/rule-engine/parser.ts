// Recursive-descent parser for the rule SQL subset of the embedded rule engine. The grammar and
// operator precedence are those of emqx/rulesql (`rulesql.yrl`, reference/emqx-5.md §3.1):
//
//   SELECT field {, field} FROM source {, source} [WHERE condition]
//   FOREACH field {, field} [DO field {, field}] [INCASE condition] FROM ... [WHERE condition]
//   field     := '*' | expr [[AS] alias] | case [[AS] alias]
//   case      := CASE [expr] WHEN condition THEN expr {WHEN ...} [ELSE expr] END | (case)
//   source    := "double-quoted" | 'single-quoted' | name
//   condition := condition OR condition | condition AND condition | NOT condition | (condition)
//              | expr | expr cmp expr | expr [NOT] IN (expr {, expr})
//   expr      := literal | name | path | func(args) | [list] | expr (+ - * / div mod) expr
//              | (+|-) expr | (expr)
//
// Precedence (low to high): OR, AND, NOT, comparison (non-associative), + -, * / div mod, unary.
// As in rulesql, CASE is a selected field or a function argument, not a general scalar (so
// `CASE ... END + 1` is a syntax error here as on EMQX). What EMQX accepts but this engine does
// not run (ranges, dynamic indexes, module functions, aliases inside CASE branches) is refused
// with `UnsupportedSqlError`, never accepted silently.
import type { CaseClause, ComparisonOp, Condition, Expr, Field, ForeachClauses, PathSegment, SelectStatement } from './ast.js';
import { SqlSyntaxError, tokenize } from './lexer.js';
import type { Token } from './lexer.js';

export { SqlSyntaxError } from './lexer.js';

/** Valid EMQX SQL that the embedded engine does not implement. */
export class UnsupportedSqlError extends Error {
  constructor(message: string) {
    super(`not supported by the embedded rule engine: ${message}`);
    this.name = 'UnsupportedSqlError';
  }
}

/** EMQX's own reason for a statement without sources. */
export class EmptyFromError extends Error {
  constructor() {
    super('empty_from_clause');
    this.name = 'EmptyFromError';
  }
}

const MULTIPLICATIVE = new Set(['*', '/', 'div', 'mod']);

class Parser {
  private position = 0;

  constructor(private readonly tokens: Token[]) {}

  private peek(ahead = 0): Token {
    return this.tokens[Math.min(this.position + ahead, this.tokens.length - 1)] as Token;
  }

  private next(): Token {
    const token = this.peek();
    if (token.type !== 'EOF') this.position += 1;
    return token;
  }

  private isKeyword(value: string, ahead = 0): boolean {
    const token = this.peek(ahead);
    return token.type === 'KEYWORD' && token.value === value;
  }

  private isPunct(value: string, ahead = 0): boolean {
    const token = this.peek(ahead);
    return token.type === 'PUNCT' && token.value === value;
  }

  private fail(token: Token = this.peek()): never {
    if (token.type === 'EOF') throw new SqlSyntaxError('syntax error before: end of statement', token.offset);
    throw new SqlSyntaxError(`syntax error before: ${token.text}`, token.offset);
  }

  private expectKeyword(value: string): void {
    if (!this.isKeyword(value)) this.fail();
    this.next();
  }

  private expectPunct(value: string): void {
    if (!this.isPunct(value)) this.fail();
    this.next();
  }

  parseStatement(): SelectStatement {
    if (this.isKeyword('FOREACH')) return this.parseForeach();
    this.expectKeyword('SELECT');
    const fields = this.parseFields();
    return this.parseSourcesAndWhere(fields);
  }

  private parseForeach(): SelectStatement {
    this.expectKeyword('FOREACH');
    const fields = this.parseFields();
    const foreach: ForeachClauses = { itemName: collectionName(fields[fields.length - 1] as Field) };
    if (this.isKeyword('DO')) {
      this.next();
      foreach.doFields = this.parseFields();
    }
    if (this.isKeyword('INCASE')) {
      this.next();
      foreach.incase = this.parseOr();
    }
    return { ...this.parseSourcesAndWhere(fields), foreach };
  }

  private parseSourcesAndWhere(fields: Field[]): SelectStatement {
    if (this.peek().type === 'EOF') throw new EmptyFromError();
    this.expectKeyword('FROM');
    const from = this.parseSources();
    let where: Condition | undefined;
    if (this.isKeyword('WHERE')) {
      this.next();
      where = this.parseOr();
    }
    if (this.peek().type !== 'EOF') this.fail();
    return where === undefined ? { fields, from } : { fields, from, where };
  }

  private parseFields(): Field[] {
    const fields: Field[] = [this.parseField()];
    while (this.isPunct(',')) {
      this.next();
      fields.push(this.parseField());
    }
    return fields;
  }

  private parseField(): Field {
    if (this.isPunct('*')) {
      this.next();
      return { kind: 'star' };
    }
    let expr: Expr;
    if (this.startsCase()) {
      expr = this.parseCase();
    } else {
      expr = this.parseScalar();
      // `scalar_opt_as_exp_1`: a comparison may be selected (`SELECT a = b AS same`).
      if (this.peek().type === 'COMPARISON') {
        const op = this.next().value as ComparisonOp;
        expr = { kind: 'compare', op: checkComparison(op), left: expr, right: this.parseScalar() };
      }
    }
    if (this.isKeyword('AS')) {
      this.next();
      return { kind: 'field', expr, alias: this.parseAlias() };
    }
    if (this.peek().type === 'NAME') return { kind: 'field', expr, alias: this.parseAlias() };
    return { kind: 'field', expr };
  }

  /** `CASE` or `( CASE` (rulesql: `case_when_exp -> '(' case_when_exp ')'`). */
  private startsCase(): boolean {
    let ahead = 0;
    while (this.isPunct('(', ahead)) ahead += 1;
    return ahead > 0 ? this.isKeyword('CASE', ahead) : this.isKeyword('CASE');
  }

  private parseCase(): Expr {
    if (this.isPunct('(')) {
      this.next();
      const inner = this.parseCase();
      this.expectPunct(')');
      return inner;
    }
    this.expectKeyword('CASE');
    const on = this.isKeyword('WHEN') ? undefined : this.parseCaseBranch();
    const clauses: CaseClause[] = [];
    while (this.isKeyword('WHEN')) {
      this.next();
      const when = this.parseOr();
      this.expectKeyword('THEN');
      clauses.push({ when, then: this.parseCaseBranch() });
    }
    if (clauses.length === 0) this.fail();
    let otherwise: Expr | undefined;
    if (this.isKeyword('ELSE')) {
      this.next();
      otherwise = this.parseCaseBranch();
    }
    this.expectKeyword('END');
    const result: Expr = { kind: 'case', clauses };
    if (on !== undefined) result.on = on;
    if (otherwise !== undefined) result.otherwise = otherwise;
    return result;
  }

  /** A CASE operand or branch: rulesql's `scalar_opt_as_exp`, without the (meaningless) alias. */
  private parseCaseBranch(): Expr {
    let expr = this.parseScalar();
    if (this.peek().type === 'COMPARISON') {
      const op = this.next().value as ComparisonOp;
      expr = { kind: 'compare', op: checkComparison(op), left: expr, right: this.parseScalar() };
    }
    if (this.isKeyword('AS') || this.peek().type === 'NAME') throw new UnsupportedSqlError('aliases inside CASE branches');
    return expr;
  }

  private parseAlias(): PathSegment[] {
    if (this.peek().type !== 'NAME') this.fail();
    const path = this.parsePathAfterName(this.next());
    return path.kind === 'var' ? [{ key: path.name }] : path.kind === 'path' ? path.segments : this.fail();
  }

  private parseSources(): string[] {
    const sources: string[] = [];
    for (;;) {
      const token = this.peek();
      // rulesql 0.2 accepts double-quoted, single-quoted (since 0.1.5) and bare names.
      if (token.type !== 'NAME' && token.type !== 'STRING') {
        if (sources.length === 0 && (token.type === 'EOF' || (token.type === 'KEYWORD' && token.value === 'WHERE'))) throw new EmptyFromError();
        this.fail();
      }
      this.next();
      sources.push(token.value);
      if (!this.isPunct(',')) return sources;
      this.next();
    }
  }

  // ---- conditions -----------------------------------------------------------------------

  private parseOr(): Condition {
    let left = this.parseAnd();
    while (this.isKeyword('OR')) {
      this.next();
      left = { kind: 'or', left, right: this.parseAnd() };
    }
    return left;
  }

  private parseAnd(): Condition {
    let left = this.parseNot();
    while (this.isKeyword('AND')) {
      this.next();
      left = { kind: 'and', left, right: this.parseNot() };
    }
    return left;
  }

  private parseNot(): Condition {
    if (this.isKeyword('NOT')) {
      this.next();
      return { kind: 'not', operand: this.parseNot() };
    }
    if (this.isPunct('(')) {
      // `(` opens either a grouped condition or a parenthesised scalar (`(a + 1) > 2`): try the
      // condition first and keep it only when nothing scalar-like follows the `)`.
      const start = this.position;
      try {
        this.next();
        const inner = this.parseOr();
        this.expectPunct(')');
        const after = this.peek();
        const continuesScalar =
          after.type === 'COMPARISON' ||
          (after.type === 'PUNCT' && ['+', '-', '*', '/', 'div', 'mod'].includes(after.value)) ||
          after.type === 'INTNUM' ||
          after.type === 'APPROXNUM' ||
          (after.type === 'KEYWORD' && (after.value === 'IN' || (after.value === 'NOT' && this.isKeyword('IN', 1))));
        if (!continuesScalar) return inner;
      } catch (error) {
        if (error instanceof UnsupportedSqlError) throw error;
      }
      this.position = start;
    }
    return this.parsePredicate();
  }

  private parsePredicate(): Condition {
    const left = this.parseScalar();
    const token = this.peek();
    if (token.type === 'COMPARISON') {
      this.next();
      return { kind: 'expr', expr: { kind: 'compare', op: checkComparison(token.value as ComparisonOp), left, right: this.parseScalar() } };
    }
    if (this.isKeyword('IN')) {
      this.next();
      return { kind: 'in', negated: false, value: left, list: this.parseInList() };
    }
    if (this.isKeyword('NOT') && this.isKeyword('IN', 1)) {
      this.next();
      this.next();
      return { kind: 'in', negated: true, value: left, list: this.parseInList() };
    }
    return { kind: 'expr', expr: left };
  }

  private parseInList(): Expr[] {
    this.expectPunct('(');
    const items: Expr[] = [this.parseScalar()];
    while (this.isPunct(',')) {
      this.next();
      items.push(this.parseScalar());
    }
    this.expectPunct(')');
    return items;
  }

  // ---- scalar expressions ---------------------------------------------------------------

  private parseScalar(): Expr {
    let left = this.parseMultiplicative();
    while (this.isPunct('+') || this.isPunct('-')) {
      const op = this.next().value as '+' | '-';
      left = { kind: 'arith', op, left, right: this.parseMultiplicative() };
    }
    return left;
  }

  private parseMultiplicative(): Expr {
    let left = this.parseUnary();
    while (this.peek().type === 'PUNCT' && MULTIPLICATIVE.has(this.peek().value)) {
      const op = this.next().value as '*' | '/' | 'div' | 'mod';
      left = { kind: 'arith', op, left, right: this.parseUnary() };
    }
    return left;
  }

  private parseUnary(): Expr {
    if (this.isPunct('+') || this.isPunct('-')) {
      const op = this.next().value as '+' | '-';
      return { kind: 'neg', op, operand: this.parseUnary() };
    }
    return this.parsePrimary();
  }

  private parsePrimary(): Expr {
    const token = this.peek();
    switch (token.type) {
      case 'STRING':
        this.next();
        return { kind: 'const', value: token.value };
      case 'INTNUM':
        this.next();
        return { kind: 'const', value: Number.parseInt(token.value, 10) };
      case 'APPROXNUM': {
        this.next();
        const value = Number.parseFloat(token.value.replace(/[fFdD]$/, ''));
        if (!Number.isFinite(value)) this.fail(token);
        return { kind: 'const', value };
      }
      case 'RANGE':
        throw new UnsupportedSqlError(`ranges (${token.text})`);
      case 'NAME': {
        this.next();
        const path = this.parsePathAfterName(token);
        if (this.isPunct('(')) {
          if (path.kind !== 'var') throw new UnsupportedSqlError('module functions (module.function(...))');
          return this.parseCall(path.name);
        }
        return path;
      }
      case 'PUNCT':
        if (token.value === '(') {
          this.next();
          const inner = this.parseScalar();
          this.expectPunct(')');
          return inner;
        }
        if (token.value === '[') return this.parseList();
        return this.fail();
      case 'KEYWORD':
        // CASE is only a field or a function argument in rulesql, never part of an expression.
        return this.fail();
      default:
        return this.fail();
    }
  }

  private parseCall(name: string): Expr {
    this.expectPunct('(');
    const args: Expr[] = [];
    if (!this.isPunct(')')) {
      for (;;) {
        if (this.startsCase()) {
          args.push(this.parseCase());
          if (!this.isPunct(',')) break;
          this.next();
          continue;
        }
        let arg = this.parseScalar();
        if (this.peek().type === 'COMPARISON') {
          const op = this.next().value as ComparisonOp;
          arg = { kind: 'compare', op: checkComparison(op), left: arg, right: this.parseScalar() };
        }
        args.push(arg);
        if (!this.isPunct(',')) break;
        this.next();
      }
    }
    this.expectPunct(')');
    return { kind: 'fun', name, args };
  }

  private parseList(): Expr {
    this.expectPunct('[');
    const items: Expr[] = [];
    if (!this.isPunct(']')) {
      for (;;) {
        items.push(this.parseScalar());
        if (!this.isPunct(',')) break;
        this.next();
      }
    }
    this.expectPunct(']');
    return { kind: 'list', items };
  }

  /** `name {. (name | 'string') | [int]}` after its first NAME token. */
  private parsePathAfterName(first: Token): Expr {
    const segments: PathSegment[] = [{ key: first.value }];
    for (;;) {
      if (this.isPunct('.')) {
        const key = this.peek(1);
        if (key.type === 'NAME' || key.type === 'STRING') {
          this.next();
          this.next();
          segments.push({ key: key.value });
          continue;
        }
        this.next();
        this.fail();
      }
      if (this.peek().type === 'RANGE') throw new UnsupportedSqlError(`ranges (${this.peek().text})`);
      if (this.isPunct('[')) {
        this.next();
        let negative = false;
        if (this.isPunct('-') || this.isPunct('+')) negative = this.next().value === '-';
        const index = this.peek();
        if (index.type !== 'INTNUM') {
          if (index.type === 'NAME') throw new UnsupportedSqlError('dynamic indexes (a[b])');
          this.fail();
        }
        this.next();
        this.expectPunct(']');
        const value = Number.parseInt(index.value, 10) * (negative ? -1 : 1);
        // rulesql: [0] is the head, [-0] the tail; otherwise 1-based, negative from the end.
        const isZero = /^-?0+$/.test(index.value);
        segments.push({ index: isZero ? (negative || index.value.startsWith('-') ? 'tail' : 'head') : value });
        continue;
      }
      break;
    }
    if (segments.length === 1) return { kind: 'var', name: first.value };
    return { kind: 'path', segments };
  }
}

/** The name FOREACH binds elements to: the last field's alias, else `item` (`select_and_collect`). */
function collectionName(field: Field): string {
  if (field.kind === 'star') throw new UnsupportedSqlError('FOREACH over *');
  if (!field.alias) return 'item';
  const [first, ...rest] = field.alias;
  if (!first || rest.length > 0 || !('key' in first)) throw new UnsupportedSqlError('a FOREACH collection alias that is a path');
  return first.key;
}

function checkComparison(op: ComparisonOp | '~='): ComparisonOp {
  // `~=` lexes and parses in EMQX but every evaluation raises; refuse it outright.
  if (op === '~=') throw new UnsupportedSqlError("the '~=' operator (EMQX fails every evaluation of it; use '=~')");
  return op;
}

/** Parses one rule statement; throws SqlSyntaxError, EmptyFromError or UnsupportedSqlError. */
export function parseRuleSql(sql: string): SelectStatement {
  if (typeof sql !== 'string' || sql.trim() === '') throw new SqlSyntaxError('invalid_string (empty SQL)', 0);
  return new Parser(tokenize(sql)).parseStatement();
}
