// `GET /api/v5/nodes`, `/api/v5/nodes/{node}` and `/api/v5/metrics` (EMQX `emqx_mgmt_api_nodes`,
// `emqx_mgmt_api_metrics`): the one node of the embedded broker, in EMQX's shape, so the
// backend's node-state sampler reads the embedded broker and an EMQX cluster the same way
// (issue 13). `process_cpu_percent` is our addition (EMQX reports only the system load).
import { loadavg, totalmem } from 'node:os';
import type { FastifyPluginAsync } from 'fastify';
import { notFound } from '../api-error.js';
import type { ManagementContext } from '../http-api.js';
import { EMBEDDED_RELEASE } from './status.js';

export function nodesRoutes(context: ManagementContext): FastifyPluginAsync {
  let lastCpu = process.cpuUsage();
  let lastAt = performance.now();
  const nodeInfo = (): Record<string, unknown> => {
    const cpu = process.cpuUsage(lastCpu);
    const at = performance.now();
    const wallUs = (at - lastAt) * 1000;
    lastCpu = process.cpuUsage();
    lastAt = at;
    const [load1, load5, load15] = loadavg();
    const live = context.sessions.list().length;
    return {
      node: context.nodeName,
      node_status: 'running',
      otp_release: `node-${process.version}`,
      version: EMBEDDED_RELEASE,
      role: 'core',
      edition: 'Opensource',
      uptime: Math.round(process.uptime() * 1000),
      memory_total: totalmem(),
      memory_used: process.memoryUsage().rss,
      load1,
      load5,
      load15,
      connections: live,
      live_connections: live,
      process_cpu_percent: wallUs > 0 ? (100 * (cpu.user + cpu.system)) / wallUs : 0,
    };
  };
  const metrics = (): Record<string, number> => ({ 'messages.received': context.messagesReceived?.() ?? 0 });
  return async (app) => {
    app.get('/nodes', async () => [nodeInfo()]);
    app.get<{ Params: { node: string } }>('/nodes/:node', async (request) => {
      if (request.params.node !== context.nodeName) throw notFound('NOT_FOUND', 'node_not_found');
      return nodeInfo();
    });
    app.get<{ Querystring: Record<string, unknown> }>('/metrics', async (request) => {
      const aggregate = request.query.aggregate === 'true' || request.query.aggregate === true;
      return aggregate ? metrics() : [{ node: context.nodeName, ...metrics() }];
    });
  };
}
