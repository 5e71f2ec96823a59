// Authorization with EMQX 5 semantics (reference/emqx-5.md §5.4): superuser ⇒ allow; then the
// ACL from the authn response; then the per-client cache; then the sources in order (each says
// allow / deny / nomatch); finally `no_match`. Decisions are cached per client with `max_size`
// entries and `ttl`, except for topics matching `excludes`.
import { parseDuration } from '../../emqx-values.js';
import type { Logger } from '../../logger.js';
import type { ClientSession } from '../sessions.js';
import { evaluateAclRules, parseAclRules } from './acl-file.js';
import type { AccessRequest, AccessSubject, AclRule } from './acl-file.js';
import { HttpCallout, parseCalloutBody } from './http-callout.js';
import type { HttpCalloutConfig } from './http-callout.js';
import { checkResponseAcl } from './response-acl.js';
import { AUTHZ_ALLOWED_VARS, disallowedPlaceholders } from './templates.js';
import { topicMatches } from './topic-match.js';

export type SourceDecision = 'allow' | 'deny' | 'nomatch';

export interface AuthorizationSource {
  readonly type: string;
  readonly enabled: boolean;
  authorize(subject: AccessSubject & { peerport?: number }, request: AccessRequest): Promise<SourceDecision>;
  close(): Promise<void>;
}

export class FileSource implements AuthorizationSource {
  readonly type = 'file';
  readonly enabled: boolean;
  private readonly rules: AclRule[];

  constructor(config: Record<string, unknown>) {
    this.enabled = config.enable !== false;
    this.rules = parseAclRules(String(config.rules ?? ''));
  }

  async authorize(subject: AccessSubject, request: AccessRequest): Promise<SourceDecision> {
    return evaluateAclRules(this.rules, subject, request) ?? 'nomatch';
  }

  async close(): Promise<void> {}
}

export class HttpSource implements AuthorizationSource {
  readonly type = 'http';
  readonly enabled: boolean;
  private readonly callout: HttpCallout;

  constructor(
    config: Record<string, unknown>,
    private readonly logger: Logger,
  ) {
    this.enabled = config.enable !== false;
    this.callout = new HttpCallout(config as unknown as HttpCalloutConfig, AUTHZ_ALLOWED_VARS);
    const disallowed = disallowedPlaceholders([config.url, config.headers, config.body], AUTHZ_ALLOWED_VARS);
    if (disallowed.length > 0) logger.warn({ source: 'http', placeholders: disallowed }, 'auth_template_invalid: disallowed placeholders are rendered as is');
  }

  async authorize(subject: AccessSubject & { peerport?: number }, request: AccessRequest): Promise<SourceDecision> {
    const vars: Record<string, string | undefined> = {
      clientid: subject.clientid,
      username: subject.username ?? undefined,
      peerhost: subject.peerhost,
      peerport: subject.peerport === undefined ? undefined : String(subject.peerport),
      proto_name: 'MQTT',
      mountpoint: '',
      zone: 'default',
      topic: request.topic,
      action: request.action,
      qos: String(request.qos),
      retain: String(request.retain),
      access: request.action === 'subscribe' ? '1' : '2',
    };
    for (const [key, value] of Object.entries(subject.clientAttrs)) vars[`client_attrs.${key}`] = value;
    const result = await this.callout.call(vars);
    if (result.kind === 'error') {
      this.logger.warn({ source: 'http', clientid: subject.clientid, reason: result.reason }, 'authorization request failed');
      return 'nomatch';
    }
    if (result.status === 204) return 'allow';
    if (result.status !== 200) return 'nomatch';
    const body = parseCalloutBody(result.contentType, result.body);
    if (body?.result === 'allow' || body?.result === 'deny') return body.result;
    return 'nomatch';
  }

  async close(): Promise<void> {
    await this.callout.close();
  }
}

export interface AuthorizationSettingsView {
  no_match: 'allow' | 'deny';
  deny_action: 'ignore' | 'disconnect';
  cache: { enable: boolean; max_size: number; ttl: string; excludes: string[] };
}

