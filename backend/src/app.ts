import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { AppDeps } from './deps.js';
import corePlugin from './plugins/core.js';
import errorsPlugin from './plugins/errors.js';
import inputGuardPlugin from './plugins/input-guard.js';
import accessLogPlugin from './plugins/access-log.js';
import metricsPlugin from './plugins/metrics.js';
import swaggerPlugin from './plugins/swagger.js';
import rootRoutes from './routes/root.js';
import healthRoutes from './routes/health/index.js';
import authPlugin from './plugins/auth.js';
import aclPlugin from './plugins/acl.js';
import gitStorePlugin from './plugins/git-store.js';
import usersRoutes from './routes/api/v1/users/index.js';
import permissionRoutes from './routes/api/v1/permission/index.js';
import mqttCallbackRoutes from './routes/api/v1/units/mqtt-callbacks.js';
import unitsRoutes from './routes/api/v1/units/index.js';
import unitsFirmwarePlugin from './routes/api/v1/units/firmware-plugin.js';
import unitNodesRoutes from './routes/api/v1/unit_nodes/index.js';
import datapipeRoutes from './routes/api/v1/unit_nodes/datapipe/index.js';
import datapipeEventsPlugin from './services/datapipe-events.js';
// -- repository registry and repos (issue 4) --
import registryServicesPlugin from './plugins/registry.js';
import registryRoutes from './routes/api/v1/repository_registry/index.js';
import reposRoutes from './routes/api/v1/repos/index.js';
import metricsRoutes from './routes/api/v1/metrics/index.js';
// -- alerts and Telegram (issue 12) --
import alertsPlugin from './alerts/plugin.js';
import alertsRoutes from './routes/api/v1/alerts/index.js';
import telegramPlugin from './telegram/plugin.js';
// -- load, node state, errors (issue 13) --
import loadPlugin from './load/plugin.js';
import loadRoutes from './routes/api/v1/load/index.js';
// -- billing and grades (issue 14) --
import gradesPlugin from './grades/plugin.js';
import wellKnownRoutes from './routes/well-known.js';
import gradesRoutes from './routes/api/v1/grades/index.js';
import billingPlugin from './billing/plugin.js';
import billingRoutes from './routes/api/v1/billing/index.js';
// -- background components: reconcilers, consumers, jobs (started by runtime.ts) --
import backgroundPlugin from './plugins/background/registry.js';
import pipeRulesPlugin from './plugins/background/pipe-rules.js';
import alertRulesPlugin, { type AlertRulesPluginOptions } from './plugins/background/alert-rules.js';
import brokerResyncPlugin from './plugins/background/broker-resync.js';
import systemTopicsPlugin, { type SystemTopicsPluginOptions } from './plugins/background/system-topics.js';
import registrySyncJobPlugin from './plugins/background/registry-sync-job.js';
import unitsAutoUpdatePlugin from './plugins/background/units-auto-update.js';

/** Options of the background plugins (runtime.ts passes them; an app only built never starts them). */
export interface AppOptions {
  readonly alertRules?: AlertRulesPluginOptions;
  readonly systemTopics?: SystemTopicsPluginOptions;
}

/**
 * Builds the Fastify application from its dependencies. No I/O happens here beyond what the
 * dependencies already opened, so tests build the real app with `app.inject`.
 *
 * Only wiring: every component is a plugin with a `name` ('pepeunit-<x>') and the
 * `dependencies` whose decorators it uses (checked at registration, so the order below is
 * theirs). External plugins (@fastify/swagger, ...) are registered inside the app plugin that
 * needs them. Background components register last and start when runtime.ts calls
 * `app.background.start()` (plugins/background/registry.ts).
 */
export async function buildApp(deps: AppDeps, options: AppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger,
    // One line per failed or slow request instead of two info lines per request (plugins/access-log.ts).
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 8 * 1024 * 1024,
    // Unknown body and query fields are dropped, as the reference (pydantic) ignores them; known fields stay validated.
    ajv: { customOptions: { coerceTypes: 'array', removeAdditional: true, allErrors: false } },
    return503OnClosing: true,
  }).withTypeProvider<TypeBoxTypeProvider>();
  await app.register(corePlugin, { deps }); // app.deps, app.config, app.pg, app.clickhouse, app.mqtt, app.cipher, app.alertSink, app.loadPorts
  await app.register(errorsPlugin);
  await app.register(inputGuardPlugin);
  await app.register(accessLogPlugin);
  await app.register(swaggerPlugin);
  await app.register(metricsPlugin);
  await app.register(gradesPlugin); // app.grades: instance key, scraper tokens, load checks, load_limit (issue 14)
  await app.register(rootRoutes);
  await app.register(wellKnownRoutes);
  await app.register(healthRoutes);
  await app.register(authPlugin);
  await app.register(aclPlugin);
  await app.register(alertsPlugin, deps.alerts ?? {}); // app.alerts: webhook, outbox, throttled sender (issue 12)
  await app.register(datapipeEventsPlugin); // app.datapipe: DataPipe change notifications (issue 6)
  await app.register(gitStorePlugin);
  await app.register(unitsFirmwarePlugin);
  await app.register(registryServicesPlugin); // app.registry, app.registrySync, app.repos (issue 4)
  await app.register(loadPlugin); // load counting, limits, cut-off, node state, errors (issue 13)
  const api = `${deps.config.appPrefix}${deps.config.apiV1Prefix}`;
  await app.register(usersRoutes, { prefix: `${api}/users` });
  await app.register(permissionRoutes, { prefix: `${api}/permission` });
  await app.register(mqttCallbackRoutes, { prefix: `${api}/units` });
  await app.register(unitsRoutes, { prefix: `${api}/units` });
  await app.register(unitNodesRoutes, { prefix: `${api}/unit_nodes` });
  await app.register(datapipeRoutes, { prefix: `${api}/unit_nodes` }); // DataPipe API (issue 6)
  // -- repository registry and repos (issue 4) --
  await app.register(registryRoutes, { prefix: `${api}/repository_registry` });
  await app.register(reposRoutes, { prefix: `${api}/repos` });
  await app.register(metricsRoutes, { prefix: `${api}/metrics` });
  await app.register(alertsRoutes, { prefix: `${api}/alerts` });
  await app.register(telegramPlugin); // app.telegramBot: grammY bot, webhook route or long polling (issue 12)
  await app.register(loadRoutes, { prefix: `${api}/load` }); // load, node state, errors (issue 13)
  await app.register(gradesRoutes, { prefix: `${api}/grades` }); // issue 14
  await app.register(billingPlugin); // app.billing: plan, ledger, providers, metering, enforcement (issue 14)
  await app.register(billingRoutes, { prefix: `${api}/billing` });
  // -- background components (plugins/background): start in this order, after listen and broker apply --
  await app.register(backgroundPlugin); // app.background: start() (runtime.ts), stop on close
  await app.register(pipeRulesPlugin); // app.pipeRules: `pipe-` rules (issue 6 pre-filter)
  await app.register(alertRulesPlugin, options.alertRules ?? {}); // app.alertRules: `alert-` rules (issue 12)
  await app.register(brokerResyncPlugin); // re-apply and reconcile after an MQTT reconnection (issue 9)
  await app.register(systemTopicsPlugin, options.systemTopics ?? {}); // app.systemTopics: unit state/log (issue 5)
  await app.register(registrySyncJobPlugin); // app.registrySyncJob: periodic registry sync (issue 4)
  await app.register(unitsAutoUpdatePlugin); // app.unitsAutoUpdate: automatic firmware updates
  return app as unknown as FastifyInstance;
}
