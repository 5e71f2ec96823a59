/**
 * Access logging that costs little (issue 11): Fastify's two info lines per request are off; one
 * line is written for a request that failed (5xx: error, 4xx: debug) or took longer than
 * PU_SLOW_REQUEST_MS (warn). PU_ACCESS_LOG=all logs every request at info (one line, after it
 * finished), `off` nothing but the slow ones.
 */
import fp from 'fastify-plugin';

export default fp(
  async (app) => {
    const { accessLog, slowRequestMs } = app.config.http;
    // Callback style: runs on every answer, so no promise per request.
    app.addHook('onResponse', (request, reply, done) => {
      const status = reply.statusCode;
      const ms = reply.elapsedTime;
      if (accessLog === 'all') {
        request.log.info({ method: request.method, route: request.routeOptions.url ?? 'unmatched', path: request.url.split('?', 1)[0], status, ms: Math.round(ms) }, 'request');
        done();
        return;
      }
      if (ms >= slowRequestMs) request.log.warn({ method: request.method, route: request.routeOptions.url ?? 'unmatched', status, ms: Math.round(ms) }, 'slow request');
      else if (accessLog === 'errors') {
        if (status >= 500) request.log.error({ method: request.method, route: request.routeOptions.url ?? 'unmatched', status, ms: Math.round(ms) }, 'request failed');
        else if (status >= 400) request.log.debug({ method: request.method, route: request.routeOptions.url ?? 'unmatched', status }, 'request refused');
      }
      done();
    });
  },
  { name: 'pepeunit-access-log', dependencies: ['pepeunit-core'] },
);
