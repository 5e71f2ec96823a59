/**
 * `GET <api>/metrics/load_limit`: the signed load_limit report, only for holders of a scraper
 * token the admin created (`Authorization: Bearer <token>`, as Prometheus' `authorization`
 * sends it, or `x-scraper-token`). No token: 401; unknown or revoked token: 403.
 */
import type { FastifyInstance } from 'fastify';
import { PepeunitError } from '../errors.js';

class ScraperTokenError extends PepeunitError {
  constructor(status: 401 | 403, message: string) {
    super(status, 1, 'No Access', message);
  }
}

export function scraperTokenOf(headers: Record<string, string | string[] | undefined>): string | undefined {
  const auth = headers.authorization;
  if (typeof auth === 'string' && /^Bearer\s+/i.test(auth)) return auth.replace(/^Bearer\s+/i, '').trim();
  const header = headers['x-scraper-token'];
  return typeof header === 'string' && header !== '' ? header : undefined;
}

export function loadLimitRoute(app: FastifyInstance): void {
  app.get('/load_limit', { schema: { tags: ['metrics'], summary: 'Signed load_limit report (scraper token required)' } }, async (request, reply) => {
    const token = scraperTokenOf(request.headers);
    if (!token) {
      void reply.header('www-authenticate', 'Bearer realm="load_limit"');
      throw new ScraperTokenError(401, 'A scraper token is required (Authorization: Bearer <token>)');
    }
    const state = await app.grades.tokens.check(token);
    if (state !== 'ok') throw new ScraperTokenError(403, state === 'revoked' ? 'This scraper token was revoked' : 'Unknown scraper token');
    void reply.header('cache-control', 'no-store');
    return app.grades.report();
  });
}
