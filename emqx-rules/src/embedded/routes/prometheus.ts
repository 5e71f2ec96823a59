// /api/v5/prometheus/data_integration — all rule, action and connector counters in one request
// (EMQX 5.5+, wave2-integrations.md §4.2). Prometheus text by default; JSON when the request's
// Accept header is exactly `application/json` (EMQX's `response_type/1`). `mode` is `node`
// (default), `all_nodes_aggregated` or `all_nodes_unaggregated`.
// Unlike EMQX's default (`prometheus.enable_basic_auth = false`), the embedded broker asks for an
// API key here as everywhere: the platform's client always sends one.
import type { FastifyPluginAsync } from 'fastify';
import { validationError } from '../api-error.js';
import type { ManagementContext } from '../http-api.js';
import { DATA_INTEGRATION_MODES, dataIntegrationJson, dataIntegrationText } from '../rule-engine/data-integration.js';
import type { DataIntegrationMode } from '../rule-engine/data-integration.js';

export function prometheusRoutes(context: ManagementContext): FastifyPluginAsync {
  return async (app) => {
    app.get<{ Querystring: Record<string, unknown> }>('/prometheus/data_integration', async (request, reply) => {
      const raw = request.query.mode ?? 'node';
      const mode = (Array.isArray(raw) ? raw[raw.length - 1] : raw) as string;
      if (!DATA_INTEGRATION_MODES.includes(mode as DataIntegrationMode)) {
        throw validationError('mode', 'unable_to_convert_to_enum_symbol', { value: mode, expected: DATA_INTEGRATION_MODES.join(' | ') });
      }
      const snapshot = context.rules.dataIntegrationSnapshot();
      if (request.headers.accept === 'application/json') return dataIntegrationJson(snapshot, mode as DataIntegrationMode, context.nodeName);
      return reply.type('text/plain; version=0.0.4; charset=utf-8').send(dataIntegrationText(snapshot, mode as DataIntegrationMode, context.nodeName));
    });
  };
}
