// The HTTP action at run time, as EMQX 5.8's "HTTP Server" sink behaves (reference/emqx-5.md
// §4.3, wave2-integrations.md §4.5):
//
// - every rule output is one request (no batching): URL = connector URL + the rendered `path`
//   (joined with `/`, template values URL-encoded), headers = connector headers under the
//   action's (values rendered), body = the rendered `body` template, `${.}` (the whole output as
//   JSON) when it is empty;
// - asynchronous: outputs are buffered (at most `max_buffer_bytes` of bodies; when full the
//   oldest buffered request is dropped, `dropped.queue_full`, as EMQX's replayq does) and sent
//   with at most `inflight_window` × `worker_pool_size` requests in flight over a pool of
//   `pool_size` connections, each pipelining up to `enable_pipelining` requests;
// - 2xx is a success; 429 and 503 (and transport errors) are retried up to `max_retries` times
//   with a growing delay, still counted in flight; any other status is a final failure;
// - a request still buffered after `request_ttl` is dropped (`dropped.expired`); `request_ttl`
//   is also each request's timeout;
// - metrics are EMQX's action counters (matched, success, failed, retried, retried.success,
//   retried.failed, dropped.*, and the inflight / queuing gauges); the rule that sent the output
//   learns the final outcome through `reply`, which is when EMQX counts the rule's
//   `actions.success` / `actions.failed` for asynchronous actions.
// Buffered and in-flight requests live in memory only: they are lost when the broker stops (EMQX
// without a disk buffer behaves the same).
import { Pool } from 'undici';
import { parseByteSize, parseDuration } from '../../emqx-values.js';
import type { Logger } from '../../logger.js';
import { parseTemplate, renderTemplate } from './templates.js';
import type { TemplatePart } from './templates.js';
import type { Value } from './values.js';

/** The connector and action configuration an HTTP action runs with (stored bodies, defaults filled in). */
export interface HttpActionSettings {
  connector: {
    url: string;
    headers: Record<string, string>;
    connect_timeout: string;
    pool_size: number;
    /** Requests sent on one connection before their answers (EMQX pipelines POSTs too). */
    enable_pipelining?: number;
    ssl: { enable: boolean; verify?: string };
  };
  parameters: {
    path: string;
    method: string;
    headers: Record<string, string>;
    body?: string;
    max_retries: number;
  };
  resource_opts: {
    inflight_window: number;
    worker_pool_size: number;
    request_ttl: string;
    max_buffer_bytes: string;
  };
}

export const ACTION_COUNTERS = [
  'matched',
  'dropped',
  'success',
  'failed',
  'received',
  'late_reply',
  'retried',
  'retried.success',
  'retried.failed',
  'dropped.resource_stopped',
  'dropped.resource_not_found',
  'dropped.queue_full',
  'dropped.other',
  'dropped.expired',
] as const;

export type ActionCounter = (typeof ACTION_COUNTERS)[number];
export type ActionCounters = Record<ActionCounter, number>;

export function newActionCounters(): ActionCounters {
  return Object.fromEntries(ACTION_COUNTERS.map((name) => [name, 0])) as ActionCounters;
}

/** Called once per request with its final outcome. */
export type ActionReply = (outcome: 'success' | 'failed') => void;

interface Query {
  path: string;
  headers: Record<string, string>;
  body: string;
  bytes: number;
  enqueuedAt: number;
  attempts: number;
  reply: ActionReply;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'content-length', 'te', 'trailer', 'host']);
const RETRIABLE_STATUS = new Set([429, 503]);
const RETRY_BASE_DELAY_MS = 100;
const RETRY_MAX_DELAY_MS = 5_000;

function compileHeaders(headers: Record<string, string>): Array<[string, TemplatePart[]]> {
  return Object.entries(headers)
    .filter(([name]) => !HOP_BY_HOP.has(name.toLowerCase()))
    .map(([name, value]) => [name.toLowerCase(), parseTemplate(value)]);
}

