import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { projectInfo } from '../version.js';

const RootSchema = Type.Object({
  name: Type.String(),
  version: Type.String(),
  description: Type.String(),
  license: Type.String(),
  authors: Type.Array(Type.Object({ name: Type.String(), email: Type.String() })),
  swagger: Type.String(),
  graphql: Type.String(),
  grafana: Type.String(),
  telegram_bot: Type.String(),
  feature_flags: Type.Object({
    pu_ff_telegram_bot_enable: Type.Boolean(),
    pu_ff_grafana_integration_enable: Type.Boolean(),
    pu_ff_datapipe_enable: Type.Boolean(),
    pu_ff_datapipe_default_last_value_enable: Type.Boolean(),
    pu_ff_prometheus_enable: Type.Boolean(),
  }),
});

/** `GET /pepeunit`: instance information in the reference shape (pepeunit-backend.md §5.1). */
const root: FastifyPluginAsync = async (app) => {
  const { config } = app;
  app.get(config.appPrefix, {
    schema: { tags: ['instance'], summary: 'Instance information', response: { 200: RootSchema } },
  }, async () => ({
    ...projectInfo,
    swagger: `${config.links.linkPrefix}/docs`,
    // GraphQL is out of scope (REST + OpenAPI is the API); the key is kept for client compatibility.
    graphql: `${config.links.linkPrefix}/graphql`,
    grafana: `${config.links.link}/grafana/`,
    telegram_bot: String(config.raw.PU_TELEGRAM_BOT_LINK ?? ''),
    feature_flags: {
      pu_ff_telegram_bot_enable: config.featureFlags.telegramBot,
      pu_ff_grafana_integration_enable: config.featureFlags.grafana,
      pu_ff_datapipe_enable: config.featureFlags.datapipe,
      pu_ff_datapipe_default_last_value_enable: config.featureFlags.datapipeDefaultLastValue,
      pu_ff_prometheus_enable: config.featureFlags.prometheus,
    },
  }));
};
export default root;
