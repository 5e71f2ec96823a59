// The HTTP request EMQX's `http` authenticator and authorization source send: templated URL
// (values URL-encoded), headers and body; POST sends the body as JSON (or form-encoded when the
// content-type says so), GET moves it into the query string.
import { Agent, request } from 'undici';
import { parseDuration } from '../../emqx-values.js';
import { renderDeep, renderTemplate } from './templates.js';
import type { TemplateVars } from './templates.js';

export interface HttpCalloutConfig {
  method: 'post' | 'get';
  url: string;
  headers: Record<string, string>;
  body: Record<string, unknown>;
  request_timeout: string;
  connect_timeout: string;
  pool_size: number;
  ssl: { enable: boolean; verify?: string };
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'content-length', 'te', 'trailer']);

export type CalloutResult =
  | { kind: 'response'; status: number; contentType: string; body: string }
  | { kind: 'error'; reason: string };

export class HttpCallout {
  private readonly agent: Agent;
  private readonly requestTimeoutMs: number;
  private readonly headers: Record<string, string>;

  constructor(
    private readonly config: HttpCalloutConfig,
    private readonly allowedVars: readonly string[],
  ) {
    this.requestTimeoutMs = parseDuration(config.request_timeout) ?? 5000;
    this.agent = new Agent({
      connections: config.pool_size,
      connect: {
        timeout: parseDuration(config.connect_timeout) ?? 15_000,
        rejectUnauthorized: config.ssl.enable && config.ssl.verify === 'verify_peer',
      },
    });
    this.headers = {};
    for (const [key, value] of Object.entries(config.headers)) {
      // Connection management is undici's job (it refuses these headers); EMQX lists them as defaults.
      if (HOP_BY_HOP.has(key.toLowerCase())) continue;
      this.headers[key.toLowerCase()] = value;
    }
  }

  async call(vars: TemplateVars): Promise<CalloutResult> {
    const headers: Record<string, string> = {};
    for (const [key, value] of Object.entries(this.headers)) headers[key] = renderTemplate(value, vars, this.allowedVars);
    const renderedBody = renderDeep(this.config.body, vars, this.allowedVars) as Record<string, unknown>;
    let url: URL;
    try {
      url = new URL(renderTemplate(this.config.url, vars, this.allowedVars, encodeURIComponent));
    } catch {
      return { kind: 'error', reason: 'invalid url after rendering' };
    }
    let payload: string | undefined;
    if (this.config.method === 'get') {
      delete headers['content-type'];
      for (const [key, value] of Object.entries(renderedBody)) url.searchParams.append(key, stringify(value));
    } else {
      const contentType = headers['content-type'] ?? 'application/json';
      headers['content-type'] = contentType;
      payload = contentType.startsWith('application/x-www-form-urlencoded')
        ? new URLSearchParams(Object.entries(renderedBody).map(([key, value]): [string, string] => [key, stringify(value)])).toString()
        : JSON.stringify(renderedBody);
    }
    if (this.config.ssl.enable && url.protocol === 'http:') url.protocol = 'https:';
    try {
      const response = await request(url, {
        method: this.config.method === 'get' ? 'GET' : 'POST',
        headers,
        body: payload,
        dispatcher: this.agent,
        headersTimeout: this.requestTimeoutMs,
        bodyTimeout: this.requestTimeoutMs,
        signal: AbortSignal.timeout(this.requestTimeoutMs),
      });
      const body = await response.body.text();
      const contentType = String(response.headers['content-type'] ?? '').toLowerCase();
      return { kind: 'response', status: response.statusCode, contentType, body };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? (error as Error).name;
      return { kind: 'error', reason: `${code}: ${(error as Error).message}` };
    }
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }
}

function stringify(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** Parses a 200 answer body: JSON or form-encoded by content type; undefined for anything else. */
export function parseCalloutBody(contentType: string, body: string): Record<string, unknown> | undefined {
  try {
    if (contentType.startsWith('application/json')) {
      const parsed = JSON.parse(body) as unknown;
      return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
    }
    if (contentType.startsWith('application/x-www-form-urlencoded')) {
      return Object.fromEntries(new URLSearchParams(body));
    }
  } catch {
    return undefined;
  }
  return undefined;
}
