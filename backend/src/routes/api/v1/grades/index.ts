/**
 * Instance grades (issue 14), admin only: scraper tokens for the load_limit report (created,
 * listed, revoked) and load checks (started, listed, read). The report itself is served at
 * `GET /metrics/load_limit` to scraper-token holders; the public key at `GET /grades/instance_key`,
 * at `/.well-known/pepeunit-instance-key` and in `GET /pepeunit`.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { requireAgent } from '../../../../services/access.js';
import { NotFoundError, ValidationError } from '../../../../errors.js';
import { DEFAULT_LOAD_CHECK } from '../../../../grades/load-check.js';
import { GradeRunConflictError } from '../../../../grades/runs.js';

const tags = ['grades'];
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);
const ScraperToken = Type.Object({
  uuid: Type.String(),
  name: Type.String(),
  token_prefix: Type.String(),
  creator_uuid: Nullable(Type.String()),
  create_datetime: Type.String(),
  last_used_datetime: Nullable(Type.String()),
  revoked_datetime: Nullable(Type.String()),
});
const UuidParams = Type.Object({ uuid: Type.String({ format: 'uuid' }) });
const ServiceLevelBody = Type.Object(
  {
    max_loss: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    max_latency_p99_ms: Type.Optional(Type.Number({ minimum: 1, maximum: 60_000 })),
    max_error_rate: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
  },
  { additionalProperties: false },
);
const LoadCheckBody = Type.Object(
  {
    units_start: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
    units_step_factor: Type.Optional(Type.Number({ minimum: 1.1, maximum: 10 })),
    units_max: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
    rate_per_unit: Type.Optional(Type.Number({ minimum: 0.1, maximum: 1000 })),
    iteration_seconds: Type.Optional(Type.Number({ minimum: 0.5, maximum: 300 })),
    max_iterations: Type.Optional(Type.Integer({ minimum: 1, maximum: 50 })),
    max_seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 3600 })),
    connect_rate: Type.Optional(Type.Number({ minimum: 1, maximum: 1000 })),
    payload_bytes: Type.Optional(Type.Integer({ minimum: 40, maximum: 65_536 })),
    service_level: Type.Optional(ServiceLevelBody),
  },
  { additionalProperties: false },
);

const grades: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/instance_key', { schema: { tags, summary: 'The instance public key (Ed25519, SPKI DER base64) that signs load_limit reports' } }, async () => {
    const key = await app.grades.key();
    return { algorithm: key.algorithm, key_id: key.keyId, public_key: key.publicKey, domain: app.config.domain };
  });

  app.post('/scraper_tokens', {
    schema: { tags, summary: 'Create a scraper token (shown once)', body: Type.Object({ name: Type.String({ minLength: 1, maxLength: 100 }) }), response: { 201: Type.Intersect([ScraperToken, Type.Object({ token: Type.String() })]) } },
  }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User'], ['Admin']);
    const { token, row } = await app.grades.tokens.create(request.body.name, agent.uuid);
    return reply.status(201).send({ ...row, token });
  });

  app.get('/scraper_tokens', { schema: { tags, summary: 'List scraper tokens', response: { 200: Type.Array(ScraperToken) } } }, async (request) => {
    requireAgent(await request.agent(), ['User'], ['Admin']);
    return app.grades.tokens.list();
  });

  app.delete('/scraper_tokens/:uuid', { schema: { tags, summary: 'Revoke a scraper token', params: UuidParams, response: { 200: ScraperToken } } }, async (request) => {
    requireAgent(await request.agent(), ['User'], ['Admin']);
    const row = await app.grades.tokens.revoke(request.params.uuid);
    if (!row) throw new NotFoundError(`No scraper token ${request.params.uuid}`);
    return row;
  });

  app.post('/load_checks', { schema: { tags, summary: 'Start a load check (the grade); one at a time', body: LoadCheckBody } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User'], ['Admin']);
    const body = request.body;
    const parameters = { ...DEFAULT_LOAD_CHECK, ...body, service_level: { ...DEFAULT_LOAD_CHECK.service_level, ...body.service_level } };
    if (parameters.units_start > parameters.units_max) throw new ValidationError('units_start must not exceed units_max');
    try {
      const uuid = await app.grades.startLoadCheck(parameters, agent.uuid);
      return reply.status(202).send({ uuid, parameters });
    } catch (err) {
      if (err instanceof GradeRunConflictError) throw new ValidationError('A load check is already running');
      throw err;
    }
  });

  app.get('/load_checks', { schema: { tags, summary: 'Recent load checks' } }, async (request) => {
    requireAgent(await request.agent(), ['User'], ['Admin']);
    return app.grades.runs.list();
  });

  app.get('/load_checks/:uuid', { schema: { tags, summary: 'A load check with its chained iterations', params: UuidParams } }, async (request) => {
    requireAgent(await request.agent(), ['User'], ['Admin']);
    const run = await app.grades.runs.get(request.params.uuid);
    if (!run) throw new NotFoundError(`No load check ${request.params.uuid}`);
    return run;
  });
};
export default grades;
