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
  | { kind: 'compare'; op: ComparisonOp; left: Expr; right: Expr };

export type ComparisonOp = '=' | '!=' | '<>' | '<' | '<=' | '>' | '>=' | '=~';

export type Condition =
  | { kind: 'or' | 'and'; left: Condition; right: Condition }
  | { kind: 'not'; operand: Condition }
  | { kind: 'in'; negated: boolean; value: Expr; list: Expr[] }
  | { kind: 'expr'; expr: Expr };

export type Field = { kind: 'star' } | { kind: 'field'; expr: Expr; alias?: PathSegment[] };

export interface SelectStatement {
  fields: Field[];
  from: string[];
  where?: Condition;
}
