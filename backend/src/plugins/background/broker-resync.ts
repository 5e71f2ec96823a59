/**
 * Broker re-sync after a reconnection (issue 9): every (re)connection of our MQTT connection
 * after the first may follow a broker restart that lost its configuration (the embedded broker
 * without its state file, an EMQX node replaced), so the EMQX configuration is applied again and
 * the rules (pipe, alert, counting) are reconciled. Active only where runtime.ts configures the
 * broker (`app.deps.brokerControl`); the listener is attached while the plugins register, so
 * before runtime.ts starts the connection and the first 'connect' is known as the first.
 */
import fp from 'fastify-plugin';

export default fp(
  async (app) => {
    let connectedBefore = false;
    const onConnect = (): void => {
      const reconnected = connectedBefore;
      connectedBefore = true;
      const control = app.deps.brokerControl?.();
      if (!reconnected || !control) return;
      void control.apply().catch((err: unknown) => app.deps.logger.warn({ err }, 'EMQX re-apply after reconnect failed; it is retried periodically'));
      if (app.background.started) {
        void app.pipeRules.reconcileAll();
        void app.alertRules.reconcileAll();
      }
      void app.load.counting.reconcileAll();
    };
    app.mqtt.on('connect', onConnect);
    app.addHook('onClose', async () => {
      app.mqtt.off('connect', onConnect);
    });
  },
  { name: 'pepeunit-broker-resync', dependencies: ['pepeunit-core', 'pepeunit-background', 'pepeunit-pipe-rules', 'pepeunit-alert-rules', 'pepeunit-load'] },
);
