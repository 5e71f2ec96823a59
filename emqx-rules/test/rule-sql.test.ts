// The embedded rule engine's SQL: EMQX's lexical rules, the grammar subset, what is refused, and
// evaluation semantics (reference/emqx-5.md §3).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TopicIndex, compileRuleSql, evaluateStatement, parseRuleSql, tokenize } from '../src/embedded/rule-engine/index.js';
import type { Columns } from '../src/embedded/rule-engine/evaluator.js';
import { authzDenyAlertSql, disconnectAlertSql, pipeRuleSql } from '../src/rules/index.js';

const NODE = '0b8c3d7e-1111-4222-8333-444455556666';

function columns(overrides: Columns = {}): Columns {
  return {
    id: 'abc',
    clientid: 'dev-1',
    username: 'owner',
    payload: '{"x":{"y":5},"name":"sensor_1","level":4,"arr":[10,20,30],"s":"7","end":"e"}',
    topic: 'u/42/alerts/x',
    qos: 1,
    flags: { retain: false, dup: false },
    publish_received_at: 1700000000123,
    timestamp: 1700000000200,
    node: 'emqx@127.0.0.1',
    event: 'message.publish',
    client_attrs: { owner: '42' },
    ...overrides,
  };
}

function run(sql: string, cols: Columns = columns()) {
  const compiled = compileRuleSql(sql);
  if ('error' in compiled) throw new Error(compiled.error);
  return evaluateStatement(compiled.statement, cols);
}

function selected(sql: string, cols?: Columns): Record<string, unknown> {
  const result = run(sql, cols);
  assert.equal(result.outcome, 'passed', `expected ${sql} to pass`);
  return result.outcome === 'passed' ? result.selected : {};
}

function passes(sql: string, cols?: Columns): boolean {
  return run(sql, cols).outcome === 'passed';
}

describe('rule SQL lexer', () => {
  it('reads single-quoted strings as strings and double-quoted tokens as names', () => {
    const tokens = tokenize(`SELECT 'a b' , "c/d" FROM "t/#"`);
    assert.deepEqual(
      tokens.map((token) => [token.type, token.value]),
      [
        ['KEYWORD', 'SELECT'],
        ['STRING', 'a b'],
        ['PUNCT', ','],
        ['NAME', 'c/d'],
        ['KEYWORD', 'FROM'],
        ['NAME', 't/#'],
        ['EOF', ''],
      ],
    );
  });

  it('keeps doubled quotes without escape processing, like rulesql', () => {
    const [, literal] = tokenize(`SELECT 'it''s' FROM "t"`);
    assert.equal(literal?.type, 'STRING');
    assert.equal(literal?.value, "it''s");
  });

  it('treats keywords case-insensitively, div/mod as operators, -1 as one number', () => {
    const tokens = tokenize('select a div b mod c from "t" where x > -1');
    assert.deepEqual(
      tokens.map((token) => token.value),
      ['SELECT', 'a', 'div', 'b', 'mod', 'c', 'FROM', 't', 'WHERE', 'x', '>', '-1', ''],
    );
  });

  it('refuses illegal characters and unterminated strings', () => {
    assert.throws(() => tokenize('SELECT a FROM "t" WHERE a = ;'), /illegal character/);
    assert.throws(() => tokenize(`SELECT 'abc FROM "t"`), /unterminated string/);
  });
});

