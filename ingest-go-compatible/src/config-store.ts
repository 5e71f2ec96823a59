/**
 * The DataPipe configs the ingest runs, loaded from Postgres `units_nodes` and kept current.
 *
 * - Full load: every `is_data_pipe_active` node with a `data_pipe_yml`, each config compiled
 *   ONCE (`compileNodeConfig`); a node keeps its compiled config and its runtime state
 *   (rate-limit / uniqueness memory) across reloads while its config text is unchanged.
 * - Status: `data_pipe_status` / `data_pipe_error` are maintained (the Go service never did):
 *   `Active` for a running config, `Error` + a clear message for a config that does not
 *   compile (the node is skipped), `Inactive` for nodes turned off (or without a config) that
 *   were Active/Error. Written only when they change, in one batched statement.
 * - Triggers: `LISTEN pepeunit_datapipe_changed` (payload: a node uuid, or several separated by
 *   commas/spaces; empty: full reload), the Redis stream `backend_data_pipe_nodes` when
 *   `PU_DP_REDIS_URL` is set, and a periodic full sync every `PU_DP_CONFIG_SYNC_INTERVAL` s.
 *   Reloads run one at a time; node reloads that pile up are coalesced into one query.
 */
import { sleep as sleepFor } from '@pepeunit/common';
import { DATAPIPE_NOTIFY_CHANNEL } from '@pepeunit/common';
import pg from 'pg';
import { isUuid, type Logger } from '@pepeunit/common';
import { compileNodeConfig, createNodeState, type CompiledNodeConfig, type NodeState } from './pipeline/index.js';
import type { IngestMetrics, ReloadTrigger } from './metrics.js';
import { startRedisStreamReader, type RedisStreamReader } from './redis-stream.js';

export const DATAPIPE_CHANGED_CHANNEL = DATAPIPE_NOTIFY_CHANNEL;

export const DataPipeStatus = { Active: 'Active', Inactive: 'Inactive', Error: 'Error' } as const;
export type DataPipeStatus = (typeof DataPipeStatus)[keyof typeof DataPipeStatus];

/** Longest `data_pipe_error` text written (the column is an unbounded varchar; keep it readable). */
const MAX_ERROR_LENGTH = 2000;

export interface NodeEntry {
  readonly uuid: string;
  /** The stored config text the entry was compiled from. */
  readonly text: string;
  readonly compiled: CompiledNodeConfig;
  /** Runtime memory of the node's filters; survives reloads while `text` is unchanged. */
  readonly state: NodeState;
}

export interface ConfigStoreOptions {
  pool: pg.Pool;
  /** Connection string for the dedicated LISTEN connection. */
  postgresUrl: string;
  /** Redis URL of the reference stream; empty: no Redis. */
  redisUrl?: string;
  /** Seconds between periodic full syncs. */
  syncIntervalSeconds: number;
  metrics: IngestMetrics;
  logger: Logger;
  /** Called when a node's config appears, changes or disappears (after the map is updated). */
  onChange?: (uuid: string, entry: NodeEntry | undefined) => void;
}

interface NodeRow {
  uuid: string;
  is_data_pipe_active: boolean;
  data_pipe_yml: string | null;
  data_pipe_status: string | null;
  data_pipe_error: string | null;
}

interface StatusChange {
  uuid: string;
  status: DataPipeStatus;
  error: string | null;
}

const sleep = (ms: number): Promise<void> => sleepFor(ms, { unref: true });

function clip(text: string): string {
  return text.length > MAX_ERROR_LENGTH ? `${text.slice(0, MAX_ERROR_LENGTH - 1)}…` : text;
}

/** Node uuids named by a NOTIFY payload; null means "reload everything". */
export function nodesOfNotification(payload: string | undefined): string[] | null {
  const text = (payload ?? '').trim();
  if (text === '') return null;
  const parts = text.split(/[\s,]+/).filter(Boolean);
  if (parts.length === 0 || !parts.every(isUuid)) return null;
  return parts.map((p) => p.toLowerCase());
}

