/**
 * A local stand-in for the Crypto Pay API (wave2-integrations.md §2.1): `POST|GET <root>/<method>`
 * with the `Crypto-Pay-API-Token` header, the `{ok, result}` / `{ok:false, error:{code, name}}`
 * envelope, and the methods billing uses: getMe, createInvoice, getInvoices. `pay(invoiceId)`
 * marks an invoice paid like a payer would and returns the webhook Crypto Pay would send:
 * `{update_id, update_type: "invoice_paid", request_date, payload: Invoice}` with
 * `crypto-pay-api-signature` = hex HMAC-SHA-256(key = SHA-256(token), raw body).
 */
import { createHash, createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StandInInvoice {
  invoice_id: number;
  hash: string;
  currency_type: 'crypto' | 'fiat';
  asset?: string;
  fiat?: string;
  accepted_assets?: string;
  amount: string;
  status: 'active' | 'paid' | 'expired';
  description?: string;
  payload?: string;
  bot_invoice_url: string;
  created_at: string;
  paid_at?: string;
  paid_asset?: string;
  paid_amount?: string;
}

export interface CryptoPayStandIn {
  readonly url: string;
  readonly invoices: Map<number, StandInInvoice>;
  readonly calls: Array<{ method: string; params: Record<string, unknown>; token: string | undefined }>;
  /** Marks the invoice paid and returns the webhook (raw body and headers) Crypto Pay would POST. */
  pay(invoiceId: number): { body: string; headers: Record<string, string> };
  close(): Promise<void>;
}

export async function startCryptoPayStandIn(token: string): Promise<CryptoPayStandIn> {
  const invoices = new Map<number, StandInInvoice>();
  const calls: CryptoPayStandIn['calls'] = [];
  let nextId = 1000;
  let nextUpdate = 1;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const method = url.pathname.split('/').pop() ?? '';
      let params: Record<string, unknown> = Object.fromEntries(url.searchParams);
      const text = Buffer.concat(chunks).toString('utf8');
      if (text) {
        try {
          params = { ...params, ...(JSON.parse(text) as Record<string, unknown>) };
        } catch {
          params = { ...params, ...Object.fromEntries(new URLSearchParams(text)) };
        }
      }
      const given = req.headers['crypto-pay-api-token'];
      calls.push({ method, params, token: typeof given === 'string' ? given : undefined });
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (given !== token) return send(401, { ok: false, error: { code: 401, name: 'UNAUTHORIZED' } });
      switch (method) {
        case 'getMe':
          return send(200, { ok: true, result: { app_id: 1, name: 'pepeunit-test', payment_processing_bot_username: 'CryptoTestnetBot' } });
        case 'createInvoice': {
          const amount = String(params.amount ?? '');
          if (!/^\d+(\.\d+)?$/.test(amount) || Number(amount) <= 0) return send(400, { ok: false, error: { code: 400, name: 'AMOUNT_INVALID' } });
          const type = params.currency_type === 'fiat' ? 'fiat' : 'crypto';
          const id = nextId++;
          const hash = `IV${id}`;
          const invoice: StandInInvoice = {
            invoice_id: id,
            hash,
            currency_type: type,
            ...(type === 'fiat' ? { fiat: String(params.fiat), accepted_assets: String(params.accepted_assets ?? '') } : { asset: String(params.asset) }),
            amount,
            status: 'active',
            description: params.description as string | undefined,
            payload: params.payload as string | undefined,
            bot_invoice_url: `https://t.me/CryptoTestnetBot?start=${hash}`,
            created_at: new Date().toISOString(),
          };
          invoices.set(id, invoice);
          return send(200, { ok: true, result: invoice });
        }
        case 'getInvoices': {
          const ids = String(params.invoice_ids ?? '').split(',').filter(Boolean).map(Number);
          const items = [...invoices.values()].filter((i) => ids.length === 0 || ids.includes(i.invoice_id));
          return send(200, { ok: true, result: { items } });
        }
        default:
          return send(404, { ok: false, error: { code: 404, name: 'METHOD_NOT_FOUND' } });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const key = createHash('sha256').update(token).digest();
  return {
    url: `http://127.0.0.1:${port}/api`,
    invoices,
    calls,
    pay(invoiceId) {
      const invoice = invoices.get(invoiceId);
      if (!invoice) throw new Error(`no invoice ${invoiceId}`);
      invoice.status = 'paid';
      invoice.paid_at = new Date().toISOString();
      invoice.paid_asset = invoice.asset ?? 'USDT';
      invoice.paid_amount = invoice.amount;
      const body = JSON.stringify({ update_id: nextUpdate++, update_type: 'invoice_paid', request_date: new Date().toISOString(), payload: invoice });
      return { body, headers: { 'content-type': 'application/json', 'crypto-pay-api-signature': createHmac('sha256', key).update(body).digest('hex') } };
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
