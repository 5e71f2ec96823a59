/**
 * Telegram Stars (issue 14): the real grammY client against a local server speaking the Bot API
 * contract. An order becomes an invoice link (XTR, one price in whole Stars, payload = order);
 * pre-checkout is answered ok only for an open order of exactly that amount; only
 * `successful_payment` credits, once per telegram_payment_charge_id even when the update is
 * delivered twice; payments that match no order or the wrong amount credit nothing.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Bot } from 'grammy';
import type { Update } from 'grammy/types';
import { startEmbeddedBroker } from '@pepeunit/emqx-rules';
import { startBackend, type RunningBackend } from '@pepeunit/backend';
import { createTestDatabases, testBackendConfig, testLogger, type TestDatabases } from '../../../tests/src/harness.ts';
import { starsFor } from '../../src/billing/providers/telegram-stars.ts';
import { billingBotCommands } from '../../src/billing/bot-commands.ts';

const BOT_TOKEN = '123456:TEST-stars-token';
let db: TestDatabases;
let broker: Awaited<ReturnType<typeof startEmbeddedBroker>>;
let backend: RunningBackend;
let botApi: http.Server;
const calls: Array<{ method: string; params: Record<string, unknown> }> = [];
const refunded = new Set<string>();
let bot: Bot;
const api = '/pepeunit/api/v1';
let adminToken = '';
let userToken = '';

/** The Bot API methods of a Stars checkout: `POST /bot<token>/<method>`, `{ok, result}` envelope. */
async function startBotApi(): Promise<string> {
  botApi = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const [, botPart, method] = (req.url ?? '').split('/');
      const params = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>) : {};
      calls.push({ method: method ?? '', params });
      const reply = (body: unknown) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (botPart !== `bot${BOT_TOKEN}`) return reply({ ok: false, error_code: 401, description: 'Unauthorized' });
      if (method === 'createInvoiceLink') {
        const prices = params.prices as Array<{ amount: number }>;
        if (params.currency !== 'XTR' || prices.length !== 1 || !Number.isInteger(prices[0]!.amount)) return reply({ ok: false, error_code: 400, description: 'Bad Request: invalid price' });
        return reply({ ok: true, result: `https://t.me/$stars_${String(params.payload).slice(0, 8)}` });
      }
      if (method === 'answerPreCheckoutQuery') {
        if (params.ok === false && !params.error_message) return reply({ ok: false, error_code: 400, description: 'Bad Request: error_message required' });
        return reply({ ok: true, result: true });
      }
      if (method === 'refundStarPayment') {
        const key = String(params.telegram_payment_charge_id);
        if (refunded.has(key)) return reply({ ok: false, error_code: 400, description: 'Bad Request: CHARGE_ALREADY_REFUNDED' });
        refunded.add(key);
        return reply({ ok: true, result: true });
      }
      if (method === 'sendMessage') return reply({ ok: true, result: { message_id: 1, date: 0, chat: { id: params.chat_id, type: 'private' }, text: params.text } });
      return reply({ ok: false, error_code: 404, description: 'Not Found: method not found' });
    });
  });
  await new Promise<void>((resolve) => botApi.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(botApi.address() as AddressInfo).port}`;
}

before(async () => {
  db = await createTestDatabases('stars');
  broker = await startEmbeddedBroker({ mqttPort: 0, apiPort: 0, apiKeys: [{ key: 'k', secret: 's' }] });
  backend = await startBackend(testBackendConfig(db, { PU_MQTT_PORT: String(broker.mqttPort), PU_BILLING_CYCLE_INTERVAL_SECONDS: '0', PU_BILLING_STARS_ENABLE: 'True' }), testLogger, { listen: false });
  for (const login of ['stars_admin', 'stars_user']) {
    assert.equal((await backend.app.inject({ method: 'POST', url: `${api}/users`, payload: { login, password: 'Passw0rd!x' } })).statusCode, 201);
  }
  const auth = async (login: string) => (await backend.app.inject({ method: 'POST', url: `${api}/users/auth`, payload: { credentials: login, password: 'Passw0rd!x' } })).json().token as string;
  adminToken = await auth('stars_admin');
  userToken = await auth('stars_user');
  bot = new Bot(BOT_TOKEN, { client: { apiRoot: await startBotApi() }, botInfo: { id: 123456, is_bot: true, first_name: 'Pepeunit', username: 'PepeunitTestBot', can_join_groups: false, can_read_all_group_messages: false, supports_inline_queries: false, can_connect_to_business: false, has_main_web_app: false, has_topics_enabled: false, allows_users_to_create_topics: false, can_manage_bots: false } as never });
  bot.use(backend.app.billing.attachTelegram(bot.api));
  // The bot module resolves the bound Pepeunit user of a chat; here two chats are bound.
  const bound = new Map<number, { uuid: string; role: string }>();
  for (const [chat, login] of [[777, 'stars_user'], [888, 'stars_admin']] as const) {
    const row = (await backend.deps.pg.query('SELECT uuid, role FROM users WHERE login = $1', [login])).rows[0];
    bound.set(chat, { uuid: row.uuid, role: row.role });
  }
  bot.use(billingBotCommands(backend.app.billing, backend.deps.pg, (ctx) => bound.get(ctx.from?.id ?? 0) ?? null));
});
after(async () => {
  await backend?.close();
  await broker?.close();
  await new Promise((resolve) => botApi?.close(resolve));
  await db?.drop();
});

const as = (token: string) => ({ 'x-auth-token': token });
let updateId = 1;
const from = { id: 777, is_bot: false, first_name: 'Payer' };
const preCheckout = (payload: string, amount: number): Update => ({ update_id: updateId++, pre_checkout_query: { id: `pcq-${updateId}`, from, currency: 'XTR', total_amount: amount, invoice_payload: payload } });
const paid = (payload: string, amount: number, charge: string): Update => ({
  update_id: updateId++,
  message: { message_id: updateId, date: Math.floor(Date.now() / 1000), chat: { id: 777, type: 'private', first_name: 'Payer' }, from, successful_payment: { currency: 'XTR', total_amount: amount, invoice_payload: payload, telegram_payment_charge_id: charge, provider_payment_charge_id: '' } },
});
const balance = async () => (await backend.app.inject({ method: 'GET', url: `${api}/billing/balance`, headers: as(userToken) })).json().balance as string;
const answers = () => calls.filter((c) => c.method === 'answerPreCheckoutQuery').map((c) => [c.params.ok, c.params.error_message ?? null]);

test('whole Stars are rounded up from the plan currency', () => {
  assert.equal(starsFor('2.5', '50'), 125);
  assert.equal(starsFor('0.001', '50'), 1);
  assert.equal(starsFor('10', '1'), 10);
});

test('Stars: invoice link, pre-checkout answers, one credit per charge id although the update arrives twice', async () => {
  assert.equal((await backend.app.inject({ method: 'PUT', url: `${api}/billing/plan`, headers: as(adminToken), payload: { currency: 'EUR', stars_per_unit: '50' } })).statusCode, 200);
  assert.deepEqual((await backend.app.inject({ method: 'GET', url: `${api}/billing/providers` })).json(), { providers: ['telegram_stars'] });
  const created = await backend.app.inject({ method: 'POST', url: `${api}/billing/orders`, headers: as(userToken), payload: { provider: 'telegram_stars', amount: '2.5' } });
  assert.equal(created.statusCode, 201, created.body);
  const order = created.json();
  assert.match(order.pay_url, /^https:\/\/t\.me\/\$stars_/);
  assert.equal(order.provider_amount, '125 XTR');
  const link = calls.find((c) => c.method === 'createInvoiceLink')!.params;
  assert.deepEqual({ currency: link.currency, payload: link.payload, provider_token: link.provider_token, amounts: (link.prices as Array<{ amount: number }>).map((p) => p.amount) }, { currency: 'XTR', payload: order.uuid, provider_token: '', amounts: [125] });

  await bot.handleUpdate(preCheckout(order.uuid, 124));
  await bot.handleUpdate(preCheckout(crypto.randomUUID(), 125));
  await bot.handleUpdate(preCheckout(order.uuid, 125));
  assert.deepEqual(answers(), [
    [false, 'The amount does not match the invoice.'],
    [false, 'This invoice is unknown to the instance.'],
    [true, null],
  ]);
  assert.equal(await balance(), '0', 'pre-checkout credits nothing');

  const charge = 'stxCHARGE-0001';
  await bot.handleUpdate(paid(order.uuid, 125, charge));
  await bot.handleUpdate(paid(order.uuid, 125, charge)); // redelivered update (new update_id, same charge)
  assert.equal(await balance(), '2.5');
  const payments = await backend.deps.pg.query('SELECT status FROM billing_payments WHERE provider = $1', ['telegram_stars']);
  assert.deepEqual(payments.rows, [{ status: 'credited' }]);
  assert.equal((await backend.app.inject({ method: 'GET', url: `${api}/billing/orders`, headers: as(userToken) })).json()[0].status, 'paid');
  await bot.handleUpdate(preCheckout(order.uuid, 125));
  assert.deepEqual(answers().at(-1), [false, 'This invoice was already paid or has expired.']);

  // A payment for another open order with the wrong amount goes to review; one for no order is only audited.
  const second = (await backend.app.inject({ method: 'POST', url: `${api}/billing/orders`, headers: as(userToken), payload: { provider: 'telegram_stars', amount: '1' } })).json();
  await bot.handleUpdate(paid(second.uuid, 1, 'stxCHARGE-0002'));
  await bot.handleUpdate(paid('not-an-order', 500, 'stxCHARGE-0003'));
  assert.equal(await balance(), '2.5');
  const review = await backend.deps.pg.query(`SELECT external_id, status FROM billing_payments WHERE status = 'review'`);
  assert.deepEqual(review.rows, [{ external_id: 'stxCHARGE-0002', status: 'review' }]);
  const audit = (await backend.app.inject({ method: 'GET', url: `${api}/billing/audit`, headers: as(adminToken) })).json().map((a: { action: string }) => a.action);
  assert.ok(audit.includes('payment.unmatched'));
  assert.ok(calls.some((c) => c.method === 'sendMessage' && String(c.params.text).includes('topped up')), 'the payer is told');
});

const command = (chat: number, text: string): Update => {
  const length = text.split(' ')[0]!.length;
  return { update_id: updateId++, message: { message_id: updateId, date: Math.floor(Date.now() / 1000), chat: { id: chat, type: 'private', first_name: 'U' }, from: { id: chat, is_bot: false, first_name: 'U' }, text, entities: [{ type: 'bot_command', offset: 0, length }] } };
};
const lastReply = (chat: number) => String(calls.filter((c) => c.method === 'sendMessage' && c.params.chat_id === chat).at(-1)?.params.text ?? '');

test('billing in the bot: /balance, /plan, /topup for bound users; /setplan only for the admin, bad values change nothing', async () => {
  await bot.handleUpdate(command(999, '/balance'));
  assert.match(lastReply(999), /Bind your Pepeunit account/);
  await bot.handleUpdate(command(777, '/balance'));
  assert.equal(lastReply(777), 'Balance: 2.5 EUR\nStatus: ok');
  await bot.handleUpdate(command(777, '/topup 1'));
  assert.match(lastReply(777), /^Pay 50 XTR for 1 EUR: https:\/\/t\.me\/\$stars_/);
  await bot.handleUpdate(command(777, '/setplan mps_price=9'));
  assert.equal(lastReply(777), 'Only the instance admin can change the plan.');
  const before = (await backend.app.inject({ method: 'GET', url: `${api}/billing/plan` })).json();
  for (const bad of ['/setplan', '/setplan mps_price=-1', '/setplan nope=1', '/setplan billing_period_days=0', '/setplan currency=eur']) {
    await bot.handleUpdate(command(888, bad));
    assert.doesNotMatch(lastReply(888), /^Saved/, bad);
  }
  assert.deepEqual((await backend.app.inject({ method: 'GET', url: `${api}/billing/plan` })).json(), before);
  await bot.handleUpdate(command(888, '/setplan mps_price=2.5 free_mps=3 grace_period_days=4'));
  assert.match(lastReply(888), /^Saved\.\nPlan \(EUR, periods of 30 days, grace 4 days\)\nFree: 3 MPS/);
  const plan = (await backend.app.inject({ method: 'GET', url: `${api}/billing/plan` })).json();
  assert.deepEqual([plan.mps_price, plan.free_mps, plan.grace_period_days], ['2.5', '3', 4]);
  await bot.handleUpdate(command(777, '/plan'));
  assert.match(lastReply(777), /Price: 2\.5 per MPS/);
});

test('the admin refunds a Stars payment: Telegram returns the Stars (refundStarPayment), the ledger posts it once', async () => {
  const url = `${api}/billing/refunds`;
  const payload = { provider: 'telegram_stars', external_id: 'stxCHARGE-0001', reason: 'asked by the payer' };
  assert.equal((await backend.app.inject({ method: 'POST', url, headers: as(userToken), payload })).statusCode, 403);
  refunded.add('stxCHARGE-0001'); // Telegram already refunded it (e.g. from another tool): nothing is posted
  const refused = await backend.app.inject({ method: 'POST', url, headers: as(adminToken), payload });
  assert.equal(refused.statusCode, 422);
  assert.match(refused.json().detail, /CHARGE_ALREADY_REFUNDED/);
  assert.equal(await balance(), '2.5');
  refunded.clear();
  const res = await backend.app.inject({ method: 'POST', url, headers: as(adminToken), payload });
  assert.equal(res.statusCode, 201, res.body);
  assert.equal(res.json().balance, '0');
  const call = calls.filter((c) => c.method === 'refundStarPayment').at(-1)!;
  assert.deepEqual([call.params.user_id, call.params.telegram_payment_charge_id], [777, 'stxCHARGE-0001']);
  assert.equal((await backend.app.inject({ method: 'POST', url, headers: as(adminToken), payload })).statusCode, 422, 'once');
  assert.equal(await balance(), '0');
});
