/**
 * Backend process entry: `node --import tsx backend/src/server.ts`.
 * Reads PU_* variables (one message naming every bad one), migrates, serves, shuts down gracefully.
 */
// First: makes the disabled `debug` calls of mqtt-packet/mqtt.js free (see common/src/quiet-debug.ts).
import '@pepeunit/common/quiet-debug';
import closeWithGrace from 'close-with-grace';
import { createLogger, exitWithParent, loadBackendConfig, loadOrExit } from '@pepeunit/common';
import { startBackend } from './runtime.js';

exitWithParent();
const config = loadOrExit(() => loadBackendConfig());
const logger = createLogger('backend', { level: config.logLevel });

try {
  const backend = await startBackend(config, logger);
  logger.info({ url: backend.url, prefix: config.appPrefix }, 'backend listening');
  closeWithGrace({ delay: config.shutdownTimeoutSeconds * 1000 }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'shutting down after an error');
    else logger.info({ signal }, 'shutting down');
    await backend.close();
  });
} catch (err) {
  logger.fatal({ err }, 'backend failed to start');
  process.exit(1);
}
