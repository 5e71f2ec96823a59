import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { projectInfo } from '../version.js';

/** OpenAPI document at `<prefix>/api/v1/openapi.json` (reference path) and Swagger UI at `<prefix>/docs`. */
export default fp(async (app) => {
  const { appPrefix, apiV1Prefix } = app.config;
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Pepeunit TS', version: projectInfo.version, description: projectInfo.description },
      components: {
        securitySchemes: { token: { type: 'apiKey', in: 'header', name: 'x-auth-token' } },
      },
    },
  });
  await app.register(swaggerUi, { routePrefix: `${appPrefix}/docs` });
  app.get(`${appPrefix}${apiV1Prefix}/openapi.json`, { schema: { hide: true } }, async () => app.swagger());
}, { name: 'pepeunit-swagger', dependencies: ['pepeunit-core'] });
