/**
 * Billing (issue 14), decorated as `app.billing`: registers the `billing` limit source with the
 * load component (`app.loadPorts`), meters through `app.loadPorts.usage`, warns through
 * `app.alertSink`, and runs the billing cycle every PU_BILLING_CYCLE_INTERVAL_SECONDS.
 */
import fp from 'fastify-plugin';
import type { Api, Context, Middleware } from 'grammy';
import { BillingService } from './service.js';
import { billingBotCommands, type BotBillingUser } from './bot-commands.js';

/** What billing needs of the Telegram bot module (`app.telegramBot`, issue 12) when it runs. */
interface TelegramBotModule {
  readonly bot: { readonly api: Api };
  use(...middleware: Array<Middleware<Context>>): void;
}

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
        const telegram = (app as unknown as { telegramBot: TelegramBotModule }).telegramBot;
        const userOf = (ctx: Context): BotBillingUser | null => (ctx as Context & { pepeunit?: { user?: BotBillingUser | null } }).pepeunit?.user ?? null;
        telegram.use(service.attachTelegram(telegram.bot.api), billingBotCommands(service, app.pg, userOf));
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
