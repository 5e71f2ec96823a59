// Shared test fixtures: an embedded broker, a stand-in for the backend's EMQX callbacks, and
// mqtt.js clients (MQTT 3.1.1, no reconnects).
import { randomBytes } from 'node:crypto';
import Fastify from 'fastify';
import mqtt from 'mqtt';
import { elapse } from '@pepeunit/tests/wait';
import type { IClientOptions, MqttClient } from 'mqtt';
import { EmqxManagementClient } from '../src/management-client.js';
import { startEmbeddedBroker } from '../src/embedded/broker.js';
import type { EmbeddedBroker, EmbeddedBrokerOptions } from '../src/embedded/broker.js';

export interface TestBroker {
  broker: EmbeddedBroker;
  client: EmqxManagementClient;
  apiKey: string;
  apiSecret: string;
  close(): Promise<void>;
}

export async function startTestBroker(options: Partial<EmbeddedBrokerOptions> = {}): Promise<TestBroker> {
  const apiKey = `test-${randomBytes(4).toString('hex')}`;
  const apiSecret = randomBytes(16).toString('hex');
  const broker = await startEmbeddedBroker({ apiKeys: [{ key: apiKey, secret: apiSecret }], ...options });
  const client = new EmqxManagementClient({ baseUrl: broker.apiUrl, apiKey, apiSecret, maxRetries: 0 });
  return {
    broker,
    client,
    apiKey,
    apiSecret,
    async close() {
      await client.close();
      await broker.close();
    },
  };
}

export interface AuthnEntry {
  password: string;
  isSuperuser?: boolean;
  clientAttrs?: Record<string, string>;
}

export interface RecordedRequest {
  headers: Record<string, unknown>;
  body: Record<string, string>;
}

/**
 * Stands in for the backend's `/units/authn` and `/units/auth` endpoints: decisions come from
 * tables the test fills, and every request is recorded.
 */
export interface BackendStub {
  /** Callback base, e.g. http://127.0.0.1:PORT/pepeunit/api/v1 */
  baseUrl: string;
  users: Map<string, AuthnEntry>;
  /** key `${token}|${action}|${topic}` → decision; anything else is denied. */
  permissions: Map<string, 'allow' | 'deny'>;
  authnRequests: RecordedRequest[];
  authzRequests: RecordedRequest[];
  /** topic → milliseconds the authz callback waits before answering (a slow backend). */
  authzDelays: Map<string, number>;
  /** username → milliseconds the authn callback waits before answering. */
  authnDelays: Map<string, number>;
  close(): Promise<void>;
}

export async function startBackendStub(): Promise<BackendStub> {
  const app = Fastify();
  const stub = {
    users: new Map<string, AuthnEntry>(),
    permissions: new Map<string, 'allow' | 'deny'>(),
    authnRequests: [] as RecordedRequest[],
    authzRequests: [] as RecordedRequest[],
    authzDelays: new Map<string, number>(),
    authnDelays: new Map<string, number>(),
  };
  app.post('/pepeunit/api/v1/units/authn', async (request) => {
    const body = request.body as Record<string, string>;
    stub.authnRequests.push({ headers: request.headers, body });
    const delay = stub.authnDelays.get(body.username ?? '');
    if (delay) await elapse(delay, 'a slow authn callback (authnDelays)');
    const user = stub.users.get(body.username ?? '');
    if (!user || user.password !== body.password) return { result: 'deny' };
    return { result: 'allow', is_superuser: user.isSuperuser ?? false, client_attrs: user.clientAttrs ?? {} };
  });
  app.post('/pepeunit/api/v1/units/auth', async (request) => {
    const body = request.body as Record<string, string>;
    stub.authzRequests.push({ headers: request.headers, body });
    const delay = stub.authzDelays.get(body.topic ?? '');
    if (delay) await elapse(delay, 'a slow authz callback (authzDelays)');
    return { result: stub.permissions.get(`${body.token}|${body.action}|${body.topic}`) ?? 'deny' };
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { ...stub, baseUrl: `http://127.0.0.1:${port}/pepeunit/api/v1`, close: () => app.close() };
}

export async function connectClient(url: string, options: IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...options });
}

/** Resolves with the CONNACK refusal error, or rejects when the connection was accepted. */
export async function expectRefused(url: string, options: IClientOptions): Promise<Error & { code?: number }> {
  try {
    const client = await connectClient(url, options);
    await client.endAsync();
  } catch (error) {
    return error as Error & { code?: number };
  }
  throw new Error('connection was accepted but should have been refused');
}

/** Collects messages a client receives. */
export function collect(client: MqttClient): Array<{ topic: string; payload: string }> {
  const received: Array<{ topic: string; payload: string }> = [];
  client.on('message', (topic, payload) => received.push({ topic, payload: payload.toString() }));
  return received;
}

