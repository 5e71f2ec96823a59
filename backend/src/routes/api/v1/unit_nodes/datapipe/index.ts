/**
 * The DataPipe API under `/pepeunit/api/v1/unit_nodes` (pepeunit-datapipe.md §5.5): config
 * check/set/get, data reads with keyset pagination, CSV export/import, data delete.
 * Registered as its own plugin with the `/unit_nodes` prefix (the node CRUD routes live beside
 * it). With `PU_FF_DATAPIPE_ENABLE=false` every route answers 405 FeatureFlagError.
 */
import { ADVISORY_LOCK_OBJECT_NAMESPACES } from '@pepeunit/common';
import multipart from '@fastify/multipart';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Pool } from 'pg';
import { randomUUID } from 'node:crypto';
import { DEFAULT_YAML_MAX_BYTES, DataPipeStage, checkDataPipeYaml, dataPipeConfigToYaml } from '@pepeunit/common/datapipe';
import { DataPipeError, FeatureFlagError, PepeunitError } from '../../../../../errors.js';
import { UuidParams } from '../../../../../schemas/common.js';
import { DataPipeCheckResult, DataPipeDataQuery, PipeDataResult, UuidQuery } from '../../../../../schemas/datapipe.js';
import { requireAgent } from '../../../../../services/access.js';
import { DataPipeDetailedError } from './errors.js';
import {
  currentConfigOrNull,
  loadNode,
  requireActive,
  requireClickHousePolicy,
  requireNodeCreator,
  requireNodeReader,
  requirePipeTopic,
  storedConfig,
} from './nodes.js';
import { parseReadFilters, readPipeData, nRecordsLimit } from './reads.js';
import { PipeReadCache } from './read-cache.js';
import { countExportRows, exportCsvChunks } from './csv-export.js';
import { validateCsvImport } from './csv-import.js';
import { deleteDataPipeNodeRows } from '@pepeunit/clickhouse-schemas';
import { zipSingleFile } from './zip.js';

export interface DataPipeRoutesOptions {
  /** Largest CSV upload in bytes (default 32 MiB). */
  csvMaxBytes?: number;
  /** Most data rows in one CSV import (default 500 000). */
  csvMaxRows?: number;
}

export const CSV_MAX_BYTES = 32 * 1024 * 1024;
export const CSV_MAX_ROWS = 500_000;
/** Rows per ClickHouse insert of an import (reference: 5000). */
export const CSV_INSERT_BATCH = 5000;
/** Advisory lock class (first key) serialising imports/deletes of one node across replicas. */
const NODE_DATA_LOCK = ADVISORY_LOCK_OBJECT_NAMESPACES.nodeData;

const UPLOAD_HINT = 'multipart/form-data, the file in the field "data"';

const StorageError = (message: string) => new PepeunitError(503, 8, 'DataPipe Storage Error', message);

/** Runs `fn` while holding the node's data lock (Postgres advisory lock, so across replicas too). */
async function withNodeDataLock<T>(pg: Pool, nodeUuid: string, fn: () => Promise<T>): Promise<T> {
  const client = await pg.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1, hashtext($2))', [NODE_DATA_LOCK, nodeUuid]);
    try {
      return await fn();
    } finally {
      await client.query('SELECT pg_advisory_unlock($1, hashtext($2))', [NODE_DATA_LOCK, nodeUuid]);
    }
  } finally {
    client.release();
  }
}

type UploadResult = { ok: true; data: Buffer } | { ok: false; tooLarge: true };

