import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { requireAgent } from '../../../../services/access.js';
import { UuidParams } from '../../../../schemas/common.js';
import {
  UnitNodeEdgeCreate,
  UnitNodeEdgeDeleteQuery,
  UnitNodeEdgeRead,
  UnitNodeEdgesResult,
  UnitNodeRead,
  UnitNodeSetState,
  UnitNodesQuery,
  UnitNodesResult,
  UnitNodeUpdate,
  UnitUuidParams,
} from '../../../../schemas/unit-nodes.js';
import { UnitNodesService } from './unit-nodes-service.js';

/**
 * `/pepeunit/api/v1/unit_nodes` (pepeunit-backend.md §5.6, §7.6) without the DataPipe
 * endpoints (issue 6). Edge deletion and the edges of a unit exist only in the reference's
 * GraphQL/service layer; they are REST here.
 */
const unitNodes: FastifyPluginAsyncTypebox = async (app) => {
  const service = new UnitNodesService(app);
  const tags = ['unit_nodes'];

  app.get('/', { schema: { tags, querystring: UnitNodesQuery, response: { 200: UnitNodesResult } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['Bot', 'User', 'Unit']);
    return service.list(agent, request.query);
  });

  app.get('/:uuid', { schema: { tags, params: UuidParams, response: { 200: UnitNodeRead } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['Bot', 'User', 'Unit']);
    return service.get(agent, request.params.uuid);
  });

  app.patch('/:uuid', { schema: { tags, params: UuidParams, body: UnitNodeUpdate, response: { 200: UnitNodeRead } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    return service.update(agent, request.params.uuid, request.body);
  });

  app.patch(
    '/set_state_input/:uuid',
    { schema: { tags, params: UuidParams, body: UnitNodeSetState, response: { 200: UnitNodeRead } } },
    async (request) => {
      const agent = await request.agent();
      requireAgent(agent, ['User', 'Unit']);
      return service.setStateInput(agent, request.params.uuid, request.body.state);
    },
  );

  app.post('/create_unit_node_edge', { schema: { tags, body: UnitNodeEdgeCreate, response: { 201: UnitNodeEdgeRead } } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    return reply.status(201).send(await service.createEdge(agent, request.body.node_output_uuid, request.body.node_input_uuid));
  });

  app.delete('/delete_unit_node_edge', { schema: { tags, querystring: UnitNodeEdgeDeleteQuery } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    await service.deleteEdge(agent, request.query.input_uuid, request.query.output_uuid);
    return reply.status(204).send();
  });

  app.get('/get_unit_node_edges/:unit_uuid', { schema: { tags, params: UnitUuidParams, response: { 200: UnitNodeEdgesResult } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['Bot', 'User']);
    return service.unitEdges(agent, request.params.unit_uuid);
  });
};
export default unitNodes;