export class ConfigStore {
  private readonly nodes = new Map<string, NodeEntry>();
  /** Nodes whose config does not compile, with the reason. */
  private readonly errors = new Map<string, string>();
  private pendingFull: ReloadTrigger | null = null;
  private readonly pendingNodes = new Map<string, ReloadTrigger>();
  private running: Promise<void> | null = null;
  private closed = false;
  private listenClient: pg.Client | null = null;
  private listenBackoffMs = 200;
  private redis: RedisStreamReader | null = null;
  private syncTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly logger: Logger;

  constructor(private readonly options: ConfigStoreOptions) {
    this.logger = options.logger;
  }

  /** The running config of a node (hot path: one map lookup). */
  get(uuid: string): NodeEntry | undefined {
    return this.nodes.get(uuid);
  }

  get size(): number {
    return this.nodes.size;
  }

  /** Every running entry (for the trim job and diagnostics). */
  entries(): IterableIterator<NodeEntry> {
    return this.nodes.values();
  }

  /** The reason a node is in Error, if it is. */
  errorOf(uuid: string): string | undefined {
    return this.errors.get(uuid);
  }

  statusCounts(): Record<string, number> {
    return { Active: this.nodes.size, Error: this.errors.size };
  }

  /** Loads every active config now (also used at start-up). Throws when Postgres fails. */
  async loadAll(trigger: ReloadTrigger = 'manual'): Promise<void> {
    await this.enqueue(() => this.doLoadAll(trigger));
  }

  /** Reloads some nodes now. Throws when Postgres fails. */
  async reloadNodes(uuids: readonly string[], trigger: ReloadTrigger = 'manual'): Promise<void> {
    await this.enqueue(() => this.doLoadNodes(uuids.map((u) => u.toLowerCase()), trigger));
  }

  /** Schedules a reload of one node (or everything with null); never throws. */
  requestReload(uuid: string | null, trigger: ReloadTrigger): void {
    if (this.closed) return;
    if (uuid === null) this.pendingFull ??= trigger;
    else if (!this.pendingNodes.has(uuid)) this.pendingNodes.set(uuid, trigger);
    this.kick();
  }

  /** Resolves when no reload is queued or running (for tests). */
  async whenIdle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** Starts LISTEN, the Redis reader (if configured) and the periodic sync. */
  async start(): Promise<void> {
    await this.connectListen();
    if (this.options.redisUrl) {
      this.redis = startRedisStreamReader({
        url: this.options.redisUrl,
        logger: this.logger,
        onEntry: (uuid) => this.requestReload(uuid, 'redis'),
        onGap: () => this.requestReload(null, 'redis'),
      });
      await Promise.race([this.redis.ready, sleep(5000)]);
    }
    const interval = Math.max(1, this.options.syncIntervalSeconds) * 1000;
    this.syncTimer = setInterval(() => this.requestReload(null, 'periodic'), interval);
    this.syncTimer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.syncTimer) clearInterval(this.syncTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.pendingFull = null;
    this.pendingNodes.clear();
    const listen = this.listenClient;
    this.listenClient = null;
    await Promise.all([
      listen ? listen.end().catch(() => {}) : undefined,
      this.redis ? this.redis.close() : undefined,
      this.whenIdle(),
    ]);
  }

  // ---- queue -------------------------------------------------------------------------------

  private tail: Promise<void> = Promise.resolve();

  /** Runs `job` after every earlier reload (one at a time). */
  private enqueue(job: () => Promise<void>): Promise<void> {
    const next = this.tail.then(job);
    this.tail = next.catch(() => {});
    return next;
  }

  private kick(): void {
    if (this.running) return;
    this.running = this.drainRequests().finally(() => {
      this.running = null;
      if (!this.closed && (this.pendingFull || this.pendingNodes.size > 0) && !this.retryTimer) this.kick();
    });
  }

