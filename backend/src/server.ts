/**
 * Backend process entry: `node --import tsx backend/src/server.ts`.
 * Reads PU_* variables (one message naming every bad one), migrates, serves, shuts down gracefully.
 * Prints one JSON line `{"event":"ready","url":...,"pid":...}` on stdout once it listens.
 */
// First: makes the disabled `debug` calls of mqtt-packet/mqtt.js free (see common/src/quiet-debug.ts).
import '@pepeunit/common/quiet-debug';
import closeWithGrace from 'close-with-grace';
import { createLogger, exitWithParent, loadBackendConfig, loadOrExit } from '@pepeunit/common';
import { startBackend } from './runtime.js';

exitWithParent();
const config = loadOrExit(() => loadBackendConfig());
const logger = createLogger('backend', { level: config.logLevel, format: config.logFormat });

try {
  const backend = await startBackend(config, logger);
  logger.info({ url: backend.url, prefix: config.appPrefix }, 'backend listening');
  // For supervisors (the launcher): this process is up, migrated and listening. A probe of the
  // port could be answered by another program that took it meanwhile.
  process.stdout.write(JSON.stringify({ event: 'ready', url: backend.url, pid: process.pid }) + '\n');
  closeWithGrace({ delay: config.shutdownTimeoutSeconds * 1000 }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'shutting down after an error');
    else logger.info({ signal }, 'shutting down');
    await backend.close();
  });
} catch (err) {
  logger.fatal({ err }, 'backend failed to start');
  process.exit(1);
}
