/**
 * The one app-building fixture of the tests: the backend the server runs (`startBackend` of
 * runtime.ts: connect, migrate, build, optionally listen), on fresh test databases and an
 * embedded broker on free ports, with the test environment of the harness. Test kits
 * (backend/test/jobs/registry-test-kit.ts, backend/test/firmware/unit-fixture.ts) build on it.
 *
 *   const t = await startTestBackend({ label: 'users', env: { PU_MAX_PAGINATION_SIZE: '50' } });
 *   const res = await t.inject('GET', '/users', { token });
 *   await t.close();
 */
import type { Response } from 'light-my-request';
import type { BackendConfig, Logger } from '@pepeunit/common';
import { startEmbeddedBroker, type EmbeddedBroker } from '@pepeunit/emqx-rules';
import { startBackend, type RunningBackend } from '@pepeunit/backend';
import { createTestDatabases, testBackendConfig, testLogger, type TestDatabases } from './harness.ts';

/** The REST prefix of the reference API. */
export const API = '/pepeunit/api/v1';

export interface TestUser {
  readonly uuid: string;
  readonly token: string;
  readonly login: string;
}

export type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';

export interface InjectOptions {
  /** Sent as `x-auth-token`. */
  readonly token?: string;
  /** A JSON body (objects) or a raw payload (strings, Buffers). */
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
}

export interface TestBackendOptions {
  /** Names the test databases (`pu_t_<label>_<random>`). */
  readonly label: string;
  /** PU_* overrides of the harness' test environment. */
  readonly env?: NodeJS.ProcessEnv;
  readonly logger?: Logger;
  /** Listen on the configured host/port (default false: requests by `inject`). */
  readonly listen?: boolean;
  /** Other options of `startBackend`. */
  readonly start?: Omit<NonNullable<Parameters<typeof startBackend>[2]>, 'listen'>;
  /** Share these databases (not dropped by `close`) instead of creating fresh ones. */
  readonly db?: TestDatabases;
  /** Share this broker (not closed by `close`) instead of starting one. */
  readonly broker?: EmbeddedBroker;
  /**
   * Let the backend manage the broker through its management API (PU_EMQX_API_URL/KEY/SECRET,
   * with the fixture's key): the EMQX controller applies authn/authz callbacks, so the backend
   * listens (default true here) for the broker to call it.
   */
  readonly emqx?: boolean;
}

export interface TestBackend {
  readonly backend: RunningBackend;
  readonly config: BackendConfig;
  readonly db: TestDatabases;
  readonly broker: EmbeddedBroker;
  /** A request to `API + url` through Fastify's inject. */
  inject(method: Method, url: string, options?: InjectOptions): Promise<Response>;
  /** Creates a user (the first one is the instance admin) and signs it in. */
  user(login: string, password?: string): Promise<TestUser>;
  /** Another backend on the same databases and broker with more overrides (closed by the caller). */
  another(env?: NodeJS.ProcessEnv, options?: Pick<TestBackendOptions, 'listen' | 'logger' | 'start' | 'broker'>): Promise<TestBackend>;
  /** Stops the backend, then what this fixture started (broker, databases). */
  close(): Promise<void>;
}

/** Management API credentials of the fixture's embedded broker. */
export const TEST_BROKER_API_KEY = { key: 'backend', secret: 'backend-secret' } as const;

export async function startTestBackend(options: TestBackendOptions): Promise<TestBackend> {
  const db = options.db ?? (await createTestDatabases(options.label));
  let broker: EmbeddedBroker | undefined = options.broker;
  try {
    broker ??= await startEmbeddedBroker({ mqttPort: 0, apiPort: 0, apiKeys: [{ ...TEST_BROKER_API_KEY }] });
    const emqx = options.emqx ? { PU_EMQX_API_URL: broker.apiUrl, PU_EMQX_API_KEY: TEST_BROKER_API_KEY.key, PU_EMQX_API_SECRET: TEST_BROKER_API_KEY.secret } : {};
    const config = testBackendConfig(db, { PU_MQTT_PORT: String(broker.mqttPort), ...emqx, ...options.env });
    const backend = await startBackend(config, options.logger ?? testLogger, { ...options.start, listen: options.listen ?? options.emqx ?? false });
    return fixture(options, backend, config, db, broker);
  } catch (err) {
    if (!options.broker) await broker?.close().catch(() => {});
    if (!options.db) await db.drop().catch(() => {});
    throw err;
  }
}

function fixture(options: TestBackendOptions, backend: RunningBackend, config: BackendConfig, db: TestDatabases, broker: EmbeddedBroker): TestBackend {
  const inject: TestBackend['inject'] = (method, url, opts = {}) => {
    const headers: Record<string, string> = { ...(opts.token ? { 'x-auth-token': opts.token } : {}), ...opts.headers };
    const body = opts.body;
    return backend.app.inject({
      method,
      url: API + url,
      headers,
      ...(body === undefined ? {} : { payload: typeof body === 'string' || Buffer.isBuffer(body) ? body : (body as object) }),
    });
  };
  return {
    backend,
    config,
    db,
    broker,
    inject,
    async user(login, password = 'Passw0rd!x') {
      const created = await inject('POST', '/users', { body: { login, password } });
      if (created.statusCode !== 201) throw new Error(`user ${login}: ${created.statusCode} ${created.body}`);
      const auth = await inject('POST', '/users/auth', { body: { credentials: login, password } });
      if (auth.statusCode !== 200) throw new Error(`sign-in of ${login}: ${auth.statusCode} ${auth.body}`);
      return { uuid: created.json().uuid as string, token: auth.json().token as string, login };
    },
    another(env = {}, more = {}) {
      return startTestBackend({
        label: options.label,
        env: { ...options.env, ...env },
        logger: more.logger ?? options.logger,
        listen: more.listen ?? options.listen,
        start: more.start ?? options.start,
        emqx: options.emqx,
        db,
        broker: more.broker ?? broker,
      });
    },
    async close() {
      await backend.close().catch(() => {});
      if (!options.broker) await broker.close().catch(() => {});
      if (!options.db) await db.drop().catch(() => {});
    },
  };
}
