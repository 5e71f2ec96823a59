/**
 * NRecords keeps the last N rows of a node in `n_last_entry` (pepeunit-datapipe.md §3.7). The
 * table does not cap itself, so every PU_DP_NRECORDS_CLEANUP_INTERVAL seconds this job deletes
 * the older rows, unlike the reference's full-table mutation each minute:
 * - only nodes that received rows since the last run (plus, once at start-up, every NRecords
 *   node the ingest runs) are looked at, in chunks, with bound parameters;
 * - N is the node's CURRENT `n_records_count` (so lowering N trims older rows too; the reference
 *   compared each row with its own stored max_count);
 * - one SELECT finds, per node, the time of its N-th newest row, and only nodes over N get a
 *   lightweight `DELETE ... WHERE create_datetime < cutoff`. Rows sharing the cutoff time are
 *   kept (a node may briefly hold a few more than N; never fewer, unlike the reference which
 *   deleted every row of a shared timestamp).
 *
 * Between two runs a node can hold more than N rows; readers must cap what they return to N
 * (the backend's NRecords read path does `LIMIT n_records_count`).
 */
import type { ClickHouseClient } from '@clickhouse/client';
import type { Logger } from '@pepeunit/common';
import type { NLastEntryRow } from './pipeline/index.js';

const NODES_PER_STATEMENT = 500;

export interface NRecordsTrimOptions {
  clickhouse: ClickHouseClient;
  intervalSeconds: number;
  logger: Logger;
  /** The node's current N when it runs an NRecords config, else undefined. */
  currentCount: (uuid: string) => number | undefined;
}

export class NRecordsTrimmer {
  /** Nodes with rows written since the last run -> the newest stored max_count seen. */
  private touched = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<number> | null = null;

  constructor(private readonly options: NRecordsTrimOptions) {}

  /** Records the nodes of rows that landed. */
  noteWritten(rows: readonly NLastEntryRow[]): void {
    for (const row of rows) this.touched.set(row.unit_node_uuid, row.max_count);
  }

  /** Marks a node for the next run (e.g. its N changed). */
  mark(uuid: string, count: number): void {
    this.touched.set(uuid, count);
  }

  get pendingNodes(): number {
    return this.touched.size;
  }

  start(): void {
    this.timer = setInterval(() => void this.runOnce().catch(() => {}), Math.max(1, this.options.intervalSeconds) * 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  async idle(): Promise<void> {
    while (this.running) await this.running.catch(() => 0);
  }

  /** Trims the marked nodes now; resolves with the number of nodes that were over N. */
  runOnce(): Promise<number> {
    if (this.running) return this.running;
    this.running = this.trim().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async trim(): Promise<number> {
    if (this.touched.size === 0) return 0;
    const work = this.touched;
    this.touched = new Map();
    const nodes = [...work.entries()].map(([uuid, stored]) => [uuid, this.options.currentCount(uuid) ?? stored] as const);
    let over = 0;
    for (let i = 0; i < nodes.length; i += NODES_PER_STATEMENT) {
      const chunk = nodes.slice(i, i + NODES_PER_STATEMENT);
      try {
        over += await this.trimChunk(chunk.map(([u]) => u), chunk.map(([, n]) => Math.max(1, n)));
      } catch (err) {
        // Try these nodes again next time.
        for (const [uuid, n] of chunk) if (!this.touched.has(uuid)) this.touched.set(uuid, n);
        this.options.logger.warn({ err: err instanceof Error ? err.message : String(err), nodes: chunk.length }, 'NRecords trim failed; will retry');
      }
    }
    return over;
  }

  private async trimChunk(uuids: string[], counts: number[]): Promise<number> {
    const { clickhouse } = this.options;
    const result = await clickhouse.query({
      query: `SELECT toString(unit_node_uuid) AS uuid, toString(toUnixTimestamp64Milli(create_datetime)) AS cutoff_ms
                FROM (
                  SELECT unit_node_uuid, create_datetime,
                         row_number() OVER (PARTITION BY unit_node_uuid ORDER BY create_datetime DESC) AS rn,
                         count() OVER (PARTITION BY unit_node_uuid) AS total
                    FROM n_last_entry
                   WHERE unit_node_uuid IN {uuids:Array(UUID)}
                )
               WHERE rn = {counts:Array(UInt32)}[indexOf({uuids:Array(UUID)}, unit_node_uuid)]
                 AND total > rn`,
      query_params: { uuids, counts },
      format: 'JSONEachRow',
    });
    const cutoffs = await result.json<{ uuid: string; cutoff_ms: string }>();
    if (cutoffs.length === 0) return 0;
    await clickhouse.command({
      query: `DELETE FROM n_last_entry
               WHERE unit_node_uuid IN {uuids:Array(UUID)}
                 AND create_datetime < fromUnixTimestamp64Milli({cutoffs:Array(Int64)}[indexOf({uuids:Array(UUID)}, unit_node_uuid)])`,
      query_params: { uuids: cutoffs.map((c) => c.uuid), cutoffs: cutoffs.map((c) => Number(c.cutoff_ms)) },
    });
    return cutoffs.length;
  }
}
