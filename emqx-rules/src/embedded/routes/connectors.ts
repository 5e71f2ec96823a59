// /api/v5/connectors — connectors of the rule engine (EMQX 5.8 `emqx_connector_api`,
// reference/emqx-5.md §4.3): list, create (201; 400 ALREADY_EXISTS), read, replace, delete
// (204; 400 while actions use it), enable/disable. Ids are `<type>:<name>`.
import type { FastifyPluginAsync } from 'fastify';
import { badRequest } from '../api-error.js';
import type { ManagementContext } from '../http-api.js';

export function connectorsRoutes(context: ManagementContext): FastifyPluginAsync {
  const engine = context.rules;
  const bridges = engine.bridges;
  return async (app) => {
    app.get('/connectors', async () => bridges.listConnectors());

    app.post('/connectors', async (request, reply) => {
      const stored = bridges.createConnector(request.body);
      await engine.saveBridges();
      return reply.code(201).send(bridges.getConnector(`${stored.type}:${stored.name}`));
    });

    app.get<{ Params: { id: string } }>('/connectors/:id', async (request) => bridges.getConnector(request.params.id));

    app.put<{ Params: { id: string } }>('/connectors/:id', async (request) => {
      bridges.updateConnector(request.params.id, request.body ?? {});
      await engine.saveBridges();
      return bridges.getConnector(request.params.id);
    });

    app.delete<{ Params: { id: string } }>('/connectors/:id', async (request, reply) => {
      bridges.deleteConnector(request.params.id);
      await engine.saveBridges();
      return reply.code(204).send();
    });

    app.put<{ Params: { id: string; enable: string } }>('/connectors/:id/enable/:enable', async (request, reply) => {
      const { id, enable } = request.params;
      if (enable !== 'true' && enable !== 'false') throw badRequest(`Invalid enable value: ${enable}`);
      bridges.setConnectorEnabled(id, enable === 'true');
      await engine.saveBridges();
      return reply.code(204).send();
    });
  };
}
