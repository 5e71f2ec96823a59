/**
 * Periodic registry sync: every PU_REGISTRY_SYNC_INTERVAL_HOURS hours (0 = never; no timer is
 * created at all), one replica (elected with a Postgres advisory lock inside
 * `registrySync.syncAll`) syncs every registry entry and every private Repo copy, one at a time,
 * as the Backend agent: first Valid credentials for private entries, the Repo creator's for
 * private copies (the reference ran it as the anonymous Bot, so private entries always failed).
 *
 * Start-up tasks (run once in the background when the job starts, whatever the interval):
 * rows left in `Processing` by a stopped process are set to `Error`, credentials of Repos
 * migrated from the pre-registry schema are moved into their registry entry, and copies missing
 * on disk (new replica, wiped storage) are cloned — the reference's start-up "clone missing".
 */
import type { FastifyInstance } from 'fastify';
import type { SyncAllSummary } from '../registry/sync-service.js';

export interface RegistrySyncJob {
  /** Whether a periodic run is scheduled (false when the interval is 0). */
  readonly scheduled: boolean;
  readonly intervalMs: number;
  /** When the next periodic run starts; null when none is scheduled. */
  readonly nextRunAt: Date | null;
  /** One run now (joins a run already in progress in this process). */
  runOnce(): Promise<SyncAllSummary>;
  /** The start-up tasks' promise (resolved when they finished; never rejects). */
  readonly startup: Promise<void>;
  /**
   * Stops scheduling. A run in progress is not awaited: `app.close()` makes it stop after the
   * entry being synced (RegistrySyncService.close waits for that, bounded).
   */
  stop(): Promise<void>;
}

export interface RegistrySyncJobOptions {
  /** Default: `app.config.registrySyncIntervalHours`. */
  intervalHours?: number;
  /** Run the start-up tasks (default true). */
  startupTasks?: boolean;
}

/** Node timers cannot wait longer than 2^31-1 ms (~24.8 days); longer waits are chained. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export function startRegistrySyncJob(app: FastifyInstance, options: RegistrySyncJobOptions = {}): RegistrySyncJob {
  const log = app.log.child({ job: 'registry-sync' });
  const hours = options.intervalHours ?? app.config.registrySyncIntervalHours;
  const intervalMs = hours > 0 ? hours * 3_600_000 : 0;
  let timer: NodeJS.Timeout | null = null;
  let nextRunAt: Date | null = null;
  let current: Promise<SyncAllSummary> | null = null;
  let stopped = false;

  const runOnce = (): Promise<SyncAllSummary> => {
    if (current) return current;
    const run = app.registrySync.syncAll({ reason: 'periodic' }).finally(() => {
      current = null;
    });
    current = run;
    return run;
  };

  const arm = (at: Date): void => {
    nextRunAt = at;
    const wait = Math.max(0, Math.min(at.getTime() - Date.now(), MAX_TIMER_MS));
    timer = setTimeout(() => {
      timer = null;
      if (stopped) return;
      if (Date.now() < at.getTime()) return arm(at);
      arm(new Date(Date.now() + intervalMs));
      runOnce().catch((error: unknown) => log.error({ err: (error as Error).message }, 'periodic registry sync failed'));
    }, wait);
    timer.unref();
  };

  if (intervalMs > 0) {
    arm(new Date(Date.now() + intervalMs));
    log.info({ intervalHours: hours, nextRunAt }, 'periodic registry sync scheduled');
  } else {
    log.info('periodic registry sync disabled (PU_REGISTRY_SYNC_INTERVAL_HOURS=0)');
  }

  const startup =
    options.startupTasks === false
      ? Promise.resolve()
      : (async () => {
          await app.registrySync.resetStuck();
          await app.registry.adoptLegacyCredentials();
          if (stopped) return;
          await app.registrySync.syncAll({ reason: 'startup', onlyMissing: true });
        })().catch((error: unknown) => log.error({ err: (error as Error).message }, 'registry start-up tasks failed'));

  return {
    get scheduled() {
      return timer !== null;
    },
    intervalMs,
    get nextRunAt() {
      return timer === null ? null : nextRunAt;
    },
    runOnce,
    startup,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
    },
  };
}
