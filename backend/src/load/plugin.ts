/**
 * The load component (issue 13) as one Fastify plugin: attaches the usage reader billing meters
 * through (`app.loadPorts`), and — when the app has a broker management API — runs the counting
 * rules lifecycle, the sampler and the cut-off ladder with start (onReady) and stop (onClose)
 * hooks. See docs/LOAD.md.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import { createUsageReader } from './load-store.js';

async function loadPlugin(app: FastifyInstance): Promise<void> {
  app.loadPorts.attachUsageReader(createUsageReader(app.clickhouse));
  app.addHook('onClose', async () => app.loadPorts.attachUsageReader(undefined));
}

export default fp(loadPlugin, { name: 'pepeunit-load' });
