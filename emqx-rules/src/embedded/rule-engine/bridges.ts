// Connectors and actions of the embedded rule engine (`/api/v5/connectors`, `/api/v5/actions`,
// reference/emqx-5.md §4.3): the HTTP connector + HTTP action pair of EMQX 5.8, validated
// against EMQX's schema for the fields we serve (defaults filled in, unknown fields refused,
// EMQX-style 400/404 errors), and the running `HttpActionRunner` of every enabled action.
//
// - Ids are `<type>:<name>`; names match `^[0-9a-zA-Z][-0-9a-zA-Z_]*$` (they become atoms in
//   EMQX, so the platform keeps a small fixed set).
// - Only the `http` type is implemented; other EMQX types are refused with a 400 saying so.
// - As EMQX does, an action needs an existing connector of its type; a connector used by an
//   action cannot be deleted; an action used by rules cannot be deleted unless
//   `also_delete_dep_actions=true` (the reference is then removed from those rules).
// - GET shows `authorization` header values as `******`; a PUT carrying `******` keeps the
//   stored value (so GET -> PUT round-trips without knowing the secret).
// - Status: `connected` while the connector and action are enabled, `stopped` otherwise (no
//   health probe: the outcome of each request is in the action's metrics).
import { ApiError, badRequest, notFound, validationError } from '../api-error.js';
import { checkHttpUrl, sslSpec } from '../resources.js';
import { checkObject, isObject } from '../schema.js';
import type { ObjectSpec } from '../schema.js';
import type { Logger } from '../../logger.js';
import { HttpActionRunner, newActionCounters } from './http-action.js';
import type { ActionCounters, ActionReply, HttpActionSettings } from './http-action.js';
import type { Value } from './values.js';

export const BRIDGE_NAME_PATTERN = /^[0-9a-zA-Z][-0-9a-zA-Z_]*$/;
const EMQX_CONNECTOR_TYPES = ['http', 'mqtt'];
const REDACTED = '******';

export interface StoredBridge {
  type: string;
  name: string;
  /** The config with defaults (no type/name). */
  config: Record<string, unknown>;
  createdAt: number;
  lastModifiedAt: number;
}

function checkName(name: unknown, what: string): string {
  if (typeof name !== 'string' || name === '') throw validationError(`${what}.name`, 'required_field');
  if (name.length >= 255 || !BRIDGE_NAME_PATTERN.test(name)) {
    throw validationError(`${what}.name`, 'bad_name', { value: name, expected: '^[0-9a-zA-Z][-0-9a-zA-Z_]*$, shorter than 255 characters' });
  }
  return name;
}

function checkType(type: unknown, what: string): 'http' {
  if (typeof type !== 'string') throw validationError(`${what}.type`, 'required_field');
  if (type === 'http') return type;
  if (EMQX_CONNECTOR_TYPES.includes(type)) throw badRequest(`${what} type ${type} is not implemented by the embedded broker (only http)`);
  throw validationError(`${what}.type`, 'unknown_type', { value: type });
}

/** `<type>:<name>` from a path parameter; 400 when malformed. */
export function parseBridgeId(id: string, what: 'connector' | 'action'): { type: string; name: string } {
  const colon = id.indexOf(':');
  const type = colon === -1 ? '' : id.slice(0, colon);
  const name = colon === -1 ? '' : id.slice(colon + 1);
  if (!/^[a-z_]+$/.test(type) || !BRIDGE_NAME_PATTERN.test(name)) throw badRequest(`Invalid ${what} ID: ${id}`);
  return { type, name };
}

function checkNoTemplate(value: string): string | undefined {
  return checkHttpUrl(value) ?? (value.includes('${') ? 'the connector URL cannot contain placeholders (put them in the action path)' : undefined);
}

const CONNECTOR_SPEC: ObjectSpec = {
  enable: { type: 'boolean', default: true },
  description: { type: 'string', default: '' },
  tags: { type: 'string_array', default: [] },
  url: { type: 'string', required: true, check: checkNoTemplate },
  headers: { type: 'string_map', default: {} },
  connect_timeout: { type: 'duration', default: '15s' },
  pool_type: { type: 'string', enum: ['random', 'hash'], default: 'random' },
  pool_size: { type: 'integer', min: 1, max: 1024, default: 8 },
  enable_pipelining: { type: 'integer', min: 1, default: 100 },
  request_timeout: { type: 'duration' },
  retry_interval: { type: 'duration' },
  ssl: { type: 'object', fields: sslSpec, default: { enable: false, verify: 'verify_peer' } },
  resource_opts: {
    type: 'object',
    fields: {
      health_check_interval: { type: 'duration', default: '15s' },
      start_after_created: { type: 'boolean', default: true },
      start_timeout: { type: 'duration', default: '5s' },
    },
  },
};

