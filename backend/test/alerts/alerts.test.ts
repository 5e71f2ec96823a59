/**
 * The backend half of alerts against real PostgreSQL, the embedded EMQX-compatible broker (rules
 * reconciled through its management API) and the Telegram Bot API stand-in driven by grammY's
 * client: the webhook's authentication and input checks, settings over REST and the unit's rule,
 * the outbox and the throttled sender (merging, 429 retry_after, refusals, two senders, restart),
 * mute windows, app.alertSink, history.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { userToken } from '@pepeunit/common';
import { ALERT_RULE_PREFIX } from '@pepeunit/emqx-rules';
import type { RunningBackend } from '@pepeunit/backend';
import { startTestBackend, type TestBackend } from '../../../tests/src/backend.ts';
import { testLogger, testServices } from '../../../tests/src/harness.ts';
import { startTelegramBotApi, type TelegramBotApi } from '../../../tests/src/telegram-bot-api.ts';
import { waitFor } from '../../../tests/src/wait.ts';
import { AlertSender, DUE_CHATS_SQL } from '../../src/alerts/sender.ts';
import { countAlertsInMessage } from '../../src/alerts/format.ts';
import { createTelegramApi } from '../../src/telegram/api.ts';

await testServices();

const api = '/pepeunit/api/v1';
const INTERVAL = 1;
let tg: TelegramBotApi;
let backend: RunningBackend;
let t: TestBackend;
let chatSeq = 1000;

before(async () => {
  tg = await startTelegramBotApi();
  t = await startTestBackend({
    label: 'alerts',
    emqx: true,
    env: {
      PU_FF_TELEGRAM_BOT_ENABLE: 'True',
      PU_TELEGRAM_TOKEN: tg.token,
      PU_TELEGRAM_API_ROOT: tg.apiRoot,
      PU_TELEGRAM_BOT_MODE: 'pooling',
      PU_TELEGRAM_ALERT_INTERVAL: String(INTERVAL),
      PU_ALERT_WEBHOOK_SECRET: 'webhook-secret-0123456789',
      PU_ALERT_DISCONNECT_STORM: '3',
    },
  });
  ({ backend } = t);
});

after(async () => {
  await t?.close();
  await tg?.close();
});

async function createUser(opts: { chat?: number | null; role?: 'User' | 'Admin' } = {}): Promise<{ uuid: string; token: string; chat: number | null }> {
  const uuid = randomUUID();
  const chat = opts.chat === undefined ? chatSeq++ : opts.chat;
  await backend.deps.pg.query(
    `INSERT INTO users (uuid, role, status, login, hashed_password, cipher_dynamic_salt, create_datetime, telegram_chat_id)
     VALUES ($1, $2, 'Verified', $3, 'h', 's', now(), $4)`,
    [uuid, opts.role ?? 'User', `u_${uuid.slice(0, 8)}`, chat === null ? null : String(chat)],
  );
  return { uuid, token: userToken(uuid, backend.deps.config.secretKey, 3600), chat };
}

async function createUnit(creator: string): Promise<string> {
  const uuid = randomUUID();
  await backend.deps.pg.query(
    `INSERT INTO units (uuid, visibility_level, name, create_datetime, last_update_datetime, is_auto_update_from_repo_unit, creator_uuid)
     VALUES ($1, 'Private', $2, now(), now(), true, $3)`,
    [uuid, `unit_${uuid.slice(0, 8)}`, creator],
  );
  return uuid;
}

async function call(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {}) {
  const res = await backend.app.inject({
    method,
    url: api + url,
    headers: { ...(opts.token ? { 'x-auth-token': opts.token } : {}), ...opts.headers },
    ...(opts.body !== undefined ? { payload: opts.body as object } : {}),
  });
  return { status: res.statusCode, body: res.body ? res.json() : null };
}

const bearer = { authorization: 'Bearer webhook-secret-0123456789' };

function unitLog(unit: string, level: string, text: string) {
  return { kind: 'unit_log', level, text, unit_uuid: unit, clientid: unit, timestamp: Date.now() };
}

async function eventCount(where = 'true', values: unknown[] = []): Promise<number> {
  const { rows } = await backend.deps.pg.query(`SELECT count(*)::int AS n FROM alert_events WHERE ${where}`, values);
  return rows[0].n;
}

async function alertRuleIds(): Promise<string[]> {
  return (await backend.emqx.client!.listAllRules({ like_id: ALERT_RULE_PREFIX })).map((r) => r.id).filter((id) => id.startsWith(ALERT_RULE_PREFIX)).sort();
}

test('the webhook refuses missing or wrong secrets (401), unknown kinds (404) and bad bodies (422), storing nothing', async () => {
  const owner = await createUser();
  const unit = await createUnit(owner.uuid);
  await call('PATCH', `/alerts/settings/${unit}`, { token: owner.token, body: { min_level: 'Warning' } });
  const before = await eventCount();
  const body = unitLog(unit, 'Error', 'boom');
  assert.equal((await call('POST', '/emqx/alerts/unit_log', { body })).status, 401);
  assert.equal((await call('POST', '/emqx/alerts/unit_log', { body, headers: { authorization: 'Bearer wrong-secret-0123456789' } })).status, 401);
  assert.equal((await call('POST', '/emqx/alerts/unit_log', { body, headers: { authorization: 'webhook-secret-0123456789' } })).status, 401);
  // Same length as the right header, one character off (the constant-time comparison, not the length check).
  assert.equal((await call('POST', '/emqx/alerts/unit_log', { body, headers: { authorization: 'Bearer webhook-secret-0123456788' } })).status, 401);
  assert.equal((await call('POST', '/emqx/alerts/unit_log', { body, headers: { authorization: 'Bearer webhook-secret-0123456789x' } })).status, 401);
  assert.equal((await call('POST', '/emqx/alerts/nope', { body, headers: bearer })).status, 404);
  for (const bad of [{ ...body, level: 'Loud' }, { ...body, level: null }, { ...body, unit_uuid: 'x' }, { ...body, kind: 'disconnect' }, [body]]) {
    const res = await call('POST', '/emqx/alerts/unit_log', { body: bad, headers: bearer });
    assert.equal(res.status, 422, JSON.stringify(bad));
  }
  assert.equal(await eventCount(), before, 'nothing stored');
  assert.ok(backend.app.alerts.webhookStats.unauthorized >= 5);
});

test('alert settings over REST: default off, creator only, the unit rule follows the level and the unit', async () => {
  const owner = await createUser();
  const other = await createUser();
  const unit = await createUnit(owner.uuid);
  const initial = await call('GET', `/alerts/settings/${unit}`, { token: owner.token });
  assert.equal(initial.status, 200);
  assert.equal(initial.body.min_level, null, 'default off');
  assert.equal((await call('GET', `/alerts/settings/${unit}`, { token: other.token })).status, 403);
  assert.equal((await call('PATCH', `/alerts/settings/${unit}`, { token: other.token, body: { min_level: 'Error' } })).status, 403);
  assert.equal((await call('PATCH', `/alerts/settings/${unit}`, { token: owner.token, body: { min_level: 'Loud' } })).status, 422);
  assert.equal((await call('GET', `/alerts/settings/${randomUUID()}`, { token: owner.token })).status, 404);
  assert.ok(!(await alertRuleIds()).some((id) => id.endsWith(unit)), 'no rule while off');

  const set = await call('PATCH', `/alerts/settings/${unit}`, { token: owner.token, body: { min_level: 'Error' } });
  assert.equal(set.status, 200);
  assert.equal(set.body.min_level, 'Error');
  assert.ok((await alertRuleIds()).includes(`alert-log-error-${unit}`), 'rule created before the answer');
  const rule = await backend.emqx.client!.getRule(`alert-log-error-${unit}`);
  assert.deepEqual(rule?.actions, ['http:pu-alerts']);

  await call('PATCH', `/alerts/settings/${unit}`, { token: owner.token, body: { min_level: 'Warning' } });
  const ids = (await alertRuleIds()).filter((id) => id.endsWith(unit));
  assert.deepEqual(ids, [`alert-log-warning-${unit}`], 'a level change replaces the rule');

  await call('PATCH', `/alerts/settings/${unit}`, { token: owner.token, body: { min_level: null } });
  assert.deepEqual((await alertRuleIds()).filter((id) => id.endsWith(unit)), []);

  await call('PATCH', `/alerts/settings/${unit}`, { token: owner.token, body: { min_level: 'Critical' } });
  assert.deepEqual((await alertRuleIds()).filter((id) => id.endsWith(unit)), [`alert-log-critical-${unit}`]);
  const deleted = await call('DELETE', `/units/${unit}`, { token: owner.token });
  assert.equal(deleted.status, 204, JSON.stringify(deleted.body));
  assert.deepEqual((await alertRuleIds()).filter((id) => id.endsWith(unit)), [], 'deleting the unit deletes its rule');
  // The instance rules exist too (reconciled at start).
  await waitFor(async () => (await alertRuleIds()).includes('alert-authz-deny') && (await alertRuleIds()).includes('alert-disconnect'), { what: 'instance alert rules' });
  // The connector and action the rules send to.
  const action = await backend.emqx.client!.request<{ connector: string }>('GET', '/actions/http:pu-alerts');
  assert.equal(action.body.connector, 'pu-backend');
});

test('one alert at or above the level is one Telegram message to the creator; lower levels are dropped', async () => {
  const owner = await createUser();
  const unit = await createUnit(owner.uuid);
  await call('PATCH', `/alerts/settings/${unit}`, { token: owner.token, body: { min_level: 'Error' } });
  const below = await call('POST', '/emqx/alerts/unit_log', { body: unitLog(unit, 'warning', 'just a warning'), headers: bearer });
  assert.equal(below.status, 204, 'a stale rule\'s output is accepted and dropped');
  const res = await call('POST', '/emqx/alerts/unit_log', { body: unitLog(unit, 'ERROR', 'sensor <b> & broken'), headers: bearer });
  assert.equal(res.status, 204);
  await backend.app.alerts.intake.flush();
  const [message] = await waitFor(() => tg.messagesTo(owner.chat!).length === 1 && tg.messagesTo(owner.chat!), { what: 'the alert message' });
  assert.equal(message!.parseMode, 'HTML');
  assert.match(message!.text, /Unit unit_[0-9a-f]{8}<\/b> · Error: sensor &lt;b&gt; &amp; broken$/m);
  assert.equal(countAlertsInMessage(message!.text), 1);
  // The message row commits right after Telegram answered.
  await waitFor(async () => (await eventCount("recipient_uuid = $1 AND state = 'sent'", [owner.uuid])) === 1, { what: 'the alert marked sent' });
  assert.equal(await eventCount('recipient_uuid = $1', [owner.uuid]), 1, 'the warning was not stored');
  const history = await call('GET', `/alerts/history?unit_uuid=${unit}`, { token: owner.token });
  assert.equal(history.body.count, 1);
  assert.equal(history.body.alerts[0].state, 'sent');
  assert.equal(history.body.alerts[0].text, 'sensor <b> & broken');
  const stranger = await createUser();
  assert.equal((await call('GET', `/alerts/history?unit_uuid=${unit}`, { token: stranger.token })).body.count, 0, 'history is per recipient');
});

test('a burst is merged: messages no more often than the interval, counts add up', async () => {
  const owner = await createUser();
  const units = [await createUnit(owner.uuid), await createUnit(owner.uuid)];
  for (const unit of units) await call('PATCH', `/alerts/settings/${unit}`, { token: owner.token, body: { min_level: 'Warning' } });
  const total = 300;
  for (let i = 0; i < total; i++) {
    const unit = units[i % 2]!;
    const res = await call('POST', '/emqx/alerts/unit_log', { body: unitLog(unit, i % 3 === 0 ? 'Critical' : 'Error', `e${i}`), headers: bearer });
    assert.equal(res.status, 204);
  }
  const messages = await waitFor(() => {
    const list = tg.messagesTo(owner.chat!);
    return list.reduce((sum, m) => sum + countAlertsInMessage(m.text), 0) >= total && list;
  }, { what: 'all alerts delivered' });
  assert.equal(messages.reduce((sum, m) => sum + countAlertsInMessage(m.text), 0), total);
  for (let i = 1; i < messages.length; i++) assert.ok(messages[i]!.at - messages[i - 1]!.at >= INTERVAL * 1000 - 5, `message ${i} came ${messages[i]!.at - messages[i - 1]!.at} ms after the previous one`);
  // Grouped by unit and level, with "+N more since HH:MM".
  assert.match(messages.at(-1)!.text, /\(\+\d+ more since \d\d:\d\d UTC\)/);
  await waitFor(async () => (await eventCount("recipient_uuid = $1 AND state = 'sent'", [owner.uuid])) === total, { what: 'every alert marked sent' });
});

test('429 with retry_after: the same alerts go again after the wait, once', async () => {
  const owner = await createUser();
  const unit = await createUnit(owner.uuid);
  await call('PATCH', `/alerts/settings/${unit}`, { token: owner.token, body: { min_level: 'Error' } });
  tg.failNext('sendMessage', { error_code: 429, description: 'Too Many Requests: retry after 1', retry_after: 1 });
  const rateLimitedBefore = backend.app.alerts.sender!.stats.rateLimited;
  await call('POST', '/emqx/alerts/unit_log', { body: unitLog(unit, 'Error', 'first'), headers: bearer });
  await waitFor(() => backend.app.alerts.sender!.stats.rateLimited > rateLimitedBefore, { what: 'the 429' });
  const refusedAt = tg.calls.filter((c) => c.method === 'sendMessage' && c.status === 429).at(-1)!.at;
  const [message] = await waitFor(() => tg.messagesTo(owner.chat!).length > 0 && tg.messagesTo(owner.chat!), { what: 'the retried message' });
  assert.ok(message!.at - refusedAt >= 1000, 'retry_after honoured');
  assert.equal(countAlertsInMessage(message!.text), 1);
  assert.equal(tg.messagesTo(owner.chat!).length, 1);
});

test('a chat that blocked the bot: the refused alerts are marked failed, later ones are not sent (no_chat) until it unblocks the bot', async () => {
  const owner = await createUser();
  const unit = await createUnit(owner.uuid);
  await call('PATCH', `/alerts/settings/${unit}`, { token: owner.token, body: { min_level: 'Error' } });
  tg.failNext('sendMessage', { error_code: 403, description: 'Forbidden: bot was blocked by the user' });
  await call('POST', '/emqx/alerts/unit_log', { body: unitLog(unit, 'Error', 'x'), headers: bearer });
  await waitFor(async () => (await eventCount("recipient_uuid = $1 AND state = 'failed'", [owner.uuid])) === 1, { what: 'the failed alert' });
  const { rows } = await backend.deps.pg.query("SELECT m.error FROM alert_messages m JOIN alert_events e ON e.message_id = m.id WHERE e.recipient_uuid = $1", [owner.uuid]);
  assert.match(rows[0].error, /403: Forbidden: bot was blocked/);

  // The chat is remembered as blocking the bot: the next alerts are stored as no_chat and
  // Telegram is not asked again.
  const blockedAt = async () => (await backend.deps.pg.query('SELECT blocked_at FROM alert_chats WHERE chat_id = $1', [owner.chat])).rows[0]?.blocked_at ?? null;
  assert.notEqual(await blockedAt(), null, 'the chat is marked blocked');
  const sendsBefore = tg.calls.filter((c) => c.method === 'sendMessage' && Number(c.params.chat_id) === owner.chat).length;
  await call('POST', '/emqx/alerts/unit_log', { body: unitLog(unit, 'Error', 'while blocked'), headers: bearer });
  await waitFor(async () => (await eventCount("recipient_uuid = $1 AND state = 'no_chat'", [owner.uuid])) === 1, { what: 'the alert stored as no_chat' });
  // A writer racing the block (an alert stored pending just before it was known) is not sent either.
  await backend.deps.pg.query(
    `INSERT INTO alert_events (recipient_uuid, chat_id, source, level, unit_uuid, group_key, text, state) VALUES ($1, $2, 'unit.log', 'Error', $3, 'race', 'raced', 'pending')`,
    [owner.uuid, owner.chat, unit],
  );
  await waitFor(async () => (await eventCount("recipient_uuid = $1 AND state = 'pending'", [owner.uuid])) === 0, { what: 'the raced alert taken' });
  assert.equal(await eventCount("recipient_uuid = $1 AND state = 'no_chat'", [owner.uuid]), 2);
  assert.equal(tg.calls.filter((c) => c.method === 'sendMessage' && Number(c.params.chat_id) === owner.chat).length, sendsBefore, 'no send to a blocked chat');

  // The user unblocks the bot (my_chat_member "member"): alerts flow again.
  await tg.setBlocked(owner.chat!, false);
  await waitFor(async () => (await blockedAt()) === null, { what: 'the block lifted' });
  await call('POST', '/emqx/alerts/unit_log', { body: unitLog(unit, 'Error', 'after unblock'), headers: bearer });
  await waitFor(() => tg.messagesTo(owner.chat!).some((m) => m.text.includes('after unblock')), { what: 'the alert sent after the unblock' });

  // Blocking through my_chat_member "kicked" (before any refused send) stops alerts as well.
  await tg.setBlocked(owner.chat!, true);
  await waitFor(async () => (await blockedAt()) !== null, { what: 'the block from my_chat_member' });
  const noChatBefore = await eventCount("recipient_uuid = $1 AND state = 'no_chat'", [owner.uuid]);
  await call('POST', '/emqx/alerts/unit_log', { body: unitLog(unit, 'Error', 'blocked again'), headers: bearer });
  await waitFor(async () => (await eventCount("recipient_uuid = $1 AND state = 'no_chat'", [owner.uuid])) === noChatBefore + 1, { what: 'stored as no_chat' });
  // Writing to the bot unblocks it too (Telegram lifts the block when the user writes).
  await tg.userMessage(owner.chat!, '/help');
  await waitFor(async () => (await blockedAt()) === null, { what: 'the block lifted by a message' });
});

test('mute windows and users without a chat: stored, not sent', async () => {
  const owner = await createUser();
  const unit = await createUnit(owner.uuid);
  await call('PATCH', `/alerts/settings/${unit}`, { token: owner.token, body: { min_level: 'Error' } });
  const bad = await call('POST', '/alerts/mute_windows', { token: owner.token, body: { unit_uuid: unit, ends_at: new Date(Date.now() - 1000).toISOString() } });
  assert.equal(bad.status, 422);
  const mute = await call('POST', '/alerts/mute_windows', { token: owner.token, body: { unit_uuid: unit, ends_at: new Date(Date.now() + 3600_000).toISOString() } });
  assert.equal(mute.status, 201);
  await call('POST', '/emqx/alerts/unit_log', { body: unitLog(unit, 'Error', 'muted one'), headers: bearer });
  await backend.app.alerts.intake.flush();
  assert.equal(await eventCount("recipient_uuid = $1 AND state = 'muted'", [owner.uuid]), 1);
  assert.equal((await call('GET', '/alerts/mute_windows', { token: owner.token })).body.length, 1);
  assert.equal((await call('DELETE', `/alerts/mute_windows/${mute.body.uuid}`, { token: owner.token })).status, 204);

  const unbound = await createUser({ chat: null });
  const unit2 = await createUnit(unbound.uuid);
  await call('PATCH', `/alerts/settings/${unit2}`, { token: unbound.token, body: { min_level: 'Error' } });
  await call('POST', '/emqx/alerts/unit_log', { body: unitLog(unit2, 'Error', 'nobody listens'), headers: bearer });
  await backend.app.alerts.intake.flush();
  assert.equal(await eventCount("recipient_uuid = $1 AND state = 'no_chat'", [unbound.uuid]), 1);
});

test('app.alertSink and broker events reach the admin through the same throttled path', async () => {
  const admin = await createUser({ role: 'Admin' });
  await backend.app.alertSink.raise({ recipient: { kind: 'admin' }, source: 'load.cutoff', level: 'critical', text: 'unit cut off' });
  await waitFor(() => tg.messagesTo(admin.chat!).some((m) => /load\.cutoff<\/b> · Critical: unit cut off/.test(m.text)), { what: 'the sink alert' });
  // Disconnect storm: PU_ALERT_DISCONNECT_STORM = 3 within a minute gives one alert.
  for (let i = 0; i < 5; i++) {
    const res = await call('POST', '/emqx/alerts/disconnect', { body: { kind: 'disconnect', clientid: `c${i}`, username: 'undefined', reason: 'keepalive_timeout', disconnected_at: Date.now() }, headers: bearer });
    assert.equal(res.status, 204);
  }
  await waitFor(() => tg.messagesTo(admin.chat!).some((m) => /Disconnect storm: 3 abnormal disconnects/.test(m.text)), { what: 'the storm alert' });
  // Denials: one alert per client per minute.
  for (let i = 0; i < 3; i++) {
    await call('POST', '/emqx/alerts/authz_deny', { body: { kind: 'authz_deny', clientid: 'intruder', username: null, peerhost: '10.0.0.9', topic: 'x/y', action: 'publish', authz_source: 'http', timestamp: Date.now() }, headers: bearer });
  }
  await backend.app.alerts.intake.flush();
  assert.equal(await eventCount("recipient_uuid = $1 AND source = 'broker.authz_deny'", [admin.uuid]), 1);
});

test('two senders on one database and a restart: every alert exactly once', async () => {
  const owner = await createUser();
  const unit = await createUnit(owner.uuid);
  await call('PATCH', `/alerts/settings/${unit}`, { token: owner.token, body: { min_level: 'Error' } });
  // Stop the app's sender so only the two below compete.
  await backend.app.alerts.sender!.stop();
  try {
    const total = 400;
    await backend.app.alerts.intake.submit(Array.from({ length: total }, (_, i) => ({ recipient: { kind: 'unitCreator' as const }, source: 'unit.log', level: 'Error' as const, unitUuid: unit, text: `r${i}` })));
    const apiClient = createTelegramApi(backend.deps.config);
    const transport = { sendMessage: async (chat: number, html: string) => (await apiClient.sendMessage(chat, html, { parse_mode: 'HTML' })).message_id };
    // A first sender whose transport dies mid-way (a crash before the commit): its alerts stay pending.
    const crashing = new AlertSender({ pg: backend.deps.pg, transport: { sendMessage: async () => { throw new Error('process died'); } }, logger: testLogger, domain: 'd', intervalSeconds: INTERVAL, globalRate: 25 });
    assert.equal(await crashing.sendChat(owner.chat!), false);
    assert.equal(await eventCount("recipient_uuid = $1 AND state = 'pending'", [owner.uuid]), total);
    await backend.deps.pg.query('UPDATE alert_chats SET next_send_at = now() WHERE chat_id = $1', [owner.chat]);
    const a = new AlertSender({ pg: backend.deps.pg, transport, logger: testLogger, domain: 'd', intervalSeconds: INTERVAL, globalRate: 25, pollMs: 20 });
    const b = new AlertSender({ pg: backend.deps.pg, transport, logger: testLogger, domain: 'd', intervalSeconds: INTERVAL, globalRate: 25, pollMs: 20 });
    // More alerts arrive while both run.
    a.start();
    b.start();
    await backend.app.alerts.intake.submit(Array.from({ length: 100 }, (_, i) => ({ recipient: { kind: 'unitCreator' as const }, source: 'unit.log', level: 'Critical' as const, unitUuid: unit, text: `late${i}` })));
    await waitFor(async () => (await eventCount("recipient_uuid = $1 AND state = 'pending'", [owner.uuid])) === 0, { what: 'all sent' });
    await a.stop();
    await b.stop();
    const messages = tg.messagesTo(owner.chat!);
    assert.equal(messages.reduce((sum, m) => sum + countAlertsInMessage(m.text), 0), total + 100, 'no alert lost or sent twice');
    const { rows } = await backend.deps.pg.query('SELECT count(DISTINCT message_id)::int AS messages, count(*)::int AS alerts FROM alert_events WHERE recipient_uuid = $1', [owner.uuid]);
    assert.equal(rows[0].alerts, total + 100);
    assert.equal(rows[0].messages, messages.length);
  } finally {
    backend.app.alerts.sender!.start();
  }
});

test('a full intake buffer answers 503 so EMQX retries; nothing accepted is dropped', async () => {
  const owner = await createUser();
  const unit = await createUnit(owner.uuid);
  await call('PATCH', `/alerts/settings/${unit}`, { token: owner.token, body: { min_level: 'Error' } });
  const intake = backend.app.alerts.intake;
  const max = backend.deps.config.alerts.queueMax;
  // Fill the buffer up to its bound (one submission; its write runs in the background).
  const filling = intake.submit(Array.from({ length: max }, (_, i) => ({ recipient: { kind: 'unitCreator' as const }, source: 'unit.log', level: 'Error' as const, unitUuid: unit, text: `fill${i}` })));
  const refused = await call('POST', '/emqx/alerts/unit_log', { body: unitLog(unit, 'Error', 'one too many'), headers: bearer });
  assert.equal(refused.status, 503);
  assert.ok(backend.app.alerts.webhookStats.retryAsked >= 1);
  await filling;
  const accepted = await call('POST', '/emqx/alerts/unit_log', { body: unitLog(unit, 'Error', 'after'), headers: bearer });
  assert.equal(accepted.status, 204);
  await intake.flush();
  assert.equal(await eventCount('unit_uuid = $1', [unit]), max + 1);
  assert.equal(intake.stats.lost, 0);
});

test('the sender finds every chat with pending alerts that is due (skip scan over the pending index), and only those', async () => {
  const owner = await createUser();
  const client = await backend.deps.pg.connect();
  try {
    // Inside a transaction that is rolled back: the running sender never sees these rows.
    await client.query('BEGIN');
    const chats = { due: 990_001, waiting: 990_002, unknown: 990_003, sentOnly: 990_004, dueMany: -990_005 };
    const insert = (chat: number, state: string, n: number) =>
      client.query(
        `INSERT INTO alert_events (recipient_uuid, chat_id, source, level, group_key, text, state)
         SELECT $1, $2, 'unit.log', 'Error', 'k', 'x', $3 FROM generate_series(1, $4)`,
        [owner.uuid, chat, state, n],
      );
    await insert(chats.due, 'pending', 3);
    await insert(chats.waiting, 'pending', 2);
    await insert(chats.unknown, 'pending', 1);
    await insert(chats.sentOnly, 'sent', 4);
    await insert(chats.dueMany, 'pending', 500);
    await client.query(`INSERT INTO alert_chats (chat_id, next_send_at) VALUES ($1, now() - interval '1 s'), ($2, now() + interval '1 h'), ($3, now() + interval '1 h'), ($4, '-infinity')
                        ON CONFLICT (chat_id) DO UPDATE SET next_send_at = EXCLUDED.next_send_at`, [chats.due, chats.waiting, chats.sentOnly, chats.dueMany]);
    const { rows } = await client.query<{ chat_id: string }>(DUE_CHATS_SQL);
    const found = new Set(rows.map((r) => Number(r.chat_id)));
    for (const chat of [chats.due, chats.unknown, chats.dueMany]) assert.ok(found.has(chat), `chat ${chat} is due`);
    for (const chat of [chats.waiting, chats.sentOnly]) assert.ok(!found.has(chat), `chat ${chat} is not due`);
    assert.equal(rows.length, found.size, 'each chat once');
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
});
