/** data_source.json_path selection from JSON payloads. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseJsonPath } from '@pepeunit/common/datapipe/index';
import { extractJsonValue } from '@pepeunit/ingest-go-compatible/pipeline/index';

function extract(payload: string, path: string): string {
  const p = parseJsonPath(path);
  if (!p.ok) assert.fail(p.message);
  const r = extractJsonValue(payload, p.segments);
  return r.ok ? `=${r.value}` : `!${r.reason}`;
}

test('selected values: strings as text, numbers and booleans as their JSON text, containers compact', () => {
  const doc = '{ "sensors": [ {"temp": 21.50, "ok": true}, {"temp": -3e2, "name": "caf\\u00e9 \\"x\\""} ], "a": {"b": {"c": null}}, "key with.dot": 1, "big": 12345678901234567890, "obj": { "x" : [ 1 , 2 ], "s": "a b" } }';
  const cases: Array<[string, string]> = [
    ['sensors[0].temp', '=21.50'],
    ['sensors[1].temp', '=-3e2'],
    ['sensors[0].ok', '=true'],
    ['sensors[1].name', '=café "x"'],
    ['["key with.dot"]', '=1'],
    ['big', '=12345678901234567890'],
    ['obj', '={"x":[1,2],"s":"a b"}'],
    ['obj.x', '=[1,2]'],
    ['sensors[1]', '={"temp":-3e2,"name":"caf\\u00e9 \\"x\\""}'],
    ['a.b.c', '!json_path_missing'],
    ['a.b.d', '!json_path_missing'],
    ['sensors[2]', '!json_path_missing'],
    ['sensors.temp', '!json_path_missing'],
    ['obj[0]', '!json_path_missing'],
    ['missing', '!json_path_missing'],
  ];
  for (const [path, expected] of cases) assert.equal(extract(doc, path), expected, path);
});

test('roots that are arrays or scalars, duplicate keys, empty strings', () => {
  assert.equal(extract('[10, 20, 30]', '[2]'), '=30');
  assert.equal(extract('"text"', 'a'), '!json_path_missing');
  assert.equal(extract('{"a": 1, "a": 2}', 'a'), '=2');
  assert.equal(extract('{"a": {"b": 1}, "a": {"c": 2}}', 'a.b'), '!json_path_missing', 'the later duplicate replaces the earlier object');
  assert.equal(extract('{"a": {"b": 1, "b": 2}}', 'a.b'), '=2');
  assert.equal(extract('{"a": ""}', 'a'), '=');
  assert.equal(extract('{"a\\u002eb": 5}', '["a.b"]'), '=5');
  assert.equal(extract(' \n{"a":[[],{}]}\t', 'a'), '=[[],{}]');
});

test('anything that is not JSON is json_invalid', () => {
  const bad = ['', 'temp=21', '{"a": 1,}', "{'a': 1}", '{"a": 01}', '{"a": 1} x', '{"a": NaN}', '{"a": "tab\tin string"}', '{"a": "\\x"}', '[1, 2', '{"a" 1}', 'tru', '{"a": +1}', '{"a": .5}', `${'['.repeat(300)}${']'.repeat(300)}`];
  for (const payload of bad) assert.equal(extract(payload, 'a'), '!json_invalid', JSON.stringify(payload));
  assert.equal(extract(`{"a": ${'['.repeat(200)}${']'.repeat(200)}}`, 'a').startsWith('=[[['), true, 'deep but within the limit');
});
