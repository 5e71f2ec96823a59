import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { requireAgent } from '../../../../services/access.js';
import { PageLimit, PageOffset, UuidParams } from '../../../../schemas/common.js';
import {
  CommandQuery,
  EnvJsonString,
  JsonDocument,
  StateStorage,
  TargetVersionRead,
  TgzQuery,
  UnitCreate,
  UnitRead,
  UnitsQuery,
  UnitsResult,
  UnitUpdate,
} from '../../../../schemas/units.js';
import { ARCHIVE_CONTENT_TYPES, firmwareArchiveFile, type ArchiveFormat } from '../../../../services/firmware/index.js';
import { UnitsService } from './units-service.js';
import { TOML_MAX_CHARS, pepeunitTomlToMarkdown } from './toml-markdown.js';
import multipart from '@fastify/multipart';
import { ReadmeGenerationError } from '../../../../errors.js';

/**
 * `/pepeunit/api/v1/units` (pepeunit-backend.md §5.5). The unit-facing paths (env, schema,
 * firmware, state storage, commands) accept the unit's own token in `x-auth-token`. The broker
 * callbacks under the same prefix live in mqtt-callbacks.ts.
 */
const units: FastifyPluginAsyncTypebox = async (app) => {
  const service = new UnitsService(app);
  const tags = ['units'];

  app.post('/', { schema: { tags, body: UnitCreate, response: { 201: UnitRead } } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    return reply.status(201).send(await service.create(agent, request.body));
  });

  app.get('/', { schema: { tags, querystring: UnitsQuery, response: { 200: UnitsResult } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['Bot', 'User', 'Unit']);
    return service.list(agent, request.query);
  });

  app.get('/:uuid', { schema: { tags, params: UuidParams, response: { 200: UnitRead } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['Bot', 'User', 'Unit']);
    return service.get(agent, request.params.uuid);
  });

  app.patch('/:uuid', { schema: { tags, params: UuidParams, body: UnitUpdate, response: { 200: UnitRead } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    return service.update(agent, request.params.uuid, request.body);
  });

  app.delete('/:uuid', { schema: { tags, params: UuidParams } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    await service.delete(agent, request.params.uuid);
    return reply.status(204).send();
  });

  app.get('/env/:uuid', { schema: { tags, params: UuidParams, response: { 200: JsonDocument } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User', 'Unit']);
    return service.getEnv(agent, request.params.uuid);
  });

  app.patch('/env/:uuid', { schema: { tags, params: UuidParams, body: EnvJsonString } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    await service.setEnv(agent, request.params.uuid, request.body.env_json_string);
    return reply.status(204).send();
  });

  app.delete('/env/:uuid', { schema: { tags, params: UuidParams } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    await service.resetEnv(agent, request.params.uuid);
    return reply.status(204).send();
  });

  app.get('/get_target_version/:uuid', { schema: { tags, params: UuidParams, response: { 200: TargetVersionRead } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User', 'Unit']);
    return service.targetVersion(agent, request.params.uuid);
  });

  app.get('/get_current_schema/:uuid', { schema: { tags, params: UuidParams, response: { 200: JsonDocument } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User', 'Unit']);
    return service.currentSchema(agent, request.params.uuid);
  });

  for (const format of ['zip', 'tar', 'tgz'] as const satisfies readonly ArchiveFormat[]) {
    app.get(
      `/firmware/${format}/:uuid`,
      { schema: { tags, params: UuidParams, ...(format === 'tgz' ? { querystring: TgzQuery } : {}) } },
      async (request, reply) => {
        const query = (request.query ?? {}) as { wbits?: number; level?: number };
        const tgz = { wbits: query.wbits ?? 9, level: query.level ?? 9 };
        const agent = await request.agent();
        requireAgent(agent, ['User', 'Unit']);
        const build = await service.prepareFirmware(agent, request.params.uuid, format, tgz);
        const archive = await firmwareArchiveFile(build, format, tgz);
        const stream = archive.open((err) => request.log.warn({ err }, 'firmware build directory not removed'));
        stream.on('error', (err) => request.log.error({ err }, 'firmware archive stream failed'));
        return reply
          .header('content-type', ARCHIVE_CONTENT_TYPES[format])
          .header('content-length', archive.size)
          .header('content-disposition', `attachment; filename="${request.params.uuid}.${format}"`)
          .send(stream);
      },
    );
  }

  app.post('/set_state_storage/:uuid', { schema: { tags, params: UuidParams, body: StateStorage } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User', 'Unit']);
    await service.setStateStorage(agent, request.params.uuid, request.body.state);
    return reply.status(204).send();
  });

  app.get('/get_state_storage/:uuid', { schema: { tags, params: UuidParams, response: { 200: Type.String() } } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User', 'Unit']);
    const state = await service.getStateStorage(agent, request.params.uuid);
    // A JSON string, like the reference (`response_model=str`).
    return reply.type('application/json; charset=utf-8').serializer((value: unknown) => JSON.stringify(value)).send(state);
  });

  if (!app.hasRequestDecorator('file')) {
    await app.register(multipart, { limits: { files: 1, fields: 5, parts: 10, fieldSize: 16 * 1024 } });
  }

  // pepeunit.toml (multipart field `file`) -> README Markdown (reference §7.8).
  app.post('/convert_toml_to_md', { schema: { tags, consumes: ['multipart/form-data'], produces: ['text/markdown'] } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    if (!request.isMultipart()) throw new ReadmeGenerationError('Upload pepeunit.toml as multipart/form-data in the field "file"');
    let part;
    try {
      // 4 bytes per character at most: the character limit is checked after decoding.
      part = await request.file({ limits: { fileSize: TOML_MAX_CHARS * 4, files: 1 } });
    } catch (err) {
      throw new ReadmeGenerationError(`The upload is not a valid multipart/form-data body: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!part || part.fieldname !== 'file') {
      part?.file.resume();
      throw new ReadmeGenerationError('The multipart field "file" with pepeunit.toml is required');
    }
    let bytes: Buffer;
    try {
      bytes = await part.toBuffer();
    } catch (err) {
      if ((err as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') throw new ReadmeGenerationError(`pepeunit.toml is longer than ${TOML_MAX_CHARS} characters`);
      throw new ReadmeGenerationError(`The upload could not be read: ${err instanceof Error ? err.message : String(err)}`);
    }
    let source: string;
    try {
      source = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw new ReadmeGenerationError('pepeunit.toml is not valid UTF-8');
    }
    return reply.type('text/markdown; charset=utf-8').send(pepeunitTomlToMarkdown(source));
  });

  app.get('/log_list/', {
    schema: {
      tags,
      description:
        'Logs of a unit. `limit` 0 or absent returns one page of PU_MAX_PAGINATION_SIZE rows (the reference meant "all"): `count` is the total matching rows and `next_offset` the offset of the next page, null when this page is the last.',
      querystring: Type.Object({
        uuid: Type.String({ format: 'uuid' }),
        level: Type.Optional(Type.Array(Type.Union(['Debug', 'Info', 'Warning', 'Error', 'Critical'].map((l) => Type.Literal(l))))),
        order_by_create_date: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')])),
        offset: Type.Optional(PageOffset),
        limit: Type.Optional(PageLimit),
      }),
    },
  }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['User', 'Unit']);
    return service.logs(agent, request.query as { uuid: string; level?: string[]; order_by_create_date?: 'asc' | 'desc'; offset?: number; limit?: number });
  });

  app.post('/send_command_to_input_base_topic/:uuid', { schema: { tags, params: UuidParams, querystring: CommandQuery } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User', 'Unit']);
    await service.command(agent, request.params.uuid, request.query.command);
    return reply.status(204).send();
  });
};
export default units;
