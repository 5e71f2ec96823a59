/**
 * Batched writer of unit logs into ClickHouse `unit_logs`, then of `units.last_update_datetime`
 * bumps into Postgres (reference §2.3: every log message bumps the unit).
 *
 * - Rows are flushed every `flushIntervalMs`, or at once when `flushRows` are waiting; one insert
 *   is in flight at a time (at most `maxBatchRows` rows).
 * - A failed insert keeps its rows and is retried with exponential backoff. Memory is bounded:
 *   at most `maxBufferedRows` rows wait (in flight included); rows offered beyond that are refused
 *   and counted by the caller, so every row that was accepted is eventually written.
 * - `close()` flushes everything that was accepted (retrying until `closeTimeoutMs`).
 */
import { sleep as sleepFor } from '@pepeunit/common';
import type { Pool } from 'pg';
import type { ClickHouseClient } from '@clickhouse/client';
import type { UnitLogRow } from './log-payload.js';
import { silent, type MinimalLogger } from './logger.js';

export interface UnitLogWriterOptions {
  readonly clickhouse: ClickHouseClient;
  /** For the `units.last_update_datetime` bumps; omit to skip them. */
  readonly pg?: Pool;
  readonly table?: string;
  /** Default 500 ms. */
  readonly flushIntervalMs?: number;
  /** Waiting rows that trigger an immediate flush. Default 5 000. */
  readonly flushRows?: number;
  /** Rows per insert. Default 50 000. */
  readonly maxBatchRows?: number;
  /** Rows kept while ClickHouse is slow or down (in flight included). Default 200 000. */
  readonly maxBufferedRows?: number;
  /** Interval of the batched Postgres bumps. Default 1 000 ms. */
  readonly bumpIntervalMs?: number;
  /** First retry delay; doubles per consecutive failure up to `retryMaxMs`. Default 500 ms / 30 s. */
  readonly retryBaseMs?: number;
  readonly retryMaxMs?: number;
  /** How long `close()` keeps retrying before giving up (and logging what is lost). Default 15 s. */
  readonly closeTimeoutMs?: number;
  readonly logger?: MinimalLogger;
}

export interface UnitLogWriterStats {
  /** Rows written to ClickHouse. */
  written: number;
  /** Rows waiting (queued + in flight). */
  buffered: number;
  /** Failed inserts (each retried). */
  insertFailures: number;
  /** Batched Postgres bump statements executed / failed. */
  bumps: number;
  bumpFailures: number;
}

const sleep = (ms: number): Promise<void> => sleepFor(ms, { unref: true });

export class UnitLogWriter {
  readonly #clickhouse: ClickHouseClient;
  readonly #pg: Pool | undefined;
  readonly #table: string;
  readonly #flushRows: number;
  readonly #maxBatchRows: number;
  readonly #maxBufferedRows: number;
  readonly #retryBaseMs: number;
  readonly #retryMaxMs: number;
  readonly #closeTimeoutMs: number;
  readonly #logger: MinimalLogger;
  #queue: UnitLogRow[] = [];
  #inFlightRows = 0;
  #inFlight: Promise<void> | null = null;
  #failures = 0;
  #retryAt = 0;
  #pendingBumps = new Set<string>();
  #bumping: Promise<void> | null = null;
  #flushTimer: NodeJS.Timeout;
  #bumpTimer: NodeJS.Timeout;
  #immediate: NodeJS.Immediate | null = null;
  #closed = false;
  readonly stats: UnitLogWriterStats = { written: 0, buffered: 0, insertFailures: 0, bumps: 0, bumpFailures: 0 };

  constructor(opts: UnitLogWriterOptions) {
    this.#clickhouse = opts.clickhouse;
    this.#pg = opts.pg;
    this.#table = opts.table ?? 'unit_logs';
    this.#flushRows = opts.flushRows ?? 5_000;
    this.#maxBatchRows = Math.max(1, opts.maxBatchRows ?? 50_000);
    this.#maxBufferedRows = Math.max(1, opts.maxBufferedRows ?? 200_000);
    this.#retryBaseMs = opts.retryBaseMs ?? 500;
    this.#retryMaxMs = opts.retryMaxMs ?? 30_000;
    this.#closeTimeoutMs = opts.closeTimeoutMs ?? 15_000;
    this.#logger = opts.logger ?? silent;
    this.#flushTimer = setInterval(() => this.#kick(), opts.flushIntervalMs ?? 500);
    this.#flushTimer.unref();
    this.#bumpTimer = setInterval(() => void this.#bump(), opts.bumpIntervalMs ?? 1_000);
    this.#bumpTimer.unref();
  }

