/**
 * Automatic firmware updates: units with `is_auto_update_from_repo_unit` follow their Repo's
 * target version. When that target moves, they are synced to it (nodes, env) and sent `Update`;
 * the firmware status then follows the usual flow (RequestSent -> Success / Error).
 *
 * - Event-driven: after every successful sync of a registry clone (its auto-updating Repos) or of
 *   a private Repo copy, and after a Repo's settings change (`requestRepo`).
 * - Safety net: every PU_UNITS_AUTO_UPDATE_INTERVAL_MINUTES (reference: hourly) over every
 *   auto-updating Repo, elected among replicas with an advisory lock, for devices that were
 *   offline or whose update failed.
 *
 * Only outdated units are touched: a device already on the target, or with an Update for that
 * very target in flight, is left alone (`isUpToDateOrInFlight`). Runs for one Repo never overlap
 * in this process; a request during a run is queued once.
 */
import { ADVISORY_LOCKS } from '@pepeunit/common';
import type { FastifyInstance } from 'fastify';
import type { UnitsFirmwareResult } from '../domain/unit-firmware.js';

/** Advisory lock of the periodic run (same numbering as the migration and pipe-rule locks). */
export const UNITS_AUTO_UPDATE_LOCK_KEY = ADVISORY_LOCKS.unitsAutoUpdate;

export interface UnitsAutoUpdate {
  /** Checks one Repo's auto-updating units now (queued behind a run in progress). */
  requestRepo(repoUuid: string, reason: string): Promise<UnitsFirmwareResult | null>;
  /** The periodic run now: every auto-updating Repo, if this replica wins the lock. */
  runAll(reason?: string): Promise<{ repos: number; updated: number; failed: number } | 'skipped'>;
  /** Waits for queued work to finish (tests, shutdown). */
  idle(): Promise<void>;
  stop(): Promise<void>;
}

export function startUnitsAutoUpdate(app: FastifyInstance, options: { intervalMinutes?: number } = {}): UnitsAutoUpdate {
  const log = app.log.child({ job: 'units-auto-update' });
  const intervalMinutes = options.intervalMinutes ?? app.config.unitsAutoUpdateIntervalMinutes;
  let stopped = false;
  const running = new Map<string, Promise<UnitsFirmwareResult | null>>();
  const queued = new Map<string, Promise<UnitsFirmwareResult | null>>();
  // Work started by sync events (looked up before it reaches `running`), for `idle()`.
  const pending = new Set<Promise<void>>();

  const runRepo = async (repoUuid: string, reason: string): Promise<UnitsFirmwareResult | null> => {
    if (stopped) return null;
    try {
      return await app.unitsFirmware.updateUnitsFirmware(repoUuid, { onlyOutdated: true, reason });
    } catch (error) {
      log.warn({ repoUuid, reason, err: (error as Error).message }, 'automatic update of a repo failed');
      return null;
    }
  };

  const requestRepo = (repoUuid: string, reason: string): Promise<UnitsFirmwareResult | null> => {
    const current = running.get(repoUuid);
    if (!current) {
      const run = runRepo(repoUuid, reason).finally(() => running.delete(repoUuid));
      running.set(repoUuid, run);
      return run;
    }
    // A change during a run: one more run after it, whatever the number of requests meanwhile.
    let next = queued.get(repoUuid);
    if (!next) {
      next = current
        .catch(() => null)
        .then(() => {
          queued.delete(repoUuid);
          return requestRepo(repoUuid, reason);
        });
      queued.set(repoUuid, next);
    }
    return next;
  };

  const reposOfRegistry = async (registryUuid: string): Promise<string[]> => {
    const { rows } = await app.pg.query<{ uuid: string }>(
      `SELECT r.uuid::text AS uuid FROM repos r
        WHERE r.repository_registry_uuid = $1 AND r.is_auto_update_repo
          AND EXISTS (SELECT 1 FROM units u WHERE u.repo_uuid = r.uuid AND u.is_auto_update_from_repo_unit)`,
      [registryUuid],
    );
    return rows.map((r) => r.uuid);
  };

  app.registrySync.onSynced((synced) => {
    if (stopped) return;
    const work = (async () => {
      const repos = synced.registryUuid ? await reposOfRegistry(synced.registryUuid) : [synced.repoUuid!];
      await Promise.all(repos.map((repo) => requestRepo(repo, synced.registryUuid ? 'registry synced' : 'private repo copy synced')));
    })()
      .catch((error: unknown) => log.warn({ err: (error as Error).message, synced }, 'automatic update after a sync failed'))
      .finally(() => pending.delete(work));
    pending.add(work);
  });

  const runAll = async (reason = 'periodic'): Promise<{ repos: number; updated: number; failed: number } | 'skipped'> => {
    const client = await app.pg.connect();
    try {
      const { rows: lock } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS locked', [...UNITS_AUTO_UPDATE_LOCK_KEY]);
      if (!lock[0]?.locked) return 'skipped';
      try {
        const { rows } = await app.pg.query<{ uuid: string }>(
          `SELECT r.uuid::text AS uuid FROM repos r
            WHERE r.is_auto_update_repo AND EXISTS (SELECT 1 FROM units u WHERE u.repo_uuid = r.uuid AND u.is_auto_update_from_repo_unit)
            ORDER BY r.create_datetime`,
        );
        let updated = 0;
        let failed = 0;
        for (const { uuid } of rows) {
          if (stopped) break;
          const result = await requestRepo(uuid, reason);
          updated += result?.updated ?? 0;
          failed += result?.failed ?? 0;
        }
        if (updated > 0 || failed > 0) log.info({ repos: rows.length, updated, failed }, 'automatic update run finished');
        return { repos: rows.length, updated, failed };
      } finally {
        await client.query('SELECT pg_advisory_unlock($1, $2)', [...UNITS_AUTO_UPDATE_LOCK_KEY]).catch(() => undefined);
      }
    } finally {
      client.release();
    }
  };

  let timer: NodeJS.Timeout | undefined;
  if (intervalMinutes > 0) {
    timer = setInterval(() => {
      runAll().catch((error: unknown) => log.warn({ err: (error as Error).message }, 'periodic automatic update failed'));
    }, intervalMinutes * 60_000);
    timer.unref();
  }

  const idle = async (): Promise<void> => {
    while (running.size > 0 || queued.size > 0 || pending.size > 0) await Promise.allSettled([...pending, ...running.values(), ...queued.values()]);
  };

  return {
    requestRepo,
    runAll,
    idle,
    async stop() {
      stopped = true;
      if (timer) clearInterval(timer);
      await idle();
    },
  };
}
