/**
 * The system-topic consumer (issue 5) as a background plugin, `app.systemTopics`: state and log
 * messages of units (mqtt/system-topics.ts). It subscribes when the background starts (the broker
 * is configured and our connection started by then) and flushes what it holds before the app and
 * the stores close (`preClose`).
 */
import fp from 'fastify-plugin';
import { startSystemTopicsConsumer, type SystemTopicsConsumer, type SystemTopicsOptions } from '../../mqtt/system-topics.js';
import { RepoVersions, loadRepoSource } from '../../domain/repo-versions.js';
import { addStartedComponent } from './registry.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The system-topic consumer (state/log of units; started by `app.background.start()`). */
    readonly systemTopics: SystemTopicsConsumer;
  }
}

/** Overrides of the consumer's options (tests, benchmarks: `subscribe: false`, writer settings). */
export type SystemTopicsPluginOptions = Partial<Omit<SystemTopicsOptions, 'mqtt' | 'pg' | 'clickhouse' | 'config'>>;

export default fp<SystemTopicsPluginOptions>(
  async (app, opts) => {
    addStartedComponent<SystemTopicsConsumer>(app, 'systemTopics', {
      name: 'system topics',
      stopOn: 'preClose',
      start() {
        const { pg } = app;
        return startSystemTopicsConsumer({
          mqtt: app.mqtt,
          pg,
          clickhouse: app.clickhouse,
          config: app.config,
          registry: app.metrics,
          logger: app.deps.logger,
          shareGroup: app.config.backendShareGroup || null,
          // Target version of a unit (§7.3) for the firmware-update status: read from the shared clone.
          resolveTargetVersion: async (unitUuid: string) => {
            const { rows } = await pg.query('SELECT repo_uuid, is_auto_update_from_repo_unit, repo_branch, repo_commit FROM units WHERE uuid = $1', [unitUuid]);
            const unit = rows[0];
            if (!unit) return null;
            // A manual unit's target is its pinned commit (validated against the branch when it was set).
            if (!unit.is_auto_update_from_repo_unit) return unit.repo_commit ?? null;
            const versions = new RepoVersions(app.gitStore, await loadRepoSource(pg, unit.repo_uuid));
            return (await versions.unitTarget(unit)).commit;
          },
          ...opts,
        });
      },
      stop: (systemTopics) => systemTopics.close(),
    });
  },
  { name: 'pepeunit-system-topics', dependencies: ['pepeunit-core', 'pepeunit-background', 'pepeunit-metrics', 'pepeunit-git-store'] },
);