  /** Rows that may still be accepted before the buffer is full. */
  get capacity(): number {
    return Math.max(0, this.#maxBufferedRows - this.#queue.length - this.#inFlightRows);
  }

  /**
   * Queues rows; returns how many were accepted (the rest did not fit the bounded buffer and
   * must be counted as dropped by the caller). Never blocks, never throws.
   */
  enqueue(rows: readonly UnitLogRow[]): number {
    if (this.#closed || rows.length === 0) return 0;
    const room = this.capacity;
    const accepted = rows.length <= room ? rows.length : room;
    for (let i = 0; i < accepted; i++) this.#queue.push(rows[i] as UnitLogRow);
    this.stats.buffered = this.#queue.length + this.#inFlightRows;
    if (this.#queue.length >= this.#flushRows && this.#immediate === null) {
      this.#immediate = setImmediate(() => {
        this.#immediate = null;
        this.#kick();
      });
    }
    return accepted;
  }

  #kick(): void {
    if (this.#inFlight || this.#queue.length === 0 || Date.now() < this.#retryAt) return;
    this.#inFlight = this.#insertBatch().finally(() => {
      this.#inFlight = null;
      if (!this.#closed && this.#queue.length >= this.#flushRows && Date.now() >= this.#retryAt) this.#kick();
    });
  }

  async #insertBatch(): Promise<void> {
    const batch = this.#queue.length <= this.#maxBatchRows ? this.#queue : this.#queue.slice(0, this.#maxBatchRows);
    this.#queue = batch === this.#queue ? [] : this.#queue.slice(batch.length);
    this.#inFlightRows = batch.length;
    try {
      await this.#clickhouse.insert({ table: this.#table, values: batch, format: 'JSONEachRow' });
      this.stats.written += batch.length;
      this.#failures = 0;
      this.#retryAt = 0;
      if (this.#pg) for (const row of batch) this.#pendingBumps.add(row.unit_uuid);
    } catch (err) {
      this.stats.insertFailures += 1;
      this.#failures += 1;
      const delay = Math.min(this.#retryMaxMs, this.#retryBaseMs * 2 ** Math.min(this.#failures - 1, 16));
      this.#retryAt = Date.now() + delay;
      // Put the batch back in front: order is kept and nothing accepted is lost.
      this.#queue = this.#queue.length === 0 ? batch : batch.concat(this.#queue);
      this.#logger.warn({ err: errorText(err), rows: batch.length, buffered: this.#queue.length, retryInMs: delay }, 'unit_logs insert failed; retrying');
    } finally {
      this.#inFlightRows = 0;
      this.stats.buffered = this.#queue.length;
    }
  }

  #bump(): Promise<void> {
    if (!this.#pg || this.#bumping || this.#pendingBumps.size === 0) return this.#bumping ?? Promise.resolve();
    const units = [...this.#pendingBumps];
    this.#pendingBumps.clear();
    const pg = this.#pg;
    this.#bumping = (async () => {
      try {
        await pg.query(`UPDATE units SET last_update_datetime = (now() AT TIME ZONE 'utc') WHERE uuid = ANY($1::uuid[])`, [units]);
        this.stats.bumps += 1;
      } catch (err) {
        this.stats.bumpFailures += 1;
        for (const unit of units) this.#pendingBumps.add(unit);
        this.#logger.warn({ err: errorText(err), units: units.length }, 'units.last_update_datetime bump failed; retrying');
      } finally {
        this.#bumping = null;
      }
    })();
    return this.#bumping;
  }

  /** Writes everything accepted so far (and the bumps); resolves when done or after `timeoutMs`. */
  async flush(timeoutMs = this.#closeTimeoutMs): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#inFlight) {
        // A finished batch may start the next one at once: wait until nothing is in flight.
        await this.#inFlight;
        continue;
      }
      if (this.#queue.length === 0) break;
      if (Date.now() >= deadline) break;
      const wait = this.#retryAt - Date.now();
      if (wait > 0) await sleep(Math.min(wait, Math.max(0, deadline - Date.now())));
      this.#retryAt = 0;
      this.#kick();
    }
    if (this.#bumping) await this.#bumping;
    await this.#bump();
    return this.#queue.length === 0;
  }

  /** Stops accepting, flushes what was accepted, stops the timers. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#flushTimer);
    clearInterval(this.#bumpTimer);
    if (this.#immediate) clearImmediate(this.#immediate);
    const done = await this.flush(this.#closeTimeoutMs);
    if (!done) this.#logger.error({ lostRows: this.#queue.length }, 'unit logs could not be written before shutdown');
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
