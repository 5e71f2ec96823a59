/**
 * The four policy buffers and their writers, and when rows move from one to the other:
 * every PU_DP_BUFFER_FLUSH_INTERVAL seconds, and as soon as a buffer holds PU_DP_BUFFER_MAX_SIZE
 * entries (LastValue: nodes; NRecords/TimeWindow: rows). Moving rows is synchronous and cheap;
 * the writes run in the background, so the intake never waits for a database.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import type pg from 'pg';
import type { Logger } from '@pepeunit/common';
import {
  AggregationBuffer,
  LastValueBuffer,
  NRecordsBuffer,
  TimeWindowBuffer,
  type AggregationEntryRow,
  type AggregationSnapshot,
  type LastValueRow,
  type NLastEntryRow,
  type WindowEntryRow,
} from '../pipeline/index.js';
import type { IngestMetrics } from '../metrics.js';
import { aggregationEntryTarget, nLastEntryTarget, windowEntryTarget } from './clickhouse.js';
import { LastValueTarget } from './postgres.js';
import { QueuedWriter, RetryBudget } from './queued-writer.js';

export { QueuedWriter, RetryBudget } from './queued-writer.js';
export type { WriteErrorKind, WriteTarget, QueuedWriterOptions } from './queued-writer.js';
export { classifyClickHouseError, nLastEntryLine, windowEntryLine, aggregationEntryLine, ClickHouseTableTarget } from './clickhouse.js';
export { classifyPostgresError, LastValueTarget, LAST_VALUE_UPDATE_SQL } from './postgres.js';

export interface IngestWritersOptions {
  clickhouse: ClickHouseClient;
  pool: pg.Pool;
  metrics: IngestMetrics;
  logger: Logger;
  flushIntervalMs: number;
  bufferMaxSize: number;
  retryBufferMaxRows: number;
  now: () => number;
  /** After n_last_entry rows landed (the trim job's work list). */
  onNRecordsWritten?: (rows: readonly NLastEntryRow[]) => void;
  /** Largest batch per insert. */
  maxBatchRows?: number;
}

/** What could not be written before the shutdown deadline, and the open windows. */
export interface ShutdownLeftovers {
  lastValue: LastValueRow[];
  nRecords: NLastEntryRow[];
  timeWindow: WindowEntryRow[];
  aggregation: AggregationEntryRow[];
  openWindows: AggregationSnapshot;
}

export class IngestWriters {
  readonly lastValue = new LastValueBuffer();
  readonly nRecords: NRecordsBuffer;
  readonly timeWindow: TimeWindowBuffer;
  readonly aggregation: AggregationBuffer;
  readonly budget: RetryBudget;
  readonly lastValueWriter: QueuedWriter<LastValueRow>;
  readonly nRecordsWriter: QueuedWriter<NLastEntryRow>;
  readonly timeWindowWriter: QueuedWriter<WindowEntryRow>;
  readonly aggregationWriter: QueuedWriter<AggregationEntryRow>;
  private timer: NodeJS.Timeout | null = null;
  private flushScheduled = false;
  private readonly maxSize: number;

  constructor(private readonly options: IngestWritersOptions) {
    const { metrics, logger } = options;
    this.maxSize = options.bufferMaxSize;
    // The policy buffers never discard on their own below the service's retry bound.
    this.nRecords = new NRecordsBuffer(options.retryBufferMaxRows);
    this.timeWindow = new TimeWindowBuffer(options.retryBufferMaxRows);
    this.aggregation = new AggregationBuffer(options.retryBufferMaxRows);
    this.budget = new RetryBudget(options.retryBufferMaxRows);
    const common = { metrics, logger, maxBatchRows: options.maxBatchRows };
    this.lastValueWriter = new QueuedWriter(new LastValueTarget(options.pool), {
      ...common,
      maxBatchRows: Number.MAX_SAFE_INTEGER,
      source: () => this.lastValue.drain(),
      sourceSize: () => this.lastValue.size,
      putBack: (rows) => void this.lastValue.requeue(rows),
    });
    this.nRecordsWriter = new QueuedWriter(nLastEntryTarget(options.clickhouse), {
      ...common,
      budget: this.budget,
      onWritten: options.onNRecordsWritten,
    });
    this.timeWindowWriter = new QueuedWriter(windowEntryTarget(options.clickhouse), { ...common, budget: this.budget });
    this.aggregationWriter = new QueuedWriter(aggregationEntryTarget(options.clickhouse), { ...common, budget: this.budget });
  }

