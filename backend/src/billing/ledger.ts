/**
 * The ledger (wave2-integrations.md §2.0): append-only double entry in Postgres. Every business
 * event is one transaction whose entries sum to zero (checked by the database at commit), made
 * idempotent by a unique key (a provider's payment id credits once however often its webhook
 * arrives). Balances are derived from the entries, never stored. Every change is audited.
 *
 * Accounts (debit positive, credit negative):
 *   customer (per user)   what the instance owes the user: balance = -(sum of its entries)
 *   provider:<name>       money received through a provider
 *   revenue               usage charged
 *   adjustments           the admin's manual corrections
 */
import { randomUUID } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import { inTransaction } from '@pepeunit/common';
import { fromNano, toNano } from './money.js';

export type TransactionKind = 'payment' | 'charge' | 'refund' | 'adjustment';

export interface Posting {
  kind: TransactionKind;
  userUuid: string;
  idempotencyKey: string;
  description: string;
  actorUuid?: string | null;
  entries: Array<{ account: string; userUuid?: string; amount: bigint }>;
}

export interface PaymentReport {
  provider: string;
  externalId: string;
  orderUuid: string | null;
  userUuid: string;
  /** Credited amount in the plan currency (decimal string). */
  amount: string;
  asset: string;
  providerAmount: string;
  raw: unknown;
  /** 'credited' posts the money; 'review' records it for the admin (amount mismatch, expired order). */
  status: 'credited' | 'review';
}

export async function audit(db: Pool | PoolClient, actor: string, action: string, detail: unknown): Promise<void> {
  await db.query('INSERT INTO billing_audit (actor, action, detail) VALUES ($1, $2, $3)', [actor, action, JSON.stringify(detail)]);
}

/** Posts a balanced transaction once per idempotency key; `created` is false for a repeat. */
export async function post(client: PoolClient, posting: Posting): Promise<{ transactionUuid: string; created: boolean }> {
  const sum = posting.entries.reduce((total, e) => total + e.amount, 0n);
  if (sum !== 0n) throw new Error(`unbalanced posting ${posting.idempotencyKey}: ${fromNano(sum)}`);
  const uuid = randomUUID();
  const inserted = await client.query(
    `INSERT INTO billing_transactions (uuid, kind, user_uuid, idempotency_key, description, actor_uuid) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (idempotency_key) DO NOTHING RETURNING uuid`,
    [uuid, posting.kind, posting.userUuid, posting.idempotencyKey, posting.description, posting.actorUuid ?? null],
  );
  if (inserted.rowCount === 0) {
    const existing = await client.query('SELECT uuid FROM billing_transactions WHERE idempotency_key = $1', [posting.idempotencyKey]);
    return { transactionUuid: existing.rows[0].uuid, created: false };
  }
  for (const entry of posting.entries) {
    if (entry.amount === 0n) continue;
    await client.query('INSERT INTO billing_entries (transaction_uuid, account, user_uuid, amount) VALUES ($1, $2, $3, $4)', [uuid, entry.account, entry.account === 'customer' ? posting.userUuid : null, fromNano(entry.amount)]);
  }
  return { transactionUuid: uuid, created: true };
}

export async function balanceOf(db: Pool | PoolClient, userUuid: string): Promise<string> {
  const { rows } = await db.query(`SELECT coalesce(-sum(amount), 0)::text AS balance FROM billing_entries WHERE account = 'customer' AND user_uuid = $1`, [userUuid]);
  return fromNano(toNano(rows[0].balance));
}

/**
 * Records a provider's payment and credits it, exactly once per (provider, external id): the
 * payment row is inserted if absent and the money posted only when the insert happened, in one
 * transaction. Returns whether this call credited it.
 */
