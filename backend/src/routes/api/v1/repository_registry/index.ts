import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { requireAgent } from '../../../../services/access.js';
import { Nullable, UuidParams, isoNaive } from '../../../../schemas/common.js';
import { ValidationError } from '../../../../errors.js';
import {
  BranchCommitsQuery,
  CommitRead,
  Credentials,
  CredentialsWithStatus,
  RegistriesQuery,
  RegistriesResult,
  RegistryCreate,
  RegistryRead,
  RegistrySearchQuery,
  SyncAllAccepted,
  SyncStatusRead,
} from '../../../../schemas/repository-registry.js';
import type { SyncOutcome } from '../../../../registry/sync-service.js';

/**
 * `/pepeunit/api/v1/repository_registry` (pepeunit-backend.md §5.3) plus ours: `search`,
 * `sync_all`, `sync_status/{uuid}`. Services: `app.registry` (see plugin.ts).
 */
const repositoryRegistry: FastifyPluginAsyncTypebox = async (app) => {
  const service = app.registry;
  const tags = ['repository_registry'];

  /** 204 when the sync ran (or joined/was throttled) here; 202 when another replica runs it. */
  const syncAnswer = (outcome: SyncOutcome): 202 | 204 => (!outcome.ranHere && !outcome.throttled && outcome.status === 'Processing' ? 202 : 204);

  app.post(
    '/',
    { schema: { tags, body: RegistryCreate, response: { 200: RegistryRead, 201: RegistryRead } } },
    async (request, reply) => {
      const agent = await request.agent();
      requireAgent(agent, ['User']);
      const { row, created } = await service.create(agent, request.body);
      // an existing entry for the URL is returned as is (200) instead of the reference 422
      return reply.status(created ? 201 : 200).send(await service.toRead(row));
    },
  );

  // The admin's allow/deny rules for repository hosts (issue 10; domain-rules.ts).
  const DomainRule = Type.Object({ domain: Type.String(), rule: Type.Union([Type.Literal('allow'), Type.Literal('deny')]), creator_uuid: Nullable(Type.String()), create_datetime: Type.String() });
  const toRuleRead = (row: { domain: string; rule: 'allow' | 'deny'; creator_uuid: string | null; create_datetime: Date }) => ({ ...row, create_datetime: isoNaive(row.create_datetime)! });
  app.get('/domain_rules', { schema: { tags, response: { 200: Type.Array(DomainRule) } } }, async (request) => {
    requireAgent(await request.agent(), ['User'], ['Admin']);
    return (await service.destinations.rules.list()).map(toRuleRead);
  });
  app.post('/domain_rules', {
    schema: { tags, body: Type.Object({ domain: Type.String({ minLength: 1, maxLength: 253 }), rule: Type.Union([Type.Literal('allow'), Type.Literal('deny')]) }), response: { 201: DomainRule } },
  }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User'], ['Admin']);
    return reply.status(201).send(toRuleRead(await service.destinations.rules.set(request.body.domain, request.body.rule, agent.uuid)));
  });
  app.delete('/domain_rules/:domain', { schema: { tags, params: Type.Object({ domain: Type.String({ maxLength: 253 }) }) } }, async (request, reply) => {
    requireAgent(await request.agent(), ['User'], ['Admin']);
    if (!(await service.destinations.rules.remove(request.params.domain))) throw new ValidationError(`No rule for ${request.params.domain}`);
    return reply.status(204).send();
  });

  app.get('/search', { schema: { tags, querystring: RegistrySearchQuery, response: { 200: RegistriesResult } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['Bot', 'User', 'Backend']);
    const result = await service.search(request.query);
    return { count: result.count, repositories_registry: await Promise.all(result.rows.map((row) => service.toRead(row))) };
  });

  app.get('/:uuid', { schema: { tags, params: UuidParams, response: { 200: RegistryRead } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['Bot', 'User', 'Backend']);
    const row = await service.get(request.params.uuid);
    service.requireVisible(agent, row);
    return service.toRead(row);
  });

  app.get(
    '/branch_commits/:uuid',
    { schema: { tags, params: UuidParams, querystring: BranchCommitsQuery, response: { 200: Type.Array(CommitRead) } } },
    async (request) => {
      const agent = await request.agent();
      requireAgent(agent, ['User']);
      return service.branchCommits(agent, request.params.uuid, request.query);
    },
  );

  app.patch('/set_credentials/:uuid', { schema: { tags, params: UuidParams, body: Credentials } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    await service.setCredentials(agent, request.params.uuid, request.body);
    return reply.status(204).send();
  });

  app.get(
    '/get_credentials/:uuid',
    { schema: { tags, params: UuidParams, response: { 200: Nullable(CredentialsWithStatus) } } },
    async (request) => {
      const agent = await request.agent();
      requireAgent(agent, ['User']);
      return service.getCredentials(agent, request.params.uuid);
    },
  );

  app.patch('/update_local_repository/:uuid', { schema: { tags, params: UuidParams } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    const outcome = await service.syncByUser(agent, request.params.uuid);
    return reply.status(syncAnswer(outcome)).send();
  });

  app.patch('/backend_sync_registry', { schema: { tags } }, async (request, reply) => {
    requireAgent(await request.agent(), ['Backend']);
    await app.registrySync.syncAll({ reason: 'backend', onlyMissing: true });
    return reply.status(204).send();
  });

  app.post('/sync_all', { schema: { tags, response: { 202: SyncAllAccepted } } }, async (request, reply) => {
    requireAgent(await request.agent(), ['User'], ['Admin']);
    return reply.status(202).send(await service.syncAll());
  });

  app.get('/sync_status/:uuid', { schema: { tags, params: UuidParams, response: { 200: SyncStatusRead } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['Bot', 'User', 'Backend']);
    return service.syncStatus(agent, request.params.uuid);
  });

  app.get('/', { schema: { tags, querystring: RegistriesQuery, response: { 200: RegistriesResult } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['Bot', 'User', 'Backend']);
    const result = await service.list(agent, request.query);
    return { count: result.count, repositories_registry: await Promise.all(result.rows.map((row) => service.toRead(row))) };
  });

  app.delete('/:uuid', { schema: { tags, params: UuidParams } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    await service.delete(agent, request.params.uuid);
    return reply.status(204).send();
  });
};
export default repositoryRegistry;
