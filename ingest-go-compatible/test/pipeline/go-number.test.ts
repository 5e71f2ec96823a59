/**
 * Go number handling against every vector of go-datapipe-numbers.json (generated with Go's
 * standard library; copied from shared/vectors so the test is self-contained).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { formatGoF, formatGoFixed, parseGoFloat } from '@pepeunit/ingest-go-compatible/pipeline/index';

interface Vectors {
  parse_float: Array<{ input: string; ok: boolean; value: string | null }>;
  multiply_then_format_f: Array<{ input: string; ratio: number; output: string }>;
  round_format: Array<{ input: string; decimals: number; output: string }>;
}
const vectors = JSON.parse(readFileSync(new URL('./vectors/go-datapipe-numbers.json', import.meta.url), 'utf8')) as Vectors;

/** Go prints parsed values with %v; read them back as numbers to compare exactly. */
function goValue(text: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  return Number(text);
}

test(`strconv.ParseFloat: all ${vectors.parse_float.length} vectors`, () => {
  assert.ok(vectors.parse_float.length >= 40);
  for (const v of vectors.parse_float) {
    const got = parseGoFloat(v.input);
    if (v.ok) {
      assert.notEqual(got, null, JSON.stringify(v.input));
      assert.ok(Object.is(got, goValue(v.value as string)), `${JSON.stringify(v.input)}: ${got} vs ${v.value}`);
    } else {
      assert.equal(got, null, JSON.stringify(v.input));
    }
  }
});

test(`multiply then %f: all ${vectors.multiply_then_format_f.length} vectors`, () => {
  for (const v of vectors.multiply_then_format_f) {
    const n = parseGoFloat(v.input);
    const out = n === null ? v.input : formatGoF(n * v.ratio);
    assert.equal(out, v.output, `${v.input} * ${v.ratio}`);
  }
});

test(`%.Nf rounding: all ${vectors.round_format.length} vectors`, () => {
  for (const v of vectors.round_format) {
    const n = parseGoFloat(v.input);
    const out = n === null ? v.input : formatGoFixed(n, v.decimals);
    assert.equal(out, v.output, `${v.input} with ${v.decimals} decimals`);
  }
});

test('ParseFloat edge cases beyond the vectors (hex rounding, underscores, specials)', () => {
  const cases: Array<[string, number | null]> = [
    ['0x1p-1074', 5e-324],
    ['0x1p-1075', 0],
    ['0x1.8p-1074', 1e-323],
    ['0x1.fffffffffffffp1023', Number.MAX_VALUE],
    ['0x1p1024', null],
    ['0x1.00000000000008p0', 1],
    ['0x1.00000000000018p0', 1 + 2 ** -51],
    ['0x.8p1', 1],
    ['0X1P-2', 0.25],
    ['0x_1p0', 1],
    ['0x1ep1', 60],
    ['-0x1p0', -1],
    ['1e1_0', 1e10],
    ['1_.5', null],
    ['1._5', null],
    ['_1', null],
    ['1_', null],
    ['1__0', null],
    ['infin', null],
    ['+nan', null],
    ['-Infinity', -Infinity],
    ['INF', Infinity],
    ['1p5', null],
    ['0x', null],
    ['.', null],
    ['-.5e-3', -0.0005],
    ['1e+', null],
    ['1e_1', null],
    ['1e99999999999', null],
    ['1e-99999999999', 0],
    ['+0', 0],
    ['\u0031', 1],
    ['1\u0000', null],
    ['١', null],
  ];
  for (const [input, expected] of cases) assert.ok(Object.is(parseGoFloat(input), expected), `${JSON.stringify(input)} -> ${parseGoFloat(input)}`);
});

test('%.Nf: exact ties round half to even, non-ties to nearest, huge and tiny magnitudes', () => {
  const cases: Array<[number, number, string]> = [
    [0.5, 0, '0'],
    [1.5, 0, '2'],
    [2.5, 0, '2'],
    [-2.5, 0, '-2'],
    [0.0625, 3, '0.062'],
    [0.1875, 3, '0.188'],
    [1.005, 2, '1.00'],
    [2.675, 2, '2.67'],
    [1e22, 2, '10000000000000000000000.00'],
    [1.7976931348623157e308, 0, `${BigInt(1.7976931348623157e308)}`],
    [5e-324, 7, '0.0000000'],
    [-0, 3, '-0.000'],
    [-1e-9, 6, '-0.000000'],
    [NaN, 2, 'NaN'],
    [-Infinity, 2, '-Inf'],
  ];
  for (const [v, n, out] of cases) assert.equal(formatGoFixed(v, n), out, `${v} %.${n}f`);
  assert.equal(formatGoF(12), '12.000000');
});