describe('rule SQL parser', () => {
  it('accepts the SQL the generator emits', () => {
    const sql = pipeRuleSql('pepeunit.example.com', NODE);
    assert.equal(sql, `SELECT payload, topic, clientid, publish_received_at AS ts FROM "pepeunit.example.com/${NODE}/pepeunit"`);
    const statement = parseRuleSql(sql);
    assert.deepEqual(statement.from, [`pepeunit.example.com/${NODE}/pepeunit`]);
    assert.equal(statement.fields.length, 4);
    assert.equal(statement.where, undefined);
  });

  it('accepts several sources, single-quoted and bare sources, aliases with and without AS', () => {
    const statement = parseRuleSql(`SELECT payload.x AS x, clientid c, * FROM "a/+/c", 'b/#', t WHERE x > 1`);
    assert.deepEqual(statement.from, ['a/+/c', 'b/#', 't']);
    assert.equal(statement.fields.length, 3);
  });

  it('parses double-quoted "literals" as names, as EMQX does (they never equal a string)', () => {
    const statement = parseRuleSql(`SELECT clientid FROM "t/#" WHERE payload.name = "sensor_1"`);
    assert.deepEqual(statement.where, {
      kind: 'expr',
      expr: { kind: 'compare', op: '=', left: { kind: 'path', segments: [{ key: 'payload' }, { key: 'name' }] }, right: { kind: 'var', name: 'sensor_1' } },
    });
    assert.equal(passes(`SELECT clientid FROM "u/#" WHERE payload.name = "sensor_1"`), false);
    assert.equal(passes(`SELECT clientid FROM "u/#" WHERE payload.name = 'sensor_1'`), true);
  });

  it('refuses what EMQX refuses: empty FROM, syntax errors, keywords as names, bad filters', () => {
    const errorOf = (sql: string): string => {
      const compiled = compileRuleSql(sql);
      assert.ok('error' in compiled, `expected ${sql} to be refused`);
      return 'error' in compiled ? compiled.error : '';
    };
    assert.equal(errorOf('SELECT a FROM'), 'empty_from_clause');
    assert.equal(errorOf('SELECT a FROM WHERE a = 1'), 'empty_from_clause');
    assert.match(errorOf('SELECT FROM "t"'), /syntax error before: FROM/);
    assert.match(errorOf('SELECT a FROM "t" WHERE'), /syntax error/);
    assert.match(errorOf('SELECT payload.end FROM "t"'), /syntax error before: end/);
    assert.match(errorOf('SELECT a FROM "t" "u"'), /syntax error/);
    assert.match(errorOf('SELECT x-1 AS y FROM "t"'), /syntax error before: -1/);
    assert.match(errorOf('SELECT a FROM "t/#/x"'), /not a valid MQTT topic filter/);
    assert.match(errorOf('SELECT a FROM "t/a+"'), /not a valid MQTT topic filter/);
    assert.match(errorOf('SELECT a FROM ""'), /not a valid MQTT topic filter/);
    assert.match(errorOf(''), /empty SQL/);
    assert.match(errorOf('DELETE FROM "t"'), /syntax error before: DELETE/);
  });

  it('refuses valid EMQX SQL it cannot run, with a clear reason', () => {
    const errorOf = (sql: string): string => {
      const compiled = compileRuleSql(sql);
      return 'error' in compiled ? compiled.error : 'accepted';
    };
    assert.match(errorOf('FOREACH * FROM "t"'), /not supported by the embedded rule engine: FOREACH over \*/);
    assert.match(errorOf(`SELECT CASE WHEN a = 1 THEN 'x' AS y END AS c FROM "t"`), /aliases inside CASE branches/);
    assert.match(errorOf('SELECT no_such_function(a) AS b FROM "t"'), /function no_such_function/);
    assert.match(errorOf('SELECT a FROM "$events/client_connected"'), /not supported by the embedded rule engine/);
    assert.match(errorOf('SELECT a FROM "$bridges/mqtt:x"'), /not supported by the embedded rule engine/);
    assert.match(errorOf(`SELECT a FROM "t" WHERE a ~= 'x'`), /'~='/);
    assert.match(errorOf('SELECT payload.arr[1..2] AS r FROM "t"'), /ranges/);
  });
});

