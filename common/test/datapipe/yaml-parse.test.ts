/**
 * YAML reading: PyYAML (YAML 1.1) scalar rules as the reference's `yaml.safe_load`, and
 * the safety limits. Expected resolutions were checked against PyYAML 6.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigDateTime, PyFloat, parseDataPipeYaml } from '@pepeunit/common/datapipe/index';

type Shown = string | number | boolean | null | { float: number } | { datetime: string } | { bigint: string };

function show(v: unknown): Shown {
  if (v instanceof PyFloat) return { float: v.value };
  if (v instanceof ConfigDateTime) return { datetime: v.isoformat() };
  if (typeof v === 'bigint') return { bigint: v.toString() };
  return v as Shown;
}

function scalar(text: string): Shown {
  const parsed = parseDataPipeYaml(`k: ${text}\n`);
  if (!parsed.ok) assert.fail(`${text}: ${parsed.error.message}`);
  return show((parsed.document as Record<string, unknown>).k);
}

test('plain scalars resolve as PyYAML safe_load does', () => {
  const cases: Array<[string, Shown]> = [
    ['yes', true],
    ['No', false],
    ['ON', true],
    ['off', false],
    ['oFF', 'oFF'],
    ['y', 'y'],
    ['n', 'n'],
    ['True', true],
    ['tRUE', 'tRUE'],
    ['~', null],
    ['Null', null],
    ['nULL', 'nULL'],
    ['', null],
    ['0', 0],
    ['-0', 0],
    ['010', 8],
    ['09', '09'],
    ['0o10', '0o10'],
    ['0x1F', 31],
    ['0b101', 5],
    ['1_000', 1000],
    ['1__0', 10],
    ['0_7', 7],
    ['1:30', 90],
    ['-1:30', -90],
    ['190:20:30', 685230],
    ['1:60', '1:60'],
    ['99999999999999999999', { bigint: '99999999999999999999' }],
    ['1.5', 1.5],
    ['1.0', { float: 1 }],
    ['-2.0', { float: -2 }],
    ['.5', 0.5],
    ['-.5', '-.5'],
    ['+.5', '+.5'],
    ['5.', { float: 5 }],
    ['1e3', '1e3'],
    ['1.0e3', '1.0e3'],
    ['1.0e+3', { float: 1000 }],
    ['1.e+3', { float: 1000 }],
    ['0.1e-2', 0.001],
    ['1_000.5_5', 1000.55],
    ['1:30.5', 90.5],
    ['.inf', Infinity],
    ['-.Inf', -Infinity],
    ['abc', 'abc'],
    ['"1"', '1'],
    ["'yes'", 'yes'],
    ['!!str 12', '12'],
    ['!!int "12"', 12],
    ['!!float 3', { float: 3 }],
    ['!!bool "on"', true],
    ['2025-01-01', { datetime: '2025-01-01T00:00:00+00:00' }],
    ['2025-01-01T10:20:30Z', { datetime: '2025-01-01T10:20:30+00:00' }],
    ['2025-01-01 10:20:30 +5', { datetime: '2025-01-01T10:20:30+05:00' }],
    ['2025-1-1T1:00:00', { datetime: '2025-01-01T01:00:00+00:00' }],
    ['2025-01-01t00:00:00.1234567-05:30', { datetime: '2025-01-01T00:00:00.123456-05:30' }],
    ['2025-1-1', '2025-1-1'],
  ];
  for (const [text, expected] of cases) assert.deepEqual(scalar(text), expected, text);
  const nan = parseDataPipeYaml('k: .NaN\n');
  assert.ok(nan.ok && Number.isNaN((nan.document as { k: number }).k));
});

test('structure: duplicate keys keep the last value, merge keys work, BOM is fine', () => {
  const dup = parseDataPipeYaml('a: 1\na: 2\n');
  assert.ok(dup.ok);
  assert.deepEqual(dup.document, { a: 2 });
  const merged = parseDataPipeYaml('base: &b {type: Permanent, start: x}\nactive_period:\n  <<: *b\n  start: y\n');
  assert.ok(merged.ok);
  assert.deepEqual((merged.document as Record<string, unknown>).active_period, { type: 'Permanent', start: 'y' });
  const bom = parseDataPipeYaml('\ufeffa: 1\n');
  assert.ok(bom.ok);
  assert.deepEqual(bom.document, { a: 1 });
  const empty = parseDataPipeYaml('');
  assert.ok(empty.ok);
  assert.equal(empty.document, null);
});

test('syntax errors come back as a Yaml entry with line and column', () => {
  const cases: Array<[string | Uint8Array, RegExp]> = [
    ['active_period:\n  type: [Permanent\n', /^YAML syntax error at line \d+, column \d+: /],
    ['a: b: c\n', /^YAML syntax error at line 1, column 4: Nested mappings are not allowed/],
    ['k: "abc\n', /^YAML syntax error at line \d+, column \d+: Missing closing "quote/],
    ['a: 1\n---\nb: 2\n', /^YAML syntax error at line 2, column 1: Source contains multiple documents/],
    ['a: !foo 1\n', /^YAML tag error at line 1, column 4: Unresolved tag: !foo/],
    ['a: !!binary aGVsbG8=\n', /^YAML tag error at line 1, column 4: Unresolved tag: tag:yaml.org,2002:binary/],
    ['a: !!set {x}\n', /^YAML tag error at line 1, column 4: /],
    ['a: !!python/object:os.system x\n', /^YAML tag error/],
    ['a: !!int abc\n', /^YAML syntax error at line 1, column 4: invalid integer 'abc'/],
    ['a: 2025-02-30\n', /^YAML syntax error at line 1, column 4: invalid timestamp '2025-02-30'/],
    ['a: *nowhere\n', /^YAML (syntax )?error/],
    [new Uint8Array([0x61, 0x3a, 0x20, 0xff, 0xfe]), /^DataPipe config is not valid UTF-8 text$/],
  ];
  for (const [input, message] of cases) {
    const r = parseDataPipeYaml(input);
    assert.equal(r.ok, false, String(input));
    if (!r.ok) {
      assert.equal(r.error.stage, 'Yaml');
      assert.match(r.error.message, message, String(input));
    }
  }
});

test('limits: file size and alias expansion', () => {
  const big = `a: "${'x'.repeat(2000)}"\n`;
  const tooBig = parseDataPipeYaml(big, { maxBytes: 1000 });
  assert.ok(!tooBig.ok);
  assert.match(tooBig.ok ? '' : tooBig.error.message, /too large: 2006 bytes \(the limit is 1000 bytes\)/);
  assert.ok(parseDataPipeYaml(big, { maxBytes: 4000 }).ok);

  const laughs = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i < 9; i++) laughs.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10).fill(`*${String.fromCharCode(96 + i)}`).join(', ')}]`);
  const bomb = parseDataPipeYaml(`${laughs.join('\n')}\n`);
  assert.ok(!bomb.ok);
  assert.match(bomb.ok ? '' : bomb.error.message, /alias/i);

  const fewAliases = parseDataPipeYaml('a: &x [1]\nb: *x\nc: *x\n');
  assert.ok(fewAliases.ok);
  assert.deepEqual(fewAliases.document, { a: [1], b: [1], c: [1] });
});
