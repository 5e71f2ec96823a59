/** Aggregation window alignment against the aggregation_window vectors (Go time.Truncate). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { TIME_WINDOW_SIZES } from '@pepeunit/common/datapipe/index';
import { aggregationWindow } from '@pepeunit/ingest-go-compatible/pipeline/index';

const vectors = JSON.parse(readFileSync(new URL('./vectors/go-datapipe-numbers.json', import.meta.url), 'utf8')) as {
  aggregation_window: Array<{ at: string; size_seconds: number; window_start: string; window_end: string }>;
};

test(`all ${vectors.aggregation_window.length} aggregation_window vectors`, () => {
  assert.ok(vectors.aggregation_window.length >= 90);
  for (const v of vectors.aggregation_window) {
    const w = aggregationWindow(Date.parse(v.at), v.size_seconds);
    assert.equal(new Date(w.startMs).toISOString(), v.window_start, `${v.at} / ${v.size_seconds}`);
    assert.equal(new Date(w.endMs).toISOString(), v.window_end, `${v.at} / ${v.size_seconds}`);
  }
});

test('windows are half-open and aligned to UTC midnight for every allowed size', () => {
  const midnight = Date.parse('2026-03-01T00:00:00Z');
  for (const size of TIME_WINDOW_SIZES) {
    const first = aggregationWindow(midnight, size);
    assert.equal(first.startMs, midnight, `${size}`);
    assert.equal(first.endMs, midnight + size * 1000);
    const boundary = aggregationWindow(first.endMs, size);
    assert.equal(boundary.startMs, first.endMs, 'a message on the boundary opens the next window');
    assert.equal(aggregationWindow(first.endMs - 1, size).startMs, midnight);
  }
  assert.deepEqual(aggregationWindow(-1, 60), { startMs: -60000, endMs: 0 });
});
