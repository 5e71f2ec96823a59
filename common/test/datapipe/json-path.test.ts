/** The data_source.json_path grammar. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseJsonPath, type JsonPathSegment } from '@pepeunit/common/datapipe/index';

const key = (k: string): JsonPathSegment => ({ kind: 'key', key: k });
const index = (i: number): JsonPathSegment => ({ kind: 'index', index: i });

test('valid paths', () => {
  const cases: Array<[string, JsonPathSegment[]]> = [
    ['temp', [key('temp')]],
    ['a.b', [key('a'), key('b')]],
    ['sensors[0].temp', [key('sensors'), index(0), key('temp')]],
    ['[2]', [index(2)]],
    ['[0][10]', [index(0), index(10)]],
    ['["key with.dot"]', [key('key with.dot')]],
    ['a["b c"].d', [key('a'), key('b c'), key('d')]],
    ['["quote \\" and \\u00e9"]', [key('quote " and é')]],
    ['температура.значение', [key('температура'), key('значение')]],
    ['$meta-data_1', [key('$meta-data_1')]],
    ['[""]', [key('')]],
  ];
  for (const [path, segments] of cases) {
    const r = parseJsonPath(path);
    assert.ok(r.ok, `${path}: ${r.ok ? '' : r.message}`);
    assert.deepEqual(r.segments, segments, path);
  }
});

test('invalid paths have clear messages', () => {
  const cases: Array<[string, string]> = [
    ['', 'json_path must not be empty'],
    ['.a', "json_path is invalid at character 1: the path cannot start with '.'"],
    ['a.', "json_path is invalid at character 3: expected a key after '.' but found the end of the path"],
    ['a..b', "json_path is invalid at character 3: expected a key after '.' but found '.'"],
    ['a b', "json_path is invalid at character 2: expected '.' or '[' but found ' '"],
    ['a[', 'json_path is invalid at character 3: expected an array index (a non-negative integer without leading zeros, at most 9 digits) or a "quoted key" after \'[\''],
    ['a[01]', 'json_path is invalid at character 3: expected an array index (a non-negative integer without leading zeros, at most 9 digits) or a "quoted key" after \'[\''],
    ['a[-1]', 'json_path is invalid at character 3: expected an array index (a non-negative integer without leading zeros, at most 9 digits) or a "quoted key" after \'[\''],
    ['a[1', "json_path is invalid at character 4: expected ']' but found the end of the path"],
    ['a["b', 'json_path is invalid at character 3: unterminated quoted key'],
    ['a["\\x"]', 'json_path is invalid at character 3: the quoted key is not a valid JSON string'],
    ["a['b']", 'json_path is invalid at character 3: expected an array index (a non-negative integer without leading zeros, at most 9 digits) or a "quoted key" after \'[\''],
    ['a]', "json_path is invalid at character 2: expected '.' or '[' but found ']'"],
    ['"a"', "json_path is invalid at character 1: expected a key or '[' but found '\"'"],
    ['x'.repeat(257), 'json_path is too long: 257 characters (the limit is 256)'],
    [Array(33).fill('a').join('.'), 'json_path has more than 32 segments'],
  ];
  for (const [path, message] of cases) {
    const r = parseJsonPath(path);
    assert.ok(!r.ok, path);
    assert.equal(r.message, message, path);
  }
  assert.ok(parseJsonPath(Array(32).fill('a').join('.')).ok);
});
