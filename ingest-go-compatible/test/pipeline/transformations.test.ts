/** Transformations (§3.4): Go number formatting and byte slicing. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyTransformations, compileTransformations, sliceBounds, sliceUtf8Bytes } from '@pepeunit/ingest-go-compatible/pipeline/index';
import type { TransformationsConfig } from '@pepeunit/common/datapipe/index';

const none: TransformationsConfig = { multiplication_ratio: null, round_decimal_point: null, slice_start: null, slice_end: null };
const t = (cfg: Partial<TransformationsConfig>) => compileTransformations({ ...none, ...cfg });

test('Number: multiply with %f, then round with %.Nf; unparseable values pass unchanged', () => {
  const cases: Array<[Partial<TransformationsConfig>, string, string]> = [
    [{}, '007', '007'],
    [{}, '1e3', '1e3'],
    [{ multiplication_ratio: 1 }, '12', '12.000000'],
    [{ multiplication_ratio: 0.001 }, '12', '0.012000'],
    [{ multiplication_ratio: 0.001, round_decimal_point: 3 }, '1234', '1.234'],
    [{ multiplication_ratio: 2 }, 'abc', 'abc'],
    [{ multiplication_ratio: 2, round_decimal_point: 1 }, 'abc', 'abc'],
    [{ round_decimal_point: 0 }, '2.5', '2'],
    [{ round_decimal_point: 0 }, '3.5', '4'],
    [{ round_decimal_point: 2 }, '0.125', '0.12'],
    [{ round_decimal_point: 1 }, '-0.04', '-0.0'],
    [{ multiplication_ratio: -1 }, '0', '-0.000000'],
    [{ multiplication_ratio: 0 }, 'inf', 'NaN'],
    [{ round_decimal_point: 3 }, 'Infinity', '+Inf'],
    [{ multiplication_ratio: 10 }, '0x1p-2', '2.500000'],
    [{ slice_start: 0, slice_end: 1 }, '12.5', '12.5'],
  ];
  for (const [cfg, input, out] of cases) assert.equal(applyTransformations(t(cfg), 'Number', input), out, `${JSON.stringify(cfg)} ${input}`);
  assert.equal(applyTransformations(null, 'Number', '1.23456'), '1.23456');
});

test('Text: Python-style slices over bytes', () => {
  const cases: Array<[Partial<TransformationsConfig>, string, string]> = [
    [{ slice_start: 0, slice_end: 3 }, 'abcdef', 'abc'],
    [{ slice_start: 2 }, 'abcdef', 'cdef'],
    [{ slice_end: -2 }, 'abcdef', 'abcd'],
    [{ slice_start: -2 }, 'abcdef', 'ef'],
    [{ slice_start: -100, slice_end: 100 }, 'abcdef', 'abcdef'],
    [{ slice_start: 4, slice_end: 2 }, 'abcdef', ''],
    [{ slice_start: 10 }, 'abcdef', ''],
    [{ slice_start: 1, slice_end: 1 }, 'abcdef', ''],
    [{ multiplication_ratio: 2 }, '12', '12'],
    [{ slice_start: 0, slice_end: 2 }, 'éa', 'é'],
    [{ slice_start: 0, slice_end: 1 }, 'éa', ''],
    [{ slice_start: 1 }, 'éa', 'a'],
    [{ slice_start: 0, slice_end: 4 }, '日本', '日'],
    [{ slice_start: -4 }, 'a😀', '😀'],
    [{ slice_start: -3 }, 'a😀', ''],
  ];
  for (const [cfg, input, out] of cases) assert.equal(applyTransformations(t(cfg), 'Text', input), out, `${JSON.stringify(cfg)} ${input}`);
  assert.deepEqual(sliceBounds(6, -2, null), [4, 6]);
  assert.deepEqual(sliceBounds(6, null, -10), [0, 0]);
  assert.equal(sliceUtf8Bytes('aé日😀', 1, 3), 'é');
});
