/**
 * Billing as the routes and the bot use it: orders through providers, provider callbacks into
 * the ledger (then the payer's limits are re-checked, so paying lifts a limit at once), the
 * itemised statements, and the cycle (enforcement.ts).
 */
import { randomUUID } from 'node:crypto';
import type { ClickHouseClient } from '@clickhouse/client';
import type { Pool } from 'pg';
import type { AlertSink } from '../domain/alert-sink.js';
import type { LoadUsageReader } from '../domain/load-ports.js';
import { audit, recordPayment, refundPayment } from './ledger.js';
import { fromNano, toNano } from './money.js';
import { periodAt, readPlan } from './plans.js';
import { computeStatement, type Statement } from './metering.js';
import { BillingEnforcer } from './enforcement.js';
import { CryptoPayProvider, verifyCryptoPaySignature, type CryptoPayInvoice } from './providers/crypto-pay.js';
import type { PaymentProvider } from './providers/types.js';
import { STARS_PROVIDER, TelegramStarsProvider, starsPaymentsComposer, type StarsHandlers } from './providers/telegram-stars.js';
import { Composer, type Api, type Context } from 'grammy';

export class BillingInputError extends Error {}
export class WebhookSignatureError extends Error {}

export interface BillingDeps {
  pg: Pool;
  clickhouse: ClickHouseClient;
  usage: () => LoadUsageReader;
  alerts: AlertSink;
  log: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
  cryptoPay?: { token: string; apiUrl: string; acceptedAssets: readonly string[] };
  /** PU_BILLING_STARS_ENABLE: Stars are offered once the bot attaches its Bot API client. */
  starsEnabled?: boolean;
}

export interface OrderRow {
  uuid: string;
  user_uuid: string;
  provider: string;
  amount: string;
  currency: string;
  provider_amount: string;
  provider_invoice_id: string | null;
  pay_url: string | null;
  status: string;
  create_datetime: string;
}

/** Largest single order (in plan currency units): a typo must not create an absurd invoice. */
const MAX_ORDER = toNano('1000000');

export class BillingService {
  readonly enforcer: BillingEnforcer;
  readonly providers = new Map<string, PaymentProvider>();
  private readonly cryptoPay: CryptoPayProvider | undefined;
  private starsApi: Api | undefined;

  constructor(private readonly deps: BillingDeps) {
    this.enforcer = new BillingEnforcer(deps.pg, { pg: deps.pg, clickhouse: deps.clickhouse, usage: deps.usage }, deps.alerts, deps.log);
    if (deps.cryptoPay?.token) {
      this.cryptoPay = new CryptoPayProvider(deps.cryptoPay.token, deps.cryptoPay.apiUrl, deps.cryptoPay.acceptedAssets);
      this.providers.set(this.cryptoPay.name, this.cryptoPay);
    }
  }

  addProvider(provider: PaymentProvider): void {
    this.providers.set(provider.name, provider);
  }

  /** The live statement of a period (the current one by default), not stored. */
  async statement(userUuid: string, at: Date = new Date()): Promise<Statement> {
    const plan = await readPlan(this.deps.pg);
    return computeStatement({ pg: this.deps.pg, clickhouse: this.deps.clickhouse, usage: this.deps.usage }, plan, userUuid, periodAt(plan, at));
  }

  async createOrder(userUuid: string, providerName: string, amount: string): Promise<OrderRow> {
    const provider = this.providers.get(providerName);
    if (!provider) throw new BillingInputError(`Payment provider ${providerName} is not enabled on this instance (enabled: ${[...this.providers.keys()].join(', ') || 'none'})`);
    let value: bigint;
    try {
      value = toNano(amount);
    } catch {
      throw new BillingInputError('amount must be a decimal number with at most 9 fraction digits');
    }
    if (value <= 0n || value > MAX_ORDER) throw new BillingInputError(`amount must be above 0 and at most ${fromNano(MAX_ORDER)}`);
    const plan = await readPlan(this.deps.pg);
    const uuid = randomUUID();
    const normalized = fromNano(value);
    const invoice = await provider.createInvoice({ uuid, userUuid, amount: normalized, currency: plan.currency, description: `Pepeunit balance top-up: ${normalized} ${plan.currency}` });
    const { rows } = await this.deps.pg.query(
      `INSERT INTO billing_orders (uuid, user_uuid, provider, amount, currency, provider_amount, provider_invoice_id, pay_url, status)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open') RETURNING *`,
      [uuid, userUuid, provider.name, normalized, plan.currency, `${invoice.providerAmount} ${invoice.providerAsset}`, invoice.invoiceId, invoice.payUrl],
    );
    await audit(this.deps.pg, `user:${userUuid}`, 'order.created', { order_uuid: uuid, provider: provider.name, amount: normalized, currency: plan.currency });
    return toOrder(rows[0]);
  }

