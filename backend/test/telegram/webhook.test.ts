/**
 * The bot in webhook mode (the reference's default): once the server listens it deletes the old
 * webhook and sets `<link>/pepeunit/api/v1/bot` with a secret token; the stand-in then delivers
 * updates like Telegram (POST with X-Telegram-Bot-Api-Secret-Token); a request without the token
 * is refused; the health check sets a lost webhook again.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { freePort } from '@pepeunit/common';
import { startEmbeddedBroker } from '@pepeunit/emqx-rules';
import { startBackend, type RunningBackend } from '@pepeunit/backend';
import { createTestDatabases, testBackendConfig, testLogger, testServices, type TestDatabases } from '../../../tests/src/harness.ts';
import { startTelegramBotApi, type TelegramBotApi } from '../../../tests/src/telegram-bot-api.ts';
import { waitFor } from '../../../tests/src/wait.ts';

await testServices();

let db: TestDatabases;
let tg: TelegramBotApi;
let broker: Awaited<ReturnType<typeof startEmbeddedBroker>>;
let backend: RunningBackend;
let port: number;

before(async () => {
  db = await createTestDatabases('tgwebhook');
  tg = await startTelegramBotApi();
  broker = await startEmbeddedBroker({ mqttPort: 0, apiPort: 0, apiKeys: [{ key: 'k', secret: 's' }] });
  port = await freePort();
  backend = await startBackend(
    testBackendConfig(db, {
      PU_DOMAIN: '127.0.0.1',
      PU_BACKEND_PORT: String(port),
      PU_PUBLIC_PORT: String(port),
      PU_MQTT_PORT: String(broker.mqttPort),
      PU_FF_TELEGRAM_BOT_ENABLE: 'True',
      PU_TELEGRAM_TOKEN: tg.token,
      PU_TELEGRAM_API_ROOT: tg.apiRoot,
      PU_TELEGRAM_BOT_MODE: 'webhook',
    }),
    testLogger,
  );
});

after(async () => {
  await backend?.close();
  await broker?.close();
  await tg?.close();
  await db?.drop();
});

test('setWebhook after listen, updates over the webhook, the secret token checked, the webhook healed', async () => {
  const url = `http://127.0.0.1:${port}/pepeunit/api/v1/bot`;
  await waitFor(() => tg.webhook().url === url, { what: 'setWebhook' });
  const methods = tg.calls.map((c) => c.method);
  assert.ok(methods.indexOf('deleteWebhook') < methods.indexOf('setWebhook'), 'the old webhook is deleted first');
  const set = tg.calls.find((c) => c.method === 'setWebhook')!;
  assert.equal(set.params.drop_pending_updates, true);
  assert.match(String(set.params.secret_token), /^[A-Za-z0-9_-]{20,}$/);
  assert.notEqual(set.params.secret_token, backend.deps.config.secretKey);

  await tg.userMessage(501, '/help');
  assert.match(tg.messagesTo(501).at(-1)!.text, /<b>Pepeunit<\/b>/);

  const forged = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ update_id: 99, message: { message_id: 1, date: 1, chat: { id: 502, type: 'private' }, text: '/help' } }) });
  assert.equal(forged.status, 401);
  assert.equal(tg.messagesTo(502).length, 0);

  // Telegram lost the webhook: the periodic check sets it again.
  await fetch(`${tg.apiRoot}/bot${tg.token}/deleteWebhook`, { method: 'POST' });
  assert.equal(tg.webhook().url, '');
  await backend.app.telegramBot.checkWebhook!();
  assert.equal(tg.webhook().url, url);
  // The instance reports the bot as served.
  const root = await backend.app.inject({ method: 'GET', url: '/pepeunit' });
  assert.equal(root.json().feature_flags.pu_ff_telegram_bot_enable, true);
});
