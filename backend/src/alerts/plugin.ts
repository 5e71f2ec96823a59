/**
 * The alerts module (issue 12), decorated as `app.alerts`:
 * - the intake (outbox writer) and the EMQX webhook `POST <api>/emqx/alerts/:kind`;
 * - `app.alertSink` delivery: platform alerts (load cut-offs, billing, ...) go through the same
 *   outbox and throttled sender;
 * - the throttled Telegram sender (started when the bot is enabled and has a token);
 * - unit alert level changes and unit deletions notify listeners (the rule reconciler, plugins/background/alert-rules.ts).
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { isUuid } from '@pepeunit/common/topics';
import { AlertIntake } from './intake.js';
import { AlertSender, type AlertTransport } from './sender.js';
import { alertWebhookRoutes, newWebhookStats, type AlertWebhookStats } from './webhook.js';
import { fromPlatformAlert } from './model.js';
import { createTelegramApi, telegramEnabled } from '../telegram/api.js';

export interface AlertsModule {
  readonly intake: AlertIntake;
  /** null when Telegram delivery is off (no token or the bot feature flag off). */
  readonly sender: AlertSender | null;
  readonly webhookStats: AlertWebhookStats;
  /** Listeners run after a unit's alert level changed or the unit was deleted. */
  onUnitChanged(listener: (unitUuid: string) => Promise<unknown> | void): () => void;
  /** Runs the listeners (awaits them). */
  unitChanged(unitUuid: string): Promise<void>;
}

declare module 'fastify' {
  interface FastifyInstance {
    readonly alerts: AlertsModule;
  }
}

export interface AlertsPluginOptions {
  /** Replaces the Telegram transport (benchmarks measuring the pipeline without the Bot API). */
  transport?: AlertTransport;
}

export default fp<AlertsPluginOptions>(async (app: FastifyInstance, opts) => {
  const { config } = app;
  const logger = app.deps.logger;
  let sender: AlertSender | null = null;
  const intake = new AlertIntake({ pg: app.pg, logger, queueMax: config.alerts.queueMax, onStored: () => sender?.wake() });
  const delivery = opts.transport ?? (telegramEnabled(config) ? telegramTransport(app) : undefined);
  if (delivery) {
    sender = new AlertSender({
      pg: app.pg,
      transport: delivery,
      logger,
      domain: config.domain,
      intervalSeconds: config.telegram.alertIntervalSeconds,
      globalRate: config.telegram.globalRate,
      historyDays: config.alerts.historyDays,
    });
  }
  const listeners = new Set<(unitUuid: string) => Promise<unknown> | void>();
  const module: AlertsModule = {
    intake,
    sender,
    webhookStats: newWebhookStats(),
    onUnitChanged(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async unitChanged(unitUuid) {
      await Promise.all([...listeners].map(async (l) => {
        try {
          await l(unitUuid);
        } catch (error) {
          app.log.warn({ err: error, unitUuid }, 'alert unit listener failed');
        }
      }));
    },
  };
  app.decorate('alerts', module);
  app.alertSink.use({ raise: (alert) => intake.submit([fromPlatformAlert(alert)]) });

  const api = `${config.appPrefix}${config.apiV1Prefix}`;
  await app.register(alertWebhookRoutes({ secret: config.alerts.webhookSecret, intake, disconnectStorm: config.alerts.disconnectStorm, stats: module.webhookStats, ack: config.alerts.webhookAck }), { prefix: `${api}/emqx` });

  // A deleted unit loses its alert rule at once (its settings row went with it).
  const unitRoute = `${api}/units/:uuid`;
  // (onSend: before the answer, so the rule is gone when the client hears of the deletion; at most 2 s.)
  // (Callback style: it runs on every answer and does nothing for almost all of them.)
  app.addHook('onSend', (request, reply, payload, done) => {
    const uuid = (request.params as { uuid?: string } | undefined)?.uuid;
    if (request.method !== 'DELETE' || reply.statusCode !== 204 || request.routeOptions.url !== unitRoute || !uuid || !isUuid(uuid)) {
      done(null, payload);
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    void Promise.race([module.unitChanged(uuid), new Promise<void>((resolve) => (timer = setTimeout(resolve, 2000)))])
      .catch(() => undefined)
      .then(() => {
        clearTimeout(timer);
        done(null, payload);
      });
  });

  app.addHook('onReady', async () => {
    sender?.start();
  });
  app.addHook('onClose', async () => {
    app.alertSink.use(undefined);
    await intake.close();
    await sender?.stop();
  });
}, { name: 'pepeunit-alerts', dependencies: ['pepeunit-core'] });

function telegramTransport(app: FastifyInstance): AlertTransport {
  const api = createTelegramApi(app.config);
  return {
    async sendMessage(chatId, html) {
      const message = await api.sendMessage(chatId, html, { parse_mode: 'HTML', link_preview_options: { is_disabled: true } });
      return message.message_id;
    },
  };
}
