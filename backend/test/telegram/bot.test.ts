/**
 * A conversation with the real grammY bot in long-polling mode against the Bot API stand-in
 * (getUpdates, sendMessage, editMessageText, answerCallbackQuery, sendDocument): account binding
 * through the verification link, `/info`, `/unit` list → detail → a command that reaches the unit
 * over the embedded broker, env and archive downloads, the alert level, pagination, toggles,
 * search, `/repo`, `/registry`, and a composer added from outside.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Composer } from 'grammy';
import { startTelegramBotApi, type TelegramBotApi } from '../../../tests/src/telegram-bot-api.ts';
import { waitFor } from '../../../tests/src/wait.ts';
import { DOMAIN, startUnitsEnv, type UnitsTestEnv } from '../firmware/unit-fixture.ts';
import type { BotContext } from '../../src/telegram/bot.ts';

const CHAT = 777001;
const STRANGER = 777002;
let tg: TelegramBotApi;
let env: UnitsTestEnv;
let repoUuid: string;

before(async () => {
  tg = await startTelegramBotApi();
  env = await startUnitsEnv('tgbot', {
    PU_FF_TELEGRAM_BOT_ENABLE: 'True',
    PU_TELEGRAM_TOKEN: tg.token,
    PU_TELEGRAM_API_ROOT: tg.apiRoot,
    PU_TELEGRAM_BOT_MODE: 'pooling',
    PU_TELEGRAM_BOT_LINK: 'https://t.me/pepeunit_test_bot',
    PU_TELEGRAM_ITEMS_PER_PAGE: '3',
  });
  ({ repoUuid } = await env.registerRepo({ creator: env.owner, name: 'fan_repo' }));
});

after(async () => {
  await env?.close();
  await tg?.close();
});

const last = (chat: number) => tg.messagesTo(chat).at(-1)!;

test('binding: the verification link, /start <code> once, the chat is then the account', async () => {
  const off = await env.call('GET', '/users/generate_verification_link/');
  assert.equal(off.status, 403, 'a user token is required');
  const res = await env.call('GET', '/users/generate_verification_link/', { token: env.owner.token });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const match = /^https:\/\/t\.me\/pepeunit_test_bot\?start=([A-Za-z0-9_-]{22})$/.exec(res.body);
  assert.ok(match, `${res.headers["content-type"]} ${res.raw.toString()}`);
  const code = match[1]!;

  await tg.userMessage(STRANGER, '/info');
  assert.equal(last(STRANGER).text, '403: 1: No Access: User not found');
  await tg.userMessage(CHAT, `/start ${code.slice(0, -1)}`);
  assert.match(last(CHAT).text, /^422: 2: Validation Error: Verification code is invalid or expired$/);
  await tg.userMessage(CHAT, `/start ${code}`);
  assert.equal(last(CHAT).text, 'You have been successfully verified');
  const { rows } = await env.backend.deps.pg.query('SELECT status, telegram_chat_id FROM users WHERE uuid = $1', [env.owner.uuid]);
  assert.deepEqual(rows[0], { status: 'Verified', telegram_chat_id: String(CHAT) });
  // Single use: the same code from another chat does nothing.
  await tg.userMessage(STRANGER, `/start ${code}`);
  assert.match(last(STRANGER).text, /invalid or expired/);
  assert.equal((await env.backend.deps.pg.query('SELECT count(*)::int AS n FROM users WHERE telegram_chat_id = $1', [String(STRANGER)])).rows[0].n, 0);
  // The bound chat cannot be bound to a second account.
  const other = await env.call('GET', '/users/generate_verification_link/', { token: env.other.token });
  await tg.userMessage(CHAT, `/start ${String(other.body).split('start=')[1]}`);
  assert.equal(last(CHAT).text, `Your account is already linked to an account on instance ${DOMAIN}`);
});

test('/info and /help', async () => {
  await tg.userMessage(CHAT, '/info');
  assert.match(last(CHAT).text, /^<b>Instance Stats<\/b>\n<pre>Users +3\n/);
  await tg.userMessage(CHAT, '/help');
  assert.match(last(CHAT).text, /\/unit +Units/);
  assert.ok(JSON.stringify(last(CHAT).replyMarkup).includes('Documentation'));
});

test('/unit list -> detail -> command to the unit; env, archive and alert level for the creator', async () => {
  const created = await env.call('POST', '/units', { token: env.owner.token, body: { repo_uuid: repoUuid, visibility_level: 'Private', name: 'fan_unit', is_auto_update_from_repo_unit: true } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const unit = created.body.uuid as string;
  await tg.userMessage(CHAT, '/unit');
  const list = last(CHAT);
  assert.match(list.text, /^<b>Units<\/b> · 1/);
  const buttons = JSON.stringify(list.replyMarkup);
  assert.ok(buttons.includes(`Unit_uuid_${unit}_0`), buttons);

  await tg.pressButton(CHAT, list.messageId, `Unit_uuid_${unit}_0`);
  const detail = tg.messagesTo(CHAT).find((m) => m.messageId === list.messageId)!;
  assert.match(detail.text, /^<b>Unit<\/b>\n<pre>Name +fan_unit\n/);
  assert.match(detail.text, /Alerts +off/);
  const detailButtons = JSON.stringify(detail.replyMarkup);
  for (const command of ['Update', 'SchemaUpdate', 'EnvUpdate', 'LogSync']) assert.ok(detailButtons.includes(`Unit_decres_${command}_${unit}`), `${command} button`);

  const sub = await env.subscribe(`${DOMAIN}/input_base_topic/${unit}/#`);
  await tg.pressButton(CHAT, list.messageId, `Unit_decres_Update_${unit}`);
  await waitFor(() => sub.messages.length > 0, { what: 'the command on MQTT' });
  assert.equal(sub.messages[0]!.topic, `${DOMAIN}/input_base_topic/${unit}/update/pepeunit`);
  assert.equal(JSON.parse(sub.messages[0]!.payload).COMMAND, 'Update');
  assert.equal(tg.calls.filter((c) => c.method === 'answerCallbackQuery').at(-1)!.params.text, 'Command Update sent');
  await sub.close();

  await tg.pressButton(CHAT, list.messageId, `Unit_env_${unit}`);
  assert.match(last(CHAT).text, /^<pre>\{\n[^]*"PU_DOMAIN": "test\.pepeunit\.local",\n/);
  await tg.pressButton(CHAT, list.messageId, `Unit_arch_zip_${unit}`);
  const doc = tg.documents.at(-1)!;
  assert.ok(doc, JSON.stringify(tg.calls.slice(-3).map((c) => [c.method, c.status, c.params])) + last(CHAT).text);
  assert.equal(doc.fileName, `${unit}.zip`);
  assert.equal(doc.bytes.subarray(0, 2).toString('latin1'), 'PK');

  await tg.pressButton(CHAT, list.messageId, `Unit_alert_Error_${unit}`);
  const settings = await env.call('GET', `/alerts/settings/${unit}`, { token: env.owner.token });
  assert.equal(settings.body.min_level, 'Error');
  assert.match(tg.messagesTo(CHAT).find((m) => m.messageId === list.messageId)!.text, /Alerts +Error and above/);

  // Another user's unit detail has no creator buttons, and their own private unit is invisible.
  await tg.pressButton(CHAT, list.messageId, 'Unit_back');
  assert.match(tg.messagesTo(CHAT).find((m) => m.messageId === list.messageId)!.text, /^<b>Units<\/b>/);
});

test('pagination, toggles and search over several pages; /repo and /registry', async () => {
  for (let i = 0; i < 7; i++) {
    const res = await env.call('POST', '/units', { token: env.owner.token, body: { repo_uuid: repoUuid, visibility_level: i % 2 ? 'Public' : 'Private', name: `page_unit_${i}`, is_auto_update_from_repo_unit: true } });
    assert.equal(res.status, 201);
  }
  await tg.userMessage(CHAT, '/unit');
  const list = last(CHAT);
  assert.match(list.text, /· 8$/);
  assert.ok(JSON.stringify(list.replyMarkup).includes('"1/3"'));
  await tg.pressButton(CHAT, list.messageId, 'Unit_next_page');
  assert.ok(JSON.stringify(tg.messagesTo(CHAT).find((m) => m.messageId === list.messageId)!.replyMarkup).includes('"2/3"'));
  // Public only: 3 public page units.
  await tg.pressButton(CHAT, list.messageId, 'Unit_toggle_Private');
  await tg.pressButton(CHAT, list.messageId, 'Unit_toggle_Internal');
  assert.match(tg.messagesTo(CHAT).find((m) => m.messageId === list.messageId)!.text, /· 3$/);
  await tg.pressButton(CHAT, list.messageId, 'Unit_search');
  assert.equal(last(CHAT).text, 'Send the search text');
  await tg.userMessage(CHAT, 'page_unit_5');
  assert.match(last(CHAT).text, /· 1 · search "page_unit_5"$/);
  // The filters live in the session store (Postgres here), not in this process.
  const { rows } = await env.backend.deps.pg.query('SELECT value FROM telegram_sessions WHERE key = $1', [String(CHAT)]);
  assert.equal(rows[0].value.lists.Unit.search, 'page_unit_5');

  await tg.userMessage(CHAT, '/repo');
  assert.match(last(CHAT).text, /^<b>Repos<\/b> · 1/);
  await tg.pressButton(CHAT, last(CHAT).messageId, `Repo_uuid_${repoUuid}_0`);
  assert.match(last(CHAT).text, /Name +fan_repo/);
  await tg.userMessage(CHAT, '/registry');
  assert.match(last(CHAT).text, /^<b>Registry<\/b> · 1/);
});

test('a composer added from outside sees updates the core does not handle', async () => {
  const seen: string[] = [];
  const extra = new Composer<BotContext>();
  extra.command('ping', async (ctx) => {
    seen.push(ctx.pepeunit.user?.login ?? 'anonymous');
    await ctx.reply('pong');
  });
  env.backend.app.telegramBot.use(extra);
  await tg.userMessage(CHAT, '/ping');
  assert.equal(last(CHAT).text, 'pong');
  assert.deepEqual(seen, ['owner_user']);
});
