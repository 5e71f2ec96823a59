/**
 * A short-lived cache of DataPipe data pages (PU_DATAPIPE_READ_CACHE_MS, default 1 s): a burst of
 * the same page (a dashboard open in many browsers, a client polling) reads ClickHouse once.
 *
 * - Keyed by the node and the normalised query (filters, order, page); looked up only after the
 *   caller's access to the node was checked, so a page is never served to someone who may not
 *   read the node.
 * - Changes made through this backend (data deleted or replaced, config or activity changed) drop
 *   the node's pages at once; other replicas see them after at most the cache time. Rows the
 *   ingest writes become visible after at most the cache time (the ingest itself flushes in
 *   batches, so readers never had a read-your-write guarantee).
 * - Bounded by the estimated bytes of the cached pages (LRU), not only by their number.
 */
import { LRUCache } from 'lru-cache';
import type { PipeDataResult } from '../../../../../schemas/datapipe.js';

const MAX_BYTES = 32 * 1024 * 1024;
/** A rough JSON size of a page: enough to bound memory, far cheaper than serialising. */
const ITEM_BYTES = 200;

export class PipeReadCache {
  private readonly pages: LRUCache<string, { node: string; result: PipeDataResult }> | null;
  /** Bumped per node by `forget`: a read that started before a change never fills the cache. */
  private readonly generations = new Map<string, number>();

  constructor(ttlMs: number) {
    this.pages =
      ttlMs > 0
        ? new LRUCache({ max: 10_000, maxSize: MAX_BYTES, ttl: ttlMs, sizeCalculation: (v) => 256 + v.result.pipe_data.length * ITEM_BYTES })
        : null;
  }

  /** The cached page, or the result of `read` (cached unless the node changed meanwhile). */
  async get(node: string, key: string, read: () => Promise<PipeDataResult>): Promise<PipeDataResult> {
    if (!this.pages) return read();
    const full = `${node}\u0000${key}`;
    const hit = this.pages.get(full);
    if (hit) return hit.result;
    const generation = this.generations.get(node) ?? 0;
    const result = await read();
    if ((this.generations.get(node) ?? 0) === generation) this.pages.set(full, { node, result });
    return result;
  }

  /** Drops every cached page of a node (its data or config changed). */
  forget(node: string): void {
    if (!this.pages) return;
    this.generations.set(node, (this.generations.get(node) ?? 0) + 1);
    // Generations only need to outlive the reads in flight: keep the map small.
    if (this.generations.size > 10_000) this.generations.clear();
    for (const [key, value] of this.pages.entries()) if (value.node === node) this.pages.delete(key);
  }
}