export interface AuthorizationResult {
  decision: 'allow' | 'deny';
  /** Where the decision came from: superuser, acl, cache, file, http, default. */
  source: string;
}

const SUPERUSER: AuthorizationResult = Object.freeze({ decision: 'allow', source: 'superuser' });
const ACL_ALLOW: AuthorizationResult = Object.freeze({ decision: 'allow', source: 'acl' });
const ACL_DENY: AuthorizationResult = Object.freeze({ decision: 'deny', source: 'acl' });
const CACHE_ALLOW: AuthorizationResult = Object.freeze({ decision: 'allow', source: 'cache' });
const CACHE_DENY: AuthorizationResult = Object.freeze({ decision: 'deny', source: 'cache' });

function cacheKey(request: AccessRequest): string {
  return request.action === 'publish' ? `publish|${request.qos}|${request.retain}|${request.topic}` : `subscribe|${request.qos}|${request.topic}`;
}

/** Told of every decision (cache hits included), as EMQX's `client.check_authz_complete` hook. */
export type AuthorizationObserver = (session: ClientSession, request: AccessRequest, result: AuthorizationResult) => void;

export class Authorizer {
  constructor(
    private readonly sources: () => readonly AuthorizationSource[],
    private readonly settings: () => AuthorizationSettingsView,
    private readonly observer?: AuthorizationObserver,
  ) {}

  /**
   * The decision when it is known without asking a source: superuser, the ACL from the authn
   * response, or a live cache entry; `undefined` when the sources must be asked.
   */
  authorizeKnown(session: ClientSession, request: AccessRequest): AuthorizationResult | undefined {
    const known = this.known(session, request);
    if (known && this.observer) this.observer(session, request, known);
    return known;
  }

  private known(session: ClientSession, request: AccessRequest): AuthorizationResult | undefined {
    if (session.isSuperuser) return SUPERUSER;
    if (session.acl) {
      const fromAcl = checkResponseAcl(session.acl, session, request);
      if (fromAcl) return fromAcl === 'allow' ? ACL_ALLOW : ACL_DENY;
    }
    const settings = this.settings();
    if (!this.cacheable(settings, request)) return undefined;
    const key = cacheKey(request);
    const cached = session.authzCache.get(key);
    if (!cached) return undefined;
    if (cached.expiresAt > Date.now()) return cached.decision === 'allow' ? CACHE_ALLOW : CACHE_DENY;
    session.authzCache.delete(key);
    return undefined;
  }

  private cacheable(settings: AuthorizationSettingsView, request: AccessRequest): boolean {
    if (!settings.cache.enable) return false;
    const excludes = settings.cache.excludes;
    for (let index = 0; index < excludes.length; index += 1) {
      if (topicMatches(request.topic, excludes[index] as string)) return false;
    }
    return true;
  }

  async authorize(session: ClientSession, request: AccessRequest): Promise<AuthorizationResult> {
    const known = this.authorizeKnown(session, request);
    if (known) return known;
    const settings = this.settings();
    const cacheable = this.cacheable(settings, request);
    const key = cacheKey(request);
    let result: AuthorizationResult = { decision: settings.no_match, source: 'default' };
    for (const source of this.sources()) {
      if (!source.enabled) continue;
      const decision = await source.authorize(session, request);
      if (decision !== 'nomatch') {
        result = { decision, source: source.type };
        break;
      }
    }
    if (cacheable) {
      const ttl = parseDuration(settings.cache.ttl) ?? 60_000;
      while (session.authzCache.size >= settings.cache.max_size) {
        const oldest = session.authzCache.keys().next();
        if (oldest.done) break;
        session.authzCache.delete(oldest.value);
      }
      session.authzCache.set(key, { decision: result.decision, expiresAt: Date.now() + ttl });
    }
    this.observer?.(session, request, result);
    return result;
  }
}
