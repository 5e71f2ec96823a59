/**
 * Automatic firmware updates (jobs/units-auto-update.ts) as a background plugin,
 * `app.unitsAutoUpdate`: units that follow their Repo are updated after syncs, after changes of
 * the Repo's settings (`app.repos` repo-changed listener) and periodically. Stops before the
 * registry and firmware services close (`preClose`).
 */
import fp from 'fastify-plugin';
import { startUnitsAutoUpdate, type UnitsAutoUpdate } from '../../jobs/units-auto-update.js';
import { startedComponent } from './registry.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Automatic firmware updates of units that follow their Repo (started by `app.background.start()`). */
    readonly unitsAutoUpdate: UnitsAutoUpdate;
  }
}

export default fp(
  async (app) => {
    let autoUpdate: UnitsAutoUpdate | undefined;
    app.decorate<UnitsAutoUpdate>('unitsAutoUpdate', startedComponent('unitsAutoUpdate', () => autoUpdate));
    app.background.add({
      name: 'units auto-update',
      stopOn: 'preClose',
      start() {
        const job = startUnitsAutoUpdate(app);
        autoUpdate = job;
        app.repos.setRepoChangedListener((repoUuid) => void job.requestRepo(repoUuid, 'repo settings changed'));
      },
      stop: async () => autoUpdate?.stop(),
    });
  },
  { name: 'pepeunit-units-auto-update', dependencies: ['pepeunit-core', 'pepeunit-background', 'pepeunit-registry', 'pepeunit-units-firmware'] },
);
