// /api/v5/rules, /api/v5/rule_test — the Rules API of EMQX 5.8 (`emqx_rule_engine_api`,
// reference/emqx-5.md §2): 201 on create, 200 on read/update, 204 on delete, 400 BAD_REQUEST
// for bodies or SQL EMQX would refuse (and for SQL this engine cannot run), 404 NOT_FOUND.
import type { FastifyPluginAsync } from 'fastify';
import { badRequest } from '../api-error.js';
import type { ManagementRoutes } from '../http-api.js';
import { pageParams, paginate } from '../routes/pagination.js';
import { ruleNotFound } from './engine.js';
import type { RuleEngine } from './engine.js';

const STRING_FILTERS = ['from', 'like_id', 'like_from', 'like_description', 'match_from'] as const;

function single(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  return Array.isArray(value) ? String(value[value.length - 1]) : String(value);
}

export function ruleRoutes(engine: RuleEngine): ManagementRoutes {
  return (): FastifyPluginAsync => async (app) => {
    app.get('/rules', async (request) => {
      const query = request.query as Record<string, unknown>;
      const { page, limit } = pageParams(query);
      const filters: Parameters<RuleEngine['filter']>[0] = {};
      const enable = single(query.enable);
      if (enable !== undefined) {
        if (enable !== 'true' && enable !== 'false') throw badRequest(JSON.stringify({ kind: 'validation_error', path: 'enable', reason: 'expected true or false', value: enable }));
        filters.enable = enable === 'true';
      }
      for (const key of STRING_FILTERS) {
        const value = single(query[key]);
        if (value !== undefined) filters[key] = value;
      }
      return paginate(engine.filter(filters), page, limit);
    });

    app.post('/rules', async (request, reply) => {
      const rule = await engine.create(request.body);
      return reply.code(201).send(rule);
    });

    app.get<{ Params: { id: string } }>('/rules/:id', async (request) => {
      const rule = engine.get(request.params.id);
      if (!rule) throw ruleNotFound();
      return rule;
    });

    app.put<{ Params: { id: string } }>('/rules/:id', async (request) => engine.upsert(request.params.id, request.body ?? {}));

    app.delete<{ Params: { id: string } }>('/rules/:id', async (request, reply) => {
      if (!(await engine.remove(request.params.id))) throw ruleNotFound();
      return reply.code(204).send();
    });

    app.get<{ Params: { id: string } }>('/rules/:id/metrics', async (request) => {
      const metrics = engine.metrics(request.params.id);
      if (!metrics) throw ruleNotFound();
      return metrics;
    });

    app.put<{ Params: { id: string } }>('/rules/:id/metrics/reset', async (request, reply) => {
      if (!engine.resetMetrics(request.params.id)) throw ruleNotFound();
      return reply.code(204).send();
    });

    app.post('/rule_test', async (request) => engine.testSql(request.body));
  };
}
