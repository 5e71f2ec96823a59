// `GET /status` and `/api/v5/status`: liveness without authentication (EMQX's
// `emqx_mgmt_api_status`); plain text by default, JSON with `?format=json`.
import type { FastifyPluginAsync } from 'fastify';
import type { ManagementContext } from '../http-api.js';

export const EMBEDDED_RELEASE = '5.8.9-pepeunit-embedded';

export function statusRoutes(context: ManagementContext): FastifyPluginAsync {
  return async (app) => {
    app.get('/status', async (request, reply) => {
      const format = (request.query as Record<string, unknown>).format;
      if (format === 'json') {
        return reply.send({
          node_name: context.nodeName,
          rel_vsn: EMBEDDED_RELEASE,
          broker_status: 'started',
          app_name: 'emqx',
          app_status: 'running',
        });
      }
      return reply.type('text/plain').send(`Node ${context.nodeName} is started\nemqx is running`);
    });
  };
}
