/**
 * Billing over REST (issue 14, docs/BILLING.md):
 *   GET  /plan                      the plan (anyone)          PUT /plan     the admin sets it
 *   GET  /providers                 enabled payment providers
 *   GET  /balance                   the caller's balance and enforcement state
 *   GET  /ledger                    the caller's ledger lines (admin: ?user_uuid=)
 *   GET  /statement                 the live itemised statement of the current period (or ?at=)
 *   GET  /statements                issued statements
 *   POST /orders                    top up through a provider -> pay_url
 *   GET  /orders
 *   POST /adjustments, /refunds     the admin's corrections (ledger entries, audited)
 *   GET  /audit                     the admin's audit trail
 *   POST /cycle                     the admin runs a billing cycle now
 *   POST /webhooks/crypto_pay       Crypto Pay's signed webhook (webhooks.ts)
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { PoolClient } from 'pg';
import { requireAgent } from '../../../../services/access.js';
import { NotFoundError, PepeunitError, ValidationError } from '../../../../errors.js';
import { readPlan, writePlan } from '../../../../billing/plans.js';
import { inTransaction } from '@pepeunit/common';
import { adjust, balanceOf, history } from '../../../../billing/ledger.js';
import { isDecimal } from '../../../../billing/money.js';
import { BillingInputError } from '../../../../billing/service.js';
import webhooks from './webhooks.js';

const tags = ['billing'];
const Decimal = Type.String({ pattern: '^\\d{1,29}(\\.\\d{1,9})?$', description: 'decimal number, at most 9 fraction digits' });
const SignedDecimal = Type.String({ pattern: '^-?\\d{1,29}(\\.\\d{1,9})?$' });
const PlanBody = Type.Object(
  {
    currency: Type.Optional(Type.String({ pattern: '^[A-Z]{3,10}$' })),
    period_anchor: Type.Optional(Type.String({ format: 'date-time' })),
    billing_period_days: Type.Optional(Type.Integer({ minimum: 1, maximum: 366 })),
    grace_period_days: Type.Optional(Type.Integer({ minimum: 0, maximum: 366 })),
    free_mps: Type.Optional(Decimal),
    mps_price: Type.Optional(Decimal),
    free_aggregation_topics: Type.Optional(Decimal),
    aggregation_topic_price: Type.Optional(Decimal),
    stars_per_unit: Type.Optional(Decimal),
  },
  { additionalProperties: false, minProperties: 1 },
);
const Paging = Type.Object({ limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }), offset: Type.Integer({ minimum: 0, default: 0 }), user_uuid: Type.Optional(Type.String({ format: 'uuid' })) });

const billing: FastifyPluginAsyncTypebox = async (app) => {
  await app.register(webhooks, { prefix: '/webhooks' });

  const userOf = async (request: { agent(): Promise<import('../../../../plugins/auth.js').Agent> }, requested?: string): Promise<string> => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    if (requested && requested !== agent.uuid) {
      requireAgent(agent, ['User'], ['Admin']);
      return requested;
    }
    return agent.uuid;
  };

  app.get('/plan', { schema: { tags, summary: 'The plan and prices' } }, async () => readPlan(app.pg));

  app.put('/plan', { schema: { tags, summary: 'Set the plan (admin)', body: PlanBody } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User'], ['Admin']);
    const body = request.body;
    if (body.stars_per_unit !== undefined && Number(body.stars_per_unit) <= 0) throw new ValidationError('stars_per_unit must be above 0');
    const changes = { ...body, ...(body.period_anchor ? { period_anchor: new Date(body.period_anchor).toISOString() } : {}) };
    return inTransaction(app.pg, (client: PoolClient) => writePlan(client, changes, agent.uuid));
  });

  app.get('/providers', { schema: { tags, summary: 'Enabled payment providers' } }, async () => ({ providers: [...app.billing.providers.keys()].sort() }));

  app.get('/balance', { schema: { tags, summary: 'Balance and enforcement state', querystring: Type.Object({ user_uuid: Type.Optional(Type.String({ format: 'uuid' })) }) } }, async (request) => {
    const user = await userOf(request, request.query.user_uuid);
    const [plan, balance, state] = await Promise.all([
      readPlan(app.pg),
      balanceOf(app.pg, user),
      app.pg.query(`SELECT arrears_since AT TIME ZONE 'utc' AS arrears_since, limited_since AT TIME ZONE 'utc' AS limited_since FROM billing_user_state WHERE user_uuid = $1`, [user]),
    ]);
    const row = state.rows[0];
    return {
      user_uuid: user,
      balance,
      currency: plan.currency,
      arrears_since: row?.arrears_since ? (row.arrears_since as Date).toISOString() : null,
      limited_since: row?.limited_since ? (row.limited_since as Date).toISOString() : null,
      unit_mps_limit: await app.billing.enforcer.limitSource.limitForUser(user),
    };
  });

  app.get('/ledger', { schema: { tags, summary: 'Ledger lines of a user', querystring: Paging } }, async (request) => {
    const user = await userOf(request, request.query.user_uuid);
    return history(app.pg, user, request.query.limit, request.query.offset);
  });

  app.get('/statement', { schema: { tags, summary: 'Live itemised statement of the period containing `at` (default now)', querystring: Type.Object({ at: Type.Optional(Type.String({ format: 'date-time' })), user_uuid: Type.Optional(Type.String({ format: 'uuid' })) }) } }, async (request) => {
    const user = await userOf(request, request.query.user_uuid);
    try {
      void app.loadPorts.usage; // throws while no usage reader is attached
    } catch {
      throw new PepeunitError(503, 18, 'Metering Unavailable', 'Usage cannot be metered: the load component is not running');
    }
    return app.billing.statement(user, request.query.at ? new Date(request.query.at) : new Date());
  });

  app.get('/statements', { schema: { tags, summary: 'Issued statements', querystring: Paging } }, async (request) => {
    const user = await userOf(request, request.query.user_uuid);
    const { rows } = await app.pg.query('SELECT body FROM billing_statements WHERE user_uuid = $1 ORDER BY period_start DESC LIMIT $2 OFFSET $3', [user, request.query.limit, request.query.offset]);
    return rows.map((r) => JSON.parse(r.body));
  });

  app.post('/orders', { schema: { tags, summary: 'Top up the balance through a provider', body: Type.Object({ provider: Type.String({ minLength: 1, maxLength: 32 }), amount: Decimal }) } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    try {
      return reply.status(201).send(await app.billing.createOrder(agent.uuid, request.body.provider, request.body.amount));
    } catch (err) {
      if (err instanceof BillingInputError) throw new ValidationError(err.message);
      throw err;
    }
  });

  app.get('/orders', { schema: { tags, summary: 'The caller\'s orders', querystring: Paging } }, async (request) => {
    const user = await userOf(request, request.query.user_uuid);
    return app.billing.orders(user, request.query.limit);
  });

  app.post('/adjustments', {
    schema: { tags, summary: 'Manual adjustment (admin): positive credits the user, negative debits', body: Type.Object({ user_uuid: Type.String({ format: 'uuid' }), amount: SignedDecimal, reason: Type.String({ minLength: 1, maxLength: 500 }), idempotency_key: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })) }) },
  }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User'], ['Admin']);
    const { user_uuid, amount, reason, idempotency_key } = request.body;
    if (!isDecimal(amount) || /^-?0+(\.0+)?$/.test(amount)) throw new ValidationError('amount must be a non-zero decimal');
    const user = await app.pg.query('SELECT 1 FROM users WHERE uuid = $1', [user_uuid]);
    if (user.rowCount === 0) throw new NotFoundError(`No user ${user_uuid}`);
    const result = await adjust(app.pg, user_uuid, amount, reason, agent.uuid, idempotency_key ?? crypto.randomUUID());
    await app.billing.afterPayment(user_uuid);
    return reply.status(result.created ? 201 : 200).send({ transaction_uuid: result.transactionUuid, created: result.created, balance: await balanceOf(app.pg, user_uuid) });
  });

  app.post('/refunds', {
    schema: { tags, summary: 'Refund a credited payment in the ledger (admin)', body: Type.Object({ provider: Type.String({ minLength: 1, maxLength: 32 }), external_id: Type.String({ minLength: 1, maxLength: 200 }), reason: Type.String({ minLength: 1, maxLength: 500 }) }) },
  }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User'], ['Admin']);
    let result: Awaited<ReturnType<typeof app.billing.refund>>;
    try {
      result = await app.billing.refund(request.body.provider, request.body.external_id, agent.uuid, request.body.reason);
    } catch (err) {
      if (err instanceof BillingInputError) throw new ValidationError(err.message);
      throw err;
    }
    if (!result) throw new ValidationError('No credited payment with this provider and id (already refunded, under review, or unknown)');
    return reply.status(201).send({ transaction_uuid: result.transactionUuid, amount: result.amount, balance: await balanceOf(app.pg, result.userUuid) });
  });

  app.get('/audit', { schema: { tags, summary: 'Audit trail (admin)', querystring: Paging } }, async (request) => {
    requireAgent(await request.agent(), ['User'], ['Admin']);
    const { rows } = await app.pg.query(`SELECT id::text, actor, action, detail, create_datetime AT TIME ZONE 'utc' AS at FROM billing_audit ORDER BY id DESC LIMIT $1 OFFSET $2`, [request.query.limit, request.query.offset]);
    return rows.map((r) => ({ id: r.id, actor: r.actor, action: r.action, detail: r.detail, create_datetime: (r.at as Date).toISOString() }));
  });

  app.post('/cycle', { schema: { tags, summary: 'Run a billing cycle now (admin)' } }, async (request) => {
    requireAgent(await request.agent(), ['User'], ['Admin']);
    const reconciled = await app.billing.reconcileCryptoPay();
    return { crypto_pay: reconciled, cycle: (await app.billing.enforcer.runCycle()) ?? { skipped: 'another replica is running the cycle' } };
  });
};
export default billing;
