/**
 * Keeps the broker in the reference configuration (authn/authz pointing at this backend, settings,
 * listener limits, retainer off): applied at start, re-applied periodically to heal drift, safe from
 * several replicas (the reconciler is idempotent and writes only differences).
 */
import { EmqxManagementClient, buildEmqxBaseConfig, reconcileEmqxBase } from '@pepeunit/emqx-rules';
import { BROKER_CALLBACK_SECRET_HEADER, type BackendConfig, type Logger } from '@pepeunit/common';

export interface EmqxControl {
  readonly client: EmqxManagementClient | null;
  /** Applies the configuration now; returns the changes made. */
  apply(): Promise<string[]>;
  clearAuthzCache(): Promise<void>;
  close(): Promise<void>;
}

export function createEmqxControl(config: BackendConfig, logger: Logger, callbackBaseUrl: string, opts: { reapplyMs?: number } = {}): EmqxControl {
  if (!config.emqx.apiKey || !config.emqx.apiSecret) {
    logger.warn('PU_EMQX_API_KEY / PU_EMQX_API_SECRET not set: the EMQX controller is disabled; configure EMQX authn/authz by hand (docs/OPERATIONS.md)');
    return { client: null, apply: async () => [], clearAuthzCache: async () => {}, close: async () => {} };
  }
  const client = new EmqxManagementClient({ baseUrl: config.emqx.apiUrl, apiKey: config.emqx.apiKey, apiSecret: config.emqx.apiSecret, logger });
  const desired = buildEmqxBaseConfig({
    callbackBaseUrl,
    // The callbacks refuse requests without it (issue 10): only the broker may ask for decisions.
    ...(config.brokerCallbacks.secret ? { callbackHeaders: { [BROKER_CALLBACK_SECRET_HEADER]: config.brokerCallbacks.secret } } : {}),
    maxClients: config.mqtt.maxClients,
    maxClientConnectionRate: config.mqtt.maxClientConnectionRate,
    clientMaxMessagesRate: config.mqtt.clientMaxMessagesRate,
    clientMaxBytesRate: config.mqtt.clientMaxBytesRate,
    maxPayloadSizeKb: config.mqtt.maxPayloadSizeKb,
    maxQos: config.mqtt.maxQos,
    maxTopicLevels: config.mqtt.maxTopicLevels,
    maxLenMessageQueue: config.mqtt.maxLenMessageQueue,
    maxTopicAlias: config.mqtt.maxTopicAlias,
    maxClientIdLen: config.mqtt.maxClientIdLen,
    authzCacheTtl: '1m',
    // The one HTTP connector + action the alert rules send to (issue 12, docs/ALERTS.md).
    alertWebhook: { url: `${callbackBaseUrl}/emqx`, secret: config.alerts.webhookSecret, poolSize: config.alerts.webhookConnections },
  });
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<string[]> | undefined;
  const apply = () => {
    running ??= reconcileEmqxBase(client, desired, logger)
      .then((result) => {
        if (result.changed.length) logger.info({ changed: result.changed }, 'EMQX configuration applied');
        else logger.debug('EMQX configuration unchanged');
        return result.changed;
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const reapplyMs = opts.reapplyMs ?? 300_000;
  if (reapplyMs > 0) {
    timer = setInterval(() => void apply().catch((err: unknown) => logger.warn({ err }, 'EMQX re-apply failed; retrying later')), reapplyMs);
    timer.unref();
  }
  return {
    client,
    apply,
    clearAuthzCache: () => client.clearAuthorizationCache(),
    async close() {
      if (timer) clearInterval(timer);
      await running?.catch(() => {});
      await client.close();
    },
  };
}
