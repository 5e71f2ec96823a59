// Client for the EMQX 5.8 management REST API (reference/emqx-5.md §1, §5, §6), used against a
// real EMQX cluster and against the embedded broker alike. Success codes differ per endpoint
// (200 / 201 / 204); each method encodes the one EMQX documents.
import { sleep } from '@pepeunit/common';
import { Agent, request } from 'undici';
import type { Dispatcher } from 'undici';
import type {
  ActionCreate,
  ActionInfo,
  ActionMetrics,
  Authenticator,
  AuthenticatorConfig,
  AuthenticatorPosition,
  AuthzSettings,
  AuthzSourceConfig,
  AuthzSourcePosition,
  Ban,
  BanAs,
  BanCreate,
  BanListQuery,
  ClientInfo,
  ClientListQuery,
  SubscriptionInfo,
  SubscriptionListQuery,
  ConnectorCreate,
  ConnectorInfo,
  DataIntegrationMode,
  EmqxStatus,
  GlobalZoneConfig,
  ListenerConfig,
  Page,
  RetainerConfig,
  RuleCreate,
  RuleInfo,
  RuleListQuery,
  RuleMetrics,
  RuleTestContext,
} from './emqx-types.js';
import { silentLogger } from './logger.js';
import type { Logger } from './logger.js';

export interface EmqxManagementClientOptions {
  /** Dashboard/API listener, e.g. `http://127.0.0.1:18083` (a trailing `/api/v5` is accepted). */
  baseUrl: string;
  apiKey: string;
  apiSecret: string;
  /** Per-request timeout (headers and body), default 10 s. */
  timeoutMs?: number;
  /** Retries for connection errors and 503 answers, default 3. */
  maxRetries?: number;
  /** First backoff delay, doubled per attempt (with jitter), default 200 ms. */
  retryBaseDelayMs?: number;
  logger?: Logger;
}

type QueryValue = string | number | boolean | undefined | null | ReadonlyArray<string | number>;
export type Query = Record<string, QueryValue>;

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  /** Retry connection errors / 503 (default true). */
  retry?: boolean;
  /** The Accept header (default `application/json`). */
  accept?: string;
}

export interface ApiResponse<T> {
  status: number;
  body: T;
}

/** An error answer from the EMQX API: HTTP status plus EMQX's `{code, message}`. */
export class EmqxApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** EMQX's `message` text (also the Error message, prefixed with method and path). */
  readonly emqxMessage: string;
  /** Parsed JSON when EMQX put a JSON document inside `message` (rule errors, banned ALREADY_EXISTS). */
  readonly details: unknown;
  readonly method: string;
  readonly path: string;

  constructor(init: { status: number; code: string; message: string; method: string; path: string }) {
    super(`EMQX ${init.method} ${init.path} failed with ${init.status} ${init.code}: ${init.message}`);
    this.name = 'EmqxApiError';
    this.status = init.status;
    this.code = init.code;
    this.emqxMessage = init.message;
    this.method = init.method;
    this.path = init.path;
    this.details = parseJsonInsideMessage(init.message);
  }
}

/** EMQX could not be reached (after retries), or did not answer in time. */
export class EmqxUnavailableError extends Error {
  readonly method: string;
  readonly path: string;
  constructor(method: string, path: string, cause: unknown) {
    const reason = cause instanceof Error ? `${(cause as NodeJS.ErrnoException).code ?? cause.name}: ${cause.message}` : String(cause);
    super(`EMQX ${method} ${path} unreachable: ${reason}`, { cause });
    this.name = 'EmqxUnavailableError';
    this.method = method;
    this.path = path;
  }
}

const RETRYABLE_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_CLOSED',
]);

function isRetryableTransportError(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current; depth += 1) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && RETRYABLE_ERROR_CODES.has(code)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

function parseJsonInsideMessage(message: string): unknown {
  const text = message.trim();
  if (!(text.startsWith('{') || text.startsWith('['))) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

const segment = (value: string): string => encodeURIComponent(value);

function appendQuery(url: URL, query: Query | undefined): void {
  if (!query) return;
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null) continue;
    if (Array.isArray(value)) {
      for (const item of value as ReadonlyArray<string | number>) url.searchParams.append(key, String(item));
    } else {
      url.searchParams.append(key, String(value));
    }
  }
}