/** `base` + `/` + `path`, without doubling or losing the slash. */
export function joinUrlPath(basePath: string, path: string): string {
  if (path === '') return basePath === '' ? '/' : basePath;
  const left = basePath.endsWith('/') ? basePath.slice(0, -1) : basePath;
  return path.startsWith('/') ? `${left}${path}` : `${left}/${path}`;
}

export class HttpActionRunner {
  private readonly pool: Pool;
  private readonly basePath: string;
  private readonly method: string;
  private readonly path: TemplatePart[];
  private readonly headers: Array<[string, TemplatePart[]]>;
  private readonly body: TemplatePart[];
  private readonly maxRetries: number;
  private readonly maxInflight: number;
  private readonly ttlMs: number | undefined;
  private readonly maxBufferBytes: number;
  private readonly queue: Query[] = [];
  private queueHead = 0;
  private queuedBytes = 0;
  private inflightCount = 0;
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(
    settings: HttpActionSettings,
    private readonly logger: Logger,
    private readonly actionId: string,
    /** The action's counters (kept by the caller across restarts of the runner). */
    readonly counters: ActionCounters = newActionCounters(),
  ) {
    const url = new URL(settings.connector.url);
    if (settings.connector.ssl.enable && url.protocol === 'http:') url.protocol = 'https:';
    this.basePath = url.pathname === '/' ? '' : url.pathname;
    this.pool = new Pool(url.origin, {
      connections: settings.connector.pool_size,
      // EMQX's HTTP client (ehttpc) pipelines up to `enable_pipelining` requests per connection,
      // whatever the method; undici pipelines only requests marked idempotent (see attempt()).
      pipelining: settings.connector.enable_pipelining ?? 1,
      connect: {
        timeout: parseDuration(settings.connector.connect_timeout) ?? 15_000,
        rejectUnauthorized: url.protocol === 'https:' && settings.connector.ssl.verify === 'verify_peer',
      },
    });
    this.method = settings.parameters.method.toUpperCase();
    this.path = parseTemplate(settings.parameters.path);
    // Connector headers are the defaults; the action's override them (case-insensitive names).
    const merged: Record<string, string> = {};
    for (const [name, value] of Object.entries(settings.connector.headers)) merged[name.toLowerCase()] = value;
    for (const [name, value] of Object.entries(settings.parameters.headers)) merged[name.toLowerCase()] = value;
    this.headers = compileHeaders(merged);
    const body = settings.parameters.body ?? '';
    this.body = parseTemplate(body === '' ? '${.}' : body);
    this.maxRetries = settings.parameters.max_retries;
    this.maxInflight = settings.resource_opts.inflight_window * settings.resource_opts.worker_pool_size;
    const ttl = settings.resource_opts.request_ttl;
    this.ttlMs = ttl === 'infinity' ? undefined : (parseDuration(ttl) ?? 45_000);
    this.maxBufferBytes = parseByteSize(settings.resource_opts.max_buffer_bytes) ?? 256 * 1024 * 1024;
  }

  get inflight(): number {
    return this.inflightCount;
  }

  get queuing(): number {
    return this.queue.length - this.queueHead;
  }

  /** Renders one rule output into a request and buffers it. */
  send(selected: Record<string, Value>, reply: ActionReply): void {
    this.counters.matched += 1;
    if (this.closed) {
      this.drop('dropped.resource_stopped', reply);
      return;
    }
    const path = renderTemplate(this.path, selected, encodeURIComponent);
    const headers: Record<string, string> = {};
    for (const [name, template] of this.headers) headers[name] = renderTemplate(template, selected);
    if (this.method !== 'GET' && headers['content-type'] === undefined) headers['content-type'] = 'application/json';
    const body = this.method === 'GET' || this.method === 'DELETE' ? '' : renderTemplate(this.body, selected);
    const bytes = Buffer.byteLength(body);
    this.queuedBytes += bytes;
    this.queue.push({ path, headers, body, bytes, enqueuedAt: Date.now(), attempts: 0, reply });
    while (this.queuedBytes > this.maxBufferBytes && this.queuing > 1) {
      const oldest = this.shift() as Query;
      this.drop('dropped.queue_full', oldest.reply);
    }
    this.pump();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
    while (this.queuing > 0) this.drop('dropped.resource_stopped', (this.shift() as Query).reply);
    await this.pool.destroy().catch(() => undefined);
  }

