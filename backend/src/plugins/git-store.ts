import fp from 'fastify-plugin';
import { resolve } from 'node:path';
import { GitStore } from '../git/index.js';
import { DestinationGuard } from '../git/destinations.js';
import { DomainRules } from '../registry/domain-rules.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The physical git clones under PU_SAVE_REPO_PATH (one per public registry entry, one per private Repo). */
    readonly gitStore: GitStore;
    /** Where repository syncs may connect (SSRF guard) and the admin's domain rules. */
    readonly gitDestinations: { readonly guard: DestinationGuard; readonly rules: DomainRules };
  }
}

export default fp(async (app) => {
  const rules = new DomainRules(app.pg, app.config.registryTrustedHosts);
  const guard = new DestinationGuard(() => rules.trusted());
  const store = new GitStore({
    destinations: guard,
    rootPath: resolve(app.config.saveRepoPath),
    maxRepoSizeBytes: app.config.maxExternalRepoSizeMb * 2 ** 20,
    allowedProtocols: app.config.gitAllowedProtocols,
    logger: app.log,
  });
  await store.cleanupTemporary().catch((err: unknown) => app.log.warn({ err }, 'could not clean temporary clone directories'));
  app.decorate('gitStore', store);
  app.decorate('gitDestinations', { guard, rules });
}, { name: 'pepeunit-git-store', dependencies: ['pepeunit-core'] });
