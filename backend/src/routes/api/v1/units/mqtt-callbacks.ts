import { timingSafeEqual } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { BROKER_CALLBACK_SECRET_HEADER } from '@pepeunit/common';

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
  const guard = brokerOnly(app.config.brokerCallbacks, (reason) => app.log.warn({ reason }, 'broker callback refused'));

  app.post('/auth', {
    logLevel: 'warn',
    onRequest: guard,
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
    onRequest: guard,
    schema: { tags, summary: 'EMQX HTTP authentication callback', body: AuthnBody, response: { 200: AuthnResult } },
    errorHandler: (_error, _request, reply) => reply.status(200).send({ result: 'deny', is_superuser: false }),
  }, async (request) => access.authenticate(request.body.username ?? '', request.body.clientid));
};
export default mqttCallbacks;

/**
 * The callbacks answer only the broker (issue 10): the shared secret header (EMQX sends it, the
 * controller configures it) and, when configured, a source address in the allowed networks.
 * Anything else is 401 before the body is read; EMQX treats a non-200 answer as "no decision",
 * which ends in its default deny.
 */
export function brokerOnly(
  settings: { readonly secret: string | null; readonly allowedNetworks: readonly string[] },
  onRefused: (reason: string) => void = () => {},
): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
  const expected = settings.secret === null ? null : Buffer.from(settings.secret);
  let networks: BlockList | null = null;
  if (settings.allowedNetworks.length > 0) {
    networks = new BlockList();
    for (const entry of settings.allowedNetworks) {
      const [address, prefix] = entry.split('/') as [string, string | undefined];
      const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
      if (prefix === undefined) networks.addAddress(address, family);
      else networks.addSubnet(address, Number(prefix), family);
    }
  }
  return async (request, reply) => {
    if (networks) {
      const ip = request.socket.remoteAddress ?? '';
      const mapped = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
      if (!networks.check(mapped, isIP(mapped) === 6 ? 'ipv6' : 'ipv4')) {
        onRefused('source address not allowed');
        return reply.code(401).send({ detail: '401: 1: No Access: Broker callbacks only' });
      }
    }
    if (expected) {
      const header = request.headers[BROKER_CALLBACK_SECRET_HEADER];
      const given = Buffer.from(typeof header === 'string' ? header : '');
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        onRefused('missing or wrong shared secret');
        return reply.code(401).send({ detail: '401: 1: No Access: Broker callbacks only' });
      }
    }
  };
}