  private shift(): Query | undefined {
    if (this.queueHead >= this.queue.length) return undefined;
    const query = this.queue[this.queueHead] as Query;
    this.queue[this.queueHead] = undefined as unknown as Query;
    this.queueHead += 1;
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue.splice(0, this.queueHead);
      this.queueHead = 0;
    }
    this.queuedBytes -= query.bytes;
    return query;
  }

  private drop(reason: Extract<ActionCounter, `dropped.${string}`>, reply: ActionReply): void {
    this.counters.dropped += 1;
    this.counters[reason] += 1;
    reply('failed');
  }

  private pump(): void {
    while (!this.closed && this.inflightCount < this.maxInflight && this.queuing > 0) {
      const query = this.shift() as Query;
      if (this.ttlMs !== undefined && Date.now() - query.enqueuedAt > this.ttlMs) {
        this.drop('dropped.expired', query.reply);
        continue;
      }
      this.inflightCount += 1;
      this.attempt(query);
    }
  }

  private attempt(query: Query): void {
    // `dispatch` with a handler that only keeps the status: no response stream or promise per
    // request (the body, if any, is read and discarded as it arrives).
    let status: number | undefined;
    let settled = false;
    const settle = (transportError: string | undefined): void => {
      if (settled) return;
      settled = true;
      this.finish(query, status, transportError);
    };
    try {
      this.pool.dispatch(
        {
          method: this.method as 'POST',
          path: joinUrlPath(this.basePath, query.path),
          headers: query.headers,
          body: query.body === '' ? null : query.body,
          headersTimeout: this.ttlMs ?? 0,
          bodyTimeout: this.ttlMs ?? 0,
          // Lets undici pipeline the POST like EMQX does; retries stay the action's (429/503/transport).
          idempotent: true,
        },
        {
          onConnect: () => undefined,
          onHeaders: (statusCode: number) => {
            status = statusCode;
            return true;
          },
          onData: () => true,
          onComplete: () => settle(undefined),
          onError: (error: Error) => settle(`${(error as NodeJS.ErrnoException).code ?? error.name}: ${error.message}`),
        },
      );
    } catch (error) {
      settle(`${(error as NodeJS.ErrnoException).code ?? (error as Error).name}: ${(error as Error).message}`);
    }
  }

  private finish(query: Query, status: number | undefined, transportError: string | undefined): void {
    if (this.closed) return;
    const success = status !== undefined && status >= 200 && status < 300;
    const retriable = !success && (transportError !== undefined || RETRIABLE_STATUS.has(status as number));
    if (retriable && query.attempts < this.maxRetries) {
      query.attempts += 1;
      this.counters.retried += 1;
      const delay = Math.min(RETRY_MAX_DELAY_MS, RETRY_BASE_DELAY_MS * 2 ** (query.attempts - 1));
      const timer = setTimeout(() => {
        this.retryTimers.delete(timer);
        this.attempt(query);
      }, delay);
      timer.unref();
      this.retryTimers.add(timer);
      return;
    }
    this.inflightCount -= 1;
    if (success) {
      this.counters.success += 1;
      if (query.attempts > 0) this.counters['retried.success'] += 1;
      query.reply('success');
    } else {
      this.counters.failed += 1;
      if (query.attempts > 0) this.counters['retried.failed'] += 1;
      this.logger.debug({ action: this.actionId, status, err: transportError, attempts: query.attempts + 1 }, 'HTTP action request failed');
      query.reply('failed');
    }
    this.pump();
  }
}
