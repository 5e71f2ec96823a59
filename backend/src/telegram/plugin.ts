/**
 * Runs the Telegram bot when PU_FF_TELEGRAM_BOT_ENABLE is on and PU_TELEGRAM_TOKEN is set,
 * decorated as `app.telegramBot` (root.ts then reports the feature as served).
 *
 * - `PU_TELEGRAM_BOT_MODE=webhook` (default; any replica can serve): `POST <prefix>/api/v1/bot`
 *   (grammY's webhook callback, `X-Telegram-Bot-Api-Secret-Token` checked in constant time);
 *   once the server listens: deleteWebhook (PU_TELEGRAM_DEL_OLD_WEBHOOK), setWebhook to
 *   `<PU_DOMAIN link><prefix>/api/v1/bot` with drop_pending_updates, and every 60 s
 *   getWebhookInfo, setting it again when the URL is empty or differs (the reference's loop).
 * - `pooling` (sic, the reference's value): long polling in one replica at a time, elected with a
 *   Postgres advisory lock held on a dedicated connection (Telegram allows one poller per token).
 */
import { ADVISORY_LOCKS } from '@pepeunit/common';
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import type { PoolClient } from 'pg';
import { webhookCallback } from 'grammy';
import { telegramEnabled } from './api.js';
import { ALLOWED_UPDATES, createPepeunitBot, type BotSession, type PepeunitBot } from './bot.js';
import { createSessionStorage } from './sessions.js';

declare module 'fastify' {
  interface FastifyInstance {
    readonly telegramBot: PepeunitBot;
  }
}

/** Advisory lock of the long-polling replica: "PEPE" with 4. */
export const TELEGRAM_POLLING_LOCK_KEY = ADVISORY_LOCKS.telegramPolling;
export const WEBHOOK_CHECK_MS = 60_000;

export default fp(async (app: FastifyInstance) => {
  const { config } = app;
  if (!telegramEnabled(config)) return;
  const tg = config.telegram;
  if (tg.proxyUrl) app.log.warn('PU_TELEGRAM_PROXY_URL is set but not supported yet: the Bot API is reached directly');
  const sessions = createSessionStorage<BotSession>(app.pg, config.redisUrl);
  const pepeunitBot = createPepeunitBot(app, { storage: sessions.storage });
  const { bot } = pepeunitBot;
  app.decorate('telegramBot', pepeunitBot);
  const api = `${config.appPrefix}${config.apiV1Prefix}`;
  const webhookUrl = `${config.links.linkPrefixAndV1}/bot`;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  if (tg.mode === 'webhook') {
    const handle = webhookCallback(bot, 'fastify', { secretToken: tg.webhookSecret, onTimeout: 'return', timeoutMilliseconds: 9_000 });
    app.post(`${api}/bot`, { schema: { hide: true }, bodyLimit: 1024 * 1024 }, handle);

    const ensureWebhook = async (initial: boolean): Promise<void> => {
      try {
        if (initial) {
          if (tg.delOldWebhook) await bot.api.deleteWebhook();
        } else {
          const info = await bot.api.getWebhookInfo();
          if (info.url === webhookUrl) return;
          app.log.warn({ url: info.url || null }, 'Telegram webhook missing or changed: setting it again');
        }
        await bot.api.setWebhook(webhookUrl, { secret_token: tg.webhookSecret, drop_pending_updates: initial, allowed_updates: [...ALLOWED_UPDATES] });
        if (initial) app.log.info({ url: webhookUrl }, 'Telegram webhook set');
      } catch (error) {
        app.log.error({ err: error }, 'Telegram webhook setup failed; retrying');
      }
    };
    pepeunitBot.checkWebhook = () => ensureWebhook(false);
    app.addHook('onListen', async () => {
      await ensureWebhook(true);
      const loop = () => {
        timer = setTimeout(() => {
          void ensureWebhook(false).finally(() => {
            if (!closed) loop();
          });
        }, WEBHOOK_CHECK_MS);
        timer.unref();
      };
      loop();
    });
  } else {
    let lockClient: PoolClient | undefined;
    let polling: Promise<void> | undefined;
    const tryPoll = async (): Promise<void> => {
      if (closed || polling) return;
      try {
        lockClient ??= await app.pg.connect();
        const { rows } = await lockClient.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [...TELEGRAM_POLLING_LOCK_KEY]);
        if (!rows[0]?.ok) {
          lockClient.release();
          lockClient = undefined;
          return;
        }
        polling = bot.start({ allowed_updates: [...ALLOWED_UPDATES], onStart: (info) => app.log.info({ bot: info.username }, 'Telegram bot polling') }).catch((error: unknown) => {
          app.log.error({ err: error }, 'Telegram long polling stopped');
        }).finally(() => {
          polling = undefined;
          lockClient?.release(true);
          lockClient = undefined;
        });
      } catch (error) {
        lockClient?.release(true);
        lockClient = undefined;
        app.log.warn({ err: error }, 'Telegram polling election failed; retrying');
      }
    };
    app.addHook('onReady', async () => {
      await tryPoll();
      const loop = () => {
        timer = setTimeout(() => {
          void tryPoll().finally(() => {
            if (!closed) loop();
          });
        }, 30_000);
        timer.unref();
      };
      loop();
    });
    app.addHook('onClose', async () => {
      closed = true;
      if (bot.isRunning()) await bot.stop();
      await polling;
    });
  }
  app.addHook('onClose', async () => {
    closed = true;
    if (timer) clearTimeout(timer);
    await sessions.close();
  });
}, { name: 'pepeunit-telegram', dependencies: ['pepeunit-core'] });