  async order(uuid: string): Promise<OrderRow | null> {
    const { rows } = await this.deps.pg.query('SELECT * FROM billing_orders WHERE uuid = $1', [uuid]);
    return rows[0] ? toOrder(rows[0]) : null;
  }

  async orders(userUuid: string, limit: number): Promise<OrderRow[]> {
    const { rows } = await this.deps.pg.query('SELECT * FROM billing_orders WHERE user_uuid = $1 ORDER BY create_datetime DESC LIMIT $2', [userUuid, limit]);
    return rows.map(toOrder);
  }

  /**
   * A Crypto Pay webhook: refused (nothing changes) unless its signature over the raw body is
   * valid; an `invoice_paid` update is re-read from the API and credited once per invoice.
   */
  async cryptoPayWebhook(rawBody: Buffer, signature: string | undefined): Promise<'credited' | 'duplicate' | 'review' | 'ignored'> {
    const provider = this.cryptoPay;
    if (!provider || !this.deps.cryptoPay) throw new WebhookSignatureError('Crypto Pay is not enabled');
    if (!verifyCryptoPaySignature(this.deps.cryptoPay.token, rawBody, signature)) throw new WebhookSignatureError('invalid crypto-pay-api-signature');
    let update: { update_type?: string; payload?: CryptoPayInvoice };
    try {
      update = JSON.parse(rawBody.toString('utf8'));
    } catch {
      throw new BillingInputError('the webhook body is not JSON');
    }
    if (update.update_type !== 'invoice_paid' || !update.payload) return 'ignored';
    return this.creditCryptoPayInvoice(String(update.payload.invoice_id));
  }

  /** Re-reads a Crypto Pay invoice and credits it once if it is paid (webhook and reconciler). */
  private async creditCryptoPayInvoice(invoiceId: string): Promise<'credited' | 'duplicate' | 'review' | 'ignored'> {
    const provider = this.cryptoPay;
    if (!provider) return 'ignored';
    const current = await provider.getInvoice(invoiceId); // never trust the webhook body alone
    if (!current || current.status !== 'paid') return 'ignored';
    const order = current.payload && /^[0-9a-f-]{36}$/.test(current.payload) ? await this.order(current.payload) : null;
    if (!order) {
      this.deps.log.warn({ invoiceId }, 'billing: a paid Crypto Pay invoice matches no order; see the audit trail');
      await audit(this.deps.pg, `provider:${provider.name}`, 'payment.unmatched', current);
      return 'review';
    }
    const asset = current.currency_type === 'fiat' ? (current.fiat ?? '') : (current.asset ?? '');
    const matches = order.provider === provider.name && order.provider_invoice_id === invoiceId && asset === order.currency && toNano(current.amount) === toNano(order.amount) && order.status === 'open';
    const outcome = await recordPayment(this.deps.pg, {
      provider: provider.name,
      externalId: invoiceId,
      orderUuid: order.uuid,
      userUuid: order.user_uuid,
      amount: order.amount,
      asset: current.paid_asset ?? asset,
      providerAmount: current.paid_amount ?? current.amount,
      raw: current,
      status: matches ? 'credited' : 'review',
    });
    if (outcome.duplicate) return 'duplicate';
    if (!outcome.credited) return 'review';
    await this.afterPayment(order.user_uuid);
    return 'credited';
  }

  /**
   * Webhooks can be missed: open Crypto Pay orders of the last 3 days are re-read in batches
   * (`getInvoices`), paid ones credited (once, as by the webhook), expired ones closed.
   */
  async reconcileCryptoPay(): Promise<{ credited: number; expired: number }> {
    const provider = this.cryptoPay;
    const result = { credited: 0, expired: 0 };
    if (!provider) return result;
    const { rows } = await this.deps.pg.query(
      `SELECT uuid, provider_invoice_id FROM billing_orders
        WHERE provider = $1 AND status = 'open' AND provider_invoice_id IS NOT NULL AND create_datetime > (now() AT TIME ZONE 'utc') - interval '3 days'
        ORDER BY create_datetime LIMIT 1000`,
      [provider.name],
    );
    for (let i = 0; i < rows.length; i += 100) {
      const batch = rows.slice(i, i + 100);
      const invoices = await provider.getInvoices(batch.map((r) => String(r.provider_invoice_id)));
      for (const invoice of invoices) {
        if (invoice.status === 'paid' && (await this.creditCryptoPayInvoice(String(invoice.invoice_id))) === 'credited') result.credited++;
        if (invoice.status === 'expired') {
          const updated = await this.deps.pg.query(`UPDATE billing_orders SET status = 'expired' WHERE provider = $1 AND provider_invoice_id = $2 AND status = 'open'`, [provider.name, String(invoice.invoice_id)]);
          result.expired += updated.rowCount ?? 0;
        }
      }
    }
    return result;
  }

