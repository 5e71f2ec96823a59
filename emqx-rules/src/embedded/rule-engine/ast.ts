// Syntax tree of the rule SQL subset the embedded rule engine runs.

export type PathSegment = { key: string } | { index: number | 'head' | 'tail' };

export type Expr =
  | { kind: 'const'; value: string | number }
  /** A single name (`clientid`, `"sensor_1"`, `true`). */
  | { kind: 'var'; name: string }
  /** `payload.x.y`, `arr[1]`: the first segment is always a key. */
  | { kind: 'path'; segments: PathSegment[] }
  | { kind: 'fun'; name: string; args: Expr[] }
  | { kind: 'arith'; op: '+' | '-' | '*' | '/' | 'div' | 'mod'; left: Expr; right: Expr }
  | { kind: 'neg'; op: '+' | '-'; operand: Expr }
  | { kind: 'list'; items: Expr[] }
  | { kind: 'compare'; op: ComparisonOp; left: Expr; right: Expr }
  /**
   * `CASE [on] WHEN c THEN e ... [ELSE e] END`. Without `on`, the first clause whose condition is
   * true wins; with `on`, the first clause whose WHEN value equals `on`. No match and no ELSE:
   * undefined. rulesql allows it as a selected field and as a function argument only.
   */
  | { kind: 'case'; on?: Expr; clauses: CaseClause[]; otherwise?: Expr };

export interface CaseClause {
  when: Condition;
  then: Expr;
}

export type ComparisonOp = '=' | '!=' | '<>' | '<' | '<=' | '>' | '>=' | '=~';

export type Condition =
  | { kind: 'or' | 'and'; left: Condition; right: Condition }
  | { kind: 'not'; operand: Condition }
  | { kind: 'in'; negated: boolean; value: Expr; list: Expr[] }
  | { kind: 'expr'; expr: Expr };

export type Field = { kind: 'star' } | { kind: 'field'; expr: Expr; alias?: PathSegment[] };

/** A SELECT or FOREACH statement (`foreach` set for FOREACH). */
export interface SelectStatement {
  /** SELECT: the output fields. FOREACH: fields evaluated like SELECT; the last one is the collection. */
  fields: Field[];
  from: string[];
  where?: Condition;
  foreach?: ForeachClauses;
  /**
   * Set by `checkStatement` when WHERE may run before SELECT without changing any outcome:
   * SELECT cannot fail (columns and constants only) and WHERE reads no alias of it.
   */
  whereFirst?: boolean;
}

/** `FOREACH fields [DO fields] [INCASE condition]`: one output per element of the collection. */
export interface ForeachClauses {
  /** Name the elements are bound to (the last field's alias, default `item`). */
  itemName: string;
  /** Fields selected per element; absent = the columns plus the element are the output. */
  doFields?: Field[];
  /** Per-element filter. */
  incase?: Condition;
}