describe('rule SQL evaluation', () => {
  it('selects columns, aliases, JSON paths, nested outputs and *', () => {
    assert.deepEqual(selected('SELECT payload.x.y AS v, clientid, publish_received_at AS ts FROM "u/#"'), { v: 5, clientid: 'dev-1', ts: 1700000000123 });
    assert.deepEqual(selected('SELECT payload.x.y FROM "u/#"'), { payload: { x: { y: 5 } } });
    assert.deepEqual(selected(`SELECT 'const' FROM "u/#"`), { const: 'const' });
    assert.deepEqual(selected('SELECT payload.arr[1] AS first, payload.arr[-1] AS last, payload.\'end\' AS e FROM "u/#"'), { first: 10, last: 30, e: 'e' });
    assert.deepEqual(selected('SELECT payload.x AS a.b FROM "u/#"'), { a: { b: { y: 5 } } });
    const star = selected('SELECT * FROM "u/#"');
    assert.equal(star.topic, 'u/42/alerts/x');
    assert.equal(typeof star.payload, 'string', 'selecting payload returns the raw text');
    assert.deepEqual(selected('SELECT client_attrs.owner AS owner FROM "u/#"'), { owner: '42' });
  });

  it('evaluates WHERE: comparisons, aliases, AND/OR/NOT, parentheses, IN, =~', () => {
    assert.equal(passes('SELECT payload.level AS level FROM "u/#" WHERE level >= 3'), true);
    assert.equal(passes('SELECT payload.level AS level FROM "u/#" WHERE level > 4'), false);
    assert.equal(passes(`SELECT a FROM "u/#" WHERE clientid = 'dev-1' AND qos = 1`), true);
    assert.equal(passes(`SELECT a FROM "u/#" WHERE clientid = 'x' OR qos = 1`), true);
    assert.equal(passes(`SELECT a FROM "u/#" WHERE NOT clientid = 'dev-1'`), false);
    assert.equal(passes(`SELECT a FROM "u/#" WHERE (clientid = 'x' OR qos = 1) AND payload.level <> 4`), false);
    assert.equal(passes(`SELECT a FROM "u/#" WHERE (payload.level + 1) * 2 = 10`), true);
    assert.equal(passes(`SELECT a FROM "u/#" WHERE clientid IN ('a', 'dev-1')`), true);
    assert.equal(passes(`SELECT a FROM "u/#" WHERE clientid NOT IN ('a', 'dev-1')`), false);
    assert.equal(passes(`SELECT a FROM "u/#" WHERE topic =~ 'u/+/alerts/#'`), true);
    assert.equal(passes(`SELECT a FROM "u/#" WHERE topic =~ 'u/+/other/#'`), false);
    assert.equal(passes(`SELECT a FROM "u/#" WHERE payload.s = 7`), true, 'number vs string converts the string');
    assert.equal(passes(`SELECT a FROM "u/#" WHERE payload.missing = 1`), false, 'undefined never equals a value');
    assert.equal(passes(`SELECT a FROM "u/#" WHERE payload.missing != 1`), false, 'undefined is not unequal either');
    assert.equal(passes(`SELECT a FROM "u/#" WHERE NOT payload.level`), false, 'NOT on a non-boolean is false');
    assert.equal(passes(`SELECT a FROM "u/#" WHERE is_null(payload.missing) AND lower('AB') = 'ab'`), true);
    assert.equal(passes(`SELECT a FROM "u/#" WHERE payload.level`), false, 'a WHERE that is not exactly true drops');
  });

  it('gives the same outcome when WHERE can run before SELECT, and keeps the order when it cannot', () => {
    const whereFirst = (sql: string): boolean | undefined => {
      const compiled = compileRuleSql(sql);
      return 'statement' in compiled ? compiled.statement.whereFirst : undefined;
    };
    assert.equal(whereFirst(`SELECT 'k' AS kind, clientid, client_attrs.owner AS o FROM "u/#" WHERE qos = 1`), true);
    assert.deepEqual(selected(`SELECT 'k' AS kind, clientid, client_attrs.owner AS o FROM "u/#" WHERE qos = 1`), { kind: 'k', clientid: 'dev-1', o: '42' });
    assert.equal(passes(`SELECT 'k' AS kind FROM "u/#" WHERE qos = 2`), false);
    assert.equal(whereFirst(`SELECT clientid AS c FROM "u/#" WHERE c = 'dev-1'`), false, 'WHERE reads an alias');
    assert.equal(passes(`SELECT clientid AS c FROM "u/#" WHERE c = 'dev-1'`), true);
    assert.equal(whereFirst(`SELECT payload.x AS x FROM "u/#" WHERE qos = 2`), false, 'a payload path may fail: SELECT first');
    assert.throws(() => run(`SELECT payload.x AS x FROM "u/#" WHERE qos = 2`, columns({ payload: 'not json' })), /decode_json_failed/);
    assert.equal(whereFirst(`SELECT * FROM "u/#" WHERE qos = 1`), false);
    assert.equal(whereFirst(authzDenyAlertSql()), true, 'the authorization alert drops most events before selecting');
    assert.equal(whereFirst(disconnectAlertSql()), true);
  });

  it('raises for a non-JSON payload path and for non-numeric comparisons (failed.exception)', () => {
    assert.throws(() => run('SELECT payload.x AS x FROM "u/#"', columns({ payload: 'not json' })), /decode_json_failed/);
    assert.deepEqual(selected('SELECT payload FROM "u/#"', columns({ payload: 'not json' })), { payload: 'not json' });
    assert.throws(() => run(`SELECT a FROM "u/#" WHERE payload.name > 3`), /number/);
  });

  it('does arithmetic and string concatenation like EMQX', () => {
    assert.deepEqual(selected(`SELECT payload.level + 1 AS a, payload.level / 8 AS b, 7 div 2 AS c, 7 mod 2 AS d, 'a' + 'b' AS e, -payload.level AS f FROM "u/#"`), {
      a: 5,
      b: 0.5,
      c: 3,
      d: 1,
      e: 'ab',
      f: -4,
    });
  });
});

