// Evaluation of a parsed rule against one event, with EMQX's semantics
// (`emqx_rule_runtime.erl`, reference/emqx-5.md §3.3):
// - SELECT fields are evaluated in order; a later field sees the aliases of earlier ones;
// - WHERE sees the columns and the selected fields (aliases win);
// - `payload.x` JSON-decodes the payload on first use (per rule); a payload that is not JSON
//   fails the rule (`decode_json_failed` -> failed.exception), selecting `payload` returns it raw;
// - comparisons: undefined never equals anything but undefined; number vs string converts the
//   string (a non-numeric string fails the rule); `=~` is MQTT topic-filter matching;
// - `NOT x` on a non-boolean is false; a WHERE that is not exactly true drops the message;
// - unaliased outputs: a variable keeps its name, a path is rebuilt as nested maps, a string
//   constant becomes a key equal to itself;
// - FOREACH (`select_and_collect` + `filter_collection`): the fields are evaluated like a SELECT,
//   the last one is the collection (anything but a list counts as empty); WHERE sees the columns
//   and those fields; each element, bound to the collection's alias (default `item`), passes
//   INCASE, then DO selects its output (without DO the columns plus the element are the output);
//   no output at all is `no_result`;
// - CASE: searched form takes the first WHEN that is true, the `CASE x WHEN v` form the first v
//   equal to x; no match and no ELSE gives undefined.
import { topicMatches } from '../access/topic-match.js';
import type { Condition, Expr, Field, ForeachClauses, PathSegment, SelectStatement } from './ast.js';
import { callFunction, isSupportedFunction } from './functions.js';
import { UnsupportedSqlError } from './parser.js';
import { RuleRuntimeError, encodeJson, isObject, toText } from './values.js';
import type { Value } from './values.js';

export type Columns = Record<string, Value>;

interface Scope {
  columns: Columns;
  selected: Record<string, Value>;
  /** JSON-decoded payload, cached for this rule evaluation. */
  decoded?: { value: Value };
}

/** Rejects what the parser accepted but the engine cannot run (unknown functions). */
export function checkStatement(statement: SelectStatement): void {
  const visitExpr = (expr: Expr): void => {
    switch (expr.kind) {
      case 'fun':
        if (!isSupportedFunction(expr.name)) throw new UnsupportedSqlError(`function ${expr.name}()`);
        expr.args.forEach(visitExpr);
        return;
      case 'arith':
      case 'compare':
        visitExpr(expr.left);
        visitExpr(expr.right);
        return;
      case 'neg':
        visitExpr(expr.operand);
        return;
      case 'list':
        expr.items.forEach(visitExpr);
        return;
      case 'case':
        if (expr.on) visitExpr(expr.on);
        for (const clause of expr.clauses) {
          visitCondition(clause.when);
          visitExpr(clause.then);
        }
        if (expr.otherwise) visitExpr(expr.otherwise);
        return;
      default:
        return;
    }
  };
  const visitCondition = (condition: Condition): void => {
    switch (condition.kind) {
      case 'and':
      case 'or':
        visitCondition(condition.left);
        visitCondition(condition.right);
        return;
      case 'not':
        visitCondition(condition.operand);
        return;
      case 'in':
        visitExpr(condition.value);
        condition.list.forEach(visitExpr);
        return;
      case 'expr':
        visitExpr(condition.expr);
    }
  };
  for (const field of statement.fields) if (field.kind === 'field') visitExpr(field.expr);
  if (statement.where) visitCondition(statement.where);
  for (const field of statement.foreach?.doFields ?? []) if (field.kind === 'field') visitExpr(field.expr);
  if (statement.foreach?.incase) visitCondition(statement.foreach.incase);
  statement.whereFirst = canRunWhereFirst(statement);
}

/**
 * Whether WHERE can be evaluated before SELECT with the same results and counters: SELECT only
 * reads columns (no payload path, which may fail to decode) or constants, and WHERE reads no
 * name SELECT produces. Event rules such as `SELECT ..., clientid FROM "$events/..." WHERE
 * result = 'deny'` then cost one comparison for the events they drop.
 */
