/**
 * The `alert-` rule reconciler (issue 12) as a background plugin, `app.alertRules`: rules
 * follow unit alert levels (REST, bot) and unit deletions (`app.alerts.onUnitChanged`); a full
 * diff heals drift (alerts/rules.ts). The broker's management API is read lazily
 * (`app.deps.emqxClient`, set by runtime.ts once the server listens).
 */
import fp from 'fastify-plugin';
import { createAlertRules, type AlertRules } from '../../alerts/rules.js';
import { addStartedComponent } from './registry.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The `alert-` rule reconciler (started by `app.background.start()`). */
    readonly alertRules: AlertRules;
  }
}

export interface AlertRulesPluginOptions {
  /** First full reconcile after start (default 1000 ms; negative = none, as without a listening server). */
  readonly initialDelayMs?: number;
}

export default fp<AlertRulesPluginOptions>(
  async (app, opts) => {
    let unsubscribe: (() => unknown) | undefined;
    addStartedComponent<AlertRules>(app, 'alertRules', {
      name: 'alert rules',
      start() {
        const rules = createAlertRules({
          pg: app.pg,
          client: () => app.deps.emqxClient?.() ?? null,
          domain: app.config.domain,
          logger: app.deps.logger,
          initialDelayMs: opts.initialDelayMs ?? 1000,
        });
        unsubscribe = app.alerts.onUnitChanged((unitUuid) => rules.reconcileUnit(unitUuid));
        return rules;
      },
      stop(rules) {
        unsubscribe?.();
        return rules.close();
      },
    });
  },
  { name: 'pepeunit-alert-rules', dependencies: ['pepeunit-core', 'pepeunit-background', 'pepeunit-alerts'] },
);
