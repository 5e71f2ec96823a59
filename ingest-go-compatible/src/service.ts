/**
 * The ingest process, wired: Postgres (configs, LastValue, spill), ClickHouse (NRecords,
 * TimeWindow, Aggregation), the broker (intake), the HTTP endpoint.
 *
 * Start: connect -> take back what the previous process persisted at shutdown (open
 * Aggregation windows, unwritten rows) -> load and compile every config -> LISTEN / Redis /
 * periodic sync -> writers, trim job, endpoint -> subscribe. Messages are processed only after
 * the restore, so a restored window is never emitted twice.
 *
 * Stop (`close`, SIGTERM via main.ts): unsubscribe and disconnect (no new messages), stop the
 * config triggers, move every buffer to its writer (closed windows as rows), write with
 * retries until the deadline, then persist whatever is left (open windows and unwritten rows)
 * to Postgres for the next start. Only what cannot even be persisted is counted as lost
 * (`dropped{reason="shutdown_unwritten"}`).
 */
import { sleep } from '@pepeunit/common';
import { hostname } from 'node:os';
import pg from 'pg';
import type { Registry } from 'prom-client';
import type { ClickHouseClient } from '@clickhouse/client';
import type { IngestConfig, Logger } from '@pepeunit/common';
import { normalizePostgresUrl, usePostgresUtcTimestamps } from '@pepeunit/common/postgres';
import { NodeStateCollector, startNodeStateReporter } from '@pepeunit/common/node-state';
import { readFileSync } from 'node:fs';
import { createClickHouse, parseClickHouseUrl } from '@pepeunit/clickhouse-schemas';
import { ConfigStore } from './config-store.js';
import { Dispatcher } from './dispatcher.js';
import { startEndpoint, type Endpoint } from './http-endpoint.js';
import { createMessageHandler, intakeSubscription, startIntake, type Intake } from './intake.js';
import { IngestMetrics, type IngestStats } from './metrics.js';
import { NRecordsTrimmer } from './nrecords-trim.js';
import { SpillStore, type SpillRecord } from './spill-store.js';
import { IngestWriters } from './writers/index.js';

export interface StartIngestOptions {
  /** The clock of the pipeline (message times in go-compatible mode, window closing, flush times). Default Date.now. */
  now?: () => number;
  /** Connect to the broker (default true). False: messages arrive only through `injectMessage` (benchmarks). */
  connectBroker?: boolean;
  /** How long `close()` may write before persisting the rest. Default 20 s. */
  shutdownTimeoutMs?: number;
  /** How long start-up waits for the broker subscription. Default 30 s. */
  brokerConnectTimeoutMs?: number;
  /** Largest insert batch (rows). Default 100 000. */
  maxBatchRows?: number;
}

export interface ShutdownReport {
  stats: IngestStats;
  /** Rows persisted to Postgres for the next start. */
  spilledRows: number;
  /** Open aggregation windows persisted for the next start. */
  spilledWindows: number;
  /** Rows and windows that could be neither written nor persisted. */
  lost: number;
  durationMs: number;
}

export interface IngestService {
  readonly metricsUrl: string;
  readonly metrics: Registry;
  readonly mode: IngestConfig['intakeMode'];
  readonly subscription: string;
  readonly configStore: ConfigStore;
  readonly writers: IngestWriters;
  stats(): IngestStats;
  /** Messages received for one node uuid (counted after topic parsing; 0 when never seen). */
  nodeMessageCount(uuid: string): number;
  /** Feeds one message through the same path as a broker message (intake topic, raw payload). */
  injectMessage(topic: string, payload: Buffer): void;
  /** Moves every buffer to the writers now and waits until written. True when everything landed. */
  flush(timeoutMs?: number): Promise<boolean>;
  /** Runs the NRecords trim now; resolves with the number of nodes that were over N. */
  trimNRecords(): Promise<number>;
  /** Graceful stop; idempotent. */
  close(): Promise<ShutdownReport>;
}


