import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { requireAgent } from '../../../../services/access.js';
import { FeatureFlagError } from '../../../../errors.js';
import { UuidParams } from '../../../../schemas/common.js';
import { AccessToken, UserAuth, UserCreate, UserRead, UserUpdate, UsersQuery, UsersResult } from '../../../../schemas/users.js';
import { UsersService, toUserRead } from './users-service.js';

/** `/pepeunit/api/v1/users` (pepeunit-backend.md §5.2). */
const users: FastifyPluginAsyncTypebox = async (app) => {
  const service = new UsersService(app.pg, app.config, app.cipher);
  const tags = ['users'];

  app.post('/', { schema: { tags, body: UserCreate, response: { 201: UserRead } } }, async (request, reply) => {
    requireAgent(await request.agent(), ['Bot']);
    const user = await service.register(request.body.login, request.body.password);
    return reply.status(201).send(toUserRead(user));
  });

  app.post('/auth', { schema: { tags, body: UserAuth, response: { 200: AccessToken } } }, async (request) => {
    requireAgent(await request.agent(), ['Bot']);
    return { token: await service.login(request.body.credentials, request.body.password) };
  });

  app.get('/generate_verification_link/', { schema: { tags, response: { 200: Type.String() } } }, async (request) => {
    if (!app.config.featureFlags.telegramBot) throw new FeatureFlagError();
    requireAgent(await request.agent(), ['User']);
    throw new FeatureFlagError();
  });

  app.get('/:uuid', { schema: { tags, params: UuidParams, response: { 200: UserRead } } }, async (request) => {
    requireAgent(await request.agent(), ['User', 'Grafana']);
    return toUserRead(await service.get(request.params.uuid));
  });

  app.patch('/:uuid', { schema: { tags, params: UuidParams, body: UserUpdate, response: { 200: UserRead } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    // The reference ignores the path uuid and always updates the caller.
    return toUserRead(await service.update(agent.uuid, request.body));
  });

  app.patch('/block/:uuid', { schema: { tags, params: UuidParams } }, async (request, reply) => {
    requireAgent(await request.agent(), ['User'], ['Admin']);
    await service.block(request.params.uuid);
    return reply.status(204).send();
  });

  app.patch('/unblock/:uuid', { schema: { tags, params: UuidParams } }, async (request, reply) => {
    requireAgent(await request.agent(), ['User'], ['Admin']);
    await service.unblock(request.params.uuid);
    return reply.status(204).send();
  });

  app.get('/', { schema: { tags, querystring: UsersQuery, response: { 200: UsersResult } } }, async (request) => {
    requireAgent(await request.agent(), ['User']);
    const result = await service.list(request.query);
    return { count: result.count, users: result.users.map(toUserRead) };
  });
};
export default users;
