// /api/v5/actions — actions of the rule engine (EMQX 5.8 `emqx_bridge_v2_api`,
// reference/emqx-5.md §4.3): list, create (201; 400 ALREADY_EXISTS or a missing connector),
// read, replace, delete (204; 400 while rules reference it unless
// `also_delete_dep_actions=true`), enable/disable, metrics and their reset. Ids are `<type>:<name>`.
import type { FastifyPluginAsync } from 'fastify';
import { badRequest } from '../api-error.js';
import type { ManagementContext } from '../http-api.js';

export function actionsRoutes(context: ManagementContext): FastifyPluginAsync {
  const engine = context.rules;
  const bridges = engine.bridges;
  return async (app) => {
    app.get('/actions', async () => bridges.listActions());

    app.post('/actions', async (request, reply) => {
      const stored = bridges.createAction(request.body);
      await engine.saveBridges();
      return reply.code(201).send(bridges.getAction(`${stored.type}:${stored.name}`));
    });

    app.get<{ Params: { id: string } }>('/actions/:id', async (request) => bridges.getAction(request.params.id));

    app.put<{ Params: { id: string } }>('/actions/:id', async (request) => {
      bridges.updateAction(request.params.id, request.body ?? {});
      await engine.saveBridges();
      return bridges.getAction(request.params.id);
    });

    app.delete<{ Params: { id: string }; Querystring: Record<string, unknown> }>('/actions/:id', async (request, reply) => {
      const flag = request.query.also_delete_dep_actions;
      if (flag !== undefined && flag !== 'true' && flag !== 'false') throw badRequest('also_delete_dep_actions must be true or false');
      await engine.deleteAction(request.params.id, flag === 'true');
      return reply.code(204).send();
    });

    app.put<{ Params: { id: string; enable: string } }>('/actions/:id/enable/:enable', async (request, reply) => {
      const { id, enable } = request.params;
      if (enable !== 'true' && enable !== 'false') throw badRequest(`Invalid enable value: ${enable}`);
      bridges.setActionEnabled(id, enable === 'true');
      await engine.saveBridges();
      return reply.code(204).send();
    });

    app.get<{ Params: { id: string } }>('/actions/:id/metrics', async (request) => {
      const metrics = bridges.actionMetrics(request.params.id);
      return { metrics, node_metrics: [{ node: context.nodeName, metrics: { ...metrics } }] };
    });

    app.put<{ Params: { id: string } }>('/actions/:id/metrics/reset', async (request, reply) => {
      bridges.resetActionMetrics(request.params.id);
      return reply.code(204).send();
    });
  };
}
