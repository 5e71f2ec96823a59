/**
 * One destination table's write loop, off the intake path: rows queue here, one batch is in
 * flight at a time (whatever piles up meanwhile goes in the next batch, so batches grow with
 * the load), failures back off exponentially (100 ms doubling, capped at 5 s) and retry, and
 * a batch refused for its DATA (not the connection) is bisected so the poison rows are dropped
 * and counted while every other row is written: one bad value never blocks the other nodes.
 *
 * A batch that failed for a transient reason is retried INTACT with the same
 * `insert_deduplication_token` (`<writer id>-<sequence>`; halves of a bisected batch get
 * `.0`/`.1`), so when the first attempt was in fact committed (response lost with the
 * connection), a table with `non_replicated_deduplication_window` (or a Replicated table)
 * ignores the retry: exactly once instead of at least once. Rows queued behind it are merged
 * into big batches as usual.
 *
 * Two modes:
 * - push (`enqueue`): the ClickHouse tables. Queued rows count against a RetryBudget shared by
 *   the writers (PU_DP_RETRY_BUFFER_MAX_ROWS); beyond it the oldest rows of the writer are
 *   dropped and counted as `retry_buffer_full`.
 * - pull (`source` + `putBack`): LastValue. The writer takes rows from the policy buffer only
 *   when nothing is in flight and gives failed rows back through the buffer's `requeue`, which
 *   keeps a newer value over a failed older one (a node's value never goes backwards).
 */
import { sleep } from '@pepeunit/common';
import type { Logger } from '@pepeunit/common';
import type { IngestMetrics, TableName } from '../metrics.js';

export type WriteErrorKind = 'data' | 'transient';

export interface WriteTarget<Row> {
  readonly table: TableName;
  /** Writes the rows; resolves with the number of rows written (or matched). `token` identifies the batch across retries. */
  write(rows: Row[], token: string): Promise<number>;
  /** `data`: the rows themselves were refused (bisect); `transient`: retry everything later. */
  classify(error: unknown): WriteErrorKind;
}

/** Rows held by all push-mode writers together are bounded by `max`. */
export class RetryBudget {
  used = 0;
  constructor(readonly max: number) {}
}

export interface QueuedWriterOptions<Row> {
  metrics: IngestMetrics;
  logger: Logger;
  /** Largest batch per write. Default 100 000. */
  maxBatchRows?: number;
  /** Push mode only. */
  budget?: RetryBudget;
  /** Pull mode: takes the rows to write next (called only when nothing is in flight). */
  source?: () => Row[];
  /** Pull mode: gives back rows that could not be written. */
  putBack?: (rows: Row[]) => void;
  /** Pull mode: how many rows the source holds. */
  sourceSize?: () => number;
  /** Called after rows were written (for the NRecords trim job). */
  onWritten?: (rows: readonly Row[]) => void;
  /** Backoff bounds in ms. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}


/** Rows that were attempted once keep their token for every retry. */
interface SealedBatch<Row> {
  rows: Row[];
  token: string;
}

let writerIds = 0;

export class QueuedWriter<Row> {
  /** Failed batches, oldest first: retried intact before anything else. */
  private sealed: SealedBatch<Row>[] = [];
  private segments: Row[][] = [];
  private readonly id = `${process.pid.toString(36)}${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}-${++writerIds}`;
  private sequence = 0;
  private queued = 0;
  private inFlightRows = 0;
  private running: Promise<void> | null = null;
  private failures = 0;
  private retryAt = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly maxBatchRows: number;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private lastErrorLogAt = 0;
  /** While someone waits in drainUntil, retries come at least every 500 ms. */
  private draining = 0;

  constructor(
    readonly target: WriteTarget<Row>,
    private readonly options: QueuedWriterOptions<Row>,
  ) {
    this.maxBatchRows = options.maxBatchRows ?? 100_000;
    this.minBackoffMs = options.minBackoffMs ?? 100;
    this.maxBackoffMs = options.maxBackoffMs ?? 5000;
  }

  get table(): TableName {
    return this.target.table;
  }

  /** Rows held by this writer (queued plus in flight). */
  get pending(): number {
    return this.queued + this.inFlightRows;
  }

