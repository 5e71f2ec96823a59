/**
 * Billing (issue 14), decorated as `app.billing`: registers the `billing` limit source with the
 * load component (`app.loadPorts`), meters through `app.loadPorts.usage`, warns through
 * `app.alertSink`, and runs the billing cycle every PU_BILLING_CYCLE_INTERVAL_SECONDS.
 */
import fp from 'fastify-plugin';
import type { BotContext } from '../telegram/bot.js';
import { BillingService } from './service.js';
import { billingBotCommands, type BotBillingUser } from './bot-commands.js';

declare module 'fastify' {
  interface FastifyInstance {
    readonly billing: BillingService;
  }
}

export default fp(
  async (app) => {
    const { billing: config } = app.config;
    const service = new BillingService({
      pg: app.pg,
      clickhouse: app.clickhouse,
      usage: () => app.loadPorts.usage,
      alerts: app.alertSink,
      log: app.log,
      cryptoPay: config.cryptoPay.token ? config.cryptoPay : undefined,
      starsEnabled: config.starsEnabled,
    });
    app.decorate('billing', service);
    app.loadPorts.addLimitSource(service.enforcer.limitSource);
    let timer: NodeJS.Timeout | undefined;
    let cycle: Promise<unknown> | null = null;
    app.addHook('onReady', async () => {
      await service.enforcer.refreshLimits();
      // The bot (when it runs): Stars checkout handlers and the billing commands, for the chat's bound user.
      if (app.hasDecorator('telegramBot')) {
        const telegram = app.telegramBot;
        // Set by the bot's first middleware; optional here so an update it skipped is "not bound".
        const userOf = (ctx: BotContext): BotBillingUser | null => (ctx.pepeunit as BotContext['pepeunit'] | undefined)?.user ?? null;
        telegram.use(service.attachTelegram<BotContext>(telegram.bot.api), billingBotCommands<BotContext>(service, app.pg, userOf));
      }
      if (config.cycleIntervalSeconds > 0) {
        timer = setInterval(() => {
          if (cycle) return; // the previous cycle is still running
          cycle = service
            .reconcileCryptoPay()
            .catch((err: unknown) => app.log.warn({ err }, 'Crypto Pay reconciliation failed; retried at the next interval'))
            .then(() => service.enforcer.runCycle())
            .catch((err: unknown) => app.log.warn({ err }, 'billing cycle failed; retried at the next interval'))
            .finally(() => (cycle = null));
        }, config.cycleIntervalSeconds * 1000);
        timer.unref();
      }
    });
    app.addHook('onClose', async () => {
      if (timer) clearInterval(timer);
      await cycle;
    });
  },
  { name: 'pepeunit-billing', dependencies: ['pepeunit-core', 'pepeunit-load', 'pepeunit-telegram'] },
);
