/**
 * The load history tables (ClickHouse migration 006) and the usage reader billing meters through:
 * exact totals to the minute (whole hours from the hourly rollup, the edges from minutes), the
 * busiest minute, rows merged by the engine, other users' units never included.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { migrateClickHouse } from '@pepeunit/clickhouse-schemas';
import { createTestDatabases, type TestDatabases } from '../../../tests/src/harness.ts';
import { createUsageReader, insertMinuteRows, insertRollupRows, loadSeries, unitTotals, type MinuteRow } from '../../src/load/load-store.ts';

let db: TestDatabases;
before(async () => {
  db = await createTestDatabases('load_usage');
  await migrateClickHouse(db.clickhouse, { database: db.clickhouseDatabase });
});
after(async () => db?.drop());

const user = randomUUID();
const other = randomUUID();
const unitA = randomUUID();
const unitB = randomUUID();
const unitC = randomUUID();
const repo = randomUUID();
// An hour boundary a few hours ago (the minute table keeps 8 days: older rows are dropped at insert).
const H = Math.floor(Date.now() / 3_600_000) * 3600 - 4 * 3600;

/** Writes minute rows and, as the sampler does for closed minutes, the rollups. */
async function write(rows: MinuteRow[]): Promise<void> {
  await insertMinuteRows(db.clickhouse, rows);
  const byMinute = new Map<string, MinuteRow>();
  for (const row of rows) {
    const key = `${row.unit_uuid}/${row.minute}`;
    const seen = byMinute.get(key);
    if (seen) seen.messages += row.messages;
    else byMinute.set(key, { ...row });
  }
  await insertRollupRows(db.clickhouse, [...byMinute.values()].map((r) => ({ ...r, start: r.minute, peak_minute_messages: r.messages })));
}

test('usage of a user: exact per unit over a range with partial hours, peak = busiest minute', async () => {
  const rows: MinuteRow[] = [];
  // Unit A: 10 messages in each minute of three hours (H-1h .. H+2h), two cycles per minute (4 + 6).
  for (let m = -60; m < 120; m += 1) {
    rows.push({ creator_uuid: user, unit_uuid: unitA, repo_uuid: repo, minute: H + m * 60, messages: 4 });
    rows.push({ creator_uuid: user, unit_uuid: unitA, repo_uuid: repo, minute: H + m * 60, messages: 6 });
  }
  // Unit B (no repo): one busy minute at H+30min.
  rows.push({ creator_uuid: user, unit_uuid: unitB, repo_uuid: null, minute: H + 30 * 60, messages: 600 });
  // Another user's unit.
  rows.push({ creator_uuid: other, unit_uuid: unitC, repo_uuid: repo, minute: H + 60, messages: 999 });
  await write(rows);

  const reader = createUsageReader(db.clickhouse);
  // [H-30min, H+90min): 30 + 60 + 30 minutes of A (partial hours at both ends), B's minute.
  const usage = await reader.userUsage(user, new Date((H - 1800) * 1000), new Date((H + 5400) * 1000));
  const byUnit = new Map(usage.map((u) => [u.unitUuid, u]));
  assert.equal(usage.length, 2);
  assert.deepEqual(byUnit.get(unitA), { unitUuid: unitA, repoUuid: repo, messages: 1200, peakMps: 10 / 60 });
  assert.deepEqual(byUnit.get(unitB), { unitUuid: unitB, repoUuid: null, messages: 600, peakMps: 10 });
  // A range inside one hour reads minutes only.
  const inside = await reader.userUsage(user, new Date((H + 600) * 1000), new Date((H + 1200) * 1000));
  assert.deepEqual(inside, [{ unitUuid: unitA, repoUuid: repo, messages: 100, peakMps: 10 / 60 }]);
  // Empty and inverted ranges.
  assert.deepEqual(await reader.userUsage(user, new Date((H + 7200) * 1000), new Date((H + 9000) * 1000)), []);
  assert.deepEqual(await reader.userUsage(user, new Date((H + 600) * 1000), new Date(H * 1000)), []);
});

test('repo totals and series per granularity', async () => {
  const totals = await unitTotals(db.clickhouse, { repoUuid: repo }, H - 3600, H + 7200);
  assert.deepEqual(totals.map((t) => [t.unit_uuid, t.messages]).sort(), [[unitA, 1800], [unitC, 999]].sort());
  const hours = await loadSeries(db.clickhouse, { unitUuids: [unitA] }, 'hour', H - 3600, H + 7200);
  assert.deepEqual(hours.map((h) => [h.start - H, h.messages]), [[-3600, 600], [0, 600], [3600, 600]]);
  const days = await loadSeries(db.clickhouse, { unitUuids: [unitA, unitB] }, 'day', H - 86400, H + 86400);
  assert.equal(days.reduce((sum, d) => sum + d.messages, 0), 2400);
  const minutes = await loadSeries(db.clickhouse, { creatorUuid: user }, 'minute', H + 1800, H + 1860);
  assert.deepEqual(minutes, [{ start: H + 1800, messages: 610, mps: 610 / 60 }]);
});