  /** True while a write failed and the writer waits to retry. */
  get backingOff(): boolean {
    return this.failures > 0;
  }

  /** Push mode: queues rows and starts writing. */
  enqueue(rows: Row[]): void {
    if (rows.length === 0) return;
    this.segments.push(rows);
    this.queued += rows.length;
    const budget = this.options.budget;
    if (budget) {
      budget.used += rows.length;
      const excess = budget.used - budget.max;
      if (excess > 0) this.discardOldest(excess);
    }
    this.pump();
  }

  /** Starts the write loop unless it runs or waits for a retry. */
  pump(): void {
    if (this.running || this.stopped) return;
    if (this.failures > 0 && Date.now() < this.retryAt) {
      this.armRetry();
      return;
    }
    this.running = this.loop().finally(() => {
      this.running = null;
    });
  }

  /** Resolves when the current write (if any) has settled. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /**
   * Writes everything held (and, in pull mode, what the source gives) until done or the
   * deadline; retries ignore the usual backoff beyond the remaining time. True when empty.
   */
  async drainUntil(deadlineMs: number): Promise<boolean> {
    this.stopped = false;
    this.draining += 1;
    if (this.failures > 0) this.retryAt = Math.min(this.retryAt, Date.now() + 500);
    try {
      for (;;) {
        await this.idle();
        if (this.isEmpty()) return true;
        const now = Date.now();
        if (now >= deadlineMs) return false;
        if (this.failures > 0 && now < this.retryAt) {
          // The retry timer may start the loop meanwhile; re-check from the top either way.
          await sleep(Math.min(this.retryAt - now, deadlineMs - now));
          continue;
        }
        this.clearRetryTimer();
        if (!this.running) {
          this.running = this.loop().finally(() => {
            this.running = null;
          });
        }
      }
    } finally {
      this.draining -= 1;
    }
  }

  /** Stops retry timers (the loop in flight finishes). */
  stop(): void {
    this.stopped = true;
    this.clearRetryTimer();
  }

  private clearRetryTimer(): void {
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
  }

  /** Takes every row still held (after `stop` + `idle`), e.g. to persist at shutdown. */
  takeAll(): Row[] {
    const out: Row[] = [];
    for (const batch of this.sealed) for (const row of batch.rows) out.push(row);
    for (const seg of this.segments) for (const row of seg) out.push(row);
    if (this.options.budget) this.options.budget.used -= this.queued;
    this.sealed = [];
    this.segments = [];
    this.queued = 0;
    return out;
  }

  private isEmpty(): boolean {
    return this.queued === 0 && this.inFlightRows === 0 && (this.options.sourceSize?.() ?? 0) === 0;
  }

  private armRetry(): void {
    if (this.retryTimer || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.pump();
    }, Math.max(0, this.retryAt - Date.now()));
  }

  private discardOldest(count: number): void {
    let left = count;
    while (left > 0 && this.sealed.length > 0) {
      const batch = this.sealed[0] as SealedBatch<Row>;
      if (batch.rows.length <= left) {
        this.sealed.shift();
        left -= batch.rows.length;
        this.queued -= batch.rows.length;
      } else {
        // What is left of it is a new batch (new token): its rows were never committed together.
        batch.rows = batch.rows.slice(left);
        batch.token = this.nextToken();
        this.queued -= left;
        left = 0;
      }
    }
    while (left > 0 && this.segments.length > 0) {
      const seg = this.segments[0] as Row[];
      if (seg.length <= left) {
        this.segments.shift();
        left -= seg.length;
        this.queued -= seg.length;
      } else {
        seg.splice(0, left);
        this.queued -= left;
        left = 0;
      }
    }
    const dropped = count - left;
    if (dropped > 0) {
      if (this.options.budget) this.options.budget.used -= dropped;
      this.options.metrics.dropped.retry_buffer_full += dropped;
      this.logThrottled('warn', { table: this.table, dropped }, 'retry buffer full (PU_DP_RETRY_BUFFER_MAX_ROWS): oldest rows dropped');
    }
  }

  private nextToken(): string {
    return `${this.id}-${++this.sequence}`;
  }

