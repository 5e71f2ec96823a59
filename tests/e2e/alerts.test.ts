/**
 * Alerts end to end on the quick-start shape: a simulated unit (tests/src/simulator.ts) logs to
 * `<d>/output_base_topic/<unit>/log/pepeunit` on the embedded EMQX-compatible broker → the
 * generated `alert-log-error-<unit>` rule (FOREACH over the entries, level filter in the rule SQL)
 * → the HTTP action `http:pu-alerts` through the connector `http:pu-backend` → the backend's
 * webhook → Postgres outbox → the throttled sender → the Telegram Bot API stand-in, driven by
 * grammY's client.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { unitToken, userToken } from '@pepeunit/common';
import type { RunningBackend } from '@pepeunit/backend';
import { countAlertsInMessage } from '@pepeunit/backend/alerts/format';
import { testServices } from '../src/harness.ts';
import { startTestBackend, type TestBackend } from '../src/backend.ts';
import { UnitSimulator, systemSchema } from '../src/simulator.ts';
import { startTelegramBotApi, type TelegramBotApi } from '../src/telegram-bot-api.ts';
import { waitFor } from '../src/wait.ts';

const domain = 'test.pepeunit.local';
const INTERVAL = 2; // PU_TELEGRAM_ALERT_INTERVAL
const CHAT = 424242;
let broker: TestBackend['broker'];
let backend: RunningBackend;
let t: TestBackend;
let tg: TelegramBotApi;
let sim: UnitSimulator;
let unit: string;

await testServices();

before(async () => {
  tg = await startTelegramBotApi();
  t = await startTestBackend({
    label: 'alerts_e2e',
    emqx: true,
    env: {
      PU_FF_TELEGRAM_BOT_ENABLE: 'True',
      PU_TELEGRAM_TOKEN: tg.token,
      PU_TELEGRAM_API_ROOT: tg.apiRoot,
      PU_TELEGRAM_BOT_MODE: 'pooling',
      PU_TELEGRAM_ALERT_INTERVAL: String(INTERVAL),
    },
  });
  ({ broker, backend } = t);
  const owner = randomUUID();
  await backend.deps.pg.query(
    `INSERT INTO users (uuid, role, status, login, hashed_password, cipher_dynamic_salt, create_datetime, telegram_chat_id)
     VALUES ($1, 'User', 'Verified', 'alert_owner', 'h', 's', now(), $2)`,
    [owner, String(CHAT)],
  );
  unit = randomUUID();
  await backend.deps.pg.query(
    `INSERT INTO units (uuid, visibility_level, name, create_datetime, last_update_datetime, is_auto_update_from_repo_unit, creator_uuid)
     VALUES ($1, 'Private', 'boiler', now(), now(), true, $2)`,
    [unit, owner],
  );
  const set = await backend.app.inject({
    method: 'PATCH',
    url: `/pepeunit/api/v1/alerts/settings/${unit}`,
    headers: { 'x-auth-token': userToken(owner, backend.deps.config.secretKey, 3600) },
    payload: { min_level: 'Error' },
  });
  assert.equal(set.statusCode, 200, set.body);
  sim = await UnitSimulator.start({
    env: { PU_DOMAIN: domain, PU_MQTT_HOST: '127.0.0.1', PU_MQTT_PORT: broker.mqttPort, PU_AUTH_TOKEN: unitToken(unit, backend.deps.config.secretKey) },
    schema: systemSchema(domain, unit),
    stateIntervalMs: 0,
  });
});

after(async () => {
  await sim?.close();
  await t?.close();
  await tg?.close();
});

const total = (from = 0) => tg.messagesTo(CHAT).slice(from).reduce((sum, m) => sum + countAlertsInMessage(m.text), 0);

test('a device logs error: the generated rule, the webhook and the sender give exactly one Telegram message', async () => {
  const rule = await backend.emqx.client!.getRule(`alert-log-error-${unit}`);
  assert.ok(rule, 'the unit rule exists in the broker');
  await sim.log('Info', 'all fine');
  await sim.log('Error', 'boiler pressure lost');
  const [message] = await waitFor(() => tg.messagesTo(CHAT).length === 1 && tg.messagesTo(CHAT), { what: 'the alert message' });
  assert.match(message!.text, /<b>Unit boiler<\/b> · Error: boiler pressure lost$/m);
  assert.equal(countAlertsInMessage(message!.text), 1);
  // The Info entry never left the broker (filtered in the rule SQL): nothing else is stored or pending.
  await waitFor(async () => (await backend.deps.pg.query("SELECT count(*)::int AS n FROM alert_events WHERE state = 'sent'")).rows[0].n === 1, { what: 'the alert marked sent' });
  const { rows } = await backend.deps.pg.query('SELECT level, text, state FROM alert_events');
  assert.deepEqual(rows, [{ level: 'Error', text: 'boiler pressure lost', state: 'sent' }]);
  // A second error after the interval is the next message, alone: the first was not sent twice.
  await sim.log('Critical', 'second');
  const second = await waitFor(() => tg.messagesTo(CHAT).length === 2 && tg.messagesTo(CHAT)[1], { what: 'the second message' });
  assert.equal(countAlertsInMessage(second.text), 1);
  assert.ok(second.at - message!.at >= INTERVAL * 1000);
});

test('1,000 errors in 10 s: messages no more often than PU_TELEGRAM_ALERT_INTERVAL, counts add up to 1,000', async () => {
  const before = tg.messagesTo(CHAT).length;
  // 100 log messages of 10 entries each (one every 100 ms, within the per-client message rate).
  const started = Date.now();
  for (let i = 0; i < 100; i++) {
    const entries = Array.from({ length: 10 }, (_, j) => ({ level: j % 2 ? 'Error' : 'error', text: `burst ${i * 10 + j}`, create_datetime: new Date().toISOString().replace('Z', '') }));
    await sim.sendLogs(entries);
    const next = started + (i + 1) * 100;
    if (next > Date.now()) await new Promise((resolve) => setTimeout(resolve, next - Date.now()));
  }
  await waitFor(() => total(before) >= 1000, { what: '1,000 alerts delivered', timeoutMs: 60_000 });
  const messages = tg.messagesTo(CHAT).slice(before - 1);
  assert.equal(total(before), 1000, 'every alert exactly once');
  for (let i = 1; i < messages.length; i++) {
    assert.ok(messages[i]!.at - messages[i - 1]!.at >= INTERVAL * 1000, `message ${i} ${messages[i]!.at - messages[i - 1]!.at} ms after the previous one`);
  }
  assert.match(messages.at(-1)!.text, /\(\+\d+ more since \d\d:\d\d UTC\)/);
  const { rows } = await backend.deps.pg.query("SELECT count(*)::int AS n FROM alert_events WHERE text LIKE 'burst %'");
  assert.equal(rows[0].n, 1000);
});
