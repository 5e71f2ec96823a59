/**
 * Billing meets the load component (issue 14): the real backend (startTestBackend: Postgres,
 * embedded ClickHouse, HTTP through inject), the real usage reader the load plugin attaches on
 * `app.loadPorts`, and the load component's effective limits.
 *
 *  1. A user above the free tier for a closed period gets an exact statement: messages written
 *     into `unit_load_minute` / `unit_load_hourly` the way the sampler writes them (one row per
 *     unit and cycle, each closed minute into the rollups), DataPipe rows in `n_last_entry`,
 *     `window_entry` and `aggregation_entry`; the period starts and ends at half past an hour, so
 *     both edges come from minutes. Every number of the live statement (REST) and of the statement
 *     the billing cycle issues is computed here from the inputs, in exact decimal arithmetic.
 *  2. A user in arrears is warned (app.alertSink) during the grace period and not limited; after
 *     it the load component's effective limit of their units is their share of the free tier
 *     (`billing` source); a Crypto Pay payment that leaves the balance negative lifts nothing, one
 *     that brings it to >= 0 lifts the limit at once (seen through the admin load view).
 *
 * Time is controlled through `BillingEnforcer.runCycle(now)`; the period lies in the future, so
 * the plan (set now) was in force before it began.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import type { PlatformAlert } from '../../src/domain/alert-sink.ts';
import { insertMinuteRows, insertRollupRows, type MinuteRow, type PeriodRow } from '../../src/load/load-store.ts';
import { startTestBackend, type TestBackend, type TestUser } from '../../../tests/src/backend.ts';
import { startCryptoPayStandIn, type CryptoPayStandIn } from '../../../tests/src/crypto-pay-api.ts';
import { insertUnit } from '../load/helpers.ts';

const TOKEN = '4242:AAmeteringCryptoPayToken';
const DAY = 86_400_000;
const MINUTE = 60_000;

// --- exact decimal arithmetic of the expectations (10^-9 units, rounding towards zero), written
// --- out here rather than imported, so a fault in billing/money.ts cannot hide itself.
const F = 1_000_000_000n;
function nano(text: string): bigint {
  const [whole, fraction = ''] = text.split('.');
  return BigInt(whole!) * F + BigInt((fraction + '000000000').slice(0, 9));
}
function dec(value: bigint): string {
  const sign = value < 0n ? '-' : '';
  const abs = value < 0n ? -value : value;
  const fraction = (abs % F).toString().padStart(9, '0').replace(/0+$/, '');
  return `${sign}${abs / F}${fraction ? `.${fraction}` : ''}`;
}
const ratio = (a: bigint, b: bigint): bigint => (a * F) / b;
const times = (a: bigint, b: bigint): bigint => (a * b) / F;
const atLeastZero = (v: bigint): bigint => (v > 0n ? v : 0n);

const PLAN = { currency: 'USDT', billing_period_days: 1, grace_period_days: 1, free_mps: '0.5', mps_price: '1.25', free_aggregation_topics: '2', aggregation_topic_price: '0.3' };
const INSTANCE_UNIT_MPS = 50; // PU_LOAD_UNIT_MPS_LIMIT of this backend

let cryptoPay: CryptoPayStandIn;
let t: TestBackend;
let admin: TestUser;
let user: TestUser;
let other: TestUser;
const alerts: PlatformAlert[] = [];
/** The billed period: two days ahead, starting at half past midnight UTC (partial hours at both ends). */
let S = 0;
let END = 0;
let unitA: { unit: string; nodes: string[] };
let unitB: { unit: string; nodes: string[] };
let unitC: { unit: string; nodes: string[] };
/** Messages per unit inside [S, END), and the busiest minute, as written below. */
const inside = { a: 0, b: 0, c: 0 };
const peakMinute = { a: 0, b: 0 };
/** DataPipe rows inside [S, END) per node. */
const storedInside = new Map<string, number>();
let expectedTotal = 0n;

before(async () => {
  cryptoPay = await startCryptoPayStandIn(TOKEN);
  t = await startTestBackend({
    label: 'billing_meter',
    env: { PU_BILLING_CRYPTO_PAY_TOKEN: TOKEN, PU_BILLING_CRYPTO_PAY_API_URL: cryptoPay.url, PU_BILLING_CYCLE_INTERVAL_SECONDS: '0', PU_LOAD_UNIT_MPS_LIMIT: String(INSTANCE_UNIT_MPS) },
  });
  t.backend.app.alertSink.use({ raise: async (alert) => void alerts.push(alert) });
  admin = await t.user('meter_admin');
  user = await t.user('meter_user');
  other = await t.user('meter_other');
  const pool = t.backend.deps.pg as pg.Pool;
  unitA = await insertUnit(pool, user.uuid, 2); // NRecords node + TimeWindow node
  unitB = await insertUnit(pool, user.uuid, 2); // Aggregation node + a node storing nothing (LastValue)
  unitC = await insertUnit(pool, other.uuid, 1);
  S = Math.floor(Date.now() / DAY) * DAY + 2 * DAY + 30 * MINUTE;
  END = S + DAY;
});

