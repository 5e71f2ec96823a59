/**
 * The bot acts as the bound user through the backend's own REST API (in-process `app.inject` with
 * a short-lived User JWT): every access rule, visibility filter and validation of the REST routes
 * applies to the bot unchanged, as the reference bot calls the same services with the chat id as
 * credential.
 */
import type { FastifyInstance } from 'fastify';
import { userToken } from '@pepeunit/common';

/** A REST error shown to the user as the reference's error text (`<status>: <code>: <Template>: <message>`). */
export class BotUserError extends Error {
  constructor(message: string, readonly status = 422) {
    super(message);
    this.name = 'BotUserError';
  }
}

export type Query = Record<string, string | number | boolean | ReadonlyArray<string | number> | undefined>;

function queryString(query: Query | undefined): string {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) params.append(key, String(v));
    else params.append(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

export class RestAsUser {
  private readonly token: string;
  private readonly api: string;

  constructor(private readonly app: FastifyInstance, userUuid: string) {
    this.token = userToken(userUuid, app.config.secretKey, 300);
    this.api = `${app.config.appPrefix}${app.config.apiV1Prefix}`;
  }

  private async call(method: 'GET' | 'POST' | 'PATCH', path: string, query?: Query, body?: unknown): Promise<{ status: number; body: Buffer; headers: Record<string, unknown> }> {
    const res = await this.app.inject({
      method,
      url: `${this.api}${path}${queryString(query)}`,
      headers: { 'x-auth-token': this.token },
      ...(body !== undefined ? { payload: body as object } : {}),
    });
    if (res.statusCode >= 400) {
      let detail = `${res.statusCode}`;
      try {
        const parsed = res.json() as { detail?: unknown };
        if (typeof parsed.detail === 'string') detail = parsed.detail;
      } catch {
        // not JSON
      }
      throw new BotUserError(detail, res.statusCode);
    }
    return { status: res.statusCode, body: res.rawPayload, headers: res.headers };
  }

  async get<T>(path: string, query?: Query): Promise<T> {
    const res = await this.call('GET', path, query);
    return JSON.parse(res.body.toString('utf8')) as T;
  }

  async getBytes(path: string, query?: Query): Promise<Buffer> {
    return (await this.call('GET', path, query)).body;
  }

  async post(path: string, query?: Query, body?: unknown): Promise<void> {
    await this.call('POST', path, query, body);
  }

  async patch<T>(path: string, body: unknown): Promise<T> {
    const res = await this.call('PATCH', path, undefined, body);
    return JSON.parse(res.body.toString('utf8')) as T;
  }
}
