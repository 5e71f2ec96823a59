/**
 * Provider webhooks. The signature covers the raw request body, so this scope keeps JSON bodies
 * as bytes (its own content-type parser); nothing else in the API is affected.
 * Answers: 200 for anything valid (also duplicates and ignored updates, so the provider stops
 * retrying), 401 for a bad signature (nothing changes), 404 when the provider is not enabled.
 */
import type { FastifyPluginAsync } from 'fastify';
import { PepeunitError } from '../../../../errors.js';
import { BillingInputError, WebhookSignatureError } from '../../../../billing/service.js';

class WebhookError extends PepeunitError {
  constructor(status: number, message: string) {
    super(status, 1, 'No Access', message);
  }
}

const webhooks: FastifyPluginAsync = async (app) => {
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: 256 * 1024 }, (_request, body, done) => done(null, body));
  app.post('/crypto_pay', { schema: { tags: ['billing'], summary: 'Crypto Pay webhook (crypto-pay-api-signature)' } }, async (request) => {
    if (!app.billing.providers.has('crypto_pay')) throw new WebhookError(404, 'Crypto Pay is not enabled');
    const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const signature = request.headers['crypto-pay-api-signature'];
    try {
      return { ok: true, result: await app.billing.cryptoPayWebhook(raw, typeof signature === 'string' ? signature : undefined) };
    } catch (err) {
      if (err instanceof WebhookSignatureError) {
        request.log.warn({ provider: 'crypto_pay' }, 'billing webhook refused: bad signature');
        throw new WebhookError(401, err.message);
      }
      if (err instanceof BillingInputError) throw new WebhookError(400, err.message);
      throw err;
    }
  });
};
export default webhooks;