export class EmqxManagementClient {
  private readonly apiBase: string;
  private readonly authorization: string;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;
  private readonly retryBaseDelayMs: number;
  private readonly logger: Logger;
  private readonly dispatcher: Dispatcher;

  constructor(options: EmqxManagementClientOptions) {
    if (!options.baseUrl) throw new Error('EmqxManagementClient: baseUrl is required (e.g. http://127.0.0.1:18083)');
    if (!options.apiKey || !options.apiSecret) {
      throw new Error('EmqxManagementClient: apiKey and apiSecret are required (an EMQX API key, see api_key.bootstrap_file)');
    }
    let base: URL;
    try {
      base = new URL(options.baseUrl);
    } catch {
      throw new Error(`EmqxManagementClient: baseUrl is not a valid URL: ${options.baseUrl}`);
    }
    const path = base.pathname.replace(/\/+$/, '').replace(/\/api\/v5$/, '');
    this.apiBase = `${base.origin}${path}/api/v5`;
    this.authorization = `Basic ${Buffer.from(`${options.apiKey}:${options.apiSecret}`).toString('base64')}`;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.maxRetries = options.maxRetries ?? 3;
    this.retryBaseDelayMs = options.retryBaseDelayMs ?? 200;
    this.logger = options.logger ?? silentLogger;
    this.dispatcher = new Agent({ keepAliveTimeout: 4_000, connections: 8 });
  }

  /** Releases pooled connections. */
  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  // -------------------------------------------------------------------------------------------
  // Generic transport