after(async () => {
  await t?.close();
  await cryptoPay?.close();
});

/**
 * Writes per-cycle rows into unit_load_minute and each closed minute (the unit's sum in that
 * minute, also its peak candidate) into the hourly and daily rollups, as sampler.ts does.
 */
async function writeLoad(rows: MinuteRow[]): Promise<void> {
  const clickhouse = t.backend.app.clickhouse;
  await insertMinuteRows(clickhouse, rows);
  const closed = new Map<string, PeriodRow>();
  for (const row of rows) {
    const key = `${row.unit_uuid}/${row.minute}`;
    const seen = closed.get(key);
    if (seen) {
      seen.messages += row.messages;
      seen.peak_minute_messages = seen.messages;
    } else closed.set(key, { creator_uuid: row.creator_uuid, unit_uuid: row.unit_uuid, repo_uuid: row.repo_uuid, start: row.minute, messages: row.messages, peak_minute_messages: row.messages });
  }
  await insertRollupRows(clickhouse, [...closed.values()]);
}

const chTime = (ms: number): string => new Date(ms).toISOString().replace('T', ' ').replace('Z', '');

/** `count` DataPipe rows of a node evenly over [from, to) in one of the three storage tables. */
async function writeStored(table: 'n_last_entry' | 'window_entry' | 'aggregation_entry', node: string, count: number, from: number, to: number): Promise<void> {
  const values = Array.from({ length: count }, (_, i) => {
    const at = from + Math.floor(((to - from) * i) / count);
    if (table === 'n_last_entry') return { unit_node_uuid: node, state: String(i), state_type: 'Number', create_datetime: chTime(at), max_count: 100_000, size: 1 };
    if (table === 'window_entry') return { unit_node_uuid: node, state: String(i), state_type: 'Number', create_datetime: chTime(at), expiration_datetime: chTime(END + 30 * DAY).slice(0, 19), size: 1 };
    return { unit_node_uuid: node, state: i, aggregation_type: 'Avg', time_window_size: 60, create_datetime: chTime(at), start_window_datetime: chTime(at - MINUTE), end_window_datetime: chTime(at) };
  });
  await t.backend.app.clickhouse.insert({ table, values, format: 'JSONEachRow' });
}

const minuteOf = (ms: number): number => Math.floor(ms / 1000);

