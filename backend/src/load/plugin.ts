/**
 * The load component (issue 13) as one Fastify plugin (`app.load`):
 *  - attaches the usage reader billing meters through (`app.loadPorts`);
 *  - the counting-rule lifecycle (counting-rules.ts), the sampler (sampler.ts), limits
 *    (limits.ts) and the cut-off ladder (cutoff.ts).
 * Background work starts on `onReady` and stops (flushing what it holds) on `onClose`. Without
 * a broker management API (`deps.emqxClient` absent or returning null) nothing is sampled and
 * no rule is managed; REST still answers from the history tables. See docs/LOAD.md.
 */
import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import type { EmqxManagementClient } from '@pepeunit/emqx-rules';
import { createUsageReader } from './load-store.js';
import { createCountingRules, type CountingRules } from './counting-rules.js';
import { createSampler, type Sampler } from './sampler.js';
import { createLimits, type Limits } from './limits.js';
import { createCutoff, type Cutoff, type CutoffSettings } from './cutoff.js';
import { registerNodeState } from './node-state.js';
import { registerErrorTracking } from './errors.js';

export interface LoadComponent {
  readonly counting: CountingRules;
  readonly sampler: Sampler;
  readonly limits: Limits;
  readonly cutoff: Cutoff;
  readonly settings: CutoffSettings & { intervalMs: number; instanceMps: number };
  /** The broker management API in use (null when none is configured). */
  client(): EmqxManagementClient | null;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Load counting, limits and cut-off (issue 13, backend/src/load). */
    readonly load: LoadComponent;
  }
}

async function loadPlugin(app: FastifyInstance): Promise<void> {
  app.loadPorts.attachUsageReader(createUsageReader(app.clickhouse));
  const logger = app.deps.logger;
  const config = app.config.load;
  const client = (): EmqxManagementClient | null => app.deps.emqxClient?.() ?? null;
  const settings = {
    enabled: config.cutoffEnabled,
    windowSeconds: config.excessWindowSeconds,
    factor: config.excessFactor,
    ladderSeconds: config.cutoffLadderSeconds,
    resetSeconds: config.cutoffResetSeconds,
    intervalMs: config.sampleIntervalSeconds * 1000,
    instanceMps: config.unitMpsLimit,
  };
  const limits = createLimits({ pg: app.pg, ports: app.loadPorts, instanceMps: config.unitMpsLimit });
  const cutoff = createCutoff({ pg: app.pg, client, limits, alerts: app.alertSink, settings, logger, registry: app.metrics });
  const background = app.deps.emqxClient !== undefined;
  const counting = createCountingRules({
    pg: app.pg,
    client,
    domain: app.config.domain,
    logger,
    listen: background,
    initialDelayMs: background ? 1000 : -1,
    intervalMs: background ? 600_000 : 0,
    onUnitDeleted: (unit) => cutoff.unitDeleted(unit),
  });
  const sampler = createSampler({ pg: app.pg, clickhouse: app.clickhouse, client, intervalMs: settings.intervalMs, logger, registry: app.metrics, elect: background });
  counting.onChange(() => sampler.unitsChanged());
  sampler.onSample((sample) => cutoff.onSample(sample));
  app.decorate('load', { counting, sampler, limits, cutoff, settings, client } satisfies LoadComponent);
  registerNodeState(app);
  registerErrorTracking(app);
  app.addHook('onReady', async () => {
    if (background) sampler.start();
  });
  app.addHook('onClose', async () => {
    await sampler.stop();
    await counting.close();
    app.loadPorts.attachUsageReader(undefined);
  });
}

export default fp(loadPlugin, { name: 'pepeunit-load', dependencies: ['pepeunit-core', 'pepeunit-metrics'] });