  private async drainRequests(): Promise<void> {
    while (!this.closed && (this.pendingFull || this.pendingNodes.size > 0)) {
      try {
        if (this.pendingFull) {
          const trigger = this.pendingFull;
          this.pendingFull = null;
          this.pendingNodes.clear();
          await this.enqueue(() => this.doLoadAll(trigger));
        } else {
          const batch = [...this.pendingNodes.entries()];
          this.pendingNodes.clear();
          const trigger = batch[0]?.[1] ?? 'notify';
          await this.enqueue(() => this.doLoadNodes(batch.map(([u]) => u), trigger));
        }
      } catch (err) {
        this.options.metrics.configReloadErrors += 1;
        this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'config reload failed; retrying with a full reload');
        this.pendingFull ??= 'retry';
        await new Promise<void>((resolve) => {
          this.retryTimer = setTimeout(() => {
            this.retryTimer = null;
            resolve();
          }, 2000);
          this.retryTimer.unref();
        });
      }
    }
  }

  // ---- loading -----------------------------------------------------------------------------

  private async doLoadAll(trigger: ReloadTrigger): Promise<void> {
    const { pool } = this.options;
    const active = await pool.query<NodeRow>(
      `SELECT uuid::text AS uuid, is_data_pipe_active, data_pipe_yml, data_pipe_status, data_pipe_error
         FROM units_nodes WHERE is_data_pipe_active AND data_pipe_yml IS NOT NULL`,
    );
    // Nodes still marked Active/Error that no longer run (turned off, or config removed).
    const stale = await pool.query<NodeRow>(
      `SELECT uuid::text AS uuid, is_data_pipe_active, data_pipe_yml, data_pipe_status, data_pipe_error
         FROM units_nodes
        WHERE data_pipe_status IN ('Active', 'Error') AND (NOT is_data_pipe_active OR data_pipe_yml IS NULL)`,
    );
    const seen = new Set<string>();
    const changes: StatusChange[] = [];
    for (const row of active.rows) {
      seen.add(row.uuid);
      this.apply(row, changes);
    }
    for (const uuid of [...this.nodes.keys(), ...this.errors.keys()]) {
      if (!seen.has(uuid)) this.remove(uuid);
    }
    for (const row of stale.rows) changes.push({ uuid: row.uuid, status: DataPipeStatus.Inactive, error: null });
    await this.writeStatuses(changes);
    this.options.metrics.countReload('full', trigger);
    this.logger.debug({ trigger, active: this.nodes.size, errors: this.errors.size }, 'configs loaded');
  }

  private async doLoadNodes(uuids: readonly string[], trigger: ReloadTrigger): Promise<void> {
    if (uuids.length === 0) return;
    const result = await this.options.pool.query<NodeRow>(
      `SELECT uuid::text AS uuid, is_data_pipe_active, data_pipe_yml, data_pipe_status, data_pipe_error
         FROM units_nodes WHERE uuid = ANY($1::uuid[])`,
      [uuids],
    );
    const byUuid = new Map(result.rows.map((r) => [r.uuid, r]));
    const changes: StatusChange[] = [];
    for (const uuid of uuids) {
      const row = byUuid.get(uuid);
      if (row && row.is_data_pipe_active && row.data_pipe_yml !== null) {
        this.apply(row, changes);
      } else {
        this.remove(uuid);
        if (row && (row.data_pipe_status === DataPipeStatus.Active || row.data_pipe_status === DataPipeStatus.Error)) {
          changes.push({ uuid, status: DataPipeStatus.Inactive, error: null });
        }
      }
    }
    await this.writeStatuses(changes);
    this.options.metrics.countReload('node', trigger);
  }

  /** Installs one active row (compiling only when its text changed) and records its status. */
  private apply(row: NodeRow, changes: StatusChange[]): void {
    const text = row.data_pipe_yml as string;
    const existing = this.nodes.get(row.uuid);
    let wanted: { status: DataPipeStatus; error: string | null };
    if (existing && existing.text === text) {
      wanted = { status: DataPipeStatus.Active, error: null };
    } else {
      const previousError = this.errors.get(row.uuid);
      const compiled = previousError !== undefined && this.errorTexts.get(row.uuid) === text ? null : compileNodeConfig(text);
      if (compiled === null) {
        wanted = { status: DataPipeStatus.Error, error: previousError as string };
      } else if (compiled.ok) {
        const entry: NodeEntry = { uuid: row.uuid, text, compiled: compiled.compiled, state: createNodeState() };
        this.nodes.set(row.uuid, entry);
        this.errors.delete(row.uuid);
        this.errorTexts.delete(row.uuid);
        this.options.onChange?.(row.uuid, entry);
        wanted = { status: DataPipeStatus.Active, error: null };
      } else {
        const error = clip(compiled.error);
        const had = this.nodes.delete(row.uuid);
        this.errors.set(row.uuid, error);
        this.errorTexts.set(row.uuid, text);
        if (had) this.options.onChange?.(row.uuid, undefined);
        this.logger.warn({ node: row.uuid, error }, 'DataPipe config does not compile; node skipped');
        wanted = { status: DataPipeStatus.Error, error };
      }
    }
    if (row.data_pipe_status !== wanted.status || (row.data_pipe_error ?? null) !== wanted.error) {
      changes.push({ uuid: row.uuid, ...wanted });
    }
  }

  /** Texts of the configs in Error, so an unchanged broken config is not recompiled each sync. */
  private readonly errorTexts = new Map<string, string>();

  private remove(uuid: string): void {
    const had = this.nodes.delete(uuid);
    this.errors.delete(uuid);
    this.errorTexts.delete(uuid);
    if (had) this.options.onChange?.(uuid, undefined);
  }

  private async writeStatuses(changes: readonly StatusChange[]): Promise<void> {
    for (let i = 0; i < changes.length; i += 5000) {
      const chunk = changes.slice(i, i + 5000);
      await this.options.pool.query(
        `UPDATE units_nodes AS n
            SET data_pipe_status = v.status, data_pipe_error = v.error
           FROM unnest($1::uuid[], $2::text[], $3::text[]) AS v(uuid, status, error)
          WHERE n.uuid = v.uuid
            AND (n.data_pipe_status IS DISTINCT FROM v.status OR n.data_pipe_error IS DISTINCT FROM v.error)`,
        [chunk.map((c) => c.uuid), chunk.map((c) => c.status), chunk.map((c) => c.error)],
      );
    }
  }

  // ---- LISTEN ------------------------------------------------------------------------------

  private async connectListen(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.options.postgresUrl, application_name: 'pepeunit-ingest-listen' });
    const lost = (err?: Error) => {
      if (this.listenClient !== client) return;
      this.listenClient = null;
      if (this.closed) return;
      this.logger.warn({ err: err?.message }, 'config LISTEN connection lost; reconnecting');
      client.end().catch(() => {});
      void this.reconnectListen();
    };
    client.on('error', lost);
    client.on('end', () => lost());
    client.on('notification', (msg) => {
      if (msg.channel !== DATAPIPE_CHANGED_CHANNEL) return;
      const uuids = nodesOfNotification(msg.payload);
      if (uuids === null) this.requestReload(null, 'notify');
      else for (const uuid of uuids) this.requestReload(uuid, 'notify');
    });
    this.listenClient = client;
    try {
      await client.connect();
      await client.query(`LISTEN ${DATAPIPE_CHANGED_CHANNEL}`);
      this.listenBackoffMs = 200;
    } catch (err) {
      if (this.listenClient === client) {
        this.listenClient = null;
        client.end().catch(() => {});
      }
      throw err;
    }
  }

  private async reconnectListen(): Promise<void> {
    while (!this.closed && !this.listenClient) {
      await sleep(this.listenBackoffMs);
      this.listenBackoffMs = Math.min(this.listenBackoffMs * 2, 10_000);
      try {
        await this.connectListen();
        // Notifications sent while we were away are lost: catch up with a full reload.
        this.requestReload(null, 'retry');
      } catch (err) {
        this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'config LISTEN reconnect failed');
      }
    }
  }
}
