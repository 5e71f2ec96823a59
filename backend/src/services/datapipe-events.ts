/**
 * DataPipe change notifications (pepeunit-datapipe.md §2.3, ARCHITECTURE §3.2): when a node's
 * config or its `is_data_pipe_active` changes, the backend tells
 *
 * 1. the ingest: Postgres `NOTIFY pepeunit_datapipe_changed, '<node uuid>'`;
 * 2. a reference Go DataPipe (drop-in compatibility), when `PU_REDIS_URL` is set:
 *    `XADD backend_data_pipe_nodes MAXLEN ~ 10000 * action <Update|Delete> unit_node_data <json>`
 *    where the JSON is the full `units_nodes` row in the reference key order;
 * 3. in-process listeners (`app.datapipe.onChange`), e.g. the EMQX rules reconciler.
 *
 * Notifying never fails the caller: each channel's errors are logged and swallowed, and Redis
 * is given at most `redisTimeoutMs` so an unreachable Redis cannot hold a request.
 */
import { DATAPIPE_NOTIFY_CHANNEL, DATAPIPE_STREAM_KEY, redactUrlPassword, silentSink, withTimeout, type LogSink } from '@pepeunit/common';
import fp from 'fastify-plugin';
import { Redis } from 'ioredis';
import type { Pool } from 'pg';
import { pythonJsonDumps, type PyJsonValue } from '@pepeunit/common/datapipe';

export { DATAPIPE_NOTIFY_CHANNEL, DATAPIPE_STREAM_KEY };
/**
 * Approximate cap of the stream. The reference never trimmed it (§8.1.11); readers start at `$`
 * (new entries only), so old entries are never needed.
 */
export const DATAPIPE_STREAM_MAXLEN = 10_000;

export type DataPipeAction = 'Update' | 'Delete';

/** The pino-compatible subset used here. */
export type DataPipeLogger = LogSink;

/** A `units_nodes` row as the reference serialises it (ISO datetimes without offset, string uuids). */
export interface UnitNodeStreamRow {
  uuid: string;
  type: string;
  visibility_level: string;
  is_rewritable_input: boolean;
  max_connections: number;
  topic_name: string;
  create_datetime: string;
  state: string | null;
  last_update_datetime: string;
  is_data_pipe_active: boolean;
  data_pipe_yml: string | null;
  data_pipe_status: string | null;
  data_pipe_error: string | null;
  creator_uuid: string | null;
  unit_uuid: string | null;
}

export interface DataPipeChangeEvent {
  readonly nodeUuid: string;
  readonly action: DataPipeAction;
  /** The node as stored after the change; null when the row no longer exists. */
  readonly node: UnitNodeStreamRow | null;
}

export type DataPipeChangeListener = (event: DataPipeChangeEvent) => void | Promise<void>;

export interface DataPipeEvents {
  /**
   * Announces that a node's DataPipe changed: `Update` (config set, pipe turned on) or `Delete`
   * (pipe turned off, node removed). Sends NOTIFY, XADD (when Redis is configured) and calls
   * the listeners (awaited; their errors are logged). Never rejects. A no-op when
   * `PU_FF_DATAPIPE_ENABLE` is false (as the reference, which gates its stream events).
   * `node` may carry the row when it is already deleted (else it is read from Postgres).
   */
  notifyChanged(nodeUuid: string, action: DataPipeAction, opts?: { node?: UnitNodeStreamRow }): Promise<void>;
  /** Registers a listener; returns the function that removes it. */
  onChange(listener: DataPipeChangeListener): () => void;
  /** Closes the Redis connection (the plugin does this on app close). */
  close(): Promise<void>;
}

export interface DataPipeEventsOptions {
  readonly pg: Pool;
  /** `PU_REDIS_URL`; empty = no stream. */
  readonly redisUrl: string;
  /** `PU_FF_DATAPIPE_ENABLE`. */
  readonly enabled: boolean;
  readonly logger?: DataPipeLogger;
  /** Upper bound for one XADD including connecting (default 2000 ms). */
  readonly redisTimeoutMs?: number;
}

const ROW_SQL = `
  SELECT uuid::text AS uuid, type, visibility_level, is_rewritable_input, max_connections, topic_name,
         to_char(create_datetime, 'YYYY-MM-DD"T"HH24:MI:SS.US') AS create_datetime, state,
         to_char(last_update_datetime, 'YYYY-MM-DD"T"HH24:MI:SS.US') AS last_update_datetime,
         is_data_pipe_active, data_pipe_yml, data_pipe_status, data_pipe_error,
         creator_uuid::text AS creator_uuid, unit_uuid::text AS unit_uuid
    FROM units_nodes WHERE uuid = $1`;

/** Python `datetime.isoformat()` drops a zero microsecond part. */
function pythonIso(text: string): string {
  return text.endsWith('.000000') ? text.slice(0, -7) : text;
}

/** Reads a node in the stream form; null when it does not exist. */
export async function loadUnitNodeStreamRow(pg: Pool, nodeUuid: string): Promise<UnitNodeStreamRow | null> {
  const { rows } = await pg.query<UnitNodeStreamRow>(ROW_SQL, [nodeUuid]);
  const row = rows[0];
  if (!row) return null;
  return { ...row, create_datetime: pythonIso(row.create_datetime), last_update_datetime: pythonIso(row.last_update_datetime) };
}

