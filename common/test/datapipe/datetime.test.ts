/** Datetime input as pydantic reads it; expectations from pydantic 2 (naive read as UTC, ours). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigDateTime, dateTimeFromTimestamp, parseConfigDateTimeText } from '@pepeunit/common/datapipe/index';

const CASES: Array<[string, { iso: string } | { error: string }]> = [
  ["2023-11-15T00:00:00+00:00", { iso: "2023-11-15T00:00:00+00:00" }],
  ["2023-11-15T00:00:00Z", { iso: "2023-11-15T00:00:00+00:00" }],
  ["2023-11-15t10:20:30z", { iso: "2023-11-15T10:20:30+00:00" }],
  ["2023-11-15 10:20", { iso: "2023-11-15T10:20:00+00:00" }],
  ["2023-11-15_10:20:30", { iso: "2023-11-15T10:20:30+00:00" }],
  ["2023-11-15", { iso: "2023-11-15T00:00:00+00:00" }],
  ["2023-11-15T00:00:00.5+05:30", { iso: "2023-11-15T00:00:00.500000+05:30" }],
  ["2023-11-15T00:00:00,25-08:00", { iso: "2023-11-15T00:00:00.250000-08:00" }],
  ["2023-11-15T00:00:00.1234567Z", { iso: "2023-11-15T00:00:00.123456+00:00" }],
  ["2023-11-15T00:00:00+0530", { iso: "2023-11-15T00:00:00+05:30" }],
  ["2024-02-29T12:00:00Z", { iso: "2024-02-29T12:00:00+00:00" }],
  ["1700000000", { iso: "2023-11-14T22:13:20+00:00" }],
  ["-1", { iso: "1969-12-31T23:59:59+00:00" }],
  ["1700000000.5", { iso: "2023-11-14T22:13:20.500000+00:00" }],
  ["20000000001", { iso: "1970-08-20T11:33:20.001000+00:00" }],
  ["abc", { error: "Input should be a valid datetime or date, input is too short" }],
  ["", { error: "Input should be a valid datetime or date, input is too short" }],
  ["2023-1-15", { error: "Input should be a valid datetime or date, input is too short" }],
  ["2023/11/15", { error: "Input should be a valid datetime or date, invalid date separator, expected `-`" }],
  ["20231115T000000Z", { error: "Input should be a valid datetime or date, invalid date separator, expected `-`" }],
  ["2023-13-01", { error: "Input should be a valid datetime or date, month value is outside expected range of 1-12" }],
  ["2023-02-29", { error: "Input should be a valid datetime or date, day value is outside expected range" }],
  ["2023-11-15T25:00:00Z", { error: "Input should be a valid datetime or date, unexpected extra characters at the end of the input" }],
  ["2023-11-15T00:00:00+05", { error: "Input should be a valid datetime or date, unexpected extra characters at the end of the input" }],
  ["2023-11-15X00:00", { error: "Input should be a valid datetime or date, unexpected extra characters at the end of the input" }],
  ["  2023-11-15", { error: "Input should be a valid datetime or date, invalid character in year" }],
  ["1e3", { error: "Input should be a valid datetime or date, input is too short" }],
  ["0000-01-01", { error: "Input should be a valid datetime, year 0 is out of range" }],
];

test('text datetimes: accepted forms, isoformat and pydantic messages', () => {
  for (const [text, expected] of CASES) {
    const r = parseConfigDateTimeText(text);
    if ('iso' in expected) {
      assert.ok(r.ok, `${text}: ${r.ok ? '' : r.message}`);
      assert.equal(r.value.isoformat(), expected.iso, text);
    } else {
      assert.ok(!r.ok, text);
      assert.equal(r.message, expected.error, text);
    }
  }
});

test('timestamps, Date objects and ordering', () => {
  const a = dateTimeFromTimestamp(1700000000123);
  assert.ok(a.ok);
  assert.equal(a.value.isoformat(), '2023-11-14T22:13:20.123000+00:00');
  assert.equal(a.value.epochMs, 1700000000123);
  const nan = dateTimeFromTimestamp(NaN);
  assert.ok(!nan.ok && nan.message === 'Input should be a valid datetime, NaN values not permitted');
  const far = dateTimeFromTimestamp(1e20);
  assert.ok(!far.ok && /dates after 9999/.test(far.message));
  const d = ConfigDateTime.fromDate(new Date('0050-06-01T12:00:00.5Z'));
  assert.equal(d?.isoformat(), '0050-06-01T12:00:00.500000+00:00');
  assert.equal(ConfigDateTime.fromDate(new Date(NaN)), null);
  const early = parseConfigDateTimeText('2025-01-01T01:00:00+02:00');
  const late = parseConfigDateTimeText('2025-01-01T00:00:00Z');
  assert.ok(early.ok && late.ok);
  assert.equal(early.value.compare(late.value), -1);
  assert.equal(late.value.compare(early.value), 1);
  assert.equal(early.value.compare(early.value), 0);
});
