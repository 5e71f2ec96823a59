// /api/v5/authorization — sources, settings and the cache (EMQX `emqx_authz_api_*`).
import type { FastifyPluginAsync } from 'fastify';
import { badRequest, notFound } from '../api-error.js';
import type { ApiError } from '../api-error.js';
import type { ManagementContext } from '../http-api.js';
import { checkAuthzSettings, checkAuthzSource } from '../resources.js';
import { isObject } from '../schema.js';

const SOURCE_TYPES = ['file', 'http', 'built_in_database', 'redis', 'mysql', 'postgresql', 'mongodb', 'ldap', 'client_info'];

function checkPathType(type: string): void {
  if (!SOURCE_TYPES.includes(type)) {
    throw badRequest(JSON.stringify({ kind: 'validation_error', path: 'type', reason: 'unable_to_convert_to_enum_symbol', value: type }));
  }
}

const missing = (type: string): ApiError => notFound('NOT_FOUND', `Not found: ${type}`);

export function authorizationRoutes(context: ManagementContext): FastifyPluginAsync {
  const { store, sessions } = context;
  return async (app) => {
    app.get('/authorization/sources', async () => ({ sources: store.config.authorization.sources }));

    app.post('/authorization/sources', async (request, reply) => {
      const source = checkAuthzSource(request.body);
      await store.update(['authorization'], (draft) => {
        if (draft.authorization.sources.some((existing) => existing.type === source.type)) {
          throw badRequest(`{duplicated_authz_source_type,[${String(source.type)}]}`);
        }
        draft.authorization.sources.unshift(source); // EMQX prepends
      });
      context.logger.info({ source: source.type }, 'authorization source created');
      return reply.code(204).send();
    });

    app.put<{ Body: unknown }>('/authorization/sources/order', async (request, reply) => {
      const body = request.body;
      if (!Array.isArray(body) || !body.every((entry) => isObject(entry) && typeof entry.type === 'string')) {
        throw badRequest('Expected a list of {"type": "<source type>"}');
      }
      const order = body.map((entry) => (entry as { type: string }).type);
      await store.update(['authorization'], (draft) => {
        const current = draft.authorization.sources.map((source) => source.type as string);
        const notFound = order.filter((type) => !current.includes(type));
        const notReordered = current.filter((type) => !order.includes(type));
        if (notFound.length > 0 || notReordered.length > 0) {
          const parts = [];
          if (notFound.length > 0) parts.push(`Authorization sources: ${notFound.join(', ')} are not found`);
          if (notReordered.length > 0) parts.push(`No positions are specified for authorization sources: ${notReordered.join(', ')}`);
          throw badRequest(parts.join(', '));
        }
        draft.authorization.sources = order.map((type) => draft.authorization.sources.find((source) => source.type === type) as Record<string, unknown>);
      });
      return reply.code(204).send();
    });

    app.get<{ Params: { type: string } }>('/authorization/sources/:type', async (request) => {
      checkPathType(request.params.type);
      const source = store.config.authorization.sources.find((existing) => existing.type === request.params.type);
      if (!source) throw missing(request.params.type);
      return source;
    });

    app.put<{ Params: { type: string } }>('/authorization/sources/:type', async (request, reply) => {
      const { type } = request.params;
      checkPathType(type);
      if (isObject(request.body) && typeof request.body.type === 'string' && request.body.type !== type) throw badRequest('Type mismatch');
      if (!store.config.authorization.sources.some((existing) => existing.type === type)) throw missing(type);
      const source = checkAuthzSource(request.body);
      await store.update(['authorization'], (draft) => {
        const index = draft.authorization.sources.findIndex((existing) => existing.type === type);
        if (index === -1) throw missing(type);
        draft.authorization.sources[index] = source;
      });
      context.logger.info({ source: type }, 'authorization source updated');
      return reply.code(204).send();
    });

    app.delete<{ Params: { type: string } }>('/authorization/sources/:type', async (request, reply) => {
      const { type } = request.params;
      checkPathType(type);
      await store.update(['authorization'], (draft) => {
        const index = draft.authorization.sources.findIndex((existing) => existing.type === type);
        if (index === -1) throw missing(type);
        draft.authorization.sources.splice(index, 1);
      });
      context.logger.info({ source: type }, 'authorization source deleted');
      return reply.code(204).send();
    });

    app.post<{ Params: { type: string } }>('/authorization/sources/:type/move', async (request, reply) => {
      const { type } = request.params;
      checkPathType(type);
      const position = isObject(request.body) ? request.body.position : undefined;
      if (typeof position !== 'string') {
        throw badRequest(JSON.stringify({ kind: 'validation_error', path: 'position', reason: 'required_field' }));
      }
      if (!store.config.authorization.sources.some((existing) => existing.type === type)) throw missing(type);
      let target: { kind: 'front' | 'rear' } | { kind: 'before' | 'after'; type: string };
      if (position === 'front' || position === 'rear') target = { kind: position };
      else if (position === 'before:') throw badRequest('Invalid parameter. Cannot be placed before an empty target');
      else if (position === 'after:') throw badRequest('Invalid parameter. Cannot be placed after an empty target');
      else {
        const match = /^(before|after):(.+)$/.exec(position);
        if (!match) throw badRequest('Invalid parameter. Unknow position');
        target = { kind: match[1] as 'before' | 'after', type: match[2] as string };
      }
      await store.update(['authorization'], (draft) => {
        const sources = draft.authorization.sources;
        const from = sources.findIndex((existing) => existing.type === type);
        const [moving] = sources.splice(from, 1);
        if (!moving) throw missing(type);
        if (!('type' in target)) {
          if (target.kind === 'front') sources.unshift(moving);
          else sources.push(moving);
          return;
        }
        const relative = target.type;
        const index = sources.findIndex((existing) => existing.type === relative);
        if (index === -1) throw notFound('NOT_FOUND', `source ${type} not found`);
        sources.splice(target.kind === 'before' ? index : index + 1, 0, moving);
      });
      return reply.code(204).send();
    });

    app.get('/authorization/settings', async () => store.config.authorization.settings);

    app.put('/authorization/settings', async (request) => {
      const settings = checkAuthzSettings(request.body);
      await store.update(['authorization'], (draft) => {
        draft.authorization.settings = settings;
      });
      context.logger.info({ no_match: settings.no_match, deny_action: settings.deny_action }, 'authorization settings updated');
      return store.config.authorization.settings;
    });

    app.delete('/authorization/cache', async (_request, reply) => {
      sessions.clearAllAuthzCaches();
      return reply.code(204).send();
    });
  };
}
