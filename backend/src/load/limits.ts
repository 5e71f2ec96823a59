/**
 * The effective MPS limit of a unit (docs/LOAD.md "Limits"):
 *
 *   base      = the admin's per-user override (load_user_limits) or PU_LOAD_UNIT_MPS_LIMIT
 *   effective = min(base, every external source registered on app.loadPorts (billing))
 *
 * 0 means "no limit" for the base; an external source returning null imposes none. Per-user
 * answers are cached for `ttlMs` (bounded map; dropped on an admin change and at once when an
 * external source reports a change through `ports.onLimitChange`, e.g. billing limiting a user
 * after the grace period or lifting the limit on payment).
 */
import type { Pool } from 'pg';
import type { LoadPorts } from '../domain/load-ports.js';

export interface EffectiveLimit {
  /** MPS; null = no limit. */
  mps: number | null;
  /** `instance`, `user` (admin override) or the external source's name. */
  source: string;
}

export interface Limits {
  forUser(userUuid: string): Promise<EffectiveLimit>;
  /** The cached limit when fresh (no I/O). */
  cached(userUuid: string): EffectiveLimit | undefined;
  /** Fills the cache for many users at once (one Postgres query for the overrides). */
  prefetch(userUuids: Iterable<string>): Promise<void>;
  setUserLimit(userUuid: string, mps: number | null, adminUuid: string): Promise<void>;
  userOverride(userUuid: string): Promise<number | null>;
  forget(userUuid?: string): void;
}

const MAX_CACHED = 50_000;

export function createLimits(opts: { pg: Pool; ports: LoadPorts; instanceMps: number; ttlMs?: number }): Limits {
  const ttlMs = opts.ttlMs ?? 30_000;
  const cache = new Map<string, { at: number; limit: EffectiveLimit }>();
  /** Bumped by every change: an answer computed across a change is not cached (it may predate it). */
  let generation = 0;
  const drop = (userUuid: string | null): void => {
    generation += 1;
    if (userUuid === null) cache.clear();
    else cache.delete(userUuid);
  };
  opts.ports.onLimitChange(drop);

  async function userOverride(userUuid: string): Promise<number | null> {
    const { rows } = await opts.pg.query<{ mps_limit: number }>('SELECT mps_limit FROM load_user_limits WHERE user_uuid = $1', [userUuid]);
    return rows[0] ? Number(rows[0].mps_limit) : null;
  }

  async function compute(userUuid: string, known?: number | null): Promise<EffectiveLimit> {
    const override = known !== undefined ? known : await userOverride(userUuid);
    const base = override ?? opts.instanceMps;
    let limit: EffectiveLimit = base > 0 ? { mps: base, source: override === null ? 'instance' : 'user' } : { mps: null, source: override === null ? 'instance' : 'user' };
    const external = await opts.ports.externalLimitForUser(userUuid);
    if (external && (limit.mps === null || external.mps < limit.mps)) limit = { mps: external.mps, source: external.source };
    return limit;
  }

  function remember(userUuid: string, limit: EffectiveLimit, computedIn: number): void {
    if (computedIn !== generation) return;
    if (cache.size >= MAX_CACHED) cache.delete(cache.keys().next().value as string);
    cache.set(userUuid, { at: Date.now(), limit });
  }

  return {
    cached(userUuid) {
      const hit = cache.get(userUuid);
      return hit && Date.now() - hit.at < ttlMs ? hit.limit : undefined;
    },
    async prefetch(userUuids) {
      const now = Date.now();
      const stale = [...new Set(userUuids)].filter((user) => {
        const hit = cache.get(user);
        return !hit || now - hit.at >= ttlMs;
      });
      if (stale.length === 0) return;
      const started = generation;
      const { rows } = await opts.pg.query<{ user_uuid: string; mps_limit: number }>('SELECT user_uuid::text, mps_limit FROM load_user_limits WHERE user_uuid = ANY($1::uuid[])', [stale]);
      const overrides = new Map(rows.map((row) => [row.user_uuid, Number(row.mps_limit)]));
      for (const user of stale) remember(user, await compute(user, overrides.get(user) ?? null), started);
    },
    async forUser(userUuid) {
      const hit = cache.get(userUuid);
      if (hit && Date.now() - hit.at < ttlMs) return hit.limit;
      const started = generation;
      const limit = await compute(userUuid);
      remember(userUuid, limit, started);
      return limit;
    },
    async setUserLimit(userUuid, mps, adminUuid) {
      if (mps === null) await opts.pg.query('DELETE FROM load_user_limits WHERE user_uuid = $1', [userUuid]);
      else {
        await opts.pg.query(
          `INSERT INTO load_user_limits (user_uuid, mps_limit, set_by, update_datetime) VALUES ($1, $2, $3, now() AT TIME ZONE 'utc')
           ON CONFLICT (user_uuid) DO UPDATE SET mps_limit = EXCLUDED.mps_limit, set_by = EXCLUDED.set_by, update_datetime = EXCLUDED.update_datetime`,
          [userUuid, mps, adminUuid],
        );
      }
      drop(userUuid);
    },
    userOverride,
    forget(userUuid) {
      drop(userUuid ?? null);
    },
  };
}