  /** One API call; throws `EmqxApiError` for non-2xx answers, `EmqxUnavailableError` for transport failures. */
  async request<T = unknown>(method: Dispatcher.HttpMethod, path: string, options: RequestOptions = {}): Promise<ApiResponse<T>> {
    const url = new URL(`${this.apiBase}${path}`);
    appendQuery(url, options.query);
    const headers: Record<string, string> = { authorization: this.authorization, accept: options.accept ?? 'application/json' };
    let payload: string | undefined;
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(options.body);
    }
    const attempts = options.retry === false ? 1 : this.maxRetries + 1;
    let lastError: unknown;
    for (let attempt = 1; attempt <= attempts; attempt += 1) {
      try {
        const response = await request(url, {
          method,
          headers,
          body: payload,
          dispatcher: this.dispatcher,
          headersTimeout: this.timeoutMs,
          bodyTimeout: this.timeoutMs,
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        const text = await response.body.text();
        const parsed = parseBody(text);
        if (response.statusCode >= 200 && response.statusCode < 300) {
          return { status: response.statusCode, body: parsed as T };
        }
        const apiError = toApiError(response.statusCode, parsed, text, method, path);
        if (response.statusCode === 503 && attempt < attempts) {
          lastError = apiError;
          await this.backoff(attempt, method, path, apiError);
          continue;
        }
        throw apiError;
      } catch (error) {
        if (error instanceof EmqxApiError) throw error;
        lastError = error;
        if (isRetryableTransportError(error) && attempt < attempts) {
          await this.backoff(attempt, method, path, error);
          continue;
        }
        throw new EmqxUnavailableError(method, path, error);
      }
    }
    if (lastError instanceof EmqxApiError) throw lastError;
    throw new EmqxUnavailableError(method, path, lastError);
  }

  private async backoff(attempt: number, method: string, path: string, error: unknown): Promise<void> {
    const delay = this.retryBaseDelayMs * 2 ** (attempt - 1) * (0.5 + Math.random() / 2);
    this.logger.warn({ method, path, attempt, delayMs: Math.round(delay), err: describe(error) }, 'EMQX API call failed, retrying');
    await sleep(delay);
  }

  /**
   * Iterates every item of a paginated list (`{data, meta:{page,limit,count,hasnext}}`),
   * requesting pages of `pageSize` (1..10000) until `hasnext` is false.
   */
  async *paginate<T>(path: string, query: Query = {}, pageSize = 100): AsyncGenerator<T, void, undefined> {
    const limit = Math.min(Math.max(Math.trunc(pageSize), 1), 10_000);
    for (let page = 1; ; page += 1) {
      const { body } = await this.request<Page<T>>('GET', path, { query: { ...query, page, limit } });
      const items = Array.isArray(body?.data) ? body.data : [];
      for (const item of items) yield item;
      if (!body?.meta?.hasnext || items.length === 0) return;
    }
  }

  async listAll<T>(path: string, query: Query = {}, pageSize = 1000): Promise<T[]> {
    const all: T[] = [];
    for await (const item of this.paginate<T>(path, query, pageSize)) all.push(item);
    return all;
  }

  private async getOrUndefined<T>(path: string, notFoundCodes: string[]): Promise<T | undefined> {
    try {
      return (await this.request<T>('GET', path)).body;
    } catch (error) {
      if (error instanceof EmqxApiError && error.status === 404 && notFoundCodes.includes(error.code)) return undefined;
      throw error;
    }
  }

  private async deleteIfExists(path: string): Promise<boolean> {
    try {
      await this.request('DELETE', path);
      return true;
    } catch (error) {
      if (error instanceof EmqxApiError && error.status === 404) return false;
      throw error;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Authentication — global chain. Ids look like `password_based:http`.

  async listAuthenticators(): Promise<Authenticator[]> {
    return (await this.request<Authenticator[]>('GET', '/authentication')).body;
  }

  async getAuthenticator(id: string): Promise<Authenticator | undefined> {
    return this.getOrUndefined<Authenticator>(`/authentication/${segment(id)}`, ['NOT_FOUND']);
  }

  /** 200 with the stored config; 409 ALREADY_EXISTS when `mechanism:backend` already exists. */
  async createAuthenticator(config: AuthenticatorConfig): Promise<Authenticator> {
    return (await this.request<Authenticator>('POST', '/authentication', { body: config })).body;
  }

  /** Replaces the authenticator's config (204). */
  async updateAuthenticator(id: string, config: AuthenticatorConfig): Promise<void> {
    await this.request('PUT', `/authentication/${segment(id)}`, { body: config });
  }

  /** Removes it (204); false when it did not exist. */
  async deleteAuthenticator(id: string): Promise<boolean> {
    return this.deleteIfExists(`/authentication/${segment(id)}`);
  }

  async moveAuthenticator(id: string, position: AuthenticatorPosition): Promise<void> {
    await this.request('PUT', `/authentication/${segment(id)}/position/${segment(position)}`);
  }

  // -------------------------------------------------------------------------------------------
  // Authorization sources and settings

  async listAuthorizationSources(): Promise<AuthzSourceConfig[]> {
    const { body } = await this.request<{ sources: AuthzSourceConfig[] }>('GET', '/authorization/sources');
    return Array.isArray(body?.sources) ? body.sources : [];
  }

  async getAuthorizationSource(type: string): Promise<AuthzSourceConfig | undefined> {
    return this.getOrUndefined<AuthzSourceConfig>(`/authorization/sources/${segment(type)}`, ['NOT_FOUND']);
  }

  /** EMQX prepends the new source (204); a duplicate type is a 400 `duplicated_authz_source_type`. */
  async createAuthorizationSource(source: AuthzSourceConfig): Promise<void> {
    await this.request('POST', '/authorization/sources', { body: source });
  }

  async updateAuthorizationSource(type: string, source: AuthzSourceConfig): Promise<void> {
    await this.request('PUT', `/authorization/sources/${segment(type)}`, { body: { ...source, type } });
  }

  /** Removes the source (204); false when EMQX reported it missing. */
  async deleteAuthorizationSource(type: string): Promise<boolean> {
    try {
      await this.request('DELETE', `/authorization/sources/${segment(type)}`);
      return true;
    } catch (error) {
      if (isMissingSourceError(error)) return false;
      throw error;
    }
  }

  async moveAuthorizationSource(type: string, position: AuthzSourcePosition): Promise<void> {
    await this.request('POST', `/authorization/sources/${segment(type)}/move`, { body: { position } });
  }

  async getAuthorizationSettings(): Promise<AuthzSettings> {
    return (await this.request<AuthzSettings>('GET', '/authorization/settings')).body;
  }

  /** EMQX requires all three keys (`no_match`, `deny_action`, `cache`). */
  async updateAuthorizationSettings(settings: AuthzSettings): Promise<AuthzSettings> {
    return (await this.request<AuthzSettings>('PUT', '/authorization/settings', { body: settings })).body;
  }

  /** Flushes every client's authorization cache (call after permissions change). */
  async clearAuthorizationCache(): Promise<void> {
    await this.request('DELETE', '/authorization/cache');
  }

  /** Flushes one client's authorization cache; false when the client is not connected. */
  async clearClientAuthorizationCache(clientid: string): Promise<boolean> {
    return this.deleteIfExists(`/clients/${segment(clientid)}/authorization/cache`);
  }

  // -------------------------------------------------------------------------------------------
  // Listeners, zone, retainer

  async getListener(id: string): Promise<ListenerConfig | undefined> {
    return this.getOrUndefined<ListenerConfig>(`/listeners/${segment(id)}`, ['BAD_LISTENER_ID', 'NOT_FOUND']);
  }

  /** Deep-merges `config` into the listener (EMQX needs `type` and `id` in the body; added here). */
  async updateListener(id: string, config: ListenerConfig): Promise<ListenerConfig> {
    const type = id.split(':')[0] ?? '';
    const body = { ...config, id, type };
    return (await this.request<ListenerConfig>('PUT', `/listeners/${segment(id)}`, { body })).body;
  }

  async getGlobalZone(): Promise<GlobalZoneConfig> {
    return (await this.request<GlobalZoneConfig>('GET', '/configs/global_zone')).body;
  }

  /** Each root (`mqtt`, ...) is shallow-merged into the stored one. */
  async updateGlobalZone(config: GlobalZoneConfig): Promise<GlobalZoneConfig> {
    return (await this.request<GlobalZoneConfig>('PUT', '/configs/global_zone', { body: config })).body;
  }

  async getRetainer(): Promise<RetainerConfig> {
    return (await this.request<RetainerConfig>('GET', '/mqtt/retainer')).body;
  }

  async updateRetainer(config: RetainerConfig): Promise<RetainerConfig> {
    return (await this.request<RetainerConfig>('PUT', '/mqtt/retainer', { body: config })).body;
  }

  // -------------------------------------------------------------------------------------------
  // Clients

  async listClients(query: ClientListQuery = {}): Promise<Page<ClientInfo>> {
    return (await this.request<Page<ClientInfo>>('GET', '/clients', { query: clientQuery(query) })).body;
  }

  /** Every client matching the filters, page by page. */
  iterateClients(query: Omit<ClientListQuery, 'page'> = {}): AsyncGenerator<ClientInfo, void, undefined> {
    const { limit, ...rest } = query;
    return this.paginate<ClientInfo>('/clients', clientQuery(rest), limit ?? 1000);
  }

  async getClient(clientid: string): Promise<ClientInfo | undefined> {
    return this.getOrUndefined<ClientInfo>(`/clients/${segment(clientid)}`, ['CLIENTID_NOT_FOUND', 'NOT_FOUND']);
  }

  /** Every subscription matching the filters (`GET /subscriptions`), page by page. */
  iterateSubscriptions(query: Omit<SubscriptionListQuery, 'page'> = {}): AsyncGenerator<SubscriptionInfo, void, undefined> {
    const { limit, ...rest } = query;
    const params: Record<string, string> = {};
    for (const [key, value] of Object.entries(rest)) if (value !== undefined) params[key] = String(value);
    return this.paginate<SubscriptionInfo>('/subscriptions', params, limit ?? 1000);
  }

  /** Disconnects the client (204, reason `kicked`); false when it was not connected. */
  async kickClient(clientid: string): Promise<boolean> {
    return this.deleteIfExists(`/clients/${segment(clientid)}`);
  }

  // -------------------------------------------------------------------------------------------
  // Banned

  /**
   * Creates a ban (200). An existing unexpired ban answers 400 ALREADY_EXISTS with the existing
   * ban as JSON in `message` (available as `EmqxApiError.details`).
   */
  async createBan(ban: BanCreate): Promise<Ban> {
    return (await this.request<Ban>('POST', '/banned', { body: ban })).body;
  }

  async listBans(query: BanListQuery = {}): Promise<Page<Ban>> {
    return (await this.request<Page<Ban>>('GET', '/banned', { query: { ...query } })).body;
  }

  iterateBans(query: Omit<BanListQuery, 'page'> = {}): AsyncGenerator<Ban, void, undefined> {
    const { limit, ...rest } = query;
    return this.paginate<Ban>('/banned', { ...rest }, limit ?? 1000);
  }

  /** Lifts a ban (204); false when there was none. */
  async deleteBan(as: BanAs, who: string): Promise<boolean> {
    return this.deleteIfExists(`/banned/${segment(as)}/${segment(who)}`);
  }

  // -------------------------------------------------------------------------------------------
  // Liveness

  /** `GET /api/v5/status?format=json` (no retries): running=false on 503. */
  async status(): Promise<EmqxStatus> {
    try {
      const { body } = await this.request<Record<string, unknown>>('GET', '/status', { query: { format: 'json' }, retry: false });
      return statusFrom(body, true);
    } catch (error) {
      if (error instanceof EmqxApiError && error.status === 503) return { running: false };
      throw error;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Rules (reference/emqx-5.md §2). Create answers 201, read/update 200, delete 204.

  /** One page of rules (`like_id` is a substring filter, not a prefix). */
  async listRules(query: RuleListQuery = {}): Promise<Page<RuleInfo>> {
    return (await this.request<Page<RuleInfo>>('GET', '/rules', { query: { ...query } })).body;
  }

  /** Every rule matching the filters, page by page (`limit` 1..10000, default 10000). */
  iterateRules(query: Omit<RuleListQuery, 'page'> = {}): AsyncGenerator<RuleInfo, void, undefined> {
    const { limit, ...rest } = query;
    return this.paginate<RuleInfo>('/rules', { ...rest }, limit ?? 10_000);
  }

  async listAllRules(query: Omit<RuleListQuery, 'page'> = {}): Promise<RuleInfo[]> {
    const all: RuleInfo[] = [];
    for await (const rule of this.iterateRules(query)) all.push(rule);
    return all;
  }

  /** The rule, or undefined when EMQX answers 404. */
  async getRule(id: string): Promise<RuleInfo | undefined> {
    return this.getOrUndefined<RuleInfo>(`/rules/${segment(id)}`, ['NOT_FOUND', 'RULE_NOT_FOUND']);
  }

  /** `POST /rules` (201). An existing id is a 400 ("rule id already exists"); prefer `upsertRule`. */
  async createRule(rule: RuleCreate): Promise<RuleInfo> {
    return (await this.request<RuleInfo>('POST', '/rules', { body: rule })).body;
  }

  /**
   * `PUT /rules/{id}` (200): EMQX merges the body into the stored rule and creates it when the
   * id is unknown, so this is an idempotent upsert. Every PUT resets the rule's metrics.
   */
  async upsertRule(id: string, rule: Omit<RuleCreate, 'id'>): Promise<RuleInfo> {
    const { id: _ignored, ...body } = rule as RuleCreate;
    return (await this.request<RuleInfo>('PUT', `/rules/${segment(id)}`, { body })).body;
  }

  /** Alias of `upsertRule` (EMQX's update is an upsert). */
  async updateRule(id: string, rule: Omit<RuleCreate, 'id'>): Promise<RuleInfo> {
    return this.upsertRule(id, rule);
  }

  /** `DELETE /rules/{id}` (204); false when the rule did not exist. */
  async deleteRule(id: string): Promise<boolean> {
    return this.deleteIfExists(`/rules/${segment(id)}`);
  }

  /** Counters summed over the cluster; undefined when the rule does not exist. */
  async getRuleMetrics(id: string): Promise<RuleMetrics | undefined> {
    return this.getOrUndefined<RuleMetrics>(`/rules/${segment(id)}/metrics`, ['NOT_FOUND', 'RULE_NOT_FOUND']);
  }

  async resetRuleMetrics(id: string): Promise<void> {
    await this.request('PUT', `/rules/${segment(id)}/metrics/reset`);
  }

  // -------------------------------------------------------------------------------------------
  // Connectors and actions (reference/emqx-5.md §4.3). Ids are `<type>:<name>`; create answers
  // 201 (400 ALREADY_EXISTS when the name is taken), read/update 200, delete 204.

  async listConnectors(): Promise<ConnectorInfo[]> {
    const { body } = await this.request<ConnectorInfo[]>('GET', '/connectors');
    return Array.isArray(body) ? body : [];
  }

  /** The connector, or undefined when EMQX answers 404. */
  async getConnector(id: string): Promise<ConnectorInfo | undefined> {
    return this.getOrUndefined<ConnectorInfo>(`/connectors/${segment(id)}`, ['NOT_FOUND']);
  }

  async createConnector(connector: ConnectorCreate): Promise<ConnectorInfo> {
    return (await this.request<ConnectorInfo>('POST', '/connectors', { body: connector })).body;
  }

  /** Replaces the connector's configuration (`type`/`name` are taken from the id). */
  async updateConnector(id: string, connector: Omit<ConnectorCreate, 'type' | 'name'> | ConnectorCreate): Promise<ConnectorInfo> {
    const { type: _type, name: _name, ...body } = connector as ConnectorCreate;
    return (await this.request<ConnectorInfo>('PUT', `/connectors/${segment(id)}`, { body })).body;
  }

  /** `DELETE /connectors/{id}` (204); false when it did not exist. EMQX refuses (400) while actions use it. */
  async deleteConnector(id: string): Promise<boolean> {
    return this.deleteIfExists(`/connectors/${segment(id)}`);
  }

  async listActions(): Promise<ActionInfo[]> {
    const { body } = await this.request<ActionInfo[]>('GET', '/actions');
    return Array.isArray(body) ? body : [];
  }

  /** The action, or undefined when EMQX answers 404. */
  async getAction(id: string): Promise<ActionInfo | undefined> {
    return this.getOrUndefined<ActionInfo>(`/actions/${segment(id)}`, ['NOT_FOUND']);
  }

  async createAction(action: ActionCreate): Promise<ActionInfo> {
    return (await this.request<ActionInfo>('POST', '/actions', { body: action })).body;
  }

  /** Replaces the action's configuration (`type`/`name` are taken from the id). */
  async updateAction(id: string, action: Omit<ActionCreate, 'type' | 'name'> | ActionCreate): Promise<ActionInfo> {
    const { type: _type, name: _name, ...body } = action as ActionCreate;
    return (await this.request<ActionInfo>('PUT', `/actions/${segment(id)}`, { body })).body;
  }

  /**
   * `DELETE /actions/{id}` (204); false when it did not exist. EMQX refuses (400) while rules
   * reference it unless `alsoDeleteDepActions` (the reference is then removed from those rules).
   */
  async deleteAction(id: string, options: { alsoDeleteDepActions?: boolean } = {}): Promise<boolean> {
    try {
      await this.request('DELETE', `/actions/${segment(id)}`, { query: options.alsoDeleteDepActions ? { also_delete_dep_actions: true } : {} });
      return true;
    } catch (error) {
      if (error instanceof EmqxApiError && error.status === 404) return false;
      throw error;
    }
  }

  /** Counters and gauges of an action; undefined when it does not exist. */
  async getActionMetrics(id: string): Promise<ActionMetrics | undefined> {
    return this.getOrUndefined<ActionMetrics>(`/actions/${segment(id)}/metrics`, ['NOT_FOUND']);
  }

  // -------------------------------------------------------------------------------------------
  // Metrics

  /**
   * `GET /prometheus/data_integration` (5.5+): every rule's, action's and connector's counters
   * in one request. `json` asks with `Accept: application/json` (the parsed object), `text` the
   * Prometheus exposition text. Parse either with `parseDataIntegration` (rules/).
   */
  async getDataIntegrationMetrics(options: { mode?: DataIntegrationMode; format?: 'json' | 'text' } = {}): Promise<unknown> {
    const format = options.format ?? 'json';
    const { body } = await this.request<unknown>('GET', '/prometheus/data_integration', {
      query: { mode: options.mode ?? 'all_nodes_aggregated' },
      accept: format === 'json' ? 'application/json' : 'text/plain',
    });
    return body;
  }

  /** `GET /nodes`: the cluster's nodes (uptime in ms, memory, load, connections; EMQX's field names). */
  async listNodes(): Promise<Array<Record<string, unknown> & { node: string }>> {
    return (await this.request<Array<Record<string, unknown> & { node: string }>>('GET', '/nodes')).body;
  }

  /** `GET /metrics?aggregate=false`: per-node counters (`messages.received`, ...). */
  async getNodeMetrics(): Promise<Array<Record<string, unknown> & { node: string }>> {
    return (await this.request<Array<Record<string, unknown> & { node: string }>>('GET', '/metrics', { query: { aggregate: 'false' } })).body;
  }

  /**
   * `POST /rule_test`: dry-runs SQL against a fake event. Resolves with the SELECT output,
   * `{matched: false}` on 412 NOT_MATCH (SQL valid, no match); rejects with the 400 for bad SQL.
   */
  async testRuleSql(sql: string, context: RuleTestContext = {}): Promise<{ matched: true; output: unknown } | { matched: false }> {
    try {
      const { body } = await this.request<unknown>('POST', '/rule_test', { body: { sql, context: { event_type: 'message_publish', ...context } } });
      return { matched: true, output: body };
    } catch (error) {
      if (error instanceof EmqxApiError && error.status === 412) return { matched: false };
      throw error;
    }
  }
}

function clientQuery(query: ClientListQuery): Query {
  const { fields, ...rest } = query;
  const result: Query = { ...rest };
  if (fields !== undefined) result.fields = Array.isArray(fields) ? fields.join(',') : fields;
  return result;
}

function statusFrom(body: unknown, ok: boolean): EmqxStatus {
  if (body && typeof body === 'object') {
    const record = body as Record<string, unknown>;
    const brokerStatus = typeof record.broker_status === 'string' ? record.broker_status : undefined;
    const appStatus = typeof record.app_status === 'string' ? record.app_status : undefined;
    return {
      running: ok && (brokerStatus === undefined || brokerStatus === 'started') && (appStatus === undefined || appStatus === 'running'),
      nodeName: typeof record.node_name === 'string' ? record.node_name : undefined,
      version: typeof record.rel_vsn === 'string' ? record.rel_vsn : undefined,
      brokerStatus,
      appStatus,
    };
  }
  // Older nodes ignore `format=json` and answer plain text ("Node x is started\nemqx is running").
  const text = typeof body === 'string' ? body : '';
  return { running: ok && (text === '' || /is running/.test(text)) };
}

function parseBody(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

function toApiError(status: number, parsed: unknown, text: string, method: string, path: string): EmqxApiError {
  if (parsed && typeof parsed === 'object' && typeof (parsed as { code?: unknown }).code === 'string') {
    const body = parsed as { code: string; message?: unknown; reason?: unknown };
    const message = typeof body.message === 'string' ? body.message : typeof body.reason === 'string' ? body.reason : JSON.stringify(body.message ?? '');
    return new EmqxApiError({ status, code: body.code, message, method, path });
  }
  return new EmqxApiError({ status, code: `HTTP_${status}`, message: text.slice(0, 500), method, path });
}

function describe(error: unknown): string {
  if (error instanceof EmqxApiError) return `${error.status} ${error.code}`;
  if (error instanceof Error) return `${(error as NodeJS.ErrnoException).code ?? error.name}: ${error.message}`;
  return String(error);
}

/** True for EMQX's "source does not exist" answers (404, or 400 `not_found_source`). */
export function isMissingSourceError(error: unknown): boolean {
  if (!(error instanceof EmqxApiError)) return false;
  return error.status === 404 || (error.status === 400 && /not_found_source|not found/i.test(error.emqxMessage));
}

/** True when a create failed because the resource already exists (concurrent creator). */
export function isAlreadyExistsError(error: unknown): boolean {
  if (!(error instanceof EmqxApiError)) return false;
  if (error.code === 'ALREADY_EXISTS') return true;
  return error.status === 400 && /duplicated_authz_source_type|already exist/i.test(error.emqxMessage);
}
