import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { requireAgent } from '../../../../services/access.js';
import { UuidParams } from '../../../../schemas/common.js';
import {
  AvailablePlatformsQuery,
  PlatformRead,
  RepoCreate,
  RepoRead,
  ReposQuery,
  ReposResult,
  RepoUpdate,
  RepoVersions,
  TargetVersionRead,
} from '../../../../schemas/repos.js';
import { toRepoRead } from '../../../../registry/repo-service.js';

/**
 * `/pepeunit/api/v1/repos` (pepeunit-backend.md §5.4) plus ours: `sync_local_repository/{uuid}`
 * and `target_version/{uuid}`. Service: `app.repos` (registered by plugins/registry.ts).
 */
const repos: FastifyPluginAsyncTypebox = async (app) => {
  const service = app.repos;
  const tags = ['repos'];

  app.post('/', { schema: { tags, body: RepoCreate, response: { 201: RepoRead } } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    return reply.status(201).send(toRepoRead(await service.create(agent, request.body)));
  });

  app.post('/bulk_update', { schema: { tags } }, async (request, reply) => {
    requireAgent(await request.agent(), ['User'], ['Admin']);
    service.bulkUpdate();
    return reply.status(204).send();
  });

  app.get('/available_platforms/:uuid', { schema: { tags, params: UuidParams, querystring: AvailablePlatformsQuery, response: { 200: Type.Array(PlatformRead) } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    return service.availablePlatforms(agent, request.params.uuid, request.query);
  });

  app.get('/versions/:uuid', { schema: { tags, params: UuidParams, response: { 200: RepoVersions } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['Bot', 'User', 'Backend']);
    return service.versions(agent, request.params.uuid);
  });

  app.get('/target_version/:uuid', { schema: { tags, params: UuidParams, response: { 200: TargetVersionRead } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User', 'Backend']);
    return service.targetVersion(await service.getVisible(agent, request.params.uuid));
  });

  app.patch('/update_units_firmware/:uuid', { schema: { tags, params: UuidParams } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    await service.updateUnitsFirmware(agent, request.params.uuid);
    return reply.status(204).send();
  });

  app.patch('/sync_local_repository/:uuid', { schema: { tags, params: UuidParams } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    const outcome = await service.syncByUser(agent, request.params.uuid);
    return reply.status(!outcome.ranHere && !outcome.throttled && outcome.status === 'Processing' ? 202 : 204).send();
  });

  app.get('/:uuid', { schema: { tags, params: UuidParams, response: { 200: RepoRead } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['Bot', 'User', 'Backend']);
    return toRepoRead(await service.getVisible(agent, request.params.uuid));
  });

  app.get('/', { schema: { tags, querystring: ReposQuery, response: { 200: ReposResult } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['Bot', 'User', 'Backend']);
    const result = await service.list(agent, request.query);
    return { count: result.count, repos: result.rows.map(toRepoRead) };
  });

  app.patch('/:uuid', { schema: { tags, params: UuidParams, body: RepoUpdate, response: { 200: RepoRead } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    return toRepoRead(await service.update(agent, request.params.uuid, request.body));
  });

  app.delete('/:uuid', { schema: { tags, params: UuidParams } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    await service.delete(agent, request.params.uuid);
    return reply.status(204).send();
  });
};
export default repos;
