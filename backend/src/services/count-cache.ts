/**
 * Totals of list queries (`count` in `{count, units}`), cached until the data they count may have
 * changed (issue 11): a list page costs an index walk of `limit` rows, the total would cost a scan
 * of every visible row on every request. Entries are keyed by the SQL condition and its values and
 * dropped as a whole when the change generation moves (the ACL change notification fires on every
 * create, delete, visibility or permission change, in every replica); a short TTL is the safety
 * net. Bounded in entries.
 */
import { LRUCache } from 'lru-cache';

export class CountCache {
  readonly #cache: LRUCache<string, { generation: number; count: Promise<number> }>;

  constructor(
    private readonly generation: () => number,
    options: { max?: number; ttlMs?: number } = {},
  ) {
    this.#cache = new LRUCache({ max: options.max ?? 5000, ttl: options.ttlMs ?? 60_000 });
  }

  get(key: string, compute: () => Promise<number>): Promise<number> {
    const generation = this.generation();
    const hit = this.#cache.get(key);
    if (hit && hit.generation === generation) return hit.count;
    const count = compute();
    this.#cache.set(key, { generation, count });
    count.catch(() => {
      if (this.#cache.get(key)?.count === count) this.#cache.delete(key); // never keep a failure
    });
    return count;
  }
}
