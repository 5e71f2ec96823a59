/**
 * Automatic firmware updates (jobs/units-auto-update.ts) as a background plugin,
 * `app.unitsAutoUpdate`: units that follow their Repo are updated after syncs, after changes of
 * the Repo's settings (`app.repos` repo-changed listener) and periodically. Stops before the
 * registry and firmware services close (`preClose`).
 */
import fp from 'fastify-plugin';
import { startUnitsAutoUpdate, type UnitsAutoUpdate } from '../../jobs/units-auto-update.js';
import { addStartedComponent } from './registry.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Automatic firmware updates of units that follow their Repo (started by `app.background.start()`). */
    readonly unitsAutoUpdate: UnitsAutoUpdate;
  }
}

export default fp(
  async (app) => {
    addStartedComponent<UnitsAutoUpdate>(app, 'unitsAutoUpdate', {
      name: 'units auto-update',
      stopOn: 'preClose',
      start() {
        const job = startUnitsAutoUpdate(app);
        app.repos.setRepoChangedListener((repoUuid) => void job.requestRepo(repoUuid, 'repo settings changed'));
        return job;
      },
      stop: (job) => job.stop(),
    });
  },
  { name: 'pepeunit-units-auto-update', dependencies: ['pepeunit-core', 'pepeunit-background', 'pepeunit-registry', 'pepeunit-units-firmware'] },
);
