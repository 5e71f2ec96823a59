/**
 * Payment providers behind one interface. A provider turns an order (an amount in the plan
 * currency) into something the user pays (an invoice link) and reports payments back through
 * `recordPayment` (ledger.ts), keyed by its own payment id so a payment credits once. Crypto Pay
 * (crypto-pay.ts) and Telegram Stars (telegram-stars.ts) implement it; BTCPay (Greenfield
 * invoices + `BTCPay-Sig` webhooks) or TON transfers (comment = order id, polled) fit the same
 * shape: `createInvoice` plus a webhook or poller that calls `recordPayment`.
 */
export interface OrderToPay {
  uuid: string;
  userUuid: string;
  /** Decimal string in the plan currency. */
  amount: string;
  currency: string;
  description: string;
}

export interface CreatedInvoice {
  /** The provider's invoice id (null when the provider creates it later, e.g. a Stars link). */
  invoiceId: string | null;
  payUrl: string;
  /** What the provider was asked for, in its own unit (e.g. `12` XTR, `3.5` USDT). */
  providerAmount: string;
  providerAsset: string;
}

export interface PaymentProvider {
  readonly name: string;
  createInvoice(order: OrderToPay): Promise<CreatedInvoice>;
}