/** Reads the multipart field `data` (a file) into memory, at most `maxBytes`. */
async function readUpload(request: FastifyRequest, maxBytes: number, what: string): Promise<UploadResult> {
  if (!request.isMultipart()) {
    throw new DataPipeError(`Upload the ${what} as multipart/form-data with the file in the field "data"`);
  }
  // Errors here come from parsing the client's body (busboy): they are the client's 4xx.
  const malformed = (err: unknown) => {
    const e = err as { statusCode?: number; message?: string };
    if (err instanceof PepeunitError || (e.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500)) return err;
    return new DataPipeError(`The upload is not a valid multipart/form-data body: ${e.message ?? String(err)}`);
  };
  let part;
  try {
    part = await request.file({ limits: { fileSize: maxBytes, files: 1 } });
  } catch (err) {
    throw malformed(err);
  }
  if (!part || part.fieldname !== 'data') {
    part?.file.resume();
    throw new DataPipeError(`The multipart field "data" with the ${what} file is required`);
  }
  try {
    return { ok: true, data: await part.toBuffer() };
  } catch (err) {
    if ((err as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') return { ok: false, tooLarge: true };
    throw malformed(err);
  }
}

const datapipeRoutes: FastifyPluginAsyncTypebox<DataPipeRoutesOptions> = async (app, opts) => {
  const csvMaxBytes = opts.csvMaxBytes ?? CSV_MAX_BYTES;
  const csvMaxRows = opts.csvMaxRows ?? CSV_MAX_ROWS;
  const tags = ['unit_nodes', 'datapipe'];
  const yamlOptions = { maxPayloadSizeKb: app.config.mqtt.maxPayloadSizeKb, maxBytes: DEFAULT_YAML_MAX_BYTES };

  if (!app.hasRequestDecorator('file')) {
    await app.register(multipart, { limits: { files: 1, fields: 10, parts: 20, fieldSize: 64 * 1024 } });
  }

  // Detailed DataPipe errors keep the reference `detail` and add `errors`; the rest goes to the app's handler.
  app.setErrorHandler((error, _request, reply) => {
    if (error instanceof DataPipeDetailedError) return reply.status(error.statusCode).send(error.body);
    throw error;
  });

  app.addHook('onRequest', async () => {
    if (!app.config.featureFlags.datapipe) throw new FeatureFlagError();
  });

  /** The uploaded YAML checked; a too-large upload is reported like the parser reports it. */
  async function uploadedYaml(request: FastifyRequest) {
    const upload = await readUpload(request, yamlOptions.maxBytes, 'DataPipe config (YAML)');
    if (!upload.ok) {
      const message = `DataPipe config is too large: more than ${yamlOptions.maxBytes} bytes (the limit is ${yamlOptions.maxBytes} bytes)`;
      return { ok: false as const, config: null, json: null, errors: [{ stage: DataPipeStage.Yaml, message }] };
    }
    return checkDataPipeYaml(upload.data, yamlOptions);
  }

  app.post('/check_data_pipe_config', { schema: { tags, description: `Validates a DataPipe YAML (${UPLOAD_HINT}); 200 with the list of {stage, message}, empty when valid.`, consumes: ['multipart/form-data'], response: { 200: DataPipeCheckResult } } }, async (request) => {
    requireAgent(await request.agent(), ['Bot', 'User', 'Unit', 'Backend']);
    const result = await uploadedYaml(request);
    return result.errors;
  });

  app.post('/set_data_pipe_config', { schema: { tags, description: `Sets the node's DataPipe config (${UPLOAD_HINT}); creator only, pipe must be active. 422 body: {detail, errors: [{stage, message}]}.`, consumes: ['multipart/form-data'], querystring: UuidQuery } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    const node = await loadNode(app.pg, request.query.uuid);
    requireNodeCreator(agent, node);
    requirePipeTopic(node);
    requireActive(node);
    const result = await uploadedYaml(request);
    if (!result.ok) throw new DataPipeDetailedError(`${result.errors.length} validation errors for DataPipeConfig`, result.errors);
    await app.pg.query('UPDATE units_nodes SET data_pipe_yml = $1 WHERE uuid = $2', [result.json, node.uuid]);
    request.log.info({ node: node.uuid, policy: result.config.processing_policy.policy_type }, 'DataPipe config set');
    await app.datapipe.notifyChanged(node.uuid, 'Update');
    return reply.status(204).send();
  });

  app.get('/get_data_pipe_config/:uuid', { schema: { tags, params: UuidParams, produces: ['application/x-yaml'] } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    const node = await loadNode(app.pg, request.params.uuid);
    requireNodeCreator(agent, node);
    requireActive(node);
    if (node.data_pipe_yml === null) throw new DataPipeError('Data pipe is not filled');
    let yaml: string;
    try {
      yaml = dataPipeConfigToYaml(node.data_pipe_yml);
    } catch {
      throw new DataPipeError('The stored DataPipe config is not valid JSON; set the config again');
    }
    return reply
      .header('content-type', 'application/x-yaml; charset=utf-8')
      .header('content-disposition', `attachment; filename="data_pipe_${node.uuid}.yml"`)
      .send(yaml);
  });

  // Pages of a node are dropped whenever its data or config changes through this backend.
  const readCache = new PipeReadCache(app.config.datapipeReadCacheMs);
  app.datapipe.onChange((event) => readCache.forget(event.nodeUuid));
  const readData = async (request: FastifyRequest<{ Querystring: DataPipeDataQuery }>, reply: FastifyReply) => {
    const agent = await request.agent();
    const node = await loadNode(app.pg, request.query.uuid);
    await requireNodeReader(app.pg, agent, node);
    const filters = parseReadFilters(request.query, app.config.maxPaginationSize, Date.now());
    const read = () => readPipeData({ pg: app.pg, clickhouse: app.clickhouse }, currentConfigOrNull(node), filters);
    // LastValue is one Postgres row that changes with every state message: never cached.
    if (filters.type === 'LastValue') return read();
    const cursor = filters.cursor ? `${filters.cursor.t}/${filters.cursor.k}/${filters.cursor.s}` : '';
    const body = await readCache.getSerialized(node.uuid, `${filters.queryId}|${filters.offset}|${filters.limit}|${cursor}`, read, (result) => reply.serialize(result) as string);
    return reply.type('application/json; charset=utf-8').send(body);
  };
  app.get('/get_data_pipe_data/', { schema: { tags, querystring: DataPipeDataQuery, response: { 200: PipeDataResult } } }, readData);
  // The reference (FastAPI) redirects the path without the trailing slash; we answer it directly.
  app.get('/get_data_pipe_data', { schema: { hide: true, querystring: DataPipeDataQuery, response: { 200: PipeDataResult } } }, readData);

  app.get('/get_data_pipe_data_csv/:uuid', { schema: { tags, params: UuidParams, produces: ['application/zip'] } }, async (request, reply) => {
    const agent = await request.agent();
    const node = await loadNode(app.pg, request.params.uuid);
    await requireNodeReader(app.pg, agent, node);
    const config = storedConfig(node);
    const policy = requireClickHousePolicy(config);
    const nRecords = nRecordsLimit(config);
    const rows = await countExportRows(app.clickhouse, policy, node.uuid, nRecords);
    if (rows === 0) throw new DataPipeError('No data found');
    const name = `dp_data_${randomUUID()}`;
    request.log.info({ node: node.uuid, policy, rows }, 'DataPipe CSV export');
    return reply
      .header('content-type', 'application/zip')
      .header('content-disposition', `attachment; filename="${name}.zip"`)
      .send(zipSingleFile(`${name}.csv`, exportCsvChunks(app.clickhouse, policy, node.uuid, nRecords)));
  });

  app.post('/set_data_pipe_data_csv', { schema: { tags, description: `Replaces the node's data with a CSV (${UPLOAD_HINT}) once every row passes; creator only. 422 body: {detail, errors: [{row, message}]}.`, consumes: ['multipart/form-data'], querystring: UuidQuery } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    const node = await loadNode(app.pg, request.query.uuid);
    requireNodeCreator(agent, node);
    const config = storedConfig(node);
    requireClickHousePolicy(config);
    const upload = await readUpload(request, csvMaxBytes, 'CSV');
    if (!upload.ok) {
      const message = `CSV file is too large: the limit is ${csvMaxBytes} bytes`;
      throw new DataPipeDetailedError(message, [{ message }]);
    }
    const log = request.log;
    const started = Date.now();
    const result = validateCsvImport(upload.data, config, node.uuid, Date.now(), {
      maxRows: csvMaxRows,
      onProgress: (done, total) => log.info({ node: node.uuid, validated: done, total }, 'CSV import: validating'),
    });
    const total = result.rows.length;
    log.info({ node: node.uuid, rows: total, policy: result.policy, ms: Date.now() - started }, 'CSV import: every row is valid; replacing the data');
    await withNodeDataLock(app.pg, node.uuid, async () => {
      readCache.forget(node.uuid);
      await deleteDataPipeNodeRows(app.clickhouse, [node.uuid], log);
      let inserted = 0;
      try {
        for (let i = 0; i < total; i += CSV_INSERT_BATCH) {
          const batch = result.rows.slice(i, i + CSV_INSERT_BATCH);
          await app.clickhouse.insert({
            table: result.table,
            values: batch,
            format: 'JSONEachRow',
            clickhouse_settings: { date_time_input_format: 'best_effort' },
          });
          inserted += batch.length;
          if (total > CSV_INSERT_BATCH) log.info({ node: node.uuid, inserted, total }, 'CSV import: inserting');
        }
      } catch (err) {
        log.error({ err, node: node.uuid, inserted, total }, 'CSV import failed while inserting');
        throw StorageError(`Writing the imported rows failed after ${inserted} of ${total} rows; the node holds only those rows now. Retry the import.`);
      } finally {
        readCache.forget(node.uuid);
      }
    });
    log.info({ node: node.uuid, rows: total, ms: Date.now() - started }, 'CSV import done');
    return reply.status(204).send();
  });

  app.delete('/delete_data_pipe_data/:uuid', { schema: { tags, params: UuidParams } }, async (request, reply) => {
    const agent = await request.agent();
    requireAgent(agent, ['User']);
    const node = await loadNode(app.pg, request.params.uuid);
    requireNodeCreator(agent, node);
    try {
      await withNodeDataLock(app.pg, node.uuid, () => deleteDataPipeNodeRows(app.clickhouse, [node.uuid], request.log));
    } finally {
      readCache.forget(node.uuid);
    }
    request.log.info({ node: node.uuid }, 'DataPipe data deleted');
    return reply.status(204).send();
  });
};

export default datapipeRoutes;
