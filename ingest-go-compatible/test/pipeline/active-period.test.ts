/** Active period: strict bounds against the receive time (§3.2). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileActivePeriod, isActive } from '@pepeunit/ingest-go-compatible/pipeline/index';

const start = '2026-01-01T00:00:00+00:00';
const end = '2026-01-02T00:00:00+00:00';
const S = Date.parse(start);
const E = Date.parse(end);

test('strict comparisons per type', () => {
  const cases: Array<[string, string | null, string | null, number, boolean]> = [
    ['Permanent', null, null, 0, true],
    ['Permanent', start, null, S - 1, true],
    ['FromDate', start, null, S, false],
    ['FromDate', start, null, S + 1, true],
    ['FromDate', start, null, S - 1, false],
    ['ToDate', null, end, E, false],
    ['ToDate', null, end, E - 1, true],
    ['ToDate', null, end, E + 1, false],
    ['DateRange', start, end, S, false],
    ['DateRange', start, end, S + 1, true],
    ['DateRange', start, end, E - 1, true],
    ['DateRange', start, end, E, false],
    ['FromDate', null, null, S, false],
    ['ToDate', null, null, S, false],
    ['DateRange', start, null, S + 1, false],
  ];
  for (const [type, s, e, now, expected] of cases) {
    const period = compileActivePeriod({ type: type as 'Permanent', start: s, end: e });
    assert.equal(isActive(period, now), expected, `${type} ${s} ${e} at ${now - S}`);
  }
});

test('offsets and microseconds are honoured', () => {
  const p = compileActivePeriod({ type: 'FromDate', start: '2026-01-01T02:00:00.000500+02:00', end: null });
  assert.equal(p.startMs, S + 0.5);
  assert.equal(isActive(p, S), false);
  assert.equal(isActive(p, S + 1), true);
  assert.throws(() => compileActivePeriod({ type: 'FromDate', start: 'not a date', end: null }), /invalid datetime/);
});
