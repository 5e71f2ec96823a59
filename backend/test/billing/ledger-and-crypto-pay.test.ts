/**
 * Billing (issue 14): the admin's plan over REST, the append-only double-entry ledger
 * (balanced, idempotent, audited; refunds and adjustments), and Crypto Pay against a local
 * server speaking its documented contract: a payment credits once even when its webhook is
 * delivered twice; forged webhooks change nothing.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEmbeddedBroker } from '@pepeunit/emqx-rules';
import { startBackend, type RunningBackend } from '@pepeunit/backend';
import { createTestDatabases, testBackendConfig, testLogger, type TestDatabases } from '../../../tests/src/harness.ts';
import { startCryptoPayStandIn, type CryptoPayStandIn } from '../../../tests/src/crypto-pay-api.ts';
import { cryptoPaySignature } from '../../src/billing/providers/crypto-pay.ts';

const TOKEN = '12345:AAtestCryptoPayAppToken';
let db: TestDatabases;
let broker: Awaited<ReturnType<typeof startEmbeddedBroker>>;
let backend: RunningBackend;
let cryptoPay: CryptoPayStandIn;
const api = '/pepeunit/api/v1';
let adminToken = '';
let userToken = '';
let userUuid = '';

before(async () => {
  db = await createTestDatabases('billing');
  broker = await startEmbeddedBroker({ mqttPort: 0, apiPort: 0, apiKeys: [{ key: 'k', secret: 's' }] });
  cryptoPay = await startCryptoPayStandIn(TOKEN);
  backend = await startBackend(
    testBackendConfig(db, { PU_MQTT_PORT: String(broker.mqttPort), PU_BILLING_CRYPTO_PAY_TOKEN: TOKEN, PU_BILLING_CRYPTO_PAY_API_URL: cryptoPay.url, PU_BILLING_CYCLE_INTERVAL_SECONDS: '0' }),
    testLogger,
    { listen: false },
  );
  for (const login of ['billing_admin', 'billing_user']) {
    assert.equal((await backend.app.inject({ method: 'POST', url: `${api}/users`, payload: { login, password: 'Passw0rd!x' } })).statusCode, 201);
  }
  const auth = async (login: string) => (await backend.app.inject({ method: 'POST', url: `${api}/users/auth`, payload: { credentials: login, password: 'Passw0rd!x' } })).json().token as string;
  adminToken = await auth('billing_admin');
  userToken = await auth('billing_user');
  userUuid = (await backend.deps.pg.query(`SELECT uuid FROM users WHERE login = 'billing_user'`)).rows[0].uuid;
});
after(async () => {
  await backend?.close();
  await cryptoPay?.close();
  await broker?.close();
  await db?.drop();
});

const as = (token: string) => ({ 'x-auth-token': token });
const balance = async () => (await backend.app.inject({ method: 'GET', url: `${api}/billing/balance`, headers: as(userToken) })).json().balance as string;
const ledgerRows = async () => Number((await backend.deps.pg.query('SELECT count(*) FROM billing_entries')).rows[0].count);

test('the admin sets the plan over REST; users read it; bad input is 4xx and changes nothing', async () => {
  const initial = (await backend.app.inject({ method: 'GET', url: `${api}/billing/plan` })).json();
  assert.equal(initial.mps_price, '0', 'free until the admin sets prices');
  assert.equal((await backend.app.inject({ method: 'PUT', url: `${api}/billing/plan`, headers: as(userToken), payload: { mps_price: '1' } })).statusCode, 403);
  for (const payload of [{ mps_price: '-1' }, { mps_price: '1.0000000001' }, { currency: 'usd' }, { billing_period_days: 0 }, {}, { stars_per_unit: '0' }, { unknown: 1, mps_price: 'x' }]) {
    const res = await backend.app.inject({ method: 'PUT', url: `${api}/billing/plan`, headers: as(adminToken), payload });
    assert.ok(res.statusCode === 422 || res.statusCode === 400, `${JSON.stringify(payload)} -> ${res.statusCode}`);
  }
  assert.deepEqual((await backend.app.inject({ method: 'GET', url: `${api}/billing/plan` })).json(), initial);
  const set = await backend.app.inject({
    method: 'PUT',
    url: `${api}/billing/plan`,
    headers: as(adminToken),
    payload: { currency: 'USDT', free_mps: '2', mps_price: '0.75', free_aggregation_topics: '3', aggregation_topic_price: '0.1', billing_period_days: 30, grace_period_days: 5 },
  });
  assert.equal(set.statusCode, 200, set.body);
  const plan = (await backend.app.inject({ method: 'GET', url: `${api}/billing/plan`, headers: as(userToken) })).json();
  assert.equal(plan.currency, 'USDT');
  assert.equal(plan.mps_price, '0.75');
  assert.equal(plan.grace_period_days, 5);
  const audit = (await backend.app.inject({ method: 'GET', url: `${api}/billing/audit`, headers: as(adminToken) })).json();
  assert.equal(audit[0].action, 'plan.update');
  assert.equal(audit[0].detail.after.mps_price, '0.75');
  assert.equal((await backend.app.inject({ method: 'GET', url: `${api}/billing/audit`, headers: as(userToken) })).statusCode, 403);
});

test('Crypto Pay: an order creates an invoice; the paid webhook credits once although delivered twice; forged ones change nothing', async () => {
  assert.deepEqual((await backend.app.inject({ method: 'GET', url: `${api}/billing/providers` })).json(), { providers: ['crypto_pay'] });
  assert.equal((await backend.app.inject({ method: 'POST', url: `${api}/billing/orders`, headers: as(userToken), payload: { provider: 'telegram_stars', amount: '5' } })).statusCode, 422);
  assert.equal((await backend.app.inject({ method: 'POST', url: `${api}/billing/orders`, headers: as(userToken), payload: { provider: 'crypto_pay', amount: '0' } })).statusCode, 422);
  assert.equal((await backend.app.inject({ method: 'POST', url: `${api}/billing/orders`, payload: { provider: 'crypto_pay', amount: '5' } })).statusCode, 403);
  const created = await backend.app.inject({ method: 'POST', url: `${api}/billing/orders`, headers: as(userToken), payload: { provider: 'crypto_pay', amount: '12.5' } });
  assert.equal(created.statusCode, 201, created.body);
  const order = created.json();
  assert.equal(order.status, 'open');
  assert.match(order.pay_url, /^https:\/\/t\.me\//);
  const call = cryptoPay.calls.find((c) => c.method === 'createInvoice');
  assert.equal(call?.token, TOKEN);
  assert.deepEqual({ asset: call?.params.asset, amount: call?.params.amount, payload: call?.params.payload }, { asset: 'USDT', amount: '12.5', payload: order.uuid });

  const before = await ledgerRows();
  const webhook = cryptoPay.pay(Number(order.provider_invoice_id));
  const url = `${api}/billing/webhooks/crypto_pay`;
  // Forged: no signature, a signature made with another token, a valid signature over another body.
  const forgedBody = webhook.body.replace('"12.5"', '"1250"');
  const forged = [
    { headers: { 'content-type': 'application/json' }, payload: webhook.body },
    { headers: { 'content-type': 'application/json', 'crypto-pay-api-signature': cryptoPaySignature('999:other', webhook.body) }, payload: webhook.body },
    { headers: webhook.headers, payload: forgedBody },
    { headers: { 'content-type': 'application/json', 'crypto-pay-api-signature': 'zz' }, payload: webhook.body },
  ];
  for (const attempt of forged) {
    const res = await backend.app.inject({ method: 'POST', url, ...attempt });
    assert.equal(res.statusCode, 401, res.body);
  }
  assert.equal(await ledgerRows(), before, 'forged webhooks post nothing');
  assert.equal(await balance(), '0');

  const first = await backend.app.inject({ method: 'POST', url, headers: webhook.headers, payload: webhook.body });
  assert.equal(first.statusCode, 200, first.body);
  assert.equal(first.json().result, 'credited');
  const again = await backend.app.inject({ method: 'POST', url, headers: webhook.headers, payload: webhook.body });
  assert.equal(again.statusCode, 200);
  assert.equal(again.json().result, 'duplicate');
  // Crypto Pay retries deliver a new update_id for the same invoice: still one credit.
  const redelivered = cryptoPay.pay(Number(order.provider_invoice_id));
  assert.equal((await backend.app.inject({ method: 'POST', url, headers: redelivered.headers, payload: redelivered.body })).json().result, 'duplicate');
  assert.equal(await balance(), '12.5');
  assert.equal(await ledgerRows(), before + 2, 'one balanced pair of entries');
  const orders = (await backend.app.inject({ method: 'GET', url: `${api}/billing/orders`, headers: as(userToken) })).json();
  assert.equal(orders[0].status, 'paid');

  // A signed update for an invoice the API does not report as paid credits nothing.
  const other = (await backend.app.inject({ method: 'POST', url: `${api}/billing/orders`, headers: as(userToken), payload: { provider: 'crypto_pay', amount: '3' } })).json();
  const fakePaid = JSON.stringify({ update_id: 99, update_type: 'invoice_paid', request_date: new Date().toISOString(), payload: { ...cryptoPay.invoices.get(Number(other.provider_invoice_id)), status: 'paid' } });
  const res = await backend.app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', 'crypto-pay-api-signature': cryptoPaySignature(TOKEN, fakePaid) }, payload: fakePaid });
  assert.equal(res.json().result, 'ignored', 'the invoice is re-read from the API before crediting');
  assert.equal(await balance(), '12.5');
});

test('ledger: append-only and balanced in the database; adjustments and refunds by the admin, audited', async () => {
  const pg = backend.deps.pg;
  await assert.rejects(pg.query('UPDATE billing_entries SET amount = amount * 2'), /append-only/);
  await assert.rejects(pg.query('DELETE FROM billing_transactions'), /append-only/);
  await assert.rejects(
    (async () => {
      const client = await pg.connect();
      try {
        await client.query('BEGIN');
        await client.query(`INSERT INTO billing_transactions (uuid, kind, user_uuid, idempotency_key, description) VALUES (gen_random_uuid(), 'adjustment', $1, 'unbalanced', 'x')`, [userUuid]);
        await client.query(`INSERT INTO billing_entries (transaction_uuid, account, user_uuid, amount) SELECT uuid, 'customer', $1, -5 FROM billing_transactions WHERE idempotency_key = 'unbalanced'`, [userUuid]);
        await client.query('COMMIT');
      } finally {
        await client.query('ROLLBACK').catch(() => {});
        client.release();
      }
    })(),
    /does not balance/,
  );
  assert.equal(await balance(), '12.5');

  const adjUrl = `${api}/billing/adjustments`;
  assert.equal((await backend.app.inject({ method: 'POST', url: adjUrl, headers: as(userToken), payload: { user_uuid: userUuid, amount: '5', reason: 'x' } })).statusCode, 403);
  assert.equal((await backend.app.inject({ method: 'POST', url: adjUrl, headers: as(adminToken), payload: { user_uuid: userUuid, amount: '0', reason: 'x' } })).statusCode, 422);
  assert.equal((await backend.app.inject({ method: 'POST', url: adjUrl, headers: as(adminToken), payload: { user_uuid: crypto.randomUUID(), amount: '1', reason: 'x' } })).statusCode, 404);
  const credit = await backend.app.inject({ method: 'POST', url: adjUrl, headers: as(adminToken), payload: { user_uuid: userUuid, amount: '2.25', reason: 'goodwill', idempotency_key: 'goodwill-1' } });
  assert.equal(credit.statusCode, 201, credit.body);
  assert.equal(credit.json().balance, '14.75');
  const repeat = await backend.app.inject({ method: 'POST', url: adjUrl, headers: as(adminToken), payload: { user_uuid: userUuid, amount: '2.25', reason: 'goodwill', idempotency_key: 'goodwill-1' } });
  assert.equal(repeat.statusCode, 200);
  assert.equal(repeat.json().created, false);
  const debit = await backend.app.inject({ method: 'POST', url: adjUrl, headers: as(adminToken), payload: { user_uuid: userUuid, amount: '-0.75', reason: 'correction' } });
  assert.equal(debit.json().balance, '14');

  const invoiceId = [...cryptoPay.invoices.values()].find((i) => i.status === 'paid')!.invoice_id;
  const refund = await backend.app.inject({ method: 'POST', url: `${api}/billing/refunds`, headers: as(adminToken), payload: { provider: 'crypto_pay', external_id: String(invoiceId), reason: 'asked by the user' } });
  assert.equal(refund.statusCode, 201, refund.body);
  assert.equal(refund.json().balance, '1.5');
  assert.equal((await backend.app.inject({ method: 'POST', url: `${api}/billing/refunds`, headers: as(adminToken), payload: { provider: 'crypto_pay', external_id: String(invoiceId), reason: 'again' } })).statusCode, 422, 'refunds once');

  const lines = (await backend.app.inject({ method: 'GET', url: `${api}/billing/ledger`, headers: as(userToken) })).json();
  assert.deepEqual(lines.map((l: { kind: string; amount: string }) => [l.kind, l.amount]).sort(), [['adjustment', '-0.75'], ['adjustment', '2.25'], ['payment', '12.5'], ['refund', '-12.5']]);
  const sums = await pg.query('SELECT transaction_uuid, sum(amount) AS s FROM billing_entries GROUP BY transaction_uuid HAVING sum(amount) <> 0');
  assert.equal(sums.rowCount, 0, 'every transaction balances');
  const actions = (await backend.app.inject({ method: 'GET', url: `${api}/billing/audit`, headers: as(adminToken) })).json().map((a: { action: string }) => a.action);
  for (const action of ['payment.credited', 'ledger.adjustment', 'payment.refunded', 'order.created']) assert.ok(actions.includes(action), `${action} audited`);
  assert.equal((await backend.app.inject({ method: 'GET', url: `${api}/billing/ledger?user_uuid=${userUuid}`, headers: as(adminToken) })).statusCode, 200);
  const adminUuid = (await pg.query(`SELECT uuid FROM users WHERE login = 'billing_admin'`)).rows[0].uuid;
  assert.equal((await backend.app.inject({ method: 'GET', url: `${api}/billing/ledger?user_uuid=${adminUuid}`, headers: as(userToken) })).statusCode, 403);
});

test('the live statement answers 503 while no usage reader is attached to app.loadPorts', async () => {
  const ports = backend.app.loadPorts;
  let reader: typeof ports.usage | undefined;
  try {
    reader = ports.usage;
  } catch {
    reader = undefined;
  }
  ports.attachUsageReader(undefined);
  try {
    const res = await backend.app.inject({ method: 'GET', url: `${api}/billing/statement`, headers: as(userToken) });
    assert.equal(res.statusCode, 503);
    assert.match(res.json().detail, /load component is not running/);
  } finally {
    ports.attachUsageReader(reader);
  }
});

test('Crypto Pay reconciliation: a payment whose webhook never came is credited by the cycle, once; expired invoices close their order', async () => {
  const start = await balance();
  const order = (await backend.app.inject({ method: 'POST', url: `${api}/billing/orders`, headers: as(userToken), payload: { provider: 'crypto_pay', amount: '4' } })).json();
  const late = cryptoPay.pay(Number(order.provider_invoice_id)); // paid; the webhook is "lost" for now
  const stale = (await backend.app.inject({ method: 'POST', url: `${api}/billing/orders`, headers: as(userToken), payload: { provider: 'crypto_pay', amount: '6' } })).json();
  cryptoPay.invoices.get(Number(stale.provider_invoice_id))!.status = 'expired';
  assert.equal((await backend.app.inject({ method: 'POST', url: `${api}/billing/cycle`, headers: as(userToken) })).statusCode, 403);
  const run = await backend.app.inject({ method: 'POST', url: `${api}/billing/cycle`, headers: as(adminToken) });
  assert.equal(run.statusCode, 200, run.body);
  assert.deepEqual(run.json().crypto_pay, { credited: 1, expired: 1 });
  assert.equal(await balance(), String(Number(start) + 4));
  const delivered = await backend.app.inject({ method: 'POST', url: `${api}/billing/webhooks/crypto_pay`, headers: late.headers, payload: late.body });
  assert.equal(delivered.json().result, 'duplicate');
  assert.deepEqual((await backend.app.inject({ method: 'POST', url: `${api}/billing/cycle`, headers: as(adminToken) })).json().crypto_pay, { credited: 0, expired: 0 });
  assert.equal(await balance(), String(Number(start) + 4));
  const statuses = (await backend.app.inject({ method: 'GET', url: `${api}/billing/orders`, headers: as(userToken) })).json().map((o: { uuid: string; status: string }) => [o.uuid, o.status]);
  assert.deepEqual(statuses.filter(([uuid]: [string]) => uuid === order.uuid || uuid === stale.uuid).sort(), [[order.uuid, 'paid'], [stale.uuid, 'expired']].sort());
});