describe('rule SQL: FOREACH, CASE and list functions', () => {
  const LOG_SQL = `FOREACH
  CASE WHEN is_array(json_decode(payload)) THEN json_decode(payload)
       ELSE [json_decode(payload)] END AS item
DO
  'unit_log' AS kind, item.level AS level, item.text AS text,
  nth(3, split(topic, '/', 'notrim')) AS unit_uuid, clientid, timestamp
INCASE
  item.level IN ('Warning', 'Error', 'Critical', 'warning', 'error', 'critical', 'WARNING', 'ERROR', 'CRITICAL')
FROM "d/output_base_topic/+/log/pepeunit"`;
  const logColumns = (payload: string): Columns => columns({ payload, topic: 'd/output_base_topic/u-1/log/pepeunit' });

  function outputs(sql: string, cols: Columns): Array<Record<string, unknown>> {
    const result = run(sql, cols);
    return result.outcome === 'passed' ? result.outputs : [];
  }

  it('runs FOREACH over an array: INCASE filters elements, DO shapes each output', () => {
    const payload = JSON.stringify([
      { level: 'Info', text: 'boot' },
      { level: 'Error', text: 'sensor' },
      { level: 'critical', text: 'fire' },
      { text: 'no level' },
      'not an object',
    ]);
    assert.deepEqual(outputs(LOG_SQL, logColumns(payload)), [
      { kind: 'unit_log', level: 'Error', text: 'sensor', unit_uuid: 'u-1', clientid: 'dev-1', timestamp: 1700000000200 },
      { kind: 'unit_log', level: 'critical', text: 'fire', unit_uuid: 'u-1', clientid: 'dev-1', timestamp: 1700000000200 },
    ]);
  });

  it('wraps a single object through CASE/is_array, and yields no result when nothing passes INCASE', () => {
    assert.deepEqual(outputs(LOG_SQL, logColumns('{"level":"WARNING","text":"hot"}')), [
      { kind: 'unit_log', level: 'WARNING', text: 'hot', unit_uuid: 'u-1', clientid: 'dev-1', timestamp: 1700000000200 },
    ]);
    assert.equal(run(LOG_SQL, logColumns('{"level":"Info","text":"fine"}')).outcome, 'no_result');
    assert.equal(run(LOG_SQL, logColumns('[]')).outcome, 'no_result');
    assert.throws(() => run(LOG_SQL, logColumns('not json')), /decode_json_failed/, 'a non-JSON payload is failed.exception');
  });

  it('FOREACH over a non-list is empty; without DO the output is the columns plus the element; WHERE runs first', () => {
    assert.equal(run('FOREACH payload.x FROM "u/#"').outcome, 'no_result', 'an object is not a collection');
    const items = outputs('FOREACH payload.arr AS n INCASE n > 10 FROM "u/#"', columns());
    assert.deepEqual(items.map((item) => item.n), [20, 30]);
    assert.equal(items[0]?.clientid, 'dev-1');
    assert.equal(run(`FOREACH payload.arr FROM "u/#" WHERE clientid = 'other'`).outcome, 'no_result');
    assert.deepEqual(outputs('FOREACH clientid AS c, payload.arr DO c, item AS v FROM "u/#"', columns()), [
      { c: 'dev-1', v: 10 },
      { c: 'dev-1', v: 20 },
      { c: 'dev-1', v: 30 },
    ]);
  });

  it('evaluates CASE: searched and simple forms, ELSE, no match, as a function argument', () => {
    assert.deepEqual(selected(`SELECT CASE WHEN payload.level > 5 THEN 'high' WHEN payload.level > 2 THEN 'mid' ELSE 'low' END AS band FROM "u/#"`), { band: 'mid' });
    assert.deepEqual(selected(`SELECT CASE payload.level WHEN 4 THEN 'four' ELSE 'other' END AS v FROM "u/#"`), { v: 'four' });
    assert.deepEqual(selected(`SELECT CASE WHEN payload.level > 5 THEN 'high' END AS v FROM "u/#"`), { v: undefined });
    assert.deepEqual(selected(`SELECT upper(CASE WHEN qos = 1 THEN 'a' ELSE 'b' END) AS v FROM "u/#"`), { v: 'A' });
    assert.deepEqual(selected(`SELECT (CASE WHEN qos = 1 THEN 'a' END) AS v FROM "u/#"`), { v: 'a' });
  });

  it('refuses CASE where rulesql does not allow it (inside arithmetic or a comparison)', () => {
    const errorOf = (sql: string): string => {
      const compiled = compileRuleSql(sql);
      return 'error' in compiled ? compiled.error : 'accepted';
    };
    assert.match(errorOf(`SELECT CASE WHEN a THEN 1 END + 1 AS v FROM "t"`), /syntax error/);
    assert.match(errorOf(`SELECT a FROM "t" WHERE CASE WHEN a THEN 1 END = 1`), /syntax error/);
    assert.match(errorOf(`SELECT CASE END AS v FROM "t"`), /syntax error/);
  });

  it('implements split (trim, notrim, leading, trailing) and nth like emqx_rule_funcs', () => {
    assert.deepEqual(selected(`SELECT split('/a//b/', '/') AS v FROM "u/#"`), { v: ['a', 'b'] });
    assert.deepEqual(selected(`SELECT split('/a//b/', '/', 'notrim') AS v FROM "u/#"`), { v: ['', 'a', '', 'b', ''] });
    assert.deepEqual(selected(`SELECT split('a/b/c', '/', 'leading') AS v FROM "u/#"`), { v: ['a', 'b/c'] });
    assert.deepEqual(selected(`SELECT split('a/b/c', '/', 'trailing') AS v FROM "u/#"`), { v: ['a/b', 'c'] });
    assert.deepEqual(selected(`SELECT nth(2, payload.arr) AS v FROM "u/#"`), { v: 20 });
    assert.throws(() => run(`SELECT nth(4, payload.arr) AS v FROM "u/#"`), /nth/);
    assert.throws(() => run(`SELECT split('a', '/', 'sideways') AS v FROM "u/#"`), /split mode/);
    assert.deepEqual(selected(`SELECT [payload.level, abs(qos)] AS v FROM "u/#"`), { v: [4, 1] });
  });
});

