import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { requireAgent } from '../../../../services/access.js';
import { PermissionCreate, PermissionDeleteQuery, PermissionRead, PermissionsResult, ResourceAgentsQuery } from '../../../../schemas/permission.js';
import { PermissionService } from '../../../../domain/permissions.js';

/** `/pepeunit/api/v1/permission` (pepeunit-backend.md §5.8). */
const permission: FastifyPluginAsyncTypebox = async (app) => {
  const service = new PermissionService(app.pg, app.config, (reason, cut) => app.acl.invalidate(reason, cut));
  const tags = ['permission'];

  app.post('/', { schema: { tags, body: PermissionCreate, response: { 201: PermissionRead } } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    return reply.status(201).send(await service.create(agent, request.body));
  });

  app.get('/get_resource_agents', { schema: { tags, querystring: ResourceAgentsQuery, response: { 200: PermissionsResult } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    return service.resourceAgents(agent, request.query);
  });

  app.delete('/:uuid', { schema: { tags, params: Type.Object({ uuid: Type.String() }), querystring: PermissionDeleteQuery } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    await service.delete(agent, request.query.agent_uuid, request.query.resource_uuid);
    return reply.status(204).send();
  });
};
export default permission;
