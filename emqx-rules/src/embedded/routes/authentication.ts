// /api/v5/authentication — the global authentication chain (EMQX `emqx_authn_api`).
import type { FastifyPluginAsync } from 'fastify';
import { ApiError, badRequest, notFound } from '../api-error.js';
import type { ManagementContext } from '../http-api.js';
import { checkAuthenticator } from '../resources.js';

const idOf = (config: Record<string, unknown>): string => `${String(config.mechanism)}:${String(config.backend)}`;
const missing = (id: string): ApiError => notFound('NOT_FOUND', `Authenticator '${id}' does not exist`);

/** Parses "front" | "rear" | "before:<id>" | "after:<id>". */
function parsePosition(position: string): { kind: 'front' | 'rear' } | { kind: 'before' | 'after'; target: string } {
  if (position === 'front' || position === 'rear') return { kind: position };
  const match = /^(before|after):(.+)$/.exec(position);
  if (!match) throw badRequest("Invalid value for 'position'");
  return { kind: match[1] as 'before' | 'after', target: match[2] as string };
}

export function authenticationRoutes(context: ManagementContext): FastifyPluginAsync {
  const { store } = context;
  return async (app) => {
    app.get('/authentication', async () => store.config.authentication.map((config) => ({ ...config, id: idOf(config) })));

    app.post('/authentication', async (request) => {
      const config = checkAuthenticator(request.body);
      const id = idOf(config);
      await store.update(['authentication'], (draft) => {
        if (draft.authentication.some((existing) => idOf(existing) === id)) {
          throw new ApiError(409, 'ALREADY_EXISTS', `Authenticator '${id}' already exist`);
        }
        draft.authentication.push(config);
      });
      context.logger.info({ authenticator: id }, 'authenticator created');
      return { ...config, id };
    });

    app.get<{ Params: { id: string } }>('/authentication/:id', async (request) => {
      const config = store.config.authentication.find((existing) => idOf(existing) === request.params.id);
      if (!config) throw missing(request.params.id);
      return { ...config, id: request.params.id };
    });

    app.put<{ Params: { id: string } }>('/authentication/:id', async (request, reply) => {
      const { id } = request.params;
      if (!store.config.authentication.some((existing) => idOf(existing) === id)) throw missing(id);
      const config = checkAuthenticator(request.body);
      if (idOf(config) !== id) throw badRequest('Change of authentication type is not allowed');
      await store.update(['authentication'], (draft) => {
        const index = draft.authentication.findIndex((existing) => idOf(existing) === id);
        if (index === -1) throw missing(id);
        draft.authentication[index] = config;
      });
      context.logger.info({ authenticator: id }, 'authenticator updated');
      return reply.code(204).send();
    });

    app.delete<{ Params: { id: string } }>('/authentication/:id', async (request, reply) => {
      const { id } = request.params;
      await store.update(['authentication'], (draft) => {
        const index = draft.authentication.findIndex((existing) => idOf(existing) === id);
        if (index === -1) throw missing(id);
        draft.authentication.splice(index, 1);
      });
      context.logger.info({ authenticator: id }, 'authenticator deleted');
      return reply.code(204).send();
    });

    app.put<{ Params: { id: string; position: string } }>('/authentication/:id/position/:position', async (request, reply) => {
      const { id } = request.params;
      const position = parsePosition(request.params.position);
      await store.update(['authentication'], (draft) => {
        const from = draft.authentication.findIndex((existing) => idOf(existing) === id);
        if (from === -1) throw missing(id);
        const [moving] = draft.authentication.splice(from, 1);
        if (!moving) throw missing(id);
        if (!('target' in position)) {
          if (position.kind === 'front') draft.authentication.unshift(moving);
          else draft.authentication.push(moving);
          return;
        }
        const relative = position.target;
        const target = draft.authentication.findIndex((existing) => idOf(existing) === relative);
        if (target === -1) throw missing(relative);
        draft.authentication.splice(position.kind === 'before' ? target : target + 1, 0, moving);
      });
      return reply.code(204).send();
    });
  };
}
