/**
 * Naive timestamps are UTC (usePostgresUtcTimestamps): the parser against pg's own on the same
 * instants, and a real Postgres round trip in a child process whose time zone is not UTC (the
 * same script without the setting shows the shift it prevents).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import pg from 'pg';
import { databaseUrl, parsePostgresTimestamp } from '../src/postgres.js';
import { testServices } from '../../tests/src/harness.ts';

test('parsePostgresTimestamp reads the naive value as UTC, like pg reads it with a +00 offset', () => {
  const withOffset = pg.types.getTypeParser(1184); // timestamptz: honours the offset
  const cases = [
    '2026-12-07 16:20:14',
    '2026-12-07 16:20:14.1',
    '2026-12-07 16:20:14.123',
    '2026-12-07 16:20:14.123456',
    '1970-01-01 00:00:00',
    '2000-02-29 23:59:59.999999',
    '0100-01-01 00:00:00',
    '9999-12-31 23:59:59.5',
  ];
  for (const value of cases) {
    const ours = parsePostgresTimestamp(value) as Date;
    const reference = withOffset(`${value}+00`) as Date;
    assert.ok(ours instanceof Date, value);
    assert.equal(ours.getTime(), Math.trunc(reference.getTime()), value);
  }
  assert.equal((parsePostgresTimestamp('2026-12-07 16:20:14.123456') as Date).toISOString(), '2026-12-07T16:20:14.123Z');
  // The rare forms go through pg's parser with the offset added.
  assert.equal(parsePostgresTimestamp('infinity'), Infinity);
  assert.equal(parsePostgresTimestamp('-infinity'), -Infinity);
  assert.equal((parsePostgresTimestamp('0044-03-15 12:00:00 BC') as Date).getUTCHours(), 12);
  assert.equal((parsePostgresTimestamp('0044-03-15 12:00:00 BC') as Date).getUTCFullYear(), -43);
  assert.equal((parsePostgresTimestamp('0099-06-01 01:02:03') as Date).getUTCFullYear(), 99);
});

test('on a host whose time zone is not UTC, Date parameters are stored and naive timestamps read as UTC', async () => {
  const { pgAdminUrl } = await testServices();
  const url = databaseUrl(pgAdminUrl, 'postgres');
  const root = join(import.meta.dirname, '..', '..');
  const run = (mode: 'utc' | 'default') => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures/pg-utc-child.ts'), url, mode], {
      cwd: root,
      env: { ...process.env, TZ: 'Asia/Novosibirsk' }, // UTC+7, no daylight saving
      encoding: 'utf8',
    });
    assert.equal(result.status, 0, result.stderr);
    return JSON.parse(result.stdout.trim().split('\n').at(-1)!) as { tz: string; stored: string; literal: number; nowSkewMs: number };
  };
  const utc = run('utc');
  assert.equal(utc.tz, 'Asia/Novosibirsk');
  assert.equal(utc.stored, '2026-01-02 03:04:05.678', 'a Date parameter is stored as its UTC wall time');
  assert.equal(utc.literal, Date.UTC(2026, 0, 2, 3, 4, 5, 678), 'a naive timestamp reads as UTC');
  assert.equal(utc.nowSkewMs, 0, "now() AT TIME ZONE 'utc' reads as the same instant as now()");
  // Control: pg's defaults in the same time zone shift both ways by the 7 hours.
  const local = run('default');
  assert.equal(local.stored, '2026-01-02 10:04:05.678');
  assert.equal(local.literal, Date.UTC(2026, 0, 2, 3, 4, 5, 678) - 7 * 3_600_000);
  assert.equal(local.nowSkewMs, -7 * 3_600_000);
});
