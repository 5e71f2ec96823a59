import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { requireAgent } from '../../../../services/access.js';
import rateLimit from '@fastify/rate-limit';
import { FeatureFlagError, PepeunitError } from '../../../../errors.js';
import { UuidParams } from '../../../../schemas/common.js';
import { AccessToken, UserAuth, UserCreate, UserRead, UserUpdate, UsersQuery, UsersResult } from '../../../../schemas/users.js';
import { UsersService, toUserRead } from './users-service.js';

/** `/pepeunit/api/v1/users` (pepeunit-backend.md §5.2). */
const users: FastifyPluginAsyncTypebox = async (app) => {
  const service = new UsersService(app.pg, app.config, app.cipher);
  const tags = ['users'];
  const { attemptsPerAddress, windowSeconds } = app.config.loginLimits;
  // Per client address, for the login route only (the per-account limit lives in the service).
  await app.register(rateLimit, {
    global: false,
    errorResponseBuilder: (_request, context) => new PepeunitError(429, 18, 'Too Many Requests', `Too many login attempts from this address; retry in ${Math.ceil(context.ttl / 1000)} s`),
  });

  app.post('/', { schema: { tags, body: UserCreate, response: { 201: UserRead } } }, async (request, reply) => {
    requireAgent(await request.agent(), ['Bot']);
    const user = await service.register(request.body.login, request.body.password);
    // The first account of an instance becomes its Admin (reference rule): say so in the log.
    if (user.role === 'Admin') app.log.warn({ login: user.login, uuid: user.uuid }, 'the first account registered on this instance is its Admin');
    return reply.status(201).send(toUserRead(user));
  });

  app.post('/auth', {
    schema: { tags, body: UserAuth, response: { 200: AccessToken } },
    config: attemptsPerAddress > 0 ? { rateLimit: { max: attemptsPerAddress, timeWindow: windowSeconds * 1000 } } : {},
  }, async (request) => {
    requireAgent(await request.agent(), ['Bot']);
    return { token: await service.login(request.body.credentials, request.body.password) };
  });

  app.get('/generate_verification_link/', { schema: { tags, response: { 200: Type.String() } } }, async (request, reply) => {
    if (!app.config.featureFlags.telegramBot) throw new FeatureFlagError();
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    // The bot module consumes the code (/start <code>); without a running bot there is nothing to bind to.
    if (!app.hasDecorator('telegramBot')) throw new FeatureFlagError();
    const code = await app.telegramBot.binding.createCode(agent.uuid);
    const botLink = app.config.telegram.botLink || (app.telegramBot.bot.isInited() ? `https://t.me/${app.telegramBot.bot.botInfo.username}` : '');
    // A JSON string, as the reference answers.
    return reply.type('application/json; charset=utf-8').send(JSON.stringify(`${botLink}?start=${code}`));
  });

  app.get('/:uuid', { schema: { tags, params: UuidParams, response: { 200: UserRead } } }, async (request) => {
    requireAgent(await request.agent(), ['User', 'Grafana']);
    return service.read(request.params.uuid);
  });

  app.patch('/:uuid', { schema: { tags, params: UuidParams, body: UserUpdate, response: { 200: UserRead } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    // The reference ignores the path uuid and always updates the caller.
    const updated = toUserRead(await service.update(agent.uuid, request.body));
    // Cached agents hold the login, and a password change revokes tokens: drop them everywhere.
    await app.acl.invalidate('user updated');
    return updated;
  });

  app.patch('/block/:uuid', { schema: { tags, params: UuidParams } }, async (request, reply) => {
    requireAgent(await request.agent(), ['User'], ['Admin']);
    await service.block(request.params.uuid);
    // Blocking an owner blocks their units: no REST, no MQTT, live sessions cut.
    const units = await app.pg.query<{ uuid: string }>('SELECT uuid::text AS uuid FROM units WHERE creator_uuid = $1', [request.params.uuid]);
    await app.acl.invalidate('user blocked', { units: units.rows.map((r) => r.uuid) });
    return reply.status(204).send();
  });

  app.patch('/unblock/:uuid', { schema: { tags, params: UuidParams } }, async (request, reply) => {
    requireAgent(await request.agent(), ['User'], ['Admin']);
    await service.unblock(request.params.uuid);
    await app.acl.invalidate('user unblocked');
    return reply.status(204).send();
  });

  app.get('/', { schema: { tags, querystring: UsersQuery, response: { 200: UsersResult } } }, async (request) => {
    requireAgent(await request.agent(), ['User']);
    const result = await service.list(request.query);
    return { count: result.count, users: result.users.map(toUserRead) };
  });
};
export default users;