  private takeBatch(): SealedBatch<Row> {
    const retry = this.sealed.shift();
    if (retry) {
      this.queued -= retry.rows.length;
      return retry;
    }
    return { rows: this.takeRows(), token: this.nextToken() };
  }

  private takeRows(): Row[] {
    if (this.queued === 0 && this.options.source) {
      const pulled = this.options.source();
      if (pulled.length > 0) {
        this.segments.push(pulled);
        this.queued += pulled.length;
      }
    }
    if (this.queued === 0) return [];
    const first = this.segments[0] as Row[];
    if (this.segments.length === 1 && first.length <= this.maxBatchRows) {
      this.segments = [];
      this.queued = 0;
      return first;
    }
    const batch: Row[] = [];
    while (batch.length < this.maxBatchRows && this.segments.length > 0) {
      const seg = this.segments[0] as Row[];
      const room = this.maxBatchRows - batch.length;
      if (seg.length <= room) {
        this.segments.shift();
        for (const row of seg) batch.push(row);
      } else {
        for (const row of seg.splice(0, room)) batch.push(row);
      }
    }
    this.queued -= batch.length;
    return batch;
  }

  private putBackFront(batches: SealedBatch<Row>[]): void {
    if (this.options.putBack) {
      for (const batch of batches) this.options.putBack(batch.rows);
      return;
    }
    this.sealed.unshift(...batches);
    for (const batch of batches) this.queued += batch.rows.length;
  }

  private async loop(): Promise<void> {
    for (;;) {
      const batch = this.takeBatch();
      if (batch.rows.length === 0) return;
      this.inFlightRows = batch.rows.length;
      let rest: SealedBatch<Row>[];
      try {
        rest = await this.attempt(batch.rows, batch.token);
      } finally {
        this.inFlightRows = 0;
      }
      if (rest.length > 0) {
        // Not written: back in front (push mode rows stay counted in the budget).
        this.putBackFront(rest);
        this.failures += 1;
        const cap = this.draining > 0 ? Math.min(500, this.maxBackoffMs) : this.maxBackoffMs;
        const backoff = Math.min(cap, this.minBackoffMs * 2 ** Math.min(this.failures - 1, 16));
        this.retryAt = Date.now() + backoff * (0.8 + Math.random() * 0.4);
        this.armRetry();
        return;
      }
      if (this.failures > 0) {
        this.options.logger.info({ table: this.table, afterFailures: this.failures }, 'writes recovered');
        this.failures = 0;
      }
    }
  }

  /** Writes a batch; returns the batches left unwritten by a transient failure. */
  private async attempt(rows: Row[], token: string): Promise<SealedBatch<Row>[]> {
    try {
      const written = await this.target.write(rows, token);
      this.options.metrics.rowsWritten[this.table] += written;
      if (this.options.budget) this.options.budget.used -= rows.length;
      this.options.onWritten?.(rows);
      return [];
    } catch (error) {
      this.options.metrics.writeErrors[this.table] += 1;
      const kind = this.target.classify(error);
      if (kind === 'transient') {
        this.logThrottled('warn', { table: this.table, rows: rows.length, err: messageOf(error) }, 'write failed; will retry');
        return [{ rows, token }];
      }
      if (rows.length === 1) {
        this.options.metrics.dropped.poison_row += 1;
        if (this.options.budget) this.options.budget.used -= 1;
        this.options.logger.error({ table: this.table, row: preview(rows[0]), err: messageOf(error) }, 'row refused by the database; dropped (poison_row)');
        return [];
      }
      const mid = rows.length >>> 1;
      const right = { rows: rows.slice(mid), token: `${token}.1` };
      const left = await this.attempt(rows.slice(0, mid), `${token}.0`);
      if (left.length > 0) return [...left, right];
      return this.attempt(right.rows, right.token);
    }
  }

  private logThrottled(level: 'warn' | 'error', obj: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    if (now - this.lastErrorLogAt < 5000) return;
    this.lastErrorLogAt = now;
    this.options.logger[level](obj, msg);
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message.slice(0, 500) : String(error);
}

function preview(row: unknown): unknown {
  try {
    const text = JSON.stringify(row);
    return text.length > 300 ? `${text.slice(0, 300)}…` : JSON.parse(text);
  } catch {
    return String(row);
  }
}
