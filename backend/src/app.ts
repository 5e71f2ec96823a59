import Fastify, { type FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { AppDeps } from './deps.js';
import errorsPlugin from './plugins/errors.js';
import metricsPlugin from './plugins/metrics.js';
import swaggerPlugin from './plugins/swagger.js';
import rootRoutes from './routes/root.js';
import healthRoutes from './routes/health/index.js';
import authPlugin from './plugins/auth.js';
import aclPlugin from './plugins/acl.js';
import gitStorePlugin from './plugins/git-store.js';
import usersRoutes from './routes/api/v1/users/index.js';
import permissionRoutes from './routes/api/v1/permission/index.js';
import mqttCallbackRoutes from './routes/api/v1/units/mqtt-callbacks.js';
import { Cipher } from './security/cipher.js';

/**
 * Builds the Fastify application from its dependencies. No I/O happens here beyond what the
 * dependencies already opened, so tests build the real app with `app.inject`.
 */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger,
    disableRequestLogging: false,
    bodyLimit: 8 * 1024 * 1024,
    ajv: { customOptions: { coerceTypes: 'array', removeAdditional: false, allErrors: false } },
    return503OnClosing: true,
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.decorate('deps', deps);
  app.decorate('config', deps.config);
  app.decorate('pg', deps.pg);
  app.decorate('clickhouse', deps.clickhouse);
  app.decorate('mqtt', deps.mqtt);
  app.decorate('cipher', new Cipher(deps.config.encryptKey, deps.config.maxCipherLength));
  await app.register(errorsPlugin);
  await app.register(swaggerPlugin);
  await app.register(metricsPlugin);
  await app.register(rootRoutes);
  await app.register(healthRoutes);
  await app.register(authPlugin);
  await app.register(aclPlugin);
  await app.register(gitStorePlugin);
  const api = `${deps.config.appPrefix}${deps.config.apiV1Prefix}`;
  await app.register(usersRoutes, { prefix: `${api}/users` });
  await app.register(permissionRoutes, { prefix: `${api}/permission` });
  await app.register(mqttCallbackRoutes, { prefix: `${api}/units` });
  return app as unknown as FastifyInstance;
}
