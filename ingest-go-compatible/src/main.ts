/**
 * Ingest process entry: `node --import tsx ingest-go-compatible/src/main.ts`.
 * Configured only by PU_DP_* variables, so it can replace the Go DataPipe in a Pepeunit deployment.
 */
import closeWithGrace from 'close-with-grace';
import { createLogger, exitWithParent, loadIngestConfig, loadOrExit } from '@pepeunit/common';
import { startIngest } from './service.js';

exitWithParent();
const config = loadOrExit(() => loadIngestConfig());
const logger = createLogger('ingest', { level: process.env.PU_DP_LOG_LEVEL ?? 'info' });

try {
  const ingest = await startIngest(config, logger);
  logger.info({ metrics: ingest.metricsUrl, mode: config.intakeMode }, 'ingest running');
  process.stdout.write(JSON.stringify({ event: 'ready', metricsUrl: ingest.metricsUrl }) + '\n');
  closeWithGrace({ delay: 30_000 }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'shutting down after an error');
    else logger.info({ signal }, 'shutting down, flushing');
    await ingest.close();
  });
} catch (err) {
  logger.fatal({ err }, 'ingest failed to start');
  process.exit(1);
}
