/**
 * The ingest's small HTTP endpoint (127.0.0.1:PU_DP_METRICS_PORT): Prometheus `/metrics`,
 * `/health/live`, `/health/ready` (Postgres, ClickHouse, broker), and diagnostics:
 * `/debug/stats` (the counters as JSON) and `/debug/nodes/<uuid>` (messages received for one
 * node, its config status).
 */
import http from 'node:http';
import { isUuid } from '@pepeunit/common';
import type { Registry } from 'prom-client';

export interface EndpointSources {
  registry: Registry;
  readiness: () => Promise<Record<string, boolean>>;
  stats: () => unknown;
  node: (uuid: string) => unknown;
}

export interface Endpoint {
  readonly url: string;
  close(): Promise<void>;
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(body));
}

export async function startEndpoint(port: number, sources: EndpointSources): Promise<Endpoint> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] as string;
    void (async () => {
      if (req.method !== 'GET') return json(res, 405, { detail: 'only GET' });
      if (path === '/metrics') {
        res.setHeader('content-type', sources.registry.contentType);
        res.end(await sources.registry.metrics());
        return;
      }
      if (path === '/health/live') return json(res, 200, { status: 'ok' });
      if (path === '/health/ready') {
        const checks = await sources.readiness();
        const ready = Object.values(checks).every(Boolean);
        return json(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not_ready', checks });
      }
      if (path === '/debug/stats') return json(res, 200, sources.stats());
      const match = /^\/debug\/nodes\/([^/]+)$/.exec(path);
      if (match) {
        const uuid = decodeURIComponent(match[1] as string);
        if (!isUuid(uuid)) return json(res, 422, { detail: 'expected a node uuid' });
        return json(res, 200, sources.node(uuid.toLowerCase()));
      }
      return json(res, 404, { detail: 'not found' });
    })().catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { detail: err instanceof Error ? err.message : String(err) });
      else res.end();
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new Error(`PU_DP_METRICS_PORT ${port} is already in use; choose another port (0 picks a free one)`) : err),
    );
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const actualPort = address && typeof address === 'object' ? address.port : port;
  return {
    url: `http://127.0.0.1:${actualPort}`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