export async function recordPayment(pg: Pool, payment: PaymentReport): Promise<{ credited: boolean; duplicate: boolean }> {
  return inTransaction(pg, async (client) => {
    const inserted = await client.query(
      `INSERT INTO billing_payments (provider, external_id, order_uuid, user_uuid, status, asset, amount_text, raw)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (provider, external_id) DO NOTHING RETURNING provider`,
      [payment.provider, payment.externalId, payment.orderUuid, payment.userUuid, payment.status, payment.asset, payment.providerAmount, JSON.stringify(payment.raw)],
    );
    if (inserted.rowCount === 0) return { credited: false, duplicate: true };
    await audit(client, `provider:${payment.provider}`, payment.status === 'credited' ? 'payment.credited' : 'payment.review', {
      external_id: payment.externalId,
      order_uuid: payment.orderUuid,
      user_uuid: payment.userUuid,
      amount: payment.amount,
      provider_amount: `${payment.providerAmount} ${payment.asset}`,
    });
    if (payment.orderUuid) await client.query(`UPDATE billing_orders SET status = $2 WHERE uuid = $1`, [payment.orderUuid, payment.status === 'credited' ? 'paid' : 'review']);
    if (payment.status !== 'credited') return { credited: false, duplicate: false };
    const amount = toNano(payment.amount);
    const { transactionUuid } = await post(client, {
      kind: 'payment',
      userUuid: payment.userUuid,
      idempotencyKey: `payment:${payment.provider}:${payment.externalId}`,
      description: `Payment through ${payment.provider} (${payment.providerAmount} ${payment.asset})`,
      entries: [
        { account: `provider:${payment.provider}`, amount },
        { account: 'customer', amount: -amount },
      ],
    });
    await client.query('UPDATE billing_payments SET transaction_uuid = $3 WHERE provider = $1 AND external_id = $2', [payment.provider, payment.externalId, transactionUuid]);
    return { credited: true, duplicate: false };
  });
}

/** The admin refunds a credited payment in the ledger (once); the provider-side refund is separate. */
export async function refundPayment(pg: Pool, provider: string, externalId: string, adminUuid: string, reason: string): Promise<{ transactionUuid: string; amount: string; userUuid: string } | null> {
  return inTransaction(pg, async (client) => {
    const { rows } = await client.query(
      `SELECT p.user_uuid, p.status, e.amount::text AS amount FROM billing_payments p
         JOIN billing_entries e ON e.transaction_uuid = p.transaction_uuid AND e.account = 'customer'
        WHERE p.provider = $1 AND p.external_id = $2 FOR UPDATE OF p`,
      [provider, externalId],
    );
    const payment = rows[0];
    if (!payment || payment.status !== 'credited') return null;
    const amount = -toNano(payment.amount); // the customer entry of a payment is a credit (negative)
    const result = await post(client, {
      kind: 'refund',
      userUuid: payment.user_uuid,
      idempotencyKey: `refund:${provider}:${externalId}`,
      description: `Refund of ${provider} payment ${externalId}: ${reason}`,
      actorUuid: adminUuid,
      entries: [
        { account: 'customer', amount },
        { account: `provider:${provider}`, amount: -amount },
      ],
    });
    await client.query(`UPDATE billing_payments SET status = 'refunded' WHERE provider = $1 AND external_id = $2`, [provider, externalId]);
    await audit(client, `admin:${adminUuid}`, 'payment.refunded', { provider, external_id: externalId, user_uuid: payment.user_uuid, amount: fromNano(amount), reason });
    return { transactionUuid: result.transactionUuid, amount: fromNano(amount), userUuid: payment.user_uuid };
  });
}

/** A manual adjustment by the admin: positive amounts credit the user, negative ones debit. */
export async function adjust(pg: Pool, userUuid: string, amount: string, reason: string, adminUuid: string, idempotencyKey: string): Promise<{ transactionUuid: string; created: boolean }> {
  const value = toNano(amount);
  if (value === 0n) throw new RangeError('an adjustment of 0 changes nothing');
  return inTransaction(pg, async (client) => {
    const result = await post(client, {
      kind: 'adjustment',
      userUuid,
      idempotencyKey: `adjustment:${idempotencyKey}`,
      description: reason,
      actorUuid: adminUuid,
      entries: [
        { account: 'adjustments', amount: value },
        { account: 'customer', amount: -value },
      ],
    });
    if (result.created) await audit(client, `admin:${adminUuid}`, 'ledger.adjustment', { user_uuid: userUuid, amount: fromNano(value), reason });
    return result;
  });
}

export interface LedgerLine {
  transaction_uuid: string;
  kind: TransactionKind;
  description: string;
  /** Effect on the user's balance (positive = credit to the user). */
  amount: string;
  create_datetime: string;
}

export async function history(pg: Pool, userUuid: string, limit: number, offset: number): Promise<LedgerLine[]> {
  const { rows } = await pg.query(
    `SELECT t.uuid, t.kind, t.description, (-e.amount)::text AS amount, t.create_datetime AT TIME ZONE 'utc' AS at
       FROM billing_transactions t JOIN billing_entries e ON e.transaction_uuid = t.uuid AND e.account = 'customer'
      WHERE t.user_uuid = $1 ORDER BY t.create_datetime DESC, t.uuid LIMIT $2 OFFSET $3`,
    [userUuid, limit, offset],
  );
  return rows.map((r) => ({ transaction_uuid: r.uuid, kind: r.kind, description: r.description, amount: fromNano(toNano(r.amount)), create_datetime: (r.at as Date).toISOString() }));
}
