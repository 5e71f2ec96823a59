import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';

const AuthzBody = Type.Object({
  token: Type.String({ maxLength: 8192 }),
  topic: Type.String({ maxLength: 65535 }),
  /** Ours: `publish` or `subscribe` (EMQX `${action}`). Absent = reference behaviour (either). */
  action: Type.Optional(Type.String({ maxLength: 16 })),
  clientid: Type.Optional(Type.String({ maxLength: 65535 })),
});
const AuthzResult = Type.Object({ result: Type.Union([Type.Literal('allow'), Type.Literal('deny')]) });

const AuthnBody = Type.Object({
  username: Type.Optional(Type.String({ maxLength: 8192 })),
  password: Type.Optional(Type.String({ maxLength: 8192 })),
  clientid: Type.Optional(Type.String({ maxLength: 65535 })),
  peerhost: Type.Optional(Type.String({ maxLength: 256 })),
});
const AuthnResult = Type.Object({
  result: Type.Union([Type.Literal('allow'), Type.Literal('deny')]),
  is_superuser: Type.Boolean(),
  client_attrs: Type.Optional(Type.Record(Type.String(), Type.String())),
});

/**
 * The broker's HTTP callbacks (EMQX 5 contract, emqx-5.md §5): `POST /units/auth` decides
 * publish/subscribe (reference path and body, plus `action`), `POST /units/authn` decides CONNECT.
 * Always HTTP 200; anything unexpected is a deny.
 */
const mqttCallbacks: FastifyPluginAsyncTypebox = async (app) => {
  const access = app.acl.access;
  const tags = ['units'];

  app.post('/auth', {
    logLevel: 'warn',
    schema: { tags, summary: 'EMQX HTTP authorization callback', body: AuthzBody, response: { 200: AuthzResult } },
    errorHandler: (_error, _request, reply) => reply.status(200).send({ result: 'deny' }),
  }, async (request) => {
    const { token, topic, action } = request.body;
    if (action === 'publish' || action === 'subscribe') return { result: await access.authorize(token, topic, action) };
    if (action !== undefined && action !== '') return { result: 'deny' as const };
    // Reference body without an action: allowed when either action is.
    const [pub, sub] = await Promise.all([access.authorize(token, topic, 'publish'), access.authorize(token, topic, 'subscribe')]);
    return { result: pub === 'allow' || sub === 'allow' ? ('allow' as const) : ('deny' as const) };
  });

  app.post('/authn', {
    logLevel: 'warn',
    schema: { tags, summary: 'EMQX HTTP authentication callback', body: AuthnBody, response: { 200: AuthnResult } },
    errorHandler: (_error, _request, reply) => reply.status(200).send({ result: 'deny', is_superuser: false }),
  }, async (request) => access.authenticate(request.body.username ?? ''));
};
export default mqttCallbacks;
