/**
 * Wiring of the registry and Repo services, registered once at the root (not under a route
 * prefix) so other modules can use them: `app.registry`, `app.registrySync`, `app.repos`.
 * Needs `app.gitStore` (plugins/git-store.ts), `app.cipher` and `app.unitsFirmware`.
 */
import fp from 'fastify-plugin';
import { PlatformApi } from '../registry/platform.js';
import { RegistryService } from '../registry/registry-service.js';
import { RegistrySyncService } from '../registry/sync-service.js';
import { RepoService } from '../registry/repo-service.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Registry entries: create-or-find, search, credentials, sync requests (routes/api/v1/repository_registry). */
    readonly registry: RegistryService;
    /** Syncs of registry clones and private Repo copies: single-flight, advisory-locked, progress. */
    readonly registrySync: RegistrySyncService;
    /** Repos and the reads Units need: target versions, files by commit, releases (routes/api/v1/repos). */
    readonly repos: RepoService;
  }
}

export default fp(
  async (app) => {
    const platformApi = new PlatformApi(app.config, app.gitDestinations.guard);
    const sync = new RegistrySyncService({
      pg: app.pg,
      config: app.config,
      cipher: app.cipher,
      gitStore: app.gitStore,
      logger: app.log,
      platformApi,
    });
    const registry = new RegistryService({
      pg: app.pg,
      config: app.config,
      cipher: app.cipher,
      gitStore: app.gitStore,
      sync,
      platformApi,
      logger: app.log,
      destinations: app.gitDestinations,
    });
    const repos = new RepoService({ pg: app.pg, config: app.config, gitStore: app.gitStore, registries: registry, sync, logger: app.log });
    app.decorate('registrySync', sync);
    app.decorate('registry', registry);
    app.decorate('repos', repos);
    // Repo-wide firmware updates go through the Units module (`app.unitsFirmware`, issue 5).
    repos.setUnitsFirmwareUpdater(async (repo) => {
      await app.unitsFirmware.updateUnitsFirmware(repo.uuid);
    });
    app.addHook('onClose', async () => {
      await sync.close();
    });
  },
  { name: 'pepeunit-registry', dependencies: ['pepeunit-core', 'pepeunit-git-store', 'pepeunit-units-firmware'] },
);