test('a user above the free tier gets an exact itemised statement: live over REST and issued by the cycle', async () => {
  const plan = await t.inject('PUT', '/billing/plan', { token: admin.token, body: { ...PLAN, period_anchor: new Date(S).toISOString() } });
  assert.equal(plan.statusCode, 200, plan.body);

  const rows: MinuteRow[] = [];
  const a = (minute: number, messages: number) => rows.push({ creator_uuid: user.uuid, unit_uuid: unitA.unit, repo_uuid: null, minute: minuteOf(minute), messages });
  // Unit A: 10 messages a minute in two sampler cycles (4 + 6) from 30 minutes before the period
  // to 3 hours into it: the hour 00:00-01:00 holds 30 minutes on each side of the start.
  for (let m = S - 60 * MINUTE; m < S + 180 * MINUTE; m += MINUTE) {
    a(m, 4);
    a(m, 6);
    if (m >= S) inside.a += 10;
  }
  // One busy minute (the peak), in a whole hour.
  a(S + 5 * 3_600_000 + 7 * MINUTE, 12_345);
  inside.a += 12_345;
  peakMinute.a = 12_345;
  // 7 a minute across the end: 45 minutes inside, 15 after (the hour 00:00-01:00 again split).
  for (let m = END - 45 * MINUTE; m < END + 15 * MINUTE; m += MINUTE) {
    a(m, 7);
    if (m < END) inside.a += 7;
  }
  // Unit B: 61 a minute for 20 hours.
  for (let m = S + 2 * 3_600_000; m < S + 22 * 3_600_000; m += MINUTE) {
    rows.push({ creator_uuid: user.uuid, unit_uuid: unitB.unit, repo_uuid: null, minute: minuteOf(m), messages: 61 });
    inside.b += 61;
  }
  peakMinute.b = 61;
  // Another user's unit in the same period: never on this user's statement.
  rows.push({ creator_uuid: other.uuid, unit_uuid: unitC.unit, repo_uuid: null, minute: minuteOf(S + 3_600_000), messages: 100 });
  inside.c = 100;
  await writeLoad(rows);

  // Stored DataPipe rows: inside the period, plus rows before its start and at its end (excluded).
  const [nRecords, timeWindow] = unitA.nodes as [string, string];
  const [aggregation] = unitB.nodes as [string, string];
  await writeStored('n_last_entry', nRecords, 3000, S, END);
  await writeStored('n_last_entry', nRecords, 100, S - 100 * MINUTE, S);
  await writeStored('n_last_entry', nRecords, 50, END, END + 50 * MINUTE);
  await writeStored('window_entry', timeWindow, 1440, S, END);
  await writeStored('aggregation_entry', aggregation, 2879, S, END - 1);
  await writeStored('aggregation_entry', aggregation, 1, END - 1, END); // the last millisecond counts
  await writeStored('aggregation_entry', unitC.nodes[0]!, 500, S, END); // the other user's
  storedInside.set(nRecords, 3000).set(timeWindow, 1440).set(aggregation, 2880);

  // The expected statement, from the inputs.
  const seconds = BigInt((END - S) / 1000);
  const messages = BigInt(inside.a + inside.b);
  const averageMps = ratio(messages, seconds);
  const billableMps = atLeastZero(averageMps - nano(PLAN.free_mps));
  const mpsCharge = times(billableMps, nano(PLAN.mps_price));
  const storedRows = [...storedInside.values()].reduce((sum, n) => sum + BigInt(n), 0n);
  const rowsPerTopic = 1440n * BigInt(PLAN.billing_period_days);
  const topics = ratio(storedRows, rowsPerTopic);
  const billableTopics = atLeastZero(topics - nano(PLAN.free_aggregation_topics));
  const aggregationCharge = times(billableTopics, nano(PLAN.aggregation_topic_price));
  expectedTotal = mpsCharge + aggregationCharge;
  // The inputs are what was meant (guards against a silent change of the fixture above).
  assert.deepEqual([inside.a, inside.b, Number(storedRows)], [1800 + 12_345 + 315, 73_200, 7320]);
  assert.ok(billableMps > 0n && billableTopics > 0n, 'the usage is above both free tiers');

  const units = [
    { unit_uuid: unitA.unit, repo_uuid: null, messages: inside.a, average_mps: dec(ratio(BigInt(inside.a), seconds)), peak_mps: peakMinute.a / 60 },
    { unit_uuid: unitB.unit, repo_uuid: null, messages: inside.b, average_mps: dec(ratio(BigInt(inside.b), seconds)), peak_mps: peakMinute.b / 60 },
  ].sort((x, y) => (x.unit_uuid < y.unit_uuid ? -1 : 1));
  const nodes = [
    { unit_node_uuid: nRecords, unit_uuid: unitA.unit, rows: 3000, topic_equivalents: dec(ratio(3000n, rowsPerTopic)) },
    { unit_node_uuid: timeWindow, unit_uuid: unitA.unit, rows: 1440, topic_equivalents: '1' },
    { unit_node_uuid: aggregation, unit_uuid: unitB.unit, rows: 2880, topic_equivalents: '2' },
  ].sort((x, y) => (x.unit_node_uuid < y.unit_node_uuid ? -1 : 1));
  const expected = {
    user_uuid: user.uuid,
    period_start: new Date(S).toISOString(),
    period_end: new Date(END).toISOString(),
    currency: 'USDT',
    units,
    aggregation_nodes: nodes,
    totals: {
      messages: Number(messages),
      period_seconds: Number(seconds),
      average_mps: dec(averageMps),
      free_mps: PLAN.free_mps,
      billable_mps: dec(billableMps),
      mps_price: PLAN.mps_price,
      mps_charge: dec(mpsCharge),
      stored_rows: Number(storedRows),
      aggregation_topics: dec(topics),
      free_aggregation_topics: PLAN.free_aggregation_topics,
      billable_aggregation_topics: dec(billableTopics),
      aggregation_topic_price: PLAN.aggregation_topic_price,
      aggregation_charge: dec(aggregationCharge),
      total: dec(expectedTotal),
    },
  };
  // Written out once, so the helpers above are checked too: 87660 / 86400 = 1.0145833333…
  assert.deepEqual(
    [expected.totals.average_mps, expected.totals.billable_mps, expected.totals.mps_charge, expected.totals.aggregation_topics, expected.totals.aggregation_charge, expected.totals.total],
    ['1.014583333', '0.514583333', '0.643229166', '5.083333333', '0.924999999', '1.568229165'],
  );

  // The usage comes through the load component's reader on app.loadPorts.
  const viaPorts = await t.backend.app.loadPorts.usage.userUsage(user.uuid, new Date(S), new Date(END));
  assert.deepEqual(viaPorts.map((u) => [u.unitUuid, u.messages]).sort(), [[unitA.unit, inside.a], [unitB.unit, inside.b]].sort());

  // The live statement of the period (any `at` inside it), for the user and for the admin.
  for (const at of [S, S + 12 * 3_600_000, END - 1]) {
    const live = await t.inject('GET', `/billing/statement?at=${new Date(at).toISOString()}`, { token: user.token });
    assert.equal(live.statusCode, 200, live.body);
    assert.deepEqual(live.json(), expected, `live statement at ${new Date(at).toISOString()}`);
  }
  const byAdmin = await t.inject('GET', `/billing/statement?at=${new Date(S).toISOString()}&user_uuid=${user.uuid}`, { token: admin.token });
  assert.deepEqual(byAdmin.json(), expected);

  // Partial hours: the period before holds exactly the 60 minutes of A before S (30 of them in
  // the hour that S splits) and the 100 rows stored before S; the one after, the 15 minutes and
  // 50 rows past END.
  const previous = (await t.inject('GET', `/billing/statement?at=${new Date(S - 1).toISOString()}`, { token: user.token })).json();
  assert.deepEqual(previous.units.map((u: { unit_uuid: string; messages: number }) => [u.unit_uuid, u.messages]), [[unitA.unit, 600]]);
  assert.equal(previous.totals.stored_rows, 100);
  assert.equal(previous.totals.total, '0', 'below the free tier');
  const next = (await t.inject('GET', `/billing/statement?at=${new Date(END).toISOString()}`, { token: user.token })).json();
  assert.deepEqual(next.units.map((u: { unit_uuid: string; messages: number }) => [u.unit_uuid, u.messages]), [[unitA.unit, 105]]);
  assert.equal(next.totals.stored_rows, 50);

  // The cycle after the period closed issues the same statement, once, and charges its total.
  const enforcer = t.backend.app.billing.enforcer;
  const cycleAt = new Date(END + 3_600_000);
  const cycle = await enforcer.runCycle(cycleAt);
  assert.deepEqual(cycle?.period, { start: new Date(S).toISOString(), end: new Date(END).toISOString() });
  assert.equal(cycle?.statements, 2, "the user's and the other owner's");
  assert.equal(cycle?.charged, 1, 'only the user above the free tier is charged');
  const issued = await t.inject('GET', '/billing/statements', { token: user.token });
  assert.deepEqual(issued.json(), [expected]);
  const otherIssued = (await t.inject('GET', '/billing/statements', { token: other.token })).json();
  assert.equal(otherIssued.length, 1);
  assert.deepEqual(otherIssued[0].units.map((u: { unit_uuid: string; messages: number }) => [u.unit_uuid, u.messages]), [[unitC.unit, 100]]);
  assert.equal(otherIssued[0].totals.stored_rows, 500);
  assert.equal(otherIssued[0].totals.total, '0');

  const again = await enforcer.runCycle(cycleAt);
  assert.equal(again?.statements, 0);
  assert.equal(again?.charged, 0, 'a cycle run twice charges once');
  const ledger = (await t.inject('GET', '/billing/ledger', { token: user.token })).json();
  assert.deepEqual(ledger.map((l: { kind: string; amount: string }) => [l.kind, l.amount]), [['charge', `-${dec(expectedTotal)}`]]);
  const balance = (await t.inject('GET', '/billing/balance', { token: user.token })).json();
  assert.equal(balance.balance, `-${dec(expectedTotal)}`);
  assert.equal((await t.inject('GET', '/billing/balance', { token: other.token })).json().balance, '0');
});

