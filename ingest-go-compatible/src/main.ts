/**
 * Ingest process entry: `node --import tsx ingest-go-compatible/src/main.ts`.
 * Configured only by PU_DP_* variables, so it can replace the Go DataPipe in a Pepeunit deployment.
 *
 * stdout carries two JSON lines for supervisors and tests: `{"event":"ready",...}` once the
 * intake is subscribed, and `{"event":"stopped",...}` with the final counters after a graceful
 * stop (SIGTERM/SIGINT), once everything was written or persisted.
 */
// First: makes mqtt.js' and mqtt-packet's disabled `debug` calls free (see quiet-debug.ts).
import '@pepeunit/common/quiet-debug';
import closeWithGrace from 'close-with-grace';
import { createLogger, exitWithParent, loadIngestConfig, loadOrExit, onErrorLogged } from '@pepeunit/common';
import { ErrorTracker } from '@pepeunit/common/error-tracker';
import { normalizePostgresUrl, usePostgresUtcTimestamps } from '@pepeunit/common/postgres';
import { hostname } from 'node:os';
import pg from 'pg';
import { startIngest } from './service.js';

exitWithParent();
// A supervisor that went away must not turn a log line into a crash or a hang (EPIPE).
process.stdout.on('error', () => {});
process.stderr.on('error', () => {});
const config = loadOrExit(() => loadIngestConfig());
const logger = createLogger('ingest', { level: config.logLevel });

// Error tracker (issue 13): errors logged at error level and crashes, counted in Postgres.
usePostgresUtcTimestamps(); // naive timestamps are UTC whatever the host's time zone
const errorPool = new pg.Pool({ connectionString: normalizePostgresUrl(config.postgresUrl), max: 1, application_name: 'pepeunit-ingest-errors' });
errorPool.on('error', () => {});
const errors = new ErrorTracker({ pool: errorPool, process: `ingest@${hostname()}:${process.pid}`, onFlushError: (e) => process.stderr.write(`error tracker: ${(e as Error).message}\n`) });
onErrorLogged(errors.tap);
errors.start();

/** Write deadline of a graceful stop; persisting the rest takes a few seconds more. */
const SHUTDOWN_TIMEOUT_MS = 20_000;

try {
  const ingest = await startIngest(config, logger, { shutdownTimeoutMs: SHUTDOWN_TIMEOUT_MS });
  logger.info({ metrics: ingest.metricsUrl, mode: config.intakeMode, subscription: ingest.subscription }, 'ingest running');
  process.stdout.write(JSON.stringify({ event: 'ready', metricsUrl: ingest.metricsUrl, mode: ingest.mode, subscription: ingest.subscription }) + '\n');
  closeWithGrace(
    {
      delay: SHUTDOWN_TIMEOUT_MS + 10_000,
      logger: { error: (msg: unknown) => logger.error({ detail: msg instanceof Error ? msg.message : String(msg) }, 'shutdown problem') },
    },
    async ({ signal, err }) => {
      if (err) {
        logger.error({ err }, 'shutting down after an error');
        await errors.recordCrash(err, 'uncaught exception or unhandled rejection').catch(() => undefined);
      } else logger.info({ signal }, 'shutting down: flushing buffers');
      const report = await ingest.close();
      await errors.stop().catch(() => undefined);
      await errorPool.end().catch(() => undefined);
      process.stdout.write(JSON.stringify({ event: 'stopped', ...report }) + '\n');
    },
  );
} catch (err) {
  logger.fatal({ err }, 'ingest failed to start');
  await errors.recordCrash(err, 'start-up failure').catch(() => undefined);
  process.exit(1);
}