function canRunWhereFirst(statement: SelectStatement): boolean {
  if (!statement.where || statement.foreach) return false;
  // Names whose value in the selected fields differs from the column of the same name.
  const outputs = new Set<string>();
  for (const field of statement.fields) {
    if (field.kind === 'star') return false;
    const expr = field.expr;
    const first = expr.kind === 'path' ? expr.segments[0] : undefined;
    if (expr.kind === 'path' && (!first || !('key' in first) || first.key === 'payload')) return false;
    if (expr.kind !== 'const' && expr.kind !== 'var' && expr.kind !== 'path') return false;
    const alias = field.alias?.[0];
    if (alias) {
      if (!('key' in alias)) return false;
      // `x AS x` selects the column itself.
      if (!(expr.kind === 'var' && field.alias?.length === 1 && alias.key === expr.name)) outputs.add(alias.key);
    } else if (expr.kind === 'path' && first && 'key' in first) {
      outputs.add(first.key); // rebuilt as a nested object, not the column
    } else if (expr.kind === 'const' && typeof expr.value === 'string') {
      outputs.add(expr.value);
    }
    // An unaliased column (`clientid`) selects the same value WHERE would read.
  }
  const names = new Set<string>();
  let hasCase = false;
  const visitExpr = (expr: Expr): void => {
    switch (expr.kind) {
      case 'var':
        names.add(expr.name);
        return;
      case 'path': {
        const first = expr.segments[0];
        if (first && 'key' in first) names.add(first.key);
        return;
      }
      case 'fun':
        expr.args.forEach(visitExpr);
        return;
      case 'arith':
      case 'compare':
        visitExpr(expr.left);
        visitExpr(expr.right);
        return;
      case 'neg':
        visitExpr(expr.operand);
        return;
      case 'list':
        expr.items.forEach(visitExpr);
        return;
      case 'case':
        hasCase = true; // not analysed: keep the EMQX order
        return;
      default:
        return;
    }
  };
  const visitCondition = (condition: Condition): void => {
    switch (condition.kind) {
      case 'and':
      case 'or':
        visitCondition(condition.left);
        visitCondition(condition.right);
        return;
      case 'not':
        visitCondition(condition.operand);
        return;
      case 'in':
        visitExpr(condition.value);
        condition.list.forEach(visitExpr);
        return;
      case 'expr':
        visitExpr(condition.expr);
    }
  };
  visitCondition(statement.where);
  if (hasCase) return false;
  for (const name of names) if (outputs.has(name)) return false;
  return true;
}

function decodePayload(scope: Scope): Value {
  if (!scope.decoded) {
    const raw = scope.columns.payload;
    if (typeof raw !== 'string') return raw;
    try {
      scope.decoded = { value: JSON.parse(raw) as Value };
    } catch {
      throw new RuleRuntimeError('decode_json_failed');
    }
  }
  return scope.decoded.value;
}

/** True when an earlier field was aliased `payload` with something other than the payload. */
function aliasedPayload(scope: Scope): boolean {
  return Object.hasOwn(scope.selected, 'payload') && scope.selected.payload !== scope.columns.payload;
}

function lookupName(name: string, scope: Scope): Value {
  if (Object.hasOwn(scope.selected, name)) return scope.selected[name];
  if (Object.hasOwn(scope.columns, name)) return scope.columns[name];
  if (name === 'true') return true;
  if (name === 'false') return false;
  return undefined;
}

function step(value: Value, segment: PathSegment): Value {
  if (typeof value === 'string') {
    // Nested access into a JSON text decodes it (EMQX `emqx_rule_maps:nested_get`).
    try {
      value = JSON.parse(value) as Value;
    } catch {
      return undefined;
    }
  }
  if ('key' in segment) return isObject(value) && Object.hasOwn(value, segment.key) ? nullToUndefined(value[segment.key]) : undefined;
  if (!Array.isArray(value) || value.length === 0) return undefined;
  if (segment.index === 'head') return value[0];
  if (segment.index === 'tail') return value[value.length - 1];
  const index = segment.index > 0 ? segment.index - 1 : value.length + segment.index;
  return index >= 0 && index < value.length ? nullToUndefined(value[index]) : undefined;
}

function nullToUndefined(value: Value): Value {
  return value === null ? undefined : value;
}

function evalPath(segments: PathSegment[], scope: Scope): Value {
  const [first, ...rest] = segments;
  if (!first || !('key' in first)) return undefined;
  let value: Value;
  if (first.key === 'payload' && !aliasedPayload(scope)) value = decodePayload(scope);
  else value = lookupName(first.key, scope);
  for (const segment of rest) {
    if (value === undefined) return undefined;
    value = step(value, segment);
  }
  return value;
}