export async function startIngest(config: IngestConfig, logger: Logger, options: StartIngestOptions = {}): Promise<IngestService> {
  const now = options.now ?? Date.now;
  const metrics = new IngestMetrics(config.intakeMode);
  const instance = `${hostname()}-${process.pid}`;

  const postgresUrl = normalizePostgresUrl(config.postgresUrl);
  usePostgresUtcTimestamps(); // naive timestamps are UTC whatever the host's time zone
  const pool = new pg.Pool({ connectionString: postgresUrl, max: 6, application_name: 'pepeunit-ingest' });
  pool.on('error', (err) => logger.warn({ err: err.message }, 'idle Postgres client error'));
  const ch = parseClickHouseUrl(config.clickhouseUrl);
  const clickhouse: ClickHouseClient = createClickHouse(ch.url, config.clickhouseDatabase || ch.database || 'default', {
    username: ch.username,
    password: ch.password,
    application: 'pepeunit-ingest',
    requestTimeoutMs: 60_000,
  });

  const configStore = new ConfigStore({
    pool,
    postgresUrl,
    redisUrl: config.redisUrl,
    syncIntervalSeconds: config.configSyncIntervalSeconds,
    metrics,
    logger,
    // Runs only from loads, after `trimmer` below is initialised.
    onChange: (uuid, entry) => {
      if (entry?.compiled.policy.type === 'NRecords') trimmer.mark(uuid, entry.compiled.policy.nRecordsCount);
    },
  });
  const trimmer = new NRecordsTrimmer({
    clickhouse,
    intervalSeconds: config.nRecordsCleanupIntervalSeconds,
    logger,
    currentCount: (uuid) => {
      const policy = configStore.get(uuid)?.compiled.policy;
      return policy?.type === 'NRecords' ? policy.nRecordsCount : undefined;
    },
  });
  const writers = new IngestWriters({
    clickhouse,
    pool,
    metrics,
    logger,
    flushIntervalMs: config.bufferFlushIntervalSeconds * 1000,
    bufferMaxSize: config.bufferMaxSize,
    retryBufferMaxRows: config.retryBufferMaxRows,
    now,
    maxBatchRows: options.maxBatchRows,
    onNRecordsWritten: (rows) => trimmer.noteWritten(rows),
  });
  metrics.setGaugeSources({
    buffered: () => writers.bufferedRows,
    retry: () => writers.writerRows,
    nodes: () => configStore.statusCounts(),
  });
  // Node state of this process (issue 13): ClickHouse node_state every PU_NODE_STATE_INTERVAL s.
  const nodeCollector = new NodeStateCollector({ role: 'ingest', version: (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version });
  nodeCollector.countFrom('mqtt', () => metrics.received);
  const nodeState = startNodeStateReporter(nodeCollector, {
    intervalMs: config.nodeStateIntervalSeconds * 1000,
    write: async (rows) => {
      await clickhouse.insert({ table: 'node_state', values: rows, format: 'JSONEachRow' });
    },
    onError: (err) => logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'node state sample not written'),
  });
  const spill = new SpillStore(pool, instance, logger);
  const dispatcher = new Dispatcher(configStore, writers, metrics, config.maxPayloadSizeKb * 1024);
  const deliver = (topic: string, payload: Buffer, atMs: number) => dispatcher.handle(topic, payload, atMs);

  let intake: Intake | null = null;
  let endpoint: Endpoint | null = null;
  const cleanupOnFailure = async () => {
    nodeCollector.close();
    await intake?.close().catch(() => {});
    await configStore.close().catch(() => {});
    trimmer.stop();
    writers.stop();
    await endpoint?.close().catch(() => {});
    await clickhouse.close().catch(() => {});
    await pool.end().catch(() => {});
  };

  try {
    // 1. What the previous process persisted, before any message.
    if (await spill.isAvailable().catch(() => false)) {
      const records = await spill.claimAll();
      restore(records, writers);
      if (records.length > 0) logger.info({ records: records.length }, 'restored the state persisted by the previous ingest');
    } else {
      logger.warn('table pepeunit_ingest_spill is missing (backend migration 005): open aggregation windows will not survive a restart');
    }
    // 2. Configs.
    await configStore.loadAll('startup');
    await configStore.start();
    for (const entry of configStore.entries()) {
      if (entry.compiled.policy.type === 'NRecords') trimmer.mark(entry.uuid, entry.compiled.policy.nRecordsCount);
    }
    // 3. Writers, trim job, endpoint.
    writers.start();
    trimmer.start();
    endpoint = await startEndpoint(config.metricsPort, {
      registry: metrics.registry,
      stats: () => metrics.stats(),
      node: (uuid) => ({
        uuid,
        received: metrics.nodeCount(uuid),
        status: configStore.get(uuid) ? 'Active' : configStore.errorOf(uuid) !== undefined ? 'Error' : 'Unknown',
        policy: configStore.get(uuid)?.compiled.policy.type ?? null,
        error: configStore.errorOf(uuid) ?? null,
      }),
      readiness: async () => ({
        postgres: await pool.query('SELECT 1').then(() => true, () => false),
        clickhouse: await clickhouse.ping().then((r) => r.success, () => false),
        ...(options.connectBroker === false ? {} : { broker: intake?.connected ?? false }),
      }),
    });
    // 4. Intake last.
    if (options.connectBroker !== false) {
      intake = await startIntake({ config, logger, metrics, now, deliver, connectTimeoutMs: options.brokerConnectTimeoutMs });
    }
  } catch (err) {
    await cleanupOnFailure();
    throw err;
  }

  const inject = intake ? intake.inject : createMessageHandler({ config, metrics, now, deliver });
  const shutdownTimeoutMs = options.shutdownTimeoutMs ?? 20_000;
  let closing: Promise<ShutdownReport> | null = null;

  const close = async (): Promise<ShutdownReport> => {
    const started = Date.now();
    const deadline = started + shutdownTimeoutMs;
    await intake?.close().catch((err: unknown) => logger.warn({ err: String(err) }, 'intake close failed'));
    trimmer.stop();
    await configStore.close();
    const left = await writers.shutdown(deadline);
    const records: SpillRecord[] = [];
    const windows = left.openWindows.windows.length;
    const rows = left.openWindows.pendingRows.length + left.lastValue.length + left.nRecords.length + left.timeWindow.length + left.aggregation.length;
    if (windows + left.openWindows.pendingRows.length > 0) records.push({ kind: 'aggregation_snapshot', payload: left.openWindows });
    if (left.nRecords.length > 0) records.push({ kind: 'n_last_entry', payload: left.nRecords });
    if (left.timeWindow.length > 0) records.push({ kind: 'window_entry', payload: left.timeWindow });
    if (left.aggregation.length > 0) records.push({ kind: 'aggregation_entry', payload: left.aggregation });
    if (left.lastValue.length > 0) records.push({ kind: 'last_value', payload: left.lastValue });
    let lost = 0;
    if (records.length > 0) {
      // Persisting gets some time beyond the write deadline (up to 5 s).
      const spillDeadline = Math.max(deadline, Date.now() + Math.min(5000, shutdownTimeoutMs));
      let saved = false;
      let lastError: unknown;
      for (let attempt = 0; !saved && (attempt === 0 || Date.now() < spillDeadline); attempt++) {
        try {
          await spill.save(records);
          saved = true;
        } catch (err) {
          lastError = err;
          if (Date.now() < spillDeadline) await sleep(Math.min(500 * (attempt + 1), 2000));
        }
      }
      if (saved) {
        metrics.spilledRows += rows;
        metrics.spilledWindows += windows;
      } else {
        lost = rows + windows;
        metrics.dropped.shutdown_unwritten += lost;
        logger.error({ rows, windows, err: lastError instanceof Error ? lastError.message : String(lastError) }, 'shutdown: rows and open windows could be neither written nor persisted; they are lost');
      }
    }
    await trimmer.idle();
    await nodeState.stop();
    await endpoint?.close().catch(() => {});
    await clickhouse.close().catch(() => {});
    await pool.end().catch(() => {});
    const report: ShutdownReport = {
      stats: metrics.stats(),
      spilledRows: lost > 0 ? 0 : rows,
      spilledWindows: lost > 0 ? 0 : windows,
      lost,
      durationMs: Date.now() - started,
    };
    logger.info({ spilledRows: report.spilledRows, spilledWindows: report.spilledWindows, lost, durationMs: report.durationMs }, 'ingest stopped');
    return report;
  };

  return {
    metricsUrl: endpoint.url,
    metrics: metrics.registry,
    mode: config.intakeMode,
    subscription: intake?.subscription ?? intakeSubscription(config),
    configStore,
    writers,
    stats: () => metrics.stats(),
    nodeMessageCount: (uuid) => metrics.nodeCount(uuid),
    injectMessage: inject,
    flush: (timeoutMs) => writers.flushAndWait(timeoutMs),
    trimNRecords: () => trimmer.runOnce(),
    close() {
      closing ??= close();
      return closing;
    },
  };
}

/** Puts the persisted state back into the buffers and writers. */
function restore(records: readonly SpillRecord[], writers: IngestWriters): void {
  for (const record of records) {
    switch (record.kind) {
      case 'aggregation_snapshot':
        writers.aggregation.restore(record.payload);
        break;
      case 'n_last_entry':
        writers.nRecordsWriter.enqueue(record.payload);
        break;
      case 'window_entry':
        writers.timeWindowWriter.enqueue(record.payload);
        break;
      case 'aggregation_entry':
        writers.aggregationWriter.enqueue(record.payload);
        break;
      case 'last_value':
        writers.lastValue.requeue(record.payload);
        break;
    }
  }
}
