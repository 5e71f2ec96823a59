// Authentication with EMQX 5 semantics (reference/emqx-5.md §5.1–5.2): the global chain is tried
// in order; an HTTP authenticator answers allow / deny / ignore; when every enabled
// authenticator ignores, the connection is refused; an empty (or all-disabled) chain lets
// everyone in.
import type { Logger } from '../../logger.js';
import { HttpCallout, parseCalloutBody } from './http-callout.js';
import type { HttpCalloutConfig } from './http-callout.js';
import { parseResponseAcl } from './response-acl.js';
import type { ResponseAcl } from './response-acl.js';
import { AUTHN_ALLOWED_VARS, disallowedPlaceholders } from './templates.js';

export interface AuthnCredentials {
  clientid: string;
  username: string | null;
  password: string | null;
  peerhost: string;
  peerport: number;
}

/** CONNACK return codes (MQTT 3.1.1): 4 bad user name or password, 5 not authorized. */
export type RefusalCode = 4 | 5;

export type AuthnDecision =
  | { outcome: 'allow'; isSuperuser: boolean; clientAttrs: Record<string, string>; expireAt?: number; acl?: ResponseAcl }
  | { outcome: 'deny'; returnCode: RefusalCode; reason: string };

type AuthnStep = AuthnDecision | { outcome: 'ignore'; reason: string };

const CLIENT_ATTR_KEY = /^[A-Za-z0-9]+[A-Za-z0-9_-]*$/;

export class HttpAuthenticator {
  readonly id = 'password_based:http';
  readonly enabled: boolean;
  private readonly callout: HttpCallout;

  constructor(config: Record<string, unknown>, logger: Logger) {
    this.enabled = config.enable !== false;
    this.callout = new HttpCallout(config as unknown as HttpCalloutConfig, AUTHN_ALLOWED_VARS);
    const disallowed = disallowedPlaceholders([config.url, config.headers, config.body], AUTHN_ALLOWED_VARS);
    if (disallowed.length > 0) {
      logger.warn({ authenticator: this.id, placeholders: disallowed }, 'auth_template_invalid: disallowed placeholders are rendered as is');
    }
  }

  async authenticate(credentials: AuthnCredentials): Promise<AuthnStep> {
    const result = await this.callout.call({
      clientid: credentials.clientid,
      username: credentials.username ?? undefined,
      password: credentials.password ?? undefined,
      peerhost: credentials.peerhost,
      peerport: String(credentials.peerport),
      zone: 'default',
    });
    if (result.kind === 'error') return { outcome: 'ignore', reason: `request failed: ${result.reason}` };
    if (result.status === 204) return { outcome: 'allow', isSuperuser: false, clientAttrs: {} };
    if (result.status !== 200) return { outcome: 'ignore', reason: `HTTP ${result.status}` };
    const body = parseCalloutBody(result.contentType, result.body);
    if (!body) return { outcome: 'ignore', reason: `unreadable response (content-type ${result.contentType || 'none'})` };
    switch (body.result) {
      case 'allow':
        return allowFrom(body);
      case 'deny':
        return { outcome: 'deny', returnCode: 5, reason: 'denied by authenticator' };
      default:
        return { outcome: 'ignore', reason: `result ${JSON.stringify(body.result ?? null)}` };
    }
  }

  async close(): Promise<void> {
    await this.callout.close();
  }
}

function isSuperuserValue(value: unknown): boolean {
  return value === true || value === 'true' || value === 1 || value === '1';
}

function allowFrom(body: Record<string, unknown>): AuthnStep {
  const clientAttrs: Record<string, string> = {};
  if (body.client_attrs && typeof body.client_attrs === 'object' && !Array.isArray(body.client_attrs)) {
    for (const [key, value] of Object.entries(body.client_attrs as Record<string, unknown>)) {
      if (CLIENT_ATTR_KEY.test(key) && typeof value === 'string') clientAttrs[key] = value;
    }
  }
  const decision: AuthnDecision & { outcome: 'allow' } = { outcome: 'allow', isSuperuser: isSuperuserValue(body.is_superuser), clientAttrs };
  if (body.expire_at !== undefined) {
    const nowSeconds = Date.now() / 1000;
    const expireAt = typeof body.expire_at === 'string' ? Number(body.expire_at) : body.expire_at;
    // Seconds only: a value this far ahead is a millisecond timestamp by mistake.
    if (typeof expireAt !== 'number' || !Number.isInteger(expireAt) || expireAt <= nowSeconds || expireAt > nowSeconds * 100) {
      return { outcome: 'deny', returnCode: 4, reason: 'invalid expire_at (must be a future Unix time in seconds)' };
    }
    decision.expireAt = expireAt;
  }
  if (body.acl !== undefined) {
    try {
      decision.acl = parseResponseAcl(body.acl);
    } catch (error) {
      return { outcome: 'deny', returnCode: 4, reason: `invalid acl: ${(error as Error).message}` };
    }
  }
  return decision;
}

/** Runs the chain; `authenticators` are the configured ones in order. */
export async function authenticate(authenticators: readonly HttpAuthenticator[], credentials: AuthnCredentials, logger: Logger): Promise<AuthnDecision> {
  const enabled = authenticators.filter((authenticator) => authenticator.enabled);
  if (enabled.length === 0) return { outcome: 'allow', isSuperuser: false, clientAttrs: {} };
  const reasons: string[] = [];
  for (const authenticator of enabled) {
    const step = await authenticator.authenticate(credentials);
    if (step.outcome !== 'ignore') return step;
    reasons.push(`${authenticator.id}: ${step.reason}`);
    logger.debug({ clientid: credentials.clientid, authenticator: authenticator.id, reason: step.reason }, 'authenticator ignored the client');
  }
  return { outcome: 'deny', returnCode: 5, reason: `no authenticator accepted the client (${reasons.join('; ')})` };
}
