import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type, type Static } from '@sinclair/typebox';
import { requireAgent } from '../../../../services/access.js';
import { loadLimitRoute } from '../../../../grades/load-limit-route.js';

export const BaseMetrics = Type.Object({
  user_count: Type.Integer(),
  repository_registry_count: Type.Integer(),
  repo_count: Type.Integer(),
  unit_count: Type.Integer(),
  unit_node_count: Type.Integer(),
  unit_node_edge_count: Type.Integer(),
});

/** As the reference: one cached answer per process for 10 minutes. */
export const BASE_METRICS_TTL_MS = 600_000;

const COUNTS_SQL = `
  SELECT (SELECT count(*) FROM users)::int               AS user_count,
         (SELECT count(*) FROM repository_registry)::int AS repository_registry_count,
         (SELECT count(*) FROM repos)::int               AS repo_count,
         (SELECT count(*) FROM units)::int               AS unit_count,
         (SELECT count(*) FROM units_nodes)::int         AS unit_node_count,
         (SELECT count(*) FROM units_nodes_edges)::int   AS unit_node_edge_count`;

/**
 * `GET /pepeunit/api/v1/metrics/` (pepeunit-backend.md §5.7, §8.1): instance counts for the bot's
 * `/info`, the frontend and scripts. Anonymous callers, users and units may read them.
 */
const metrics: FastifyPluginAsyncTypebox = async (app) => {
  let cached: { at: number; value: Promise<Static<typeof BaseMetrics>> } | undefined;
  const counts = (): Promise<Static<typeof BaseMetrics>> => {
    if (!cached || Date.now() - cached.at >= BASE_METRICS_TTL_MS) {
      const value = app.pg.query<Static<typeof BaseMetrics>>(COUNTS_SQL).then((result) => result.rows[0]!);
      cached = { at: Date.now(), value };
      value.catch(() => {
        if (cached?.value === value) cached = undefined; // never cache a failure
      });
    }
    return cached.value;
  };

  app.get('/', { schema: { tags: ['metrics'], summary: 'Instance counts (cached 10 minutes)', response: { 200: BaseMetrics } } }, async (request) => {
    const agent = await request.agent();
    requireAgent(agent, ['Bot', 'User', 'Unit']);
    return counts();
  });

  // The signed load_limit report, for scraper-token holders only (issue 14; grades/).
  loadLimitRoute(app);
};
export default metrics;
