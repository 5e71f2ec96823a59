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

/**
 * Pages are kept serialised (the JSON answer, as the route's response schema renders it): a hit
 * costs a lookup and a socket write instead of rendering 500 rows again, and the size bound is
 * the real size. Concurrent misses of one page share one read.
 */
export class PipeReadCache {
  private readonly pages: LRUCache<string, { node: string; body: string }> | null;
  /** Reads in flight per page (misses of the same page share one). */
  private readonly inFlight = new Map<string, { generation: number; body: Promise<string> }>();
  /** Bumped per node by `forget`: a read that started before a change never fills the cache. */
  private readonly generations = new Map<string, number>();
  private generationBase = 0;

  constructor(ttlMs: number) {
    this.pages = ttlMs > 0 ? new LRUCache({ max: 10_000, maxSize: MAX_BYTES, ttl: ttlMs, sizeCalculation: (v) => 256 + v.body.length }) : null;
  }

  private generationOf(node: string): number {
    return this.generations.get(node) ?? this.generationBase;
  }

  /** The page as JSON text: cached, shared with a read in flight, or read and serialised now. */
  async getSerialized(node: string, key: string, read: () => Promise<PipeDataResult>, serialize: (result: PipeDataResult) => string): Promise<string> {
    if (!this.pages) return serialize(await read());
    const full = `${node}\u0000${key}`;
    const hit = this.pages.get(full);
    if (hit) return hit.body;
    const generation = this.generationOf(node);
    const pending = this.inFlight.get(full);
    if (pending && pending.generation === generation) return pending.body;
    const body = read().then(serialize);
    const entry = { generation, body };
    this.inFlight.set(full, entry);
    try {
      const text = await body;
      if (this.generationOf(node) === generation) this.pages.set(full, { node, body: text });
      return text;
    } finally {
      if (this.inFlight.get(full) === entry) this.inFlight.delete(full);
    }
  }

  /** Drops every cached page of a node (its data or config changed). */
  forget(node: string): void {
    if (!this.pages) return;
    this.generations.set(node, this.generationOf(node) + 1);
    // Generations only need to outlive the reads in flight: keep the map small; every node then
    // moves to a generation no read in flight has seen.
    if (this.generations.size > 10_000) {
      this.generationBase = Math.max(this.generationBase, ...this.generations.values()) + 1;
      this.generations.clear();
    }
    for (const [key, value] of this.pages.entries()) if (value.node === node) this.pages.delete(key);
  }
}
