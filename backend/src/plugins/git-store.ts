import fp from 'fastify-plugin';
import { resolve } from 'node:path';
import { GitStore } from '../git/index.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The physical git clones under PU_SAVE_REPO_PATH (one per public registry entry, one per private Repo). */
    readonly gitStore: GitStore;
  }
}

export default fp(async (app) => {
  const store = new GitStore({
    rootPath: resolve(app.config.saveRepoPath),
    maxRepoSizeBytes: app.config.maxExternalRepoSizeMb * 2 ** 20,
    allowedProtocols: app.config.gitAllowedProtocols,
    logger: app.log,
  });
  await store.cleanupTemporary().catch((err: unknown) => app.log.warn({ err }, 'could not clean temporary clone directories'));
  app.decorate('gitStore', store);
});
