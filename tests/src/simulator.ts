/**
 * A device simulator that behaves like a Pepeunit unit (device docs: deploy-and-docs §7,
 * backend reference §2.4 "Expected device behaviour"), for end-to-end tests, benchmarks and
 * trying an instance by hand (see simulator-cli.ts).
 *
 * Given its env.json and schema.json it
 * - connects to the broker with `PU_AUTH_TOKEN` as the MQTT username (empty password);
 * - subscribes every input base topic and input topic of schema.json;
 * - publishes `state/pepeunit` every `PU_STATE_SEND_INTERVAL` seconds (reserved keys, with
 *   `pu_commit_version` = the running version) and `log/pepeunit` entries on demand, keeping a
 *   local log ring (`PU_MAX_LOG_LENGTH`, default 64) like the client libraries' log.json;
 * - obeys the standard commands: `Update` adopts `PU_COMMIT_VERSION` from the message (after
 *   downloading the firmware archive when asked to) and reports it in a state right away, like a
 *   restarted device; `EnvUpdate` / `SchemaUpdate` download `/units/env/{uuid}` /
 *   `/units/get_current_schema/{uuid}` with `x-auth-token` (when a backend URL is known) and
 *   re-subscribe; `LogSync` resends the whole local log.
 *
 * Events: 'command' {command, message, topic}, 'updated' {from, to, firmwareBytes},
 * 'env' (env), 'schema' (schema), 'state' (payload object), 'input' {topic, payload: Buffer},
 * 'error' (Error; emitted only when someone listens, otherwise logged).
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';

export type LogLevel = 'Debug' | 'Info' | 'Warning' | 'Error' | 'Critical';

/** env.json as the backend generates it (reference §7.4); only PU_DOMAIN and PU_AUTH_TOKEN are required here. */
export interface UnitEnv {
  PU_DOMAIN: string;
  PU_AUTH_TOKEN: string;
  PU_HTTP_TYPE?: string;
  PU_APP_PREFIX?: string;
  PU_API_ACTUAL_PREFIX?: string;
  PU_MQTT_HOST?: string;
  PU_MQTT_PORT?: number | string;
  PU_MQTT_KEEPALIVE?: number | string;
  PU_STATE_SEND_INTERVAL?: number | string;
  PU_MAX_LOG_LENGTH?: number | string;
  PU_COMMIT_VERSION?: string;
  [key: string]: unknown;
}

/** schema.json: each topic name maps to its physical topics (reference §2.1). */
export interface UnitSchema {
  input_base_topic?: Record<string, string[]>;
  output_base_topic?: Record<string, string[]>;
  input_topic?: Record<string, string[]>;
  output_topic?: Record<string, string[]>;
}

export interface LocalLogEntry {
  level: LogLevel;
  text: string;
  create_datetime: string;
}

export interface SimulatorOptions {
  env: UnitEnv;
  schema: UnitSchema;
  /** Default `mqtt://PU_MQTT_HOST:PU_MQTT_PORT`. */
  mqttUrl?: string;
  /**
   * Origin of the backend (e.g. `http://127.0.0.1:5000`; a real device uses `PU_HTTP_TYPE://PU_DOMAIN`).
   * Prefixes come from the env. Without it, EnvUpdate/SchemaUpdate are acknowledged but nothing is downloaded.
   */
  backendUrl?: string;
  /**
   * Reach REST exactly as the reference clients do, from env.json alone:
   * `PU_HTTP_TYPE://PU_DOMAIN` + `PU_APP_PREFIX` + `PU_API_ACTUAL_PREFIX` (and MQTT at
   * `PU_MQTT_HOST:PU_MQTT_PORT`). Enables EnvUpdate/SchemaUpdate downloads without `backendUrl`.
   */
  restFromEnv?: boolean;
  /** Running firmware version; default `env.PU_COMMIT_VERSION`. */
  commitVersion?: string | null;
  /** State period in ms; default `PU_STATE_SEND_INTERVAL` (s) × 1000; 0 disables the timer. */
  stateIntervalMs?: number;
  /** Download the firmware archive on `Update` (needs the backend). Default false. */
  fetchFirmware?: false | 'tgz' | 'tar' | 'zip';
  /** Send a state right after adopting a new version (a real device restarts). Default true. */
  stateAfterUpdate?: boolean;
  /** Extra reserved state fields (millis, mem_free, ... are filled in otherwise). */
  stateFields?: () => Record<string, unknown>;
  clientId?: string;
  connectTimeoutMs?: number;
  /** Reconnect after a lost connection (ms); default 0 = never (deterministic tests). */
  reconnectPeriodMs?: number;
  logger?: { info(obj: unknown, msg?: string): void; warn(obj: unknown, msg?: string): void };
}

