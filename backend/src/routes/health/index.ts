import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { checkDependencies } from './health-service.js';

const Component = Type.Object({ up: Type.Boolean(), latency_ms: Type.Number(), error: Type.Optional(Type.String()) });

/** Liveness (the process answers) and readiness (Postgres, ClickHouse and the broker answer). */
const health: FastifyPluginAsync = async (app) => {
  const prefix = app.config.appPrefix;
  app.get(`${prefix}/health/live`, {
    schema: { tags: ['health'], summary: 'Liveness', response: { 200: Type.Object({ status: Type.Literal('ok') }) } },
  }, async () => ({ status: 'ok' as const }));

  const Ready = Type.Object({
    status: Type.Union([Type.Literal('ready'), Type.Literal('not_ready')]),
    checks: Type.Object({ postgres: Component, clickhouse: Component, broker: Component }),
  });
  app.get(`${prefix}/health/ready`, {
    schema: { tags: ['health'], summary: 'Readiness of Postgres, ClickHouse and the MQTT broker', response: { 200: Ready, 503: Ready } },
  }, async (_request, reply) => {
    const checks = await checkDependencies(app.deps);
    const ready = checks.postgres.up && checks.clickhouse.up && checks.broker.up;
    return reply.status(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', checks });
  });
};
export default health;
