import fp from 'fastify-plugin';
import { createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { LRUCache } from 'lru-cache';
import { verifyToken } from '@pepeunit/common';
import { NoAccessError } from '../errors.js';
import type { UserRole, UserStatus } from '../domain/enums.js';

/** The caller of a request (pepeunit-backend.md §4.1). No token means the anonymous Bot agent. */
export type Agent =
  | { readonly type: 'Bot'; readonly uuid: string }
  | { readonly type: 'User'; readonly uuid: string; readonly role: UserRole; readonly status: UserStatus; readonly login: string }
  | { readonly type: 'Unit'; readonly uuid: string; readonly creatorUuid: string | null; readonly visibilityLevel: string }
  | { readonly type: 'Backend'; readonly uuid: string }
  | { readonly type: 'Grafana'; readonly uuid: string }
  | { readonly type: 'GrafanaUnitNode'; readonly uuid: string; readonly panelUuid: string };
export type AgentType = Agent['type'];

declare module 'fastify' {
  interface FastifyRequest {
    /** Resolves (once per request) the agent behind `x-auth-token`; throws 403 for bad tokens. */
    agent(): Promise<Agent>;
  }
  interface FastifyInstance {
    resolveAgent(token: string | undefined): Promise<Agent>;
    /**
     * Agents resolved from tokens are cached (the user or unit row behind a token is read once,
     * not on every request); `forgetAgents()` drops them all. Called whenever users, units or
     * permissions change (here, and in every replica through the ACL change notification).
     */
    forgetAgents(): void;
  }
}

/** RFC 4122 version-5 UUID (the Backend agent's uuid is uuid5(NAMESPACE_DNS, PU_DOMAIN)). */
export function uuid5(name: string, namespace = '6ba7b810-9dad-11d1-80b4-00c04fd430c8'): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  const hash = createHash('sha1').update(Buffer.concat([ns, Buffer.from(name, 'utf8')])).digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const AGENT_KEY = Symbol('agent');

/** Cached agents: bounded, short-lived (a safety net; changes clear the cache at once). */
const AGENT_CACHE_MAX = 10_000;
const AGENT_CACHE_TTL_MS = 60_000;

export default fp(async (app) => {
  const { secretKey, domain } = app.config;
  const backendUuid = uuid5(domain);
  // Keyed by the token text, filled only for correctly signed tokens; entries of expiring tokens
  // are checked against `exp` on every hit. Failures (403) are never cached.
  const cache = new LRUCache<string, { agent: Agent; expSeconds: number | null }>({ max: AGENT_CACHE_MAX, ttl: AGENT_CACHE_TTL_MS });
  let generation = 0;

  async function resolveAgent(token: string | undefined): Promise<Agent> {
    if (token === undefined || token === '') return { type: 'Bot', uuid: crypto.randomUUID() };
    // Only verified tokens are cached, keyed by their exact text: a hit needs no signature check
    // again, only the expiry.
    const cached = cache.get(token);
    if (cached && (cached.expSeconds === null || cached.expSeconds > Date.now() / 1000)) return cached.agent;
    const verified = verifyToken(token, secretKey);
    if (!verified.ok) throw new NoAccessError(verified.reason === 'expired' ? 'Token expired' : 'Token is invalid');
    const started = generation;
    const agent = await resolveVerified(verified.claims);
    // A change while the rows were read would be missed by this entry: do not keep it.
    if (started === generation && agent.type !== 'Bot') cache.set(token, { agent, expSeconds: typeof verified.claims.exp === 'number' ? verified.claims.exp : null });
    return agent;
  }

  async function resolveVerified(claims: Record<string, unknown> & { type?: unknown }): Promise<Agent> {
    const uuid = typeof claims.uuid === 'string' ? claims.uuid : '';
    switch (claims.type) {
      case 'User': {
        const { rows } = await app.pg.query<{ uuid: string; role: UserRole; status: UserStatus; login: string; valid_after: number | null }>(
          `SELECT uuid, role, status, login, extract(epoch FROM tokens_valid_after)::float8 AS valid_after FROM users WHERE uuid = $1`,
          [isUuidLike(uuid) ? uuid : null],
        );
        const user = rows[0];
        if (!user) throw new NoAccessError('User not found');
        if (user.status === 'Blocked') throw new NoAccessError('Agent is blocked or not found');
        // A password change revokes the tokens issued before it (tokens_valid_after, UTC seconds).
        if (user.valid_after !== null) {
          const issuedAt = typeof claims.iat === 'number' ? claims.iat : typeof claims.exp === 'number' ? claims.exp - app.config.authTokenExpiration : 0;
          if (issuedAt < user.valid_after) throw new NoAccessError('Token revoked: the password changed after it was issued');
        }
        return { type: 'User', uuid: user.uuid, role: user.role, status: user.status, login: user.login };
      }
      case 'Unit': {
        const { rows } = await app.pg.query<{ uuid: string; creator_uuid: string | null; visibility_level: string; owner_status: string | null }>(
          `SELECT u.uuid, u.creator_uuid, u.visibility_level, o.status AS owner_status
             FROM units u LEFT JOIN users o ON o.uuid = u.creator_uuid WHERE u.uuid = $1`,
          [isUuidLike(uuid) ? uuid : null],
        );
        const unit = rows[0];
        if (!unit) throw new NoAccessError('Unit not found');
        // Blocking an owner blocks their units too (REST here, MQTT in the broker callbacks).
        if (unit.owner_status === 'Blocked') throw new NoAccessError('Agent is blocked or not found');
        return { type: 'Unit', uuid: unit.uuid, creatorUuid: unit.creator_uuid, visibilityLevel: unit.visibility_level };
      }
      case 'Backend':
        if (claims.domain !== domain) throw new NoAccessError('Token is invalid');
        return { type: 'Backend', uuid: backendUuid };
      case 'Grafana':
        if (!isUuidLike(uuid)) throw new NoAccessError('Token is invalid');
        return { type: 'Grafana', uuid };
      case 'GrafanaUnitNode':
        if (!isUuidLike(uuid) || typeof claims.panel_uuid !== 'string') throw new NoAccessError('Token is invalid');
        return { type: 'GrafanaUnitNode', uuid, panelUuid: claims.panel_uuid };
      default:
        throw new NoAccessError('Invalid agent type');
    }
  }

  app.decorate('resolveAgent', resolveAgent);
  app.decorate('forgetAgents', () => {
    generation += 1;
    cache.clear();
  });
  app.decorateRequest('agent', function (this: FastifyRequest & { [AGENT_KEY]?: Promise<Agent> }) {
    const header = this.headers['x-auth-token'];
    this[AGENT_KEY] ??= resolveAgent(Array.isArray(header) ? header[0] : header);
    return this[AGENT_KEY];
  });
}, { name: 'pepeunit-auth', dependencies: ['pepeunit-core'] });

export function isUuidLike(value: unknown): value is string {
  return typeof value === 'string' && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value);
}