  start(): void {
    this.timer = setInterval(() => this.flush(), this.options.flushIntervalMs);
    this.timer.unref();
  }

  /** Stops the timer and the writers without writing (start-up failed). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const w of this.writers()) w.stop();
  }

  /** Hot path, after a row was added: hands full buffers to the writers soon (never blocks). */
  afterAdd(): void {
    if (this.flushScheduled) return;
    if (this.nRecords.size >= this.maxSize || this.timeWindow.size >= this.maxSize || this.lastValue.size >= this.maxSize) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flushFull();
      });
    }
  }

  /** Moves the buffers that reached the size limit. */
  private flushFull(): void {
    if (this.nRecords.size >= this.maxSize) this.nRecordsWriter.enqueue(this.nRecords.drain());
    if (this.timeWindow.size >= this.maxSize) this.timeWindowWriter.enqueue(this.timeWindow.drain());
    if (this.lastValue.size >= this.maxSize) this.lastValueWriter.pump();
  }

  /** Moves every buffer's ready rows to its writer (Aggregation: windows closed at now()). */
  flush(): void {
    this.nRecordsWriter.enqueue(this.nRecords.drain());
    this.timeWindowWriter.enqueue(this.timeWindow.drain());
    this.aggregationWriter.enqueue(this.aggregation.drain(this.options.now()));
    this.lastValueWriter.pump();
  }

  private writers(): QueuedWriter<unknown>[] {
    return [this.lastValueWriter, this.nRecordsWriter, this.timeWindowWriter, this.aggregationWriter] as QueuedWriter<unknown>[];
  }

  /** `flush()` and wait until every writer has written all it holds, or `timeoutMs` passed. True when all landed. */
  async flushAndWait(timeoutMs = 30_000): Promise<boolean> {
    this.flush();
    const deadline = Date.now() + timeoutMs;
    const results = await Promise.all(this.writers().map((w) => w.drainUntil(deadline)));
    return results.every(Boolean);
  }

  /** Entries held by the policy buffers. */
  get bufferedRows(): number {
    return this.lastValue.size + this.nRecords.size + this.timeWindow.size + this.aggregation.size;
  }

  /** Rows held by the writers (queued, in flight or waiting for a retry). */
  get writerRows(): number {
    return this.writers().reduce((sum, w) => sum + w.pending, 0);
  }

  /**
   * Shutdown: stops the timer, moves everything (Aggregation: closed windows as rows, open ones
   * as a snapshot), writes until `deadlineMs`, and returns what is left for the caller to persist.
   */
  async shutdown(deadlineMs: number): Promise<ShutdownLeftovers> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.nRecordsWriter.enqueue(this.nRecords.drain());
    this.timeWindowWriter.enqueue(this.timeWindow.drain());
    const { rows, open } = this.aggregation.drainForShutdown(this.options.now());
    this.aggregationWriter.enqueue(rows);
    await Promise.all(this.writers().map((w) => w.drainUntil(deadlineMs)));
    for (const w of this.writers()) w.stop();
    await Promise.all(this.writers().map((w) => w.idle()));
    const lastValue = this.lastValueWriter.takeAll().concat(this.lastValue.drain());
    return {
      lastValue,
      nRecords: this.nRecordsWriter.takeAll(),
      timeWindow: this.timeWindowWriter.takeAll(),
      aggregation: this.aggregationWriter.takeAll(),
      openWindows: open,
    };
  }
}
