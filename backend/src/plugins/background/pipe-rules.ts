/**
 * The `pipe-` rule reconciler (issue 6 pre-filter) as a background plugin, `app.pipeRules`:
 * broker rules forward only topics with an enabled DataPipe to the ingest; every
 * `app.datapipe` change reconciles that node's rule, a periodic full diff heals drift
 * (services/pipe-rules.ts). The broker's management API is read lazily (`app.deps.emqxClient`,
 * set by runtime.ts once the server listens).
 */
import fp from 'fastify-plugin';
import { registerPipeRules, type PipeRules } from '../../services/pipe-rules.js';
import { addStartedComponent } from './registry.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The `pipe-` rule reconciler (started by `app.background.start()`). */
    readonly pipeRules: PipeRules;
  }
}

export default fp(
  async (app) => {
    addStartedComponent<PipeRules>(app, 'pipeRules', {
      name: 'pipe rules',
      start: () => registerPipeRules(app, { client: () => app.deps.emqxClient?.() ?? null }),
      stop: (pipeRules) => pipeRules.close(),
    });
  },
  { name: 'pepeunit-pipe-rules', dependencies: ['pepeunit-core', 'pepeunit-background', 'pepeunit-datapipe-events'] },
);