function toNumber(value: Value): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && value.trim() !== '') {
    const parsed = Number(value);
    if (Number.isFinite(parsed)) return parsed;
  }
  throw new RuleRuntimeError(`badarg: cannot use ${encodeJson(value)} as a number`);
}

function arith(op: '+' | '-' | '*' | '/' | 'div' | 'mod', left: Value, right: Value): Value {
  if (op === '+' && (typeof left === 'string' || typeof right === 'string')) {
    if (left === undefined || right === undefined || isObject(left) || isObject(right)) throw new RuleRuntimeError('badarith');
    return toText(left) + toText(right);
  }
  if (typeof left !== 'number' || typeof right !== 'number') throw new RuleRuntimeError('badarith');
  switch (op) {
    case '+':
      return left + right;
    case '-':
      return left - right;
    case '*':
      return left * right;
    case '/':
      if (right === 0) throw new RuleRuntimeError('badarith: division by zero');
      return left / right;
    case 'div':
    case 'mod':
      if (!Number.isInteger(left) || !Number.isInteger(right)) throw new RuleRuntimeError(`badarith: ${op} needs integers`);
      if (right === 0) throw new RuleRuntimeError('badarith: division by zero');
      return op === 'div' ? Math.trunc(left / right) : left % right;
  }
}

function deepEqual(left: Value, right: Value): boolean {
  return left === right || (typeof left === 'object' && typeof right === 'object' && encodeJson(left) === encodeJson(right));
}

function compare(op: string, left: Value, right: Value): boolean {
  if (op === '=~') return typeof left === 'string' && typeof right === 'string' && topicMatches(left, right);
  if (left === undefined || left === null || right === undefined || right === null) {
    const bothMissing = (left === undefined || left === null) && (right === undefined || right === null);
    return bothMissing && (op === '=' || op === '<=' || op === '>=');
  }
  let a: string | number | boolean | object = left;
  let b: string | number | boolean | object = right;
  if (typeof a === 'number' && typeof b === 'string') b = toNumber(b);
  else if (typeof a === 'string' && typeof b === 'number') a = toNumber(a);
  else if (typeof a === 'boolean' && typeof b === 'string') a = String(a);
  else if (typeof a === 'string' && typeof b === 'boolean') b = String(b);
  if (typeof a === 'object' || typeof b === 'object') {
    if (op === '=') return deepEqual(left, right);
    if (op === '!=' || op === '<>') return !deepEqual(left, right);
    return false;
  }
  if (typeof a !== typeof b) {
    // number vs boolean: different Erlang types never compare equal.
    if (op === '!=' || op === '<>') return true;
    return false;
  }
  switch (op) {
    case '=':
      return a === b;
    case '!=':
    case '<>':
      return a !== b;
    case '<':
      return a < b;
    case '<=':
      return a <= b;
    case '>':
      return a > b;
    case '>=':
      return a >= b;
    default:
      throw new RuleRuntimeError(`unknown comparison ${op}`);
  }
}

function evalExpr(expr: Expr, scope: Scope): Value {
  switch (expr.kind) {
    case 'const':
      return expr.value;
    case 'var':
      if (expr.name === 'payload' && !aliasedPayload(scope)) return scope.columns.payload;
      return lookupName(expr.name, scope);
    case 'path':
      return evalPath(expr.segments, scope);
    case 'fun':
      return callFunction(
        expr.name,
        expr.args.map((arg) => evalExpr(arg, scope)),
      );
    case 'arith':
      return arith(expr.op, evalExpr(expr.left, scope), evalExpr(expr.right, scope));
    case 'neg': {
      const value = evalExpr(expr.operand, scope);
      if (typeof value !== 'number') throw new RuleRuntimeError('badarith');
      return expr.op === '-' ? -value : value;
    }
    case 'list':
      return expr.items.map((item) => evalExpr(item, scope));
    case 'compare':
      return compare(expr.op, evalExpr(expr.left, scope), evalExpr(expr.right, scope));
    case 'case':
      return evalCase(expr, scope);
  }
}

function evalCase(expr: Extract<Expr, { kind: 'case' }>, scope: Scope): Value {
  if (expr.on === undefined) {
    for (const clause of expr.clauses) if (evalCondition(clause.when, scope) === true) return evalExpr(clause.then, scope);
  } else {
    const on = evalExpr(expr.on, scope);
    for (const clause of expr.clauses) if (deepEqual(on, evalCondition(clause.when, scope))) return evalExpr(clause.then, scope);
  }
  return expr.otherwise === undefined ? undefined : evalExpr(expr.otherwise, scope);
}

