import fp from 'fastify-plugin';
import { Registry, collectDefaultMetrics, Histogram, Counter } from 'prom-client';

declare module 'fastify' {
  interface FastifyInstance {
    readonly metrics: Registry;
  }
}

/**
 * Prometheus metrics at `<PU_APP_PREFIX>/metrics` (reference: request metrics when
 * PU_FF_PROMETHEUS_ENABLE). One registry per app instance so several apps can live in one process.
 */
export default fp(async (app) => {
  const registry = new Registry();
  registry.setDefaultLabels({ service: 'backend' });
  collectDefaultMetrics({ register: registry });
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by route and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [registry],
  });
  const total = new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests by route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  app.decorate('metrics', registry);
  // The labelled series of each (method, route, status), looked up once: prom-client hashes the
  // label object on every call otherwise. Bounded: routes x methods x statuses.
  const series = new Map<string, { duration: ReturnType<typeof duration.labels>; total: ReturnType<typeof total.labels> }>();
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const status = reply.statusCode;
    const key = `${request.method} ${status} ${route}`;
    let s = series.get(key);
    if (!s) {
      const labels = { method: request.method, route, status: String(status) };
      s = { duration: duration.labels(labels), total: total.labels(labels) };
      if (series.size < 10_000) series.set(key, s);
    }
    s.duration.observe(reply.elapsedTime / 1000);
    s.total.inc();
    done();
  });
  if (app.config.featureFlags.prometheus) {
    app.get(`${app.config.appPrefix}/metrics`, { schema: { hide: true } }, async (_request, reply) => {
      reply.header('content-type', registry.contentType);
      return registry.metrics();
    });
  }
}, { name: 'pepeunit-metrics', dependencies: ['pepeunit-core'] });
