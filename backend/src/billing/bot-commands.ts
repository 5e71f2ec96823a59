/**
 * Billing in the Telegram bot (issue 14): `/balance`, `/statement` (the live itemised statement),
 * `/plan`, `/topup <amount>` (a Stars invoice link) and, for the admin, `/setplan field=value …`.
 * The bot module mounts it with its own resolver of the bound Pepeunit user of a chat. Replies
 * are plain text (no parse mode, nothing to escape).
 */
import { Composer, type Context } from 'grammy';
import type { Pool, PoolClient } from 'pg';
import { inTransaction } from '@pepeunit/common';
import { balanceOf } from './ledger.js';
import { readPlan, writePlan, type Plan } from './plans.js';
import { isDecimal } from './money.js';
import type { BillingService } from './service.js';
import { BillingInputError } from './service.js';
import { STARS_PROVIDER } from './providers/telegram-stars.js';

export interface BotBillingUser {
  uuid: string;
  role: string;
}

const PLAN_FIELDS: Record<string, 'decimal' | 'days' | 'currency'> = {
  currency: 'currency',
  billing_period_days: 'days',
  grace_period_days: 'days',
  free_mps: 'decimal',
  mps_price: 'decimal',
  free_aggregation_topics: 'decimal',
  aggregation_topic_price: 'decimal',
  stars_per_unit: 'decimal',
};

export function planText(plan: Plan): string {
  return [
    `Plan (${plan.currency}, periods of ${plan.billing_period_days} days, grace ${plan.grace_period_days} days)`,
    `Free: ${plan.free_mps} MPS, ${plan.free_aggregation_topics} aggregation topics`,
    `Price: ${plan.mps_price} per MPS, ${plan.aggregation_topic_price} per aggregation topic, per period`,
  ].join('\n');
}

/** Parses `field=value` pairs of /setplan; throws a message for the admin on bad input. */
export function parsePlanChanges(text: string): Partial<Plan> {
  const changes: Record<string, string | number> = {};
  const pairs = text.trim().split(/\s+/).filter(Boolean);
  if (pairs.length === 0) throw new BillingInputError(`Usage: /setplan field=value ... (fields: ${Object.keys(PLAN_FIELDS).join(', ')})`);
  for (const pair of pairs) {
    const [field, value, extra] = pair.split('=');
    const kind = PLAN_FIELDS[field ?? ''];
    if (!kind || value === undefined || extra !== undefined) throw new BillingInputError(`Unknown or malformed setting "${pair}" (fields: ${Object.keys(PLAN_FIELDS).join(', ')})`);
    if (kind === 'decimal' && !(isDecimal(value) && !value.startsWith('-'))) throw new BillingInputError(`${field} must be a decimal number ≥ 0`);
    if (kind === 'days' && !(/^\d{1,3}$/.test(value) && Number(value) <= 366 && (field === 'grace_period_days' || Number(value) >= 1))) throw new BillingInputError(`${field} must be a whole number of days`);
    if (kind === 'currency' && !/^[A-Z]{3,10}$/.test(value)) throw new BillingInputError('currency must be 3-10 capital letters');
    if (field === 'stars_per_unit' && Number(value) <= 0) throw new BillingInputError('stars_per_unit must be above 0');
    changes[field!] = kind === 'days' ? Number(value) : value;
  }
  return changes as Partial<Plan>;
}

export function billingBotCommands<C extends Context>(billing: BillingService, pg: Pool, userOf: (ctx: C) => BotBillingUser | null): Composer<C> {
  const composer = new Composer<C>();
  const bound = async (ctx: C): Promise<BotBillingUser | null> => {
    const user = userOf(ctx);
    if (!user) await ctx.reply('Bind your Pepeunit account first (/start with the link from your profile).');
    return user;
  };

  composer.command('plan', async (ctx) => {
    await ctx.reply(planText(await readPlan(pg)));
  });

  composer.command('balance', async (ctx) => {
    const user = await bound(ctx);
    if (!user) return;
    const [plan, balance, state] = await Promise.all([readPlan(pg), balanceOf(pg, user.uuid), pg.query('SELECT arrears_since, limited_since FROM billing_user_state WHERE user_uuid = $1', [user.uuid])]);
    const row = state.rows[0];
    const status = row?.limited_since ? 'limited to the free tier until paid' : row?.arrears_since ? 'in arrears (grace period)' : 'ok';
    await ctx.reply(`Balance: ${balance} ${plan.currency}\nStatus: ${status}`);
  });

  composer.command('statement', async (ctx) => {
    const user = await bound(ctx);
    if (!user) return;
    const s = await billing.statement(user.uuid);
    const t = s.totals;
    const units = s.units.slice(0, 10).map((u) => `  ${u.unit_uuid.slice(0, 8)}: ${u.messages} msg, ${u.average_mps} MPS avg, ${u.peak_mps} peak`);
    await ctx.reply(
      [
        `Statement ${s.period_start.slice(0, 10)} - ${s.period_end.slice(0, 10)} (so far)`,
        `Units (${s.units.length}):`,
        ...(units.length ? units : ['  none']),
        ...(s.units.length > 10 ? [`  ... ${s.units.length - 10} more (REST: /billing/statement)`] : []),
        `Messages: ${t.messages}, average ${t.average_mps} MPS, free ${t.free_mps}, billable ${t.billable_mps} x ${t.mps_price} = ${t.mps_charge}`,
        `Aggregation: ${t.stored_rows} rows = ${t.aggregation_topics} topics, free ${t.free_aggregation_topics}, billable ${t.billable_aggregation_topics} x ${t.aggregation_topic_price} = ${t.aggregation_charge}`,
        `Total: ${t.total} ${s.currency}`,
      ].join('\n'),
    );
  });

  composer.command('topup', async (ctx) => {
    const user = await bound(ctx);
    if (!user) return;
    const amount = ctx.match.trim();
    if (!billing.providers.has(STARS_PROVIDER)) return void (await ctx.reply('Payments in Telegram Stars are not enabled on this instance.'));
    if (!isDecimal(amount) || amount.startsWith('-')) return void (await ctx.reply('Usage: /topup <amount>, e.g. /topup 5'));
    try {
      const order = await billing.createOrder(user.uuid, STARS_PROVIDER, amount);
      await ctx.reply(`Pay ${order.provider_amount} for ${order.amount} ${order.currency}: ${order.pay_url ?? ''}`);
    } catch (err) {
      if (err instanceof BillingInputError) return void (await ctx.reply(err.message));
      throw err;
    }
  });

  composer.command('setplan', async (ctx) => {
    const user = await bound(ctx);
    if (!user) return;
    if (user.role !== 'Admin') return void (await ctx.reply('Only the instance admin can change the plan.'));
    let changes: Partial<Plan>;
    try {
      changes = parsePlanChanges(ctx.match);
    } catch (err) {
      return void (await ctx.reply(err instanceof Error ? err.message : String(err)));
    }
    const plan = await inTransaction(pg, (client: PoolClient) => writePlan(client, changes, user.uuid));
    await ctx.reply(`Saved.\n${planText(plan)}`);
  });
  return composer;
}