function evalCondition(condition: Condition, scope: Scope): Value {
  switch (condition.kind) {
    case 'or':
      return evalCondition(condition.left, scope) === true || evalCondition(condition.right, scope) === true;
    case 'and':
      return evalCondition(condition.left, scope) === true && evalCondition(condition.right, scope) === true;
    case 'not': {
      const value = evalCondition(condition.operand, scope);
      return value === false;
    }
    case 'in': {
      const value = evalExpr(condition.value, scope);
      const found = condition.list.some((item) => deepEqual(value, evalExpr(item, scope)));
      return condition.negated ? !found : found;
    }
    case 'expr':
      return evalExpr(condition.expr, scope);
  }
}

function setPath(target: Record<string, Value>, path: PathSegment[], value: Value): void {
  let current: Record<string, Value> = target;
  path.forEach((segment, index) => {
    const key = 'key' in segment ? segment.key : String(segment.index);
    if (index === path.length - 1) {
      current[key] = value;
      return;
    }
    const next = current[key];
    if (!isObject(next)) current[key] = {};
    current = current[key] as Record<string, Value>;
  });
}

function outputKey(field: Extract<Field, { kind: 'field' }>, position: number): PathSegment[] {
  if (field.alias) return field.alias;
  const expr = field.expr;
  if (expr.kind === 'var') return [{ key: expr.name }];
  if (expr.kind === 'path') return expr.segments;
  if (expr.kind === 'const' && typeof expr.value === 'string') return [{ key: expr.value }];
  // EMQX generates a synthetic key for unaliased computed fields; always alias them.
  return [{ key: `_v_${position}` }];
}

export type EvaluationResult =
  /** `selected`: the SELECT output (FOREACH: the first output); `outputs`: one per action invocation. */
  | { outcome: 'passed'; selected: Record<string, Value>; outputs: Array<Record<string, Value>> }
  | { outcome: 'no_result' };

function selectFields(fields: readonly Field[], scope: Scope): void {
  fields.forEach((field, position) => {
    if (field.kind === 'star') {
      for (const [key, value] of Object.entries(scope.columns)) scope.selected[key] = value;
      return;
    }
    setPath(scope.selected, outputKey(field, position), evalExpr(field.expr, scope));
  });
}

/**
 * SELECT then WHERE for one event (FOREACH: also the per-element INCASE and DO). Throws
 * RuleRuntimeError for evaluation failures (EMQX counts them as `failed.exception`).
 */
export function evaluateStatement(statement: SelectStatement, columns: Columns): EvaluationResult {
  if (statement.foreach) return evaluateForeach(statement, statement.foreach, columns);
  const scope: Scope = { columns, selected: {} };
  if (statement.whereFirst && statement.where && evalCondition(statement.where, scope) !== true) return { outcome: 'no_result' };
  selectFields(statement.fields, scope);
  if (!statement.whereFirst && statement.where && evalCondition(statement.where, scope) !== true) return { outcome: 'no_result' };
  return { outcome: 'passed', selected: scope.selected, outputs: [scope.selected] };
}

function evaluateForeach(statement: SelectStatement, foreach: ForeachClauses, columns: Columns): EvaluationResult {
  const scope: Scope = { columns, selected: {} };
  const fields = statement.fields;
  selectFields(fields.slice(0, -1), scope);
  const last = fields[fields.length - 1] as Extract<Field, { kind: 'field' }>;
  const collection = evalExpr(last.expr, scope);
  setPath(scope.selected, outputKey(last, fields.length - 1), collection);
  if (statement.where && evalCondition(statement.where, scope) !== true) return { outcome: 'no_result' };
  if (!Array.isArray(collection)) return { outcome: 'no_result' };
  const base: Columns = { ...columns, ...scope.selected };
  const outputs: Array<Record<string, Value>> = [];
  for (const item of collection) {
    const itemColumns: Columns = { ...base, [foreach.itemName]: item };
    const itemScope: Scope = { columns: itemColumns, selected: {} };
    if (foreach.incase && evalCondition(foreach.incase, itemScope) !== true) continue;
    if (!foreach.doFields) {
      outputs.push(itemColumns);
      continue;
    }
    selectFields(foreach.doFields, itemScope);
    outputs.push(itemScope.selected);
  }
  if (outputs.length === 0) return { outcome: 'no_result' };
  return { outcome: 'passed', selected: outputs[0] as Record<string, Value>, outputs };
}