const COMMAND_TOPICS: Record<string, string> = { Update: 'update/pepeunit', EnvUpdate: 'env_update/pepeunit', SchemaUpdate: 'schema_update/pepeunit', LogSync: 'log_sync/pepeunit' };

/** The `uuid` claim of a Unit token (not verified: the device trusts its own env.json). */
export function unitUuidFromToken(token: string): string {
  const payload = token.split('.')[1];
  if (!payload) throw new Error('PU_AUTH_TOKEN is not a JWT (expected header.payload.signature)');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { uuid?: unknown; type?: unknown };
  if (typeof claims.uuid !== 'string') throw new Error('PU_AUTH_TOKEN has no uuid claim; is it a Unit token?');
  return claims.uuid;
}

function topicsOf(map: Record<string, string[]> | undefined): string[] {
  return Object.values(map ?? {}).flat().filter((t): t is string => typeof t === 'string');
}

export class UnitSimulator extends EventEmitter {
  readonly unitUuid: string;
  env: UnitEnv;
  schema: UnitSchema;
  commitVersion: string | null;
  readonly localLog: LocalLogEntry[] = [];
  /** Counters for tests and the CLI. */
  readonly counters = { statesSent: 0, logMessagesSent: 0, commands: 0, updates: 0, firmwareDownloads: 0 };
  readonly client: MqttClient;
  readonly #opts: SimulatorOptions;
  readonly #startedAt = Date.now();
  #subscribed = new Set<string>();
  #stateTimer: NodeJS.Timeout | null = null;
  #closed = false;

  private constructor(opts: SimulatorOptions, client: MqttClient) {
    super();
    this.#opts = opts;
    this.env = { ...opts.env };
    this.schema = opts.schema;
    this.unitUuid = unitUuidFromToken(opts.env.PU_AUTH_TOKEN);
    this.commitVersion = opts.commitVersion !== undefined ? opts.commitVersion : (opts.env.PU_COMMIT_VERSION ?? null);
    this.client = client;
  }

