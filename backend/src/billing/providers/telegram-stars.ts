/**
 * Telegram Stars (wave2-integrations.md §1.4): invoices are links made with `createInvoiceLink`
 * (currency XTR, no provider token, exactly one price in whole Stars, payload = our order id);
 * the bot answers `pre_checkout_query` within 10 s (ok only for an open order of exactly that
 * amount) and credits only on `message.successful_payment`, keyed by
 * `telegram_payment_charge_id`, so a replayed update credits once. The bot mounts
 * `starsPaymentsComposer` (grammY); the Bot API it talks to is the bot's own.
 */
import { Composer, type Api, type Context } from 'grammy';
import { toNano } from '../money.js';
import type { CreatedInvoice, OrderToPay, PaymentProvider } from './types.js';

export const STARS_PROVIDER = 'telegram_stars';

/** Whole Stars for an amount in the plan currency, rounded up (Telegram takes integers only). */
export function starsFor(amount: string, starsPerUnit: string): number {
  const nano = toNano(amount) * toNano(starsPerUnit); // scale 10^18
  const scale = 10n ** 18n;
  return Number((nano + scale - 1n) / scale);
}

export class TelegramStarsProvider implements PaymentProvider {
  readonly name = STARS_PROVIDER;

  constructor(
    private readonly api: Api,
    private readonly starsPerUnit: () => Promise<string>,
  ) {}

  async createInvoice(order: OrderToPay): Promise<CreatedInvoice> {
    const stars = starsFor(order.amount, await this.starsPerUnit());
    const link = await this.api.createInvoiceLink('Pepeunit balance', order.description.slice(0, 255), order.uuid, '', 'XTR', [{ label: `${order.amount} ${order.currency}`.slice(0, 32), amount: stars }]);
    return { invoiceId: null, payUrl: link, providerAmount: String(stars), providerAsset: 'XTR' };
  }
}

export interface StarsCheckout {
  currency: string;
  total_amount: number;
  invoice_payload: string;
}

export interface StarsPayment extends StarsCheckout {
  telegram_payment_charge_id: string;
  provider_payment_charge_id?: string;
}

export interface StarsHandlers {
  preCheckout(query: StarsCheckout): Promise<{ ok: true } | { ok: false; error: string }>;
  successfulPayment(payment: StarsPayment, telegramUserId: number | undefined): Promise<'credited' | 'duplicate' | 'review' | 'unmatched'>;
}

/** The bot's payment handlers: `bot.use(starsPaymentsComposer(app.billing.stars))`. */
export function starsPaymentsComposer<C extends Context>(handlers: StarsHandlers): Composer<C> {
  const composer = new Composer<C>();
  composer.on('pre_checkout_query', async (ctx) => {
    const verdict = await handlers.preCheckout(ctx.preCheckoutQuery).catch(() => ({ ok: false as const, error: 'The payment cannot be checked right now; please try again.' }));
    if (verdict.ok) await ctx.answerPreCheckoutQuery(true);
    else await ctx.answerPreCheckoutQuery(false, verdict.error);
  });
  composer.on('message:successful_payment', async (ctx) => {
    const outcome = await handlers.successfulPayment(ctx.message.successful_payment, ctx.from?.id);
    if (outcome === 'credited') await ctx.reply('Payment received: your Pepeunit balance is topped up.').catch(() => {});
  });
  return composer;
}
