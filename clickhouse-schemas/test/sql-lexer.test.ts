import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { findOutputFormat, firstKeyword, secondStatementOffset, splitSqlStatements, tokenizeSql, SqlLexError } from '../src/sql-lexer.js';

describe('splitSqlStatements', () => {
  const cases: Array<[string, string, string[]]> = [
    ['plain', 'SELECT 1; SELECT 2;', ['SELECT 1', 'SELECT 2']],
    ['no trailing semicolon', 'SELECT 1', ['SELECT 1']],
    ['semicolon in string', "SELECT 'a;b'; SELECT 2", ["SELECT 'a;b'", 'SELECT 2']],
    ['escaped quote in string', "SELECT 'it\\'s;'; SELECT 'x''y;'", ["SELECT 'it\\'s;'", "SELECT 'x''y;'"]],
    ['quoted identifiers', 'SELECT 1 AS "a;b"; SELECT 1 AS `c;d`', ['SELECT 1 AS "a;b"', 'SELECT 1 AS `c;d`']],
    ['line comments', '-- first; comment\nSELECT 1; -- tail; comment\n# hash; comment\n', ['-- first; comment\nSELECT 1']],
    ['nested block comment', '/* a /* b; */ c; */ SELECT 1;', ['/* a /* b; */ c; */ SELECT 1']],
    ['comment-only and empty statements dropped', ';; -- nothing\n ; /* x */ ;', []],
    ['heredoc', 'SELECT $$a;b$$; SELECT $t$c;$t$', ['SELECT $$a;b$$', 'SELECT $t$c;$t$']],
  ];
  for (const [name, sql, expected] of cases) {
    test(name, () => assert.deepEqual(splitSqlStatements(sql), expected));
  }
  test('unterminated string is an error with its position', () => {
    assert.throws(() => splitSqlStatements("SELECT 'oops; SELECT 2"), (err: unknown) => err instanceof SqlLexError && err.position === 7);
  });
});

describe('statement inspection', () => {
  test('FORMAT clause detection ignores columns named format and nested FORMATs', () => {
    assert.equal(findOutputFormat(tokenizeSql('SELECT 1 FORMAT JSONEachRow')), 'JSONEachRow');
    assert.equal(findOutputFormat(tokenizeSql('SELECT 1 FORMAT CSV SETTINGS max_threads = 1;')), 'CSV');
    assert.equal(findOutputFormat(tokenizeSql('SELECT format FROM t')), undefined);
    assert.equal(findOutputFormat(tokenizeSql("SELECT a AS format FROM t WHERE s = 'FORMAT JSON'")), undefined);
    assert.equal(findOutputFormat(tokenizeSql('SELECT * FROM (SELECT 1 FORMAT JSON)')), undefined);
  });
  test('first keyword and second statement offset', () => {
    assert.equal(firstKeyword(tokenizeSql('  (SELECT 1)')), 'SELECT');
    assert.equal(firstKeyword(tokenizeSql('insert into t values (1)')), 'INSERT');
    assert.equal(secondStatementOffset(tokenizeSql('SELECT 1; -- only a comment\n')), -1);
    assert.equal(secondStatementOffset(tokenizeSql('SELECT 1; SELECT 2')), 10);
  });
});
