// The embedded broker's management API: EMQX 5.8 paths under /api/v5, API-key Basic auth, EMQX's
// error format. Each resource lives in routes/<resource>.ts as a Fastify plugin; the rule engine's
// routes (rules, connectors, actions, Prometheus data integration) are registered here too.
import { timingSafeEqual } from 'node:crypto';
import Fastify from 'fastify';
import type { FastifyError, FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { Logger } from '../logger.js';
import { ApiError } from './api-error.js';
import type { ConfigStore } from './config-store.js';
import type { ClientSession, SessionRegistry } from './sessions.js';
import type { RuleEngine } from './rule-engine/engine.js';
import { ruleRoutes } from './rule-engine/routes.js';
import { actionsRoutes } from './routes/actions.js';
import { authenticationRoutes } from './routes/authentication.js';
import { authorizationRoutes } from './routes/authorization.js';
import { bannedRoutes } from './routes/banned.js';
import { clientsRoutes } from './routes/clients.js';
import { configRoutes } from './routes/config.js';
import { connectorsRoutes } from './routes/connectors.js';
import { prometheusRoutes } from './routes/prometheus.js';
import { statusRoutes } from './routes/status.js';
import { nodesRoutes } from './routes/nodes.js';
import { subscriptionsRoutes } from './routes/subscriptions.js';

export interface ApiKey {
  key: string;
  secret: string;
}

/** What the route plugins may touch. */
export interface ManagementContext {
  store: ConfigStore;
  sessions: SessionRegistry;
  /** The rule engine: rules, connectors, actions and their metrics. */
  rules: RuleEngine;
  nodeName: string;
  logger: Logger;
  /** Disconnects a client (reason `kicked`). */
  kick(session: ClientSession): void;
  /** Open TCP connections on a listener. */
  listenerConnections(listenerId: string): number;
  /** PUBLISH packets received from clients since start (`messages.received`). */
  messagesReceived?(): number;
}

export type ManagementRoutes = (context: ManagementContext) => FastifyPluginAsync;

const WWW_AUTHENTICATE = { 'WWW-Authenticate': 'Basic Realm="emqx-dashboard"' };

function sameSecret(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

/** Checks the Authorization header like EMQX's `emqx_dashboard:authorize/2`; undefined when accepted. */
export function checkApiKey(header: string | undefined, keys: readonly ApiKey[]): ApiError | undefined {
  const match = /^(Basic|Bearer)\s+(.+)$/i.exec(header ?? '');
  if (!match) return new ApiError(401, 'AUTHORIZATION_HEADER_ERROR', 'Support authorization: basic/bearer ', WWW_AUTHENTICATE);
  if ((match[1] ?? '').toLowerCase() === 'bearer') {
    return new ApiError(401, 'BAD_TOKEN', 'Get a token by POST /login (the embedded broker accepts API keys only)', WWW_AUTHENTICATE);
  }
  const decoded = Buffer.from(match[2] ?? '', 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const key = colon === -1 ? decoded : decoded.slice(0, colon);
  const secret = colon === -1 ? '' : decoded.slice(colon + 1);
  const known = keys.some((candidate) => sameSecret(candidate.key, key) && sameSecret(candidate.secret, secret));
  return known ? undefined : new ApiError(401, 'BAD_API_KEY_OR_SECRET', 'Check api_key/api_secret', WWW_AUTHENTICATE);
}

const PUBLIC_PATHS = new Set(['/status', '/api/v5/status']);

export async function buildManagementApi(context: ManagementContext, apiKeys: readonly ApiKey[], extraRoutes: readonly ManagementRoutes[] = []): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, bodyLimit: 4 * 1024 * 1024 });
  // Only JSON bodies are accepted, like EMQX's schema-checked handlers (415 otherwise).
  app.removeContentTypeParser('text/plain');

  app.addHook('onRequest', async (request, reply) => {
    if (request.routeOptions.url === undefined) return; // unknown path: 404 without auth, as EMQX
    const path = request.url.split('?')[0] ?? '';
    if (PUBLIC_PATHS.has(path)) return;
    const problem = checkApiKey(request.headers.authorization, apiKeys);
    if (problem) {
      await reply.code(problem.status).headers(problem.headers).send({ code: problem.code, message: problem.message });
    }
  });

  app.setErrorHandler((error: FastifyError | ApiError, _request, reply) => {
    if (error instanceof ApiError) {
      return reply.code(error.status).headers(error.headers).send({ code: error.code, message: error.message });
    }
    switch (error.code) {
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
        return reply.code(415).send({ code: 'UNSUPPORTED_MEDIA_TYPE', message: 'content-type:application/json Required' });
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      case 'FST_ERR_CTP_INVALID_JSON_BODY':
        return reply.code(400).send({ code: 'BAD_REQUEST', message: 'Invalid json message received' });
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return reply.code(413).send({ code: 'BAD_REQUEST', message: 'Request body too large' });
      default:
        break;
    }
    if (error.statusCode === 400 && error instanceof SyntaxError) {
      return reply.code(400).send({ code: 'BAD_REQUEST', message: 'Invalid json message received' });
    }
    context.logger.error({ err: error }, 'embedded broker API handler failed');
    return reply.code(500).send({ code: 'INTERNAL_ERROR', message: error.message });
  });

  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({ code: 'NOT_FOUND', message: `Not found: ${request.method} ${request.url.split('?')[0] ?? ''}` });
  });

  const plugins = [
    statusRoutes,
    authenticationRoutes,
    authorizationRoutes,
    clientsRoutes,
    subscriptionsRoutes,
    bannedRoutes,
    configRoutes,
    (ctx: ManagementContext) => ruleRoutes(ctx.rules)(ctx),
    connectorsRoutes,
    actionsRoutes,
    prometheusRoutes,
    nodesRoutes,
    ...extraRoutes,
  ];
  for (const plugin of plugins) await app.register(plugin(context), { prefix: '/api/v5' });
  // EMQX also serves the liveness endpoint at the root.
  await app.register(statusRoutes(context));
  return app;
}