describe('rule topic index', () => {
  it('finds exactly the filters matching a topic among many, with MQTT wildcard rules', () => {
    const index = new TopicIndex<string>();
    for (let node = 0; node < 5000; node += 1) index.insert(`d/node-${node}/pepeunit`, `pipe-${node}`);
    index.insert('d/+/pepeunit', 'plus');
    index.insert('d/#', 'hash');
    index.insert('#', 'all');
    index.insert('+/node-7/+', 'middle');
    index.insert('$SYS/#', 'sys');
    const sorted = (topic: string): string[] => [...index.match(topic)].sort();
    assert.deepEqual(sorted('d/node-7/pepeunit'), ['all', 'hash', 'middle', 'pipe-7', 'plus']);
    assert.deepEqual(sorted('d/node-7'), ['all', 'hash']);
    assert.deepEqual(sorted('d'), ['all', 'hash'], '`d/#` also matches `d`');
    assert.deepEqual(sorted('other/x'), ['all']);
    assert.deepEqual(sorted('$SYS/brokers'), ['sys'], 'leading wildcards never match $ topics');
    assert.equal(index.size, 5005);
    index.remove('d/node-7/pepeunit', 'pipe-7');
    index.remove('#', 'all');
    assert.deepEqual(sorted('d/node-7/pepeunit'), ['hash', 'middle', 'plus']);
    assert.equal(index.size, 5003);
  });
});