/** The load component's effective limit of the user's units, as the admin load views show it. */
async function loadLimits(): Promise<Array<{ mps: number | null; source: string }>> {
  const views = [await t.inject('GET', `/load/users/${user.uuid}`, { token: admin.token })];
  for (const unit of [unitA.unit, unitB.unit]) views.push(await t.inject('GET', `/load/units/${unit}`, { token: admin.token }));
  return views.map((v) => {
    assert.equal(v.statusCode, 200, v.body);
    const limit = v.json().limit as { mps: number | null; source: string };
    return { mps: limit.mps, source: limit.source };
  });
}

async function payCryptoPay(amount: string): Promise<string> {
  const order = await t.inject('POST', '/billing/orders', { token: user.token, body: { provider: 'crypto_pay', amount } });
  assert.equal(order.statusCode, 201, order.body);
  const webhook = cryptoPay.pay(Number(order.json().provider_invoice_id));
  const res = await t.inject('POST', '/billing/webhooks/crypto_pay', { headers: webhook.headers, body: webhook.body });
  assert.equal(res.statusCode, 200, res.body);
  return res.json().result as string;
}

test('an unpaid user is warned during the grace period, limited to the free tier after it, and paying lifts the limit at once', async () => {
  assert.ok(expectedTotal > 0n, 'the first test left the user in arrears');
  const enforcer = t.backend.app.billing.enforcer;
  const instance = { mps: INSTANCE_UNIT_MPS, source: 'instance' };
  const free = { mps: Number(PLAN.free_mps) / 2, source: 'billing' }; // two units share the free tier
  const userAlerts = (source: string) => alerts.filter((a) => a.recipient.kind === 'user' && a.recipient.userUuid === user.uuid && a.source === source);

  // The first cycle that saw the negative balance (the previous test's) put the user in arrears and warned.
  const arrearsAt = END + 3_600_000;
  const state = (await t.inject('GET', '/billing/balance', { token: user.token })).json();
  assert.equal(state.arrears_since, new Date(arrearsAt).toISOString());
  assert.equal(state.limited_since, null);
  const warnings = userAlerts('billing.grace');
  assert.equal(warnings.length, 1);
  assert.equal(warnings[0]!.level, 'warning');
  assert.match(warnings[0]!.text, new RegExp(`-${dec(expectedTotal).replace('.', '\\.')} USDT`));
  assert.match(warnings[0]!.text, new RegExp(new Date(arrearsAt + DAY).toISOString().slice(0, 16).replace('T', ' ')), 'names the end of the grace period');
  assert.deepEqual(await loadLimits(), [instance, instance, instance], 'not limited during the grace period');

  // Just before the grace period ends: nothing limited, no second warning the same day.
  const before = await enforcer.runCycle(new Date(arrearsAt + DAY - 1000));
  assert.deepEqual([before?.warned, before?.limited], [0, 0]);
  assert.deepEqual(await loadLimits(), [instance, instance, instance]);
  assert.equal(userAlerts('billing.limited').length, 0);

  // The grace period is over: the load component's limit of every unit is the free-tier share.
  const over = await enforcer.runCycle(new Date(arrearsAt + DAY));
  assert.equal(over?.limited, 1);
  assert.deepEqual(await loadLimits(), [free, free, free], 'the billing limit source reaches the load component');
  assert.deepEqual(await t.backend.app.load.limits.forUser(other.uuid), instance, "other users' limits are untouched");
  const limited = userAlerts('billing.limited');
  assert.equal(limited.length, 1);
  assert.equal(limited[0]!.level, 'error');
  // A later cycle keeps the limit (and says nothing more).
  const later = await enforcer.runCycle(new Date(arrearsAt + DAY + 3_600_000));
  assert.deepEqual([later?.limited, later?.restored], [0, 0]);
  assert.deepEqual(await loadLimits(), [free, free, free]);

  // A payment that leaves the balance negative lifts nothing.
  assert.equal(await payCryptoPay('1'), 'credited');
  assert.equal((await t.inject('GET', '/billing/balance', { token: user.token })).json().balance, dec(nano('1') - expectedTotal));
  assert.deepEqual(await loadLimits(), [free, free, free]);
  assert.equal(userAlerts('billing.restored').length, 0);

  // The payment that brings it to >= 0 lifts the limit at once (no cycle in between).
  assert.equal(await payCryptoPay('0.6'), 'credited');
  const paid = (await t.inject('GET', '/billing/balance', { token: user.token })).json();
  assert.equal(paid.balance, dec(nano('1.6') - expectedTotal));
  assert.deepEqual([paid.arrears_since, paid.limited_since, paid.unit_mps_limit], [null, null, null]);
  assert.deepEqual(await loadLimits(), [instance, instance, instance], 'the limit is lifted at once');
  assert.equal(userAlerts('billing.restored').length, 1);
  // And it stays lifted through the next cycle.
  const after = await enforcer.runCycle(new Date(arrearsAt + 2 * DAY));
  assert.equal(after?.limited, 0);
  assert.deepEqual(await loadLimits(), [instance, instance, instance]);
  const actions = (await t.inject('GET', '/billing/audit', { token: admin.token })).json().map((e: { action: string }) => e.action);
  for (const action of ['statement.issued', 'enforcement.arrears', 'enforcement.limited', 'enforcement.restored']) assert.ok(actions.includes(action), `${action} audited`);
});
