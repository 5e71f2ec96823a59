import fp from 'fastify-plugin';
import type { FastifyError } from 'fastify';
import { PepeunitError } from '../errors.js';

/**
 * Every error leaves in the reference format: domain errors as
 * `{"detail": "<status>: <code>: <Template>: <message>"}`, request validation errors as a 422 with a
 * FastAPI-like `detail` list, unexpected errors as a 500 without internals.
 */
export default fp(async (app) => {
  app.setErrorHandler((error: FastifyError | PepeunitError, request, reply) => {
    if (error instanceof PepeunitError) {
      return reply.status(error.statusCode).send({ detail: error.detail });
    }
    const fe = error as FastifyError;
    if (fe.validation) {
      return reply.status(422).send({
        detail: fe.validation.map((v) => ({
          loc: [fe.validationContext ?? 'body', ...v.instancePath.split('/').filter(Boolean)],
          msg: v.message ?? 'invalid value',
          type: v.keyword,
        })),
      });
    }
    if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) {
      return reply.status(fe.statusCode).send({ detail: `${fe.statusCode}: ${fe.message}` });
    }
    request.log.error({ err: error }, 'unhandled error');
    return reply.status(500).send({ detail: '500: Internal Server Error' });
  });
  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send({ detail: `404: Not Found: ${request.method} ${request.url.split('?')[0]}` });
  });
}, { name: 'pepeunit-errors', dependencies: [] });
