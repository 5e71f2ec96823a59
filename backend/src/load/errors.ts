/**
 * The backend's error tracker (issue 13, docs/LOAD.md "Error tracker"): errors logged at error
 * level or above are fingerprinted and counted per process in Postgres (common/src/error-tracker.ts);
 * crashes are recorded before exit (server.ts) and alerted to the admin through app.alertSink,
 * at most once per PU_ERROR_ALERT_INTERVAL per fingerprint and process, saying how many times it
 * happened since the last alert. Any replica may raise them: the rows to alert are claimed with
 * one UPDATE (row locks), so each occurrence is alerted once. Crash rows written by other
 * processes (an ingest, the launcher recording a child that died) are alerted the same way.
 */
import type { FastifyInstance } from 'fastify';
import { onErrorLogged } from '@pepeunit/common';
import { ErrorTracker } from '@pepeunit/common/error-tracker';

export interface ErrorTracking {
  readonly tracker: ErrorTracker;
  recordCrash(error: unknown, origin: string): Promise<void>;
  /** Raises the due crash alerts; resolves with how many were raised. */
  alertCrashes(): Promise<number>;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Error tracker and crash alerts (backend/src/load/errors.ts). */
    readonly errorTracking: ErrorTracking;
  }
}

const CHECK_MS = 10_000;

export function registerErrorTracking(app: FastifyInstance): void {
  const tracker = new ErrorTracker({
    pool: app.pg,
    process: app.nodeState.collector.process,
    // Reported on stderr: logging it at error level would be tracked again.
    onFlushError: (error) => process.stderr.write(`error tracker: counts not written (${(error as Error).message}); kept for the next flush\n`),
  });
  const untap = onErrorLogged(tracker.tap);
  const intervalSeconds = app.config.load.errorAlertIntervalSeconds;

  let lastCleanup = 0;
  async function alertCrashes(): Promise<number> {
    const { rows } = await app.pg.query<{ fingerprint: string; process: string; message: string; sample: string; count: string; previous: string; first_seen: string; last_seen: string }>(
      `WITH due AS (
         SELECT fingerprint, process, alerted_count FROM error_fingerprints
          WHERE kind = 'crash' AND count > alerted_count
            AND (last_alert_at IS NULL OR last_alert_at <= (now() AT TIME ZONE 'utc') - make_interval(secs => $1))
          ORDER BY last_seen LIMIT 100 FOR UPDATE SKIP LOCKED)
       UPDATE error_fingerprints e SET alerted_count = e.count, last_alert_at = now() AT TIME ZONE 'utc'
         FROM due WHERE e.fingerprint = due.fingerprint AND e.process = due.process
       RETURNING e.fingerprint, e.process, e.message, e.sample, e.count::text, due.alerted_count::text AS previous,
                 to_char(e.first_seen, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS first_seen, to_char(e.last_seen, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS last_seen`,
      [intervalSeconds],
    );
    if (Date.now() - lastCleanup > 3_600_000) {
      lastCleanup = Date.now();
      // Hourly counts are kept 90 days (the fingerprints themselves stay, with their totals).
      await app.pg.query(`DELETE FROM error_counts_hourly WHERE hour < (now() AT TIME ZONE 'utc') - interval '90 days'`);
    }
    for (const row of rows) {
      const since = Number(row.count) - Number(row.previous);
      await app.alertSink
        .raise({
          recipient: { kind: 'admin' },
          source: 'process.crash',
          level: 'critical',
          key: `process.crash:${row.fingerprint}`,
          text: `Crash of ${row.process}: ${row.sample || row.message}. Happened ${since} time${since === 1 ? '' : 's'} since the last alert (${row.count} in total since ${row.first_seen}; last at ${row.last_seen}).`,
        })
        .catch((error: unknown) => process.stderr.write(`crash alert not raised: ${(error as Error).message}\n`));
    }
    return rows.length;
  }

  let timer: NodeJS.Timeout | undefined;
  app.decorate('errorTracking', {
    tracker,
    async recordCrash(error: unknown, origin: string) {
      await tracker.recordCrash(error, origin);
    },
    alertCrashes,
  } satisfies ErrorTracking);
  app.addHook('onReady', async () => {
    tracker.start();
    const check = (): void => void alertCrashes().catch((error: unknown) => app.log.warn({ err: (error as Error).message }, 'crash alerts not checked'));
    timer = setInterval(check, CHECK_MS);
    timer.unref();
    check(); // crashes recorded by the previous run of this process
  });
  app.addHook('onClose', async () => {
    if (timer) clearInterval(timer);
    untap();
    await tracker.stop();
  });
}
