/**
 * Crypto Pay API (@CryptoBot), wave2-integrations.md §2.1: `createInvoice` / `getInvoices` with
 * the `Crypto-Pay-API-Token` header and the `{ok, result}` envelope; webhooks signed in
 * `crypto-pay-api-signature` = hex HMAC-SHA-256 of the raw body keyed with SHA-256(token),
 * verified over the raw bytes in constant time. A paid invoice is re-read from the API before
 * crediting, and credited only when it matches its order (else it goes to review).
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { request } from 'undici';
import type { CreatedInvoice, OrderToPay, PaymentProvider } from './types.js';

/** Assets Crypto Pay invoices in directly; any other plan currency is a fiat invoice paid in accepted assets. */
const CRYPTO_ASSETS = new Set(['USDT', 'TON', 'BTC', 'ETH', 'LTC', 'BNB', 'TRX', 'USDC', 'GRAM', 'NOT', 'SOL', 'DOGE']);

export interface CryptoPayInvoice {
  invoice_id: number;
  status: 'active' | 'paid' | 'expired';
  currency_type?: 'crypto' | 'fiat';
  asset?: string;
  fiat?: string;
  amount: string;
  payload?: string;
  bot_invoice_url?: string;
  paid_asset?: string;
  paid_amount?: string;
}

export class CryptoPayError extends Error {}

export function cryptoPaySignature(token: string, rawBody: Buffer | string): string {
  const key = createHash('sha256').update(token).digest();
  return createHmac('sha256', key).update(rawBody).digest('hex');
}

export function verifyCryptoPaySignature(token: string, rawBody: Buffer, header: string | undefined): boolean {
  if (typeof header !== 'string' || !/^[0-9a-f]{64}$/.test(header)) return false;
  const expected = Buffer.from(cryptoPaySignature(token, rawBody), 'hex');
  return timingSafeEqual(expected, Buffer.from(header, 'hex'));
}

export class CryptoPayProvider implements PaymentProvider {
  readonly name = 'crypto_pay';

  constructor(
    private readonly token: string,
    private readonly apiUrl: string,
    private readonly acceptedAssets: readonly string[],
  ) {}

  private async call<T>(method: string, params: Record<string, unknown>): Promise<T> {
    const res = await request(`${this.apiUrl}/${method}`, {
      method: 'POST',
      headers: { 'crypto-pay-api-token': this.token, 'content-type': 'application/json' },
      body: JSON.stringify(params),
      headersTimeout: 15_000,
      bodyTimeout: 15_000,
    });
    const body = (await res.body.json().catch(() => null)) as { ok?: boolean; result?: T; error?: { code?: number; name?: string } } | null;
    if (!body?.ok) throw new CryptoPayError(`Crypto Pay ${method} failed: ${res.statusCode} ${body?.error?.name ?? 'no envelope'}`);
    return body.result as T;
  }

  async createInvoice(order: OrderToPay): Promise<CreatedInvoice> {
    const crypto = CRYPTO_ASSETS.has(order.currency);
    const invoice = await this.call<CryptoPayInvoice>('createInvoice', {
      ...(crypto ? { currency_type: 'crypto', asset: order.currency } : { currency_type: 'fiat', fiat: order.currency, accepted_assets: this.acceptedAssets.join(',') }),
      amount: order.amount,
      description: order.description.slice(0, 1024),
      payload: order.uuid,
      allow_anonymous: false,
      expires_in: 86_400,
    });
    return { invoiceId: String(invoice.invoice_id), payUrl: invoice.bot_invoice_url ?? '', providerAmount: order.amount, providerAsset: order.currency };
  }

  /** The invoice as the provider has it now (webhooks are re-checked with this before crediting). */
  async getInvoice(invoiceId: string): Promise<CryptoPayInvoice | null> {
    return (await this.getInvoices([invoiceId])).find((i) => String(i.invoice_id) === invoiceId) ?? null;
  }

  async getInvoices(invoiceIds: readonly string[]): Promise<CryptoPayInvoice[]> {
    if (invoiceIds.length === 0) return [];
    const result = await this.call<{ items: CryptoPayInvoice[] }>('getInvoices', { invoice_ids: invoiceIds.join(','), count: invoiceIds.length });
    return result.items;
  }
}
