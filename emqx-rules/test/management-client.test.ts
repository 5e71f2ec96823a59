// Transport behaviour of EmqxManagementClient against a local HTTP server that answers like EMQX:
// auth header, JSON bodies, error parsing, retries, pagination.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import Fastify from 'fastify';
import type { FastifyInstance } from 'fastify';
import { EmqxApiError, EmqxManagementClient, EmqxUnavailableError } from '../src/management-client.js';

describe('EmqxManagementClient transport', () => {
  let server: FastifyInstance;
  let baseUrl: string;
  const seen: Array<{ method: string; url: string; authorization?: string; contentType?: string; body?: unknown }> = [];
  let flakyCalls = 0;

  before(async () => {
    server = Fastify();
    server.addHook('onRequest', async (request) => {
      seen.push({ method: request.method, url: request.url, authorization: request.headers.authorization, contentType: request.headers['content-type'] });
    });
    server.post('/api/v5/authentication', async (request) => {
      (seen[seen.length - 1] as { body?: unknown }).body = request.body;
      return { ...(request.body as object), id: 'password_based:http' };
    });
    server.get('/api/v5/flaky', async (_request, reply) => {
      flakyCalls += 1;
      if (flakyCalls < 3) return reply.code(503).send({ code: 'SERVICE_UNAVAILABLE', message: 'busy' });
      return { ok: true };
    });
    server.get('/api/v5/broken', async (_request, reply) => reply.code(500).send({ code: 'INTERNAL_ERROR', message: 'boom' }));
    server.post('/api/v5/banned', async (_request, reply) =>
      reply.code(400).send({ code: 'ALREADY_EXISTS', message: JSON.stringify({ as: 'clientid', who: 'x', until: 'infinity' }) }),
    );
    server.get('/api/v5/proxy', async (_request, reply) => reply.code(502).type('text/html').send('<html>bad gateway</html>'));
    server.get('/api/v5/clients', async (request) => {
      const query = request.query as { page?: string; limit?: string };
      const page = Number(query.page ?? 1);
      const limit = Number(query.limit ?? 100);
      const all = Array.from({ length: 7 }, (_, index) => ({ clientid: `c${index}`, username: null }));
      return { data: all.slice((page - 1) * limit, page * limit), meta: { page, limit, count: all.length, hasnext: page * limit < all.length } };
    });
    server.get('/api/v5/status', async () => ({ node_name: 'emqx@10.0.0.1', rel_vsn: '5.8.9', broker_status: 'started', app_name: 'emqx', app_status: 'running' }));
    await server.listen({ host: '127.0.0.1', port: 0 });
    baseUrl = `http://127.0.0.1:${(server.server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await server.close();
  });

  const makeClient = (extra: Partial<ConstructorParameters<typeof EmqxManagementClient>[0]> = {}) =>
    new EmqxManagementClient({ baseUrl: `${baseUrl}/api/v5/`, apiKey: 'key', apiSecret: 'se:cret', retryBaseDelayMs: 5, ...extra });

  it('sends API-key basic auth and JSON bodies with a content type', async () => {
    const client = makeClient();
    try {
      const created = await client.createAuthenticator({ mechanism: 'password_based', backend: 'http' });
      assert.equal(created.id, 'password_based:http');
      const call = seen.find((entry) => entry.url === '/api/v5/authentication');
      assert.equal(call?.authorization, `Basic ${Buffer.from('key:se:cret').toString('base64')}`);
      assert.match(String(call?.contentType), /^application\/json/);
      assert.deepEqual(call?.body, { mechanism: 'password_based', backend: 'http' });
    } finally {
      await client.close();
    }
  });

  it('retries 503 answers with backoff, but not other errors', async () => {
    const client = makeClient({ maxRetries: 3 });
    try {
      assert.deepEqual((await client.request('GET', '/flaky')).body, { ok: true });
      assert.equal(flakyCalls, 3);
      const before = seen.filter((entry) => entry.url === '/api/v5/broken').length;
      await assert.rejects(client.request('GET', '/broken'), (error: unknown) => {
        assert.ok(error instanceof EmqxApiError);
        assert.equal(error.status, 500);
        assert.equal(error.code, 'INTERNAL_ERROR');
        assert.equal(error.emqxMessage, 'boom');
        return true;
      });
      assert.equal(seen.filter((entry) => entry.url === '/api/v5/broken').length, before + 1);
    } finally {
      await client.close();
    }
  });

  it('parses JSON inside the message and tolerates non-JSON error bodies', async () => {
    const client = makeClient();
    try {
      await assert.rejects(client.createBan({ as: 'clientid', who: 'x' }), (error: unknown) => {
        assert.ok(error instanceof EmqxApiError);
        assert.equal(error.code, 'ALREADY_EXISTS');
        assert.deepEqual(error.details, { as: 'clientid', who: 'x', until: 'infinity' });
        return true;
      });
      await assert.rejects(client.request('GET', '/proxy'), (error: unknown) => error instanceof EmqxApiError && error.code === 'HTTP_502' && /bad gateway/.test(error.emqxMessage));
    } finally {
      await client.close();
    }
  });

  it('iterates every page of a list', async () => {
    const client = makeClient();
    try {
      const ids: string[] = [];
      for await (const entry of client.iterateClients({ limit: 3 })) ids.push(entry.clientid);
      assert.deepEqual(ids, ['c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6']);
      const pages = seen.filter((entry) => entry.url.startsWith('/api/v5/clients?')).map((entry) => entry.url);
      assert.deepEqual(pages.slice(-3), ['/api/v5/clients?page=1&limit=3', '/api/v5/clients?page=2&limit=3', '/api/v5/clients?page=3&limit=3']);
    } finally {
      await client.close();
    }
  });

  it('reads the JSON status', async () => {
    const client = makeClient();
    try {
      assert.deepEqual(await client.status(), { running: true, nodeName: 'emqx@10.0.0.1', version: '5.8.9', brokerStatus: 'started', appStatus: 'running' });
    } finally {
      await client.close();
    }
  });

  it('retries connection errors, then reports EMQX unreachable', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', () => resolve()));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const warnings: unknown[] = [];
    const noop = () => {};
    const client = new EmqxManagementClient({
      baseUrl: `http://127.0.0.1:${port}`,
      apiKey: 'k',
      apiSecret: 's',
      maxRetries: 2,
      retryBaseDelayMs: 5,
      logger: { debug: noop, info: noop, error: noop, warn: (obj) => warnings.push(obj) },
    });
    try {
      await assert.rejects(client.listAuthenticators(), (error: unknown) => {
        assert.ok(error instanceof EmqxUnavailableError);
        assert.match(error.message, /ECONNREFUSED/);
        return true;
      });
      assert.equal(warnings.length, 2, 'two retries were logged');
      assert.ok(!JSON.stringify(warnings).includes('Basic'), 'credentials are not logged');
    } finally {
      await client.close();
    }
  });

  it('rejects bad construction arguments clearly', () => {
    assert.throws(() => new EmqxManagementClient({ baseUrl: 'nope', apiKey: 'k', apiSecret: 's' }), /baseUrl is not a valid URL/);
    assert.throws(() => new EmqxManagementClient({ baseUrl: 'http://x', apiKey: '', apiSecret: 's' }), /apiKey and apiSecret/);
  });
});