const DEFAULT_ACTION_HEADERS: Record<string, string> = {
  accept: 'application/json',
  'cache-control': 'no-cache',
  connection: 'keep-alive',
  'content-type': 'application/json',
  'keep-alive': 'timeout=5',
};

function checkPathTemplate(value: string): string | undefined {
  if (/[\s#]/.test(value.replace(/\$\{[^}]*\}/g, ''))) return 'a path cannot contain spaces or #';
  return undefined;
}

const ACTION_SPEC: ObjectSpec = {
  enable: { type: 'boolean', default: true },
  description: { type: 'string', default: '' },
  tags: { type: 'string_array', default: [] },
  connector: { type: 'string', required: true },
  parameters: {
    type: 'object',
    required: true,
    fields: {
      path: { type: 'string', default: '', check: checkPathTemplate },
      method: { type: 'string', enum: ['post', 'put', 'get', 'delete'], default: 'post' },
      headers: { type: 'string_map', default: DEFAULT_ACTION_HEADERS },
      body: { type: 'string' },
      max_retries: { type: 'integer', min: 0, max: 1000, default: 2 },
      request_timeout: { type: 'duration' },
    },
  },
  resource_opts: {
    type: 'object',
    fields: {
      query_mode: { type: 'string', enum: ['sync', 'async'], default: 'async' },
      worker_pool_size: { type: 'integer', min: 1, max: 1024, default: 16 },
      inflight_window: { type: 'integer', min: 1, max: 2048, default: 100 },
      request_ttl: { type: 'duration', infinity: true, default: '45s' },
      max_buffer_bytes: { type: 'bytesize', default: '256MB' },
      health_check_interval: { type: 'duration', default: '15s' },
      metrics_flush_interval: { type: 'duration', default: '5s' },
    },
  },
};

const IGNORED_ON_WRITE = ['type', 'name', 'status', 'status_reason', 'node_status', 'actions', 'rules', 'created_at', 'last_modified_at'];

function checkConnectorConfig(body: unknown): Record<string, unknown> {
  const config = checkObject(CONNECTOR_SPEC, body, 'connector', { ignore: IGNORED_ON_WRITE });
  const headers: Record<string, string> = {};
  for (const [key, value] of Object.entries(config.headers as Record<string, string>)) headers[key.toLowerCase()] = value;
  config.headers = headers;
  return config;
}

function checkActionConfig(body: unknown): Record<string, unknown> {
  if (isObject(body) && isObject(body.resource_opts)) {
    for (const key of ['batch_size', 'batch_time']) {
      if (key in body.resource_opts) throw validationError(`action.resource_opts.${key}`, 'unknown_fields (the HTTP action has no batching)');
    }
  }
  const config = checkObject(ACTION_SPEC, body, 'action', { ignore: IGNORED_ON_WRITE });
  const parameters = config.parameters as Record<string, unknown>;
  const headers: Record<string, string> = {};
  for (const [key, value] of Object.entries(parameters.headers as Record<string, string>)) headers[key.toLowerCase()] = value;
  parameters.headers = headers;
  return config;
}

/** Keeps stored header values where the new body carries the redacted placeholder. */
function keepRedacted(next: Record<string, string>, previous: Record<string, string> | undefined): void {
  for (const [key, value] of Object.entries(next)) {
    if (value === REDACTED && previous?.[key] !== undefined) next[key] = previous[key];
  }
}

function redactHeaders(headers: unknown): unknown {
  if (!isObject(headers)) return headers;
  const result: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(headers)) result[key] = key.toLowerCase() === 'authorization' || key.toLowerCase() === 'proxy-authorization' ? REDACTED : value;
  return result;
}

interface LiveAction {
  stored: StoredBridge;
  counters: ActionCounters;
  runner?: HttpActionRunner;
}

export type SendOutcome = 'queued' | 'not_found' | 'stopped';

export class Bridges {
  private readonly connectors = new Map<string, StoredBridge>();
  private readonly actions = new Map<string, LiveAction>();

  constructor(
    private readonly nodeName: string,
    private readonly logger: Logger,
  ) {}

  // ---- connectors -------------------------------------------------------------------------

  listConnectors(): Record<string, unknown>[] {
    return [...this.connectors.values()].map((connector) => this.connectorInfo(connector));
  }

  getConnector(id: string): Record<string, unknown> {
    return this.connectorInfo(this.requireConnector(id));
  }

  /** `POST /connectors`; the stored connector (or the error). */
  createConnector(body: unknown): StoredBridge {
    if (!isObject(body)) throw badRequest('Invalid json message received');
    const type = checkType(body.type, 'connector');
    const name = checkName(body.name, 'connector');
    const id = `${type}:${name}`;
    if (this.connectors.has(id)) throw new ApiError(400, 'ALREADY_EXISTS', 'Connector already exists');
    const now = Date.now();
    const stored: StoredBridge = { type, name, config: checkConnectorConfig(body), createdAt: now, lastModifiedAt: now };
    this.connectors.set(id, stored);
    this.logger.info({ connector: id }, 'connector created');
    return stored;
  }

  updateConnector(id: string, body: unknown): StoredBridge {
    const existing = this.requireConnector(id);
    const config = checkConnectorConfig(body);
    keepRedacted(config.headers as Record<string, string>, existing.config.headers as Record<string, string>);
    const stored: StoredBridge = { ...existing, config, lastModifiedAt: Date.now() };
    this.connectors.set(id, stored);
    for (const action of this.actions.values()) if (this.connectorIdOf(action.stored) === id) this.restart(action);
    this.logger.info({ connector: id }, 'connector updated');
    return stored;
  }

  setConnectorEnabled(id: string, enable: boolean): void {
    const existing = this.requireConnector(id);
    this.connectors.set(id, { ...existing, config: { ...existing.config, enable }, lastModifiedAt: Date.now() });
    for (const action of this.actions.values()) if (this.connectorIdOf(action.stored) === id) this.restart(action);
  }

  deleteConnector(id: string): void {
    this.requireConnector(id);
    const users = [...this.actions.values()].filter((action) => this.connectorIdOf(action.stored) === id).map((action) => `${action.stored.type}:${action.stored.name}`);
    if (users.length > 0) {
      throw badRequest(`Cannot delete connector while there are active channels defined for this connector: ${users.join(', ')}`);
    }
    this.connectors.delete(id);
    this.logger.info({ connector: id }, 'connector deleted');
  }

  connectorInfo(connector: StoredBridge): Record<string, unknown> {
    const status = connector.config.enable === false ? 'stopped' : 'connected';
    const id = `${connector.type}:${connector.name}`;
    return {
      type: connector.type,
      name: connector.name,
      ...structuredClone(connector.config),
      headers: redactHeaders(connector.config.headers),
      status,
      node_status: [{ node: this.nodeName, status }],
      actions: [...this.actions.values()].filter((action) => this.connectorIdOf(action.stored) === id).map((action) => action.stored.name),
    };
  }

  // ---- actions ----------------------------------------------------------------------------

  listActions(): Record<string, unknown>[] {
    return [...this.actions.values()].map((action) => this.actionInfo(action));
  }

  getAction(id: string): Record<string, unknown> {
    return this.actionInfo(this.requireAction(id));
  }

  hasAction(id: string): boolean {
    return this.actions.has(id);
  }

  createAction(body: unknown): StoredBridge {
    if (!isObject(body)) throw badRequest('Invalid json message received');
    const type = checkType(body.type, 'action');
    const name = checkName(body.name, 'action');
    const id = `${type}:${name}`;
    if (this.actions.has(id)) throw new ApiError(400, 'ALREADY_EXISTS', 'Action already exists');
    const config = checkActionConfig(body);
    this.checkConnectorOf(type, config);
    const now = Date.now();
    const action: LiveAction = { stored: { type, name, config, createdAt: now, lastModifiedAt: now }, counters: newActionCounters() };
    this.actions.set(id, action);
    this.restart(action);
    this.logger.info({ action: id }, 'action created');
    return action.stored;
  }

  updateAction(id: string, body: unknown): StoredBridge {
    const action = this.requireAction(id);
    const config = checkActionConfig(body);
    keepRedacted((config.parameters as { headers: Record<string, string> }).headers, (action.stored.config.parameters as { headers?: Record<string, string> } | undefined)?.headers);
    this.checkConnectorOf(action.stored.type, config);
    action.stored = { ...action.stored, config, lastModifiedAt: Date.now() };
    this.restart(action);
    this.logger.info({ action: id }, 'action updated');
    return action.stored;
  }

  setActionEnabled(id: string, enable: boolean): void {
    const action = this.requireAction(id);
    action.stored = { ...action.stored, config: { ...action.stored.config, enable }, lastModifiedAt: Date.now() };
    this.restart(action);
  }

  /** Removes the action (the caller checked rule references). */
  deleteAction(id: string): void {
    const action = this.requireAction(id);
    void action.runner?.close();
    this.actions.delete(id);
    this.logger.info({ action: id }, 'action deleted');
  }

  requireAction(id: string): LiveAction {
    const { type, name } = parseBridgeId(id, 'action');
    const action = this.actions.get(`${type}:${name}`);
    if (!action) throw notFound('NOT_FOUND', 'Action not found');
    return action;
  }

  actionInfo(action: LiveAction): Record<string, unknown> {
    const status = action.runner ? 'connected' : 'stopped';
    const config = structuredClone(action.stored.config);
    const parameters = config.parameters as Record<string, unknown>;
    parameters.headers = redactHeaders(parameters.headers);
    return { type: action.stored.type, name: action.stored.name, ...config, status, node_status: [{ node: this.nodeName, status }] };
  }

  /** Counters and gauges of an action (EMQX's names). */
  actionMetrics(id: string): Record<string, number> {
    const action = this.requireAction(id);
    return { ...action.counters, inflight: action.runner?.inflight ?? 0, queuing: action.runner?.queuing ?? 0 };
  }

  resetActionMetrics(id: string): void {
    const action = this.requireAction(id);
    for (const key of Object.keys(action.counters) as Array<keyof ActionCounters>) action.counters[key] = 0;
  }

  /** Every action with its enable flag, status and metrics (for the Prometheus endpoint). */
  actionSnapshots(): Array<{ id: string; enable: boolean; running: boolean; metrics: Record<string, number> }> {
    return [...this.actions.values()].map((action) => {
      const id = `${action.stored.type}:${action.stored.name}`;
      return { id, enable: action.stored.config.enable !== false, running: action.runner !== undefined, metrics: this.actionMetrics(id) };
    });
  }

  connectorSnapshots(): Array<{ id: string; enable: boolean }> {
    return [...this.connectors.values()].map((connector) => ({ id: `${connector.type}:${connector.name}`, enable: connector.config.enable !== false }));
  }

  /**
   * Hands one rule output to the action `ref`: `queued` (the reply follows), `not_found`, or
   * `stopped` (disabled action or connector; counted as dropped.resource_stopped).
   */
  send(ref: string, selected: Record<string, Value>, reply: ActionReply): SendOutcome {
    const action = this.actions.get(ref);
    if (!action) return 'not_found';
    if (!action.runner) {
      action.counters.matched += 1;
      action.counters.dropped += 1;
      action.counters['dropped.resource_stopped'] += 1;
      return 'stopped';
    }
    action.runner.send(selected, reply);
    return 'queued';
  }

  // ---- state ------------------------------------------------------------------------------

  snapshot(): { connectors: StoredBridge[]; actions: StoredBridge[] } {
    return { connectors: [...this.connectors.values()].map((item) => structuredClone(item)), actions: [...this.actions.values()].map((item) => structuredClone(item.stored)) };
  }

  /** Re-checks and installs stored connectors and actions (a state file); throws on invalid entries. */
  load(state: { connectors?: unknown; actions?: unknown }): void {
    for (const entry of Array.isArray(state.connectors) ? state.connectors : []) {
      const item = entry as StoredBridge;
      const stored = this.createConnector({ type: item.type, name: item.name, ...item.config });
      stored.createdAt = Number(item.createdAt) || stored.createdAt;
      stored.lastModifiedAt = Number(item.lastModifiedAt) || stored.lastModifiedAt;
    }
    for (const entry of Array.isArray(state.actions) ? state.actions : []) {
      const item = entry as StoredBridge;
      const stored = this.createAction({ type: item.type, name: item.name, ...item.config });
      stored.createdAt = Number(item.createdAt) || stored.createdAt;
      stored.lastModifiedAt = Number(item.lastModifiedAt) || stored.lastModifiedAt;
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.actions.values()].map((action) => action.runner?.close()));
  }

  // ---- internals --------------------------------------------------------------------------

  private requireConnector(id: string): StoredBridge {
    const { type, name } = parseBridgeId(id, 'connector');
    const connector = this.connectors.get(`${type}:${name}`);
    if (!connector) throw notFound('NOT_FOUND', 'Connector not found');
    return connector;
  }

  private connectorIdOf(action: StoredBridge): string {
    return `${action.type}:${String(action.config.connector)}`;
  }

  private checkConnectorOf(type: string, config: Record<string, unknown>): void {
    if (!this.connectors.has(`${type}:${String(config.connector)}`)) {
      throw badRequest(JSON.stringify({ kind: 'validation_error', reason: 'connector_not_found_or_wrong_type', connector_name: config.connector, connector_type: type }));
    }
  }

  /** (Re)starts the runner of an action after a change; a disabled action or connector has none. */
  private restart(action: LiveAction): void {
    const old = action.runner;
    action.runner = undefined;
    if (old) void old.close();
    const connector = this.connectors.get(this.connectorIdOf(action.stored));
    if (!connector || connector.config.enable === false || action.stored.config.enable === false) return;
    action.runner = new HttpActionRunner(
      { connector: connector.config, parameters: action.stored.config.parameters, resource_opts: action.stored.config.resource_opts } as unknown as HttpActionSettings,
      this.logger,
      `${action.stored.type}:${action.stored.name}`,
      action.counters,
    );
  }
}
