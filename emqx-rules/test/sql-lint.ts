// Lexical rules of EMQX 5.8 rule SQL that generated statements must follow
// (reference/emqx-5.md §3.2, §3.7), checked on the token stream and the parsed statement of the
// embedded parser. Returns the problems found (empty = fine).
import { parseRuleSql, tokenize } from '../src/embedded/rule-engine/index.js';
import type { Expr, Field } from '../src/embedded/rule-engine/index.js';

/** Functions of emqx_rule_funcs the generators may use (all documented for 5.8). */
const EMQX_FUNCTIONS = new Set(['is_array', 'json_decode', 'nth', 'split', 'lower', 'upper', 'str', 'int', 'coalesce', 'is_null', 'is_not_null', 'contains']);
const EVENT_SOURCES = new Set(['$events/client_check_authz_complete', '$events/client_disconnected']);

function functionsOf(expr: Expr, found: Set<string>): void {
  switch (expr.kind) {
    case 'fun':
      found.add(expr.name);
      expr.args.forEach((arg) => functionsOf(arg, found));
      return;
    case 'arith':
    case 'compare':
      functionsOf(expr.left, found);
      functionsOf(expr.right, found);
      return;
    case 'neg':
      functionsOf(expr.operand, found);
      return;
    case 'list':
      expr.items.forEach((item) => functionsOf(item, found));
      return;
    case 'case':
      if (expr.on) functionsOf(expr.on, found);
      for (const clause of expr.clauses) functionsOf(clause.then, found);
      if (expr.otherwise) functionsOf(expr.otherwise, found);
      return;
    default:
      return;
  }
}

function fieldProblems(fields: readonly Field[], where: string, isForeachCollection = false): string[] {
  const problems: string[] = [];
  fields.forEach((field, index) => {
    if (field.kind === 'star') return;
    const plain = field.expr.kind === 'var' || field.expr.kind === 'path';
    const lastOfForeach = isForeachCollection && index === fields.length - 1;
    if (!plain && !field.alias && !lastOfForeach) problems.push(`${where} field ${index + 1} is computed but not aliased`);
  });
  return problems;
}

export function lexicalProblems(sql: string): string[] {
  const problems: string[] = [];
  if (sql.includes('--')) problems.push('contains a -- comment');
  const tokens = tokenize(sql);
  const fromIndex = tokens.findIndex((token) => token.type === 'KEYWORD' && token.value === 'FROM');
  const whereIndex = tokens.findIndex((token) => token.type === 'KEYWORD' && token.value === 'WHERE');
  const fromEnd = whereIndex === -1 ? tokens.length - 1 : whereIndex;
  tokens.forEach((token, index) => {
    if (token.type === 'NAME' && token.quoted && !(index > fromIndex && index < fromEnd)) problems.push(`double-quoted name ${token.text} outside FROM (it would be a variable, not a string)`);
    if (token.type === 'NAME' && (token.value === 'TRUE' || token.value === 'FALSE')) problems.push(`${token.value} is a variable name; booleans are lower case`);
    if (token.type === 'COMPARISON' && token.value === '~=') problems.push("uses '~=' (every evaluation fails on EMQX)");
    if (token.type === 'NAME' && token.value === 'topic' && tokens[index + 1]?.value === '(') problems.push('uses topic(n), undefined in SELECT/DO on EMQX 5.8');
  });
  for (let index = fromIndex + 1; index < fromEnd; index += 1) {
    const token = tokens[index];
    if (!token || (token.type === 'PUNCT' && token.value === ',')) continue;
    if (token.type !== 'NAME' || !token.quoted) problems.push(`FROM source ${token?.text ?? '?'} is not double-quoted`);
    else if (token.value.startsWith('$') ? !EVENT_SOURCES.has(token.value) : /['"\\\s]/.test(token.value)) problems.push(`FROM source ${token.text} is not a plain topic filter or a known event`);
  }
  const statement = parseRuleSql(sql);
  problems.push(...fieldProblems(statement.fields, statement.foreach ? 'FOREACH' : 'SELECT', statement.foreach !== undefined));
  if (statement.foreach?.doFields) problems.push(...fieldProblems(statement.foreach.doFields, 'DO'));
  const functions = new Set<string>();
  for (const field of [...statement.fields, ...(statement.foreach?.doFields ?? [])]) if (field.kind === 'field') functionsOf(field.expr, functions);
  for (const name of functions) if (!EMQX_FUNCTIONS.has(name)) problems.push(`function ${name}() is not in the documented EMQX 5.8 set the generators use`);
  return problems;
}
