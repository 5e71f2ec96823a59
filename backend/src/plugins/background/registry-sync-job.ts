/**
 * The registry sync job (issue 4) as a background plugin, `app.registrySyncJob`: the periodic
 * sync (PU_REGISTRY_SYNC_INTERVAL_HOURS; 0 = none), the start-up reset of stuck syncs and the
 * clone of missing copies (jobs/registry-sync.ts). Stops scheduling before the registry services
 * close (`preClose`).
 */
import fp from 'fastify-plugin';
import { startRegistrySyncJob, type RegistrySyncJob } from '../../jobs/registry-sync.js';
import { addStartedComponent } from './registry.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The registry sync job (started by `app.background.start()`). */
    readonly registrySyncJob: RegistrySyncJob;
  }
}

export default fp(
  async (app) => {
    addStartedComponent<RegistrySyncJob>(app, 'registrySyncJob', {
      name: 'registry sync job',
      stopOn: 'preClose',
      start: () => startRegistrySyncJob(app),
      stop: (job) => job.stop(),
    });
  },
  { name: 'pepeunit-registry-sync-job', dependencies: ['pepeunit-core', 'pepeunit-background', 'pepeunit-registry'] },
);