  /**
   * Offers Telegram Stars through the bot's Bot API client and returns the handlers the bot
   * mounts (`bot.use(...)`). Called by the Telegram bot module when PU_BILLING_STARS_ENABLE is on.
   */
  attachTelegram<C extends Context>(api: Api): Composer<C> {
    if (!this.deps.starsEnabled) return new Composer<C>();
    this.starsApi = api;
    this.addProvider(new TelegramStarsProvider(api, async () => (await readPlan(this.deps.pg)).stars_per_unit));
    return starsPaymentsComposer<C>(this.stars);
  }

  /** Pre-checkout and successful-payment handling of Stars (the bot calls these through the composer). */
  readonly stars: StarsHandlers = {
    preCheckout: async (query) => {
      const order = /^[0-9a-f-]{36}$/.test(query.invoice_payload) ? await this.order(query.invoice_payload) : null;
      if (!order || order.provider !== STARS_PROVIDER) return { ok: false, error: 'This invoice is unknown to the instance.' };
      if (order.status !== 'open') return { ok: false, error: 'This invoice was already paid or has expired.' };
      if (query.currency !== 'XTR' || `${query.total_amount} XTR` !== order.provider_amount) return { ok: false, error: 'The amount does not match the invoice.' };
      return { ok: true };
    },
    successfulPayment: async (payment, telegramUserId) => {
      const order = /^[0-9a-f-]{36}$/.test(payment.invoice_payload) ? await this.order(payment.invoice_payload) : null;
      if (!order || order.provider !== STARS_PROVIDER) {
        this.deps.log.warn({ charge: payment.telegram_payment_charge_id }, 'billing: a Stars payment matches no order; see the audit trail');
        await audit(this.deps.pg, `provider:${STARS_PROVIDER}`, 'payment.unmatched', { ...payment, telegram_user_id: telegramUserId ?? null });
        return 'unmatched';
      }
      const matches = payment.currency === 'XTR' && `${payment.total_amount} XTR` === order.provider_amount && order.status === 'open';
      const outcome = await recordPayment(this.deps.pg, {
        provider: STARS_PROVIDER,
        externalId: payment.telegram_payment_charge_id,
        orderUuid: order.uuid,
        userUuid: order.user_uuid,
        amount: order.amount,
        asset: 'XTR',
        providerAmount: String(payment.total_amount),
        raw: { ...payment, telegram_user_id: telegramUserId ?? null },
        status: matches ? 'credited' : 'review',
      });
      if (outcome.duplicate) return 'duplicate';
      if (!outcome.credited) return 'review';
      await this.afterPayment(order.user_uuid);
      return 'credited';
    },
  };

  /**
   * The admin's refund: Stars are returned to the payer through the Bot API first
   * (`refundStarPayment`; Telegram refuses a second refund), then the ledger posts the refund
   * once. Other providers' money goes back by the admin's own transfer; the ledger records it.
   */
  async refund(provider: string, externalId: string, adminUuid: string, reason: string): Promise<{ transactionUuid: string; amount: string; userUuid: string } | null> {
    const payment = (await this.deps.pg.query(`SELECT status, raw FROM billing_payments WHERE provider = $1 AND external_id = $2`, [provider, externalId])).rows[0];
    if (!payment || payment.status !== 'credited') return null;
    if (provider === STARS_PROVIDER) {
      const telegramUser = Number((payment.raw as { telegram_user_id?: number }).telegram_user_id);
      if (!this.starsApi || !Number.isInteger(telegramUser)) throw new BillingInputError('Stars can be refunded only while the Telegram bot runs');
      try {
        await this.starsApi.refundStarPayment(telegramUser, externalId);
      } catch (err) {
        throw new BillingInputError(`Telegram refused the refund: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    return refundPayment(this.deps.pg, provider, externalId, adminUuid, reason);
  }

  /** A credited payment may lift a limit at once (and clears arrears). */
  async afterPayment(userUuid: string): Promise<void> {
    try {
      await this.enforcer.enforceUser(await readPlan(this.deps.pg), userUuid, new Date());
    } catch (err) {
      this.deps.log.warn({ err }, 'billing: enforcement after a payment failed; the next cycle re-checks');
    }
  }
}

function toOrder(row: Record<string, unknown>): OrderRow {
  return {
    uuid: String(row.uuid),
    user_uuid: String(row.user_uuid),
    provider: String(row.provider),
    amount: fromNano(toNano(String(row.amount))),
    currency: String(row.currency),
    provider_amount: String(row.provider_amount),
    provider_invoice_id: (row.provider_invoice_id as string | null) ?? null,
    pay_url: (row.pay_url as string | null) ?? null,
    status: String(row.status),
    create_datetime: (row.create_datetime as Date).toISOString(),
  };
}