  /** Connects, subscribes its input topics and starts the state timer. Rejects when the broker refuses the token. */
  static async start(opts: SimulatorOptions): Promise<UnitSimulator> {
    const env = opts.env;
    if (!env || typeof env.PU_DOMAIN !== 'string' || typeof env.PU_AUTH_TOKEN !== 'string') throw new Error('env must contain PU_DOMAIN and PU_AUTH_TOKEN (the env.json of the unit)');
    const url = opts.mqttUrl ?? `mqtt://${env.PU_MQTT_HOST ?? '127.0.0.1'}:${env.PU_MQTT_PORT ?? 1883}`;
    const uuid = unitUuidFromToken(env.PU_AUTH_TOKEN);
    const client = mqtt.connect(url, {
      protocolVersion: 4,
      // A unit may connect only with ids derived from its uuid (common/src/client-ids.ts).
      clientId: opts.clientId ?? `${uuid}-sim-${randomBytes(4).toString('hex')}`,
      username: env.PU_AUTH_TOKEN,
      password: '',
      keepalive: Number(env.PU_MQTT_KEEPALIVE ?? 60),
      reconnectPeriod: opts.reconnectPeriodMs ?? 0,
      // Devices retry whatever ended the connection, a refusal included (the reference clients do).
      reconnectOnConnackError: (opts.reconnectPeriodMs ?? 0) > 0,
      connectTimeout: opts.connectTimeoutMs ?? 10_000,
      clean: true,
    });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        client.end(true);
        reject(new Error(`unit ${uuid} could not connect to ${url}: ${err.message}`));
      };
      client.once('error', onError);
      client.once('connect', () => {
        client.off('error', onError);
        resolve();
      });
    });
    const sim = new UnitSimulator(opts, client);
    client.on('error', (err) => sim.#fail(err));
    client.on('message', (topic, payload) => sim.#onMessage(topic, payload));
    await sim.#subscribeSchema();
    const intervalMs = opts.stateIntervalMs ?? Number(env.PU_STATE_SEND_INTERVAL ?? 60) * 1000;
    if (intervalMs > 0) {
      sim.#stateTimer = setInterval(() => void sim.publishState().catch((err: unknown) => sim.#fail(err)), intervalMs);
    }
    return sim;
  }

  /** Physical topic of an output base topic name (`state/pepeunit`, `log/pepeunit`), or undefined. */
  outputBaseTopic(name: 'state/pepeunit' | 'log/pepeunit'): string | undefined {
    return this.schema.output_base_topic?.[name]?.[0];
  }

  /** The reserved state fields (deploy-and-docs §7.3). */
  currentState(): Record<string, unknown> {
    const mem = process.memoryUsage();
    return {
      ifconfig: ['127.0.0.1', '255.0.0.0', '127.0.0.1', '127.0.0.1'],
      millis: Date.now() - this.#startedAt,
      mem_free: Math.max(0, mem.heapTotal - mem.heapUsed),
      mem_alloc: mem.heapUsed,
      freq: 80_000_000,
      statvfs: [4096, 4096, 763, 716, 716, 0, 0, 0, 0, 255],
      ...this.#opts.stateFields?.(),
      pu_commit_version: this.commitVersion,
    };
  }

  /** Publishes one state now (no-op when schema.json has no `state/pepeunit`). */
  async publishState(): Promise<void> {
    const topic = this.outputBaseTopic('state/pepeunit');
    if (!topic || this.#closed) return;
    const state = this.currentState();
    await this.client.publishAsync(topic, JSON.stringify(state), { qos: 0 });
    this.counters.statesSent += 1;
    this.emit('state', state);
  }

  /** Records a log entry locally and (by default) publishes it to `log/pepeunit`. */
  async log(level: LogLevel, text: string, opts: { send?: boolean } = {}): Promise<void> {
    const entry: LocalLogEntry = { level, text, create_datetime: new Date().toISOString().replace('Z', '') };
    this.localLog.push(entry);
    const max = Number(this.env.PU_MAX_LOG_LENGTH ?? 64);
    if (this.localLog.length > max) this.localLog.splice(0, this.localLog.length - max);
    if (opts.send !== false) await this.sendLogs([entry]);
  }

  /** Publishes entries (an array, one object, or raw bytes) to `log/pepeunit` as they are. */
  async sendLogs(payload: unknown[] | Record<string, unknown> | Buffer | string): Promise<void> {
    const topic = this.outputBaseTopic('log/pepeunit');
    if (!topic || this.#closed) return;
    const body = Buffer.isBuffer(payload) || typeof payload === 'string' ? payload : JSON.stringify(payload);
    await this.client.publishAsync(topic, body, { qos: 0 });
    this.counters.logMessagesSent += 1;
  }

  /** Publishes a value to one of its output topics by schema name (e.g. `current_temp/pepeunit`). */
  async publishOutput(name: string, value: string): Promise<void> {
    const topic = this.schema.output_topic?.[name]?.[0];
    if (!topic) throw new Error(`schema.json has no output_topic "${name}"`);
    await this.client.publishAsync(topic, value, { qos: 0 });
  }

  /** Resolves with the first event `name` whose payload satisfies `predicate`; rejects after `timeoutMs`. */
  waitFor<T = unknown>(name: string, predicate: (value: T) => boolean = () => true, timeoutMs = 10_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off(name, listener);
        reject(new Error(`unit ${this.unitUuid}: no '${name}' event within ${timeoutMs} ms`));
      }, timeoutMs);
      const listener = (value: T) => {
        if (!predicate(value)) return;
        clearTimeout(timer);
        this.off(name, listener);
        resolve(value);
      };
      this.on(name, listener);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#stateTimer) clearInterval(this.#stateTimer);
    await new Promise<void>((resolve) => this.client.end(false, {}, () => resolve()));
  }

  // ---- internals ---------------------------------------------------------------------------

  #fail(err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    if (this.listenerCount('error') > 0) this.emit('error', error);
    else this.#opts.logger?.warn({ unit: this.unitUuid, err: error.message }, 'simulator error');
  }

  async #subscribeSchema(): Promise<void> {
    const wanted = new Set([...topicsOf(this.schema.input_base_topic), ...topicsOf(this.schema.input_topic)]);
    const gone = [...this.#subscribed].filter((t) => !wanted.has(t));
    if (gone.length > 0) await this.client.unsubscribeAsync(gone);
    const added = [...wanted].filter((t) => !this.#subscribed.has(t));
    // One SUBSCRIBE per topic: mqtt.js rejects a whole packet when any filter is refused (0x80).
    const results = await Promise.allSettled(added.map((topic) => this.client.subscribeAsync(topic, { qos: 0 })));
    const refused = added.filter((_, i) => results[i]?.status === 'rejected');
    if (refused.length > 0) this.#opts.logger?.warn({ unit: this.unitUuid, refused }, 'broker refused subscriptions');
    this.#subscribed = wanted;
  }

  get #restEnabled(): boolean {
    return this.#opts.backendUrl !== undefined || this.#opts.restFromEnv === true;
  }

  /** `GET /units/env/{uuid}` with the unit token; adopts and returns the new env. */
  async downloadEnv(): Promise<UnitEnv> {
    const body = (await (await this.#get(`/units/env/${this.unitUuid}`)).json()) as unknown;
    const env = (typeof body === 'string' ? JSON.parse(body) : body) as UnitEnv;
    // The token identifies the device; keep it if the answer lacks one.
    this.env = { ...env, PU_AUTH_TOKEN: env.PU_AUTH_TOKEN ?? this.env.PU_AUTH_TOKEN };
    this.emit('env', this.env);
    return this.env;
  }

  /** `GET /units/get_current_schema/{uuid}` with the unit token; adopts it and subscribes its inputs. */
  async downloadSchema(): Promise<UnitSchema> {
    const body = (await (await this.#get(`/units/get_current_schema/${this.unitUuid}`)).json()) as unknown;
    this.schema = (typeof body === 'string' ? JSON.parse(body) : body) as UnitSchema;
    await this.#subscribeSchema();
    this.emit('schema', this.schema);
    return this.schema;
  }

  #apiUrl(path: string): string {
    const origin = this.#opts.backendUrl ?? `${String(this.env.PU_HTTP_TYPE ?? 'https')}://${this.env.PU_DOMAIN}`;
    return `${origin.replace(/\/$/, '')}${this.env.PU_APP_PREFIX ?? '/pepeunit'}${this.env.PU_API_ACTUAL_PREFIX ?? '/api/v1'}${path}`;
  }

  async #get(path: string): Promise<Response> {
    const res = await fetch(this.#apiUrl(path), { headers: { 'x-auth-token': this.env.PU_AUTH_TOKEN } });
    if (!res.ok) throw new Error(`GET ${path} answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
    return res;
  }

  #onMessage(topic: string, payload: Buffer): void {
    const command = Object.entries(COMMAND_TOPICS).find(([, name]) => this.schema.input_base_topic?.[name]?.includes(topic))?.[0];
    if (!command) {
      this.emit('input', { topic, payload });
      return;
    }
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
    } catch {
      this.#fail(new Error(`command on ${topic} is not JSON`));
      return;
    }
    this.counters.commands += 1;
    this.emit('command', { command: message.COMMAND, message, topic });
    void this.#obey(message).catch((err: unknown) => this.#fail(err));
  }

  async #obey(message: Record<string, unknown>): Promise<void> {
    switch (message.COMMAND) {
      case 'Update': {
        const target = message.PU_COMMIT_VERSION;
        if (typeof target !== 'string' || target === this.commitVersion) return;
        let firmwareBytes = 0;
        if (this.#opts.fetchFirmware) {
          const res = await this.#get(`/units/firmware/${this.#opts.fetchFirmware}/${this.unitUuid}`);
          firmwareBytes = (await res.arrayBuffer()).byteLength;
          this.counters.firmwareDownloads += 1;
        }
        const from = this.commitVersion;
        this.commitVersion = target;
        this.env = { ...this.env, PU_COMMIT_VERSION: target };
        this.counters.updates += 1;
        this.emit('updated', { from, to: target, firmwareBytes });
        if (this.#opts.stateAfterUpdate !== false) await this.publishState();
        return;
      }
      case 'EnvUpdate': {
        if (!this.#restEnabled) return;
        await this.downloadEnv();
        return;
      }
      case 'SchemaUpdate': {
        if (!this.#restEnabled) return;
        await this.downloadSchema();
        return;
      }
      case 'LogSync':
        if (this.localLog.length > 0) await this.sendLogs(this.localLog.map((e) => ({ ...e })));
        return;
      default:
        this.#fail(new Error(`unknown command ${JSON.stringify(message.COMMAND)}`));
    }
  }
}

/** schema.json of a unit with every system topic and the given developer topics, as the backend generates it. */
export function systemSchema(domain: string, unitUuid: string, devTopics: { input?: Record<string, string[]>; output?: Record<string, string[]> } = {}): UnitSchema {
  const base = (destination: 'input_base_topic' | 'output_base_topic', names: string[]) =>
    Object.fromEntries(names.map((n) => [n, [`${domain}/${destination}/${unitUuid}/${n}`]]));
  return {
    input_base_topic: base('input_base_topic', Object.values(COMMAND_TOPICS)),
    output_base_topic: base('output_base_topic', ['state/pepeunit', 'log/pepeunit']),
    input_topic: devTopics.input ?? {},
    output_topic: devTopics.output ?? {},
  };
}
