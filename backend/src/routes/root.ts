import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
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
  // Ours (issue 14): the key that signs the load_limit report (also at /.well-known/pepeunit-instance-key).
  instance_key: Type.Object({ algorithm: Type.String(), key_id: Type.String(), public_key: Type.String() }),
  feature_flags: Type.Object({
    pu_ff_telegram_bot_enable: Type.Boolean(),
    pu_ff_grafana_integration_enable: Type.Boolean(),
    pu_ff_datapipe_enable: Type.Boolean(),
    pu_ff_datapipe_default_last_value_enable: Type.Boolean(),
    pu_ff_prometheus_enable: Type.Boolean(),
  }),
});

/**
 * What the instance actually serves, not what its flags ask for: a flag is reported on only when
 * the feature is configured and its module is running (clients offer features from these flags).
 * The Telegram bot needs PU_TELEGRAM_TOKEN and the bot module (`app.telegramBot`); the Grafana
 * integration needs its module (`app.grafana`).
 */
export function servedFeatures(app: FastifyInstance): {
  telegramBot: boolean;
  grafana: boolean;
  datapipe: boolean;
  datapipeDefaultLastValue: boolean;
  prometheus: boolean;
} {
  const { featureFlags, telegram } = app.config;
  return {
    telegramBot: featureFlags.telegramBot && telegram.token !== '' && app.hasDecorator('telegramBot'),
    grafana: featureFlags.grafana && app.hasDecorator('grafana'),
    datapipe: featureFlags.datapipe,
    datapipeDefaultLastValue: featureFlags.datapipe && featureFlags.datapipeDefaultLastValue,
    prometheus: featureFlags.prometheus,
  };
}

/** `GET /pepeunit`: instance information in the reference shape (pepeunit-backend.md §5.1). */
const root: FastifyPluginAsync = async (app) => {
  const { config } = app;
  let rendered: string | undefined;
  app.addHook('onReady', async () => {
    const served = servedFeatures(app);
    if (config.featureFlags.telegramBot && !served.telegramBot) {
      app.log.warn('PU_FF_TELEGRAM_BOT_ENABLE is on, but the Telegram bot is not running (PU_TELEGRAM_TOKEN empty or no bot module): GET /pepeunit reports it off');
    }
    if (config.featureFlags.grafana && !served.grafana) {
      app.log.warn('PU_FF_GRAFANA_INTEGRATION_ENABLE is on, but the Grafana integration is not running: GET /pepeunit reports it off');
    }
  });
  app.get(config.appPrefix, {
    schema: { tags: ['instance'], summary: 'Instance information', response: { 200: RootSchema } },
  }, async (_request, reply) => {
    // Nothing in the answer changes while the process runs (the features served are fixed once
    // the app is ready, the key is generated once): it is rendered once and sent as text.
    if (rendered !== undefined) return reply.type('application/json; charset=utf-8').send(rendered);
    const served = servedFeatures(app);
    // The key that signs load_limit reports; the instance info is still served if it cannot be read.
    let keyRead = true;
    const key = await app.grades.key().catch((err: unknown) => {
      app.log.warn({ err }, 'instance key unavailable');
      keyRead = false;
      return { algorithm: 'Ed25519', keyId: '', publicKey: '' };
    });
    const body = reply.serialize({
      ...projectInfo,
      instance_key: { algorithm: key.algorithm, key_id: key.keyId, public_key: key.publicKey },
      swagger: `${config.links.linkPrefix}/docs`,
      // GraphQL is out of scope (REST + OpenAPI is the API); the key is kept for client compatibility.
      graphql: `${config.links.linkPrefix}/graphql`,
      grafana: served.grafana ? `${config.links.link}/grafana/` : '',
      telegram_bot: served.telegramBot ? config.telegram.botLink : '',
      feature_flags: {
        pu_ff_telegram_bot_enable: served.telegramBot,
        pu_ff_grafana_integration_enable: served.grafana,
        pu_ff_datapipe_enable: served.datapipe,
        pu_ff_datapipe_default_last_value_enable: served.datapipeDefaultLastValue,
        pu_ff_prometheus_enable: served.prometheus,
      },
    }) as string;
    if (keyRead) rendered = body;
    return reply.type('application/json; charset=utf-8').send(body);
  });
};
export default root;