/** `unit_node_data` of a stream entry: Python `json.dumps` text with the reference key order (§2.3). */
export function unitNodeStreamJson(row: UnitNodeStreamRow): string {
  const doc: Record<string, PyJsonValue> = {
    uuid: row.uuid,
    type: row.type,
    visibility_level: row.visibility_level,
    is_rewritable_input: row.is_rewritable_input,
    max_connections: row.max_connections,
    topic_name: row.topic_name,
    create_datetime: row.create_datetime,
    state: row.state,
    last_update_datetime: row.last_update_datetime,
    is_data_pipe_active: row.is_data_pipe_active,
    data_pipe_yml: row.data_pipe_yml,
    data_pipe_status: row.data_pipe_status,
    data_pipe_error: row.data_pipe_error,
    creator_uuid: row.creator_uuid,
    unit_uuid: row.unit_uuid,
  };
  return pythonJsonDumps(doc);
}

const redactUrl = redactUrlPassword;

export function createDataPipeEvents(opts: DataPipeEventsOptions): DataPipeEvents {
  const logger = opts.logger ?? silentSink;
  const redisTimeoutMs = opts.redisTimeoutMs ?? 2000;
  const listeners = new Set<DataPipeChangeListener>();
  let redis: Redis | null = null;
  let lastRedisErrorLog = 0;

  const getRedis = (): Redis | null => {
    if (!opts.redisUrl) return null;
    if (redis) return redis;
    redis = new Redis(opts.redisUrl, {
      lazyConnect: true,
      connectTimeout: redisTimeoutMs,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: true,
      retryStrategy: (times) => Math.min(times * 500, 10_000),
    });
    redis.on('error', (err: Error) => {
      // ioredis reports every reconnect failure; one line per 30 s is enough.
      const now = Date.now();
      if (now - lastRedisErrorLog > 30_000) {
        lastRedisErrorLog = now;
        logger.warn({ err: err.message, redis: redactUrl(opts.redisUrl) }, 'Redis connection error (DataPipe stream notifications)');
      }
    });
    return redis;
  };

  async function xadd(action: DataPipeAction, row: UnitNodeStreamRow): Promise<void> {
    const client = getRedis();
    if (!client) return;
    try {
      await withTimeout(
        client.xadd(DATAPIPE_STREAM_KEY, 'MAXLEN', '~', String(DATAPIPE_STREAM_MAXLEN), '*', 'action', action, 'unit_node_data', unitNodeStreamJson(row)),
        redisTimeoutMs,
        'XADD',
      );
    } catch (err) {
      logger.warn({ err: err instanceof Error ? err.message : String(err), node: row.uuid, action }, 'DataPipe stream notification (XADD) failed');
    }
  }

  return {
    async notifyChanged(nodeUuid, action, notifyOpts = {}) {
      if (!opts.enabled) return;
      let node: UnitNodeStreamRow | null = notifyOpts.node ?? null;
      if (!node) {
        try {
          node = await loadUnitNodeStreamRow(opts.pg, nodeUuid);
        } catch (err) {
          logger.warn({ err, node: nodeUuid }, 'reading the node for the DataPipe notification failed');
        }
      }
      try {
        await opts.pg.query('SELECT pg_notify($1, $2)', [DATAPIPE_NOTIFY_CHANNEL, nodeUuid]);
      } catch (err) {
        logger.warn({ err, node: nodeUuid }, 'DataPipe NOTIFY failed');
      }
      // The reference Go reader only reloads for entries carrying the node (a string topic_name).
      if (node) await xadd(action, node);
      const event: DataPipeChangeEvent = { nodeUuid, action, node };
      await Promise.all(
        [...listeners].map(async (listener) => {
          try {
            await listener(event);
          } catch (err) {
            logger.warn({ err, node: nodeUuid, action }, 'DataPipe change listener failed');
          }
        }),
      );
      logger.debug({ node: nodeUuid, action }, 'DataPipe change notified');
    },
    onChange(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    async close() {
      const client = redis;
      redis = null;
      if (!client) return;
      try {
        await withTimeout(client.quit(), 1000, 'QUIT');
      } catch {
        client.disconnect();
      }
    },
  };
}

declare module 'fastify' {
  interface FastifyInstance {
    /** DataPipe change notifications (NOTIFY, Redis stream, in-process listeners). */
    readonly datapipe: DataPipeEvents;
  }
}

/** Decorates `app.datapipe`; register before any route that changes DataPipe state. */
export const datapipeEventsPlugin = fp(
  async (app) => {
    const events = createDataPipeEvents({
      pg: app.pg,
      redisUrl: app.config.redisUrl,
      enabled: app.config.featureFlags.datapipe,
      logger: app.log,
    });
    app.decorate('datapipe', events);
    app.addHook('onClose', async () => events.close());
  },
  { name: 'pepeunit-datapipe-events', dependencies: ['pepeunit-core'] },
);

export default datapipeEventsPlugin;
