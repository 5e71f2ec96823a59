/**
 * MQTT authentication and authorization decisions for the broker's HTTP callbacks.
 *
 * Authorization follows the reference algorithm (pepeunit-backend.md §3.1), made action-aware and
 * default-deny:
 *  - only Backend and Unit tokens are ever allowed; the topic's first level must be PU_DOMAIN;
 *  - 5-level system topics: Backend may do anything; a Unit may publish only
 *    `<domain>/output_base_topic/<own uuid>/<state|log>/pepeunit` and subscribe only
 *    `<domain>/input_base_topic/<own uuid>/<update|env_update|schema_update|log_sync>/pepeunit`;
 *  - unit-node topics `<domain>/<node>[/pepeunit]` (shape must match the node's template name):
 *    Backend may do anything and may use `+` for the node; a Unit may publish only to its own
 *    Output nodes, and subscribe to its own nodes and to other units' Output nodes it can see
 *    (Public, Internal, or Private with a permission — edges create those permissions);
 *  - `pepeunit_ingest/...` (the ingest's rules intake) is reserved to Backend tokens;
 *  - anything else is denied.
 * Decisions are cached in-process; `invalidate()` (called on every change to units, nodes, edges
 * or permissions, locally or via Postgres NOTIFY from another replica) drops them all at once.
 *
 * The callbacks are reachable without authentication by design (the broker calls them for every
 * stranger's CONNECT), so nothing a caller sends may grow memory: only tokens with a valid
 * signature are resolved and cached, decisions are keyed by the resolved caller (not by the raw
 * token text), topics longer than the broker accepts are denied before any lookup, and both
 * caches are LRUs bounded in entries and bytes.
 */
import type { Pool } from 'pg';
import { LRUCache } from 'lru-cache';
import { verifyToken, isUuid, isUnitClientId, InputBasePurpose, OutputBasePurpose, BACKEND_SUFFIX, INGEST_TOPIC_PREFIX } from '@pepeunit/common';

export type MqttAction = 'publish' | 'subscribe';
export type Decision = 'allow' | 'deny';

interface Caller {
  readonly type: 'Backend' | 'Unit';
  readonly uuid: string;
}

interface NodeRow {
  uuid: string;
  type: 'Input' | 'Output';
  unit_uuid: string | null;
  visibility_level: string;
  topic_name: string;
}

const INPUT_PURPOSES = new Set<string>(InputBasePurpose);
const OUTPUT_PURPOSES = new Set<string>(OutputBasePurpose);

/** Strips `$share/<group>/` and `$queue/` so shared subscriptions are judged by their real filter. */
export function realTopic(topic: string): string {
  if (topic.startsWith('$share/')) {
    const rest = topic.indexOf('/', 7);
    return rest === -1 ? '' : topic.slice(rest + 1);
  }
  if (topic.startsWith('$queue/')) return topic.slice(7);
  return topic;
}

/** Longest topic ever judged (EMQX caps topics at 65535 bytes; Pepeunit topics are < 200). */
export const MAX_TOPIC_LENGTH = 1024;
/** Longest token ever verified (unit and backend JWTs are ~200 bytes). */
export const MAX_TOKEN_LENGTH = 4096;

export class MqttAccess {
  #generation = 0;
  readonly #decisions: LRUCache<string, { generation: number; decision: Decision }>;
  readonly #callers: LRUCache<string, { generation: number; caller: Caller | null }>;
  hits = 0;
  misses = 0;

  constructor(
    private readonly pg: Pool,
    private readonly domain: string,
    private readonly secretKey: string,
    opts: { maxEntries?: number; maxBytes?: number } = {},
  ) {
    const maxEntries = opts.maxEntries ?? 100_000;
    const maxBytes = opts.maxBytes ?? 32 * 1024 * 1024;
    // Sizes count the key's characters plus a fixed overhead per entry.
    this.#decisions = new LRUCache({ max: maxEntries, maxSize: maxBytes, sizeCalculation: (_value, key) => key.length + 64 });
    this.#callers = new LRUCache({ max: Math.max(1, Math.floor(maxEntries / 4)), maxSize: Math.max(1, Math.floor(maxBytes / 4)), sizeCalculation: (_value, key) => key.length + 96 });
  }

  /** Drops every cached decision (units, nodes, edges or permissions changed). */
  invalidate(): void {
    this.#generation++;
    this.#decisions.clear();
    this.#callers.clear();
  }

  get generation(): number {
    return this.#generation;
  }

  /** Entries and approximate bytes held by the caches (bounded; for tests and metrics). */
  cacheStats(): { decisions: number; callers: number; bytes: number } {
    return { decisions: this.#decisions.size, callers: this.#callers.size, bytes: this.#decisions.calculatedSize + this.#callers.calculatedSize };
  }

  /** Resolves the caller of an MQTT username (a JWT); null = not a valid Backend/Unit agent. */
  async caller(token: string): Promise<Caller | null> {
    if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) return null;
    // Only a correctly signed token is worth a lookup and a cache entry: garbage is refused at
    // the cost of one HMAC, and never remembered by its text.
    const verified = verifyToken(token, this.secretKey);
    if (!verified.ok) return null;
    const cached = this.#callers.get(token);
    if (cached && cached.generation === this.#generation) return cached.caller;
    const generation = this.#generation;
    const caller = await this.#resolveCaller(verified.claims);
    this.#callers.set(token, { generation, caller });
    return caller;
  }

  async #resolveCaller(claims: Record<string, unknown>): Promise<Caller | null> {
    if (claims.type === 'Backend') return claims.domain === this.domain ? { type: 'Backend', uuid: '' } : null;
    if (claims.type === 'Unit' && typeof claims.uuid === 'string' && isUuid(claims.uuid)) {
      // A unit exists and its owner is not blocked (blocking an owner blocks the units).
      const { rowCount } = await this.pg.query(
        `SELECT 1 FROM units u LEFT JOIN users o ON o.uuid = u.creator_uuid
          WHERE u.uuid = $1 AND (o.status IS NULL OR o.status <> 'Blocked')`,
        [claims.uuid],
      );
      return rowCount ? { type: 'Unit', uuid: claims.uuid.toLowerCase() } : null;
    }
    return null;
  }

  async authorize(token: string, topic: string, action: MqttAction): Promise<Decision> {
    if (action !== 'publish' && action !== 'subscribe') return 'deny';
    if (topic.length === 0 || topic.length > MAX_TOPIC_LENGTH) return 'deny';
    let caller: Caller | null;
    try {
      caller = await this.caller(token);
    } catch {
      return 'deny';
    }
    if (!caller) return 'deny';
    const key = `${action}\u0000${caller.type}:${caller.uuid}\u0000${topic}`;
    const cached = this.#decisions.get(key);
    if (cached && cached.generation === this.#generation) {
      this.hits++;
      return cached.decision;
    }
    this.misses++;
    const generation = this.#generation;
    let decision: Decision = 'deny';
    try {
      decision = await this.#decide(caller, realTopic(topic), action);
    } catch {
      decision = 'deny';
    }
    this.#decisions.set(key, { generation, decision });
    return decision;
  }

  async #decide(caller: Caller, topic: string, action: MqttAction): Promise<Decision> {
    if (topic.length === 0) return 'deny';
    const parts = topic.split('/');
    // The ingest's rules intake (republished by broker rules) is reserved to Backend tokens.
    if (parts[0] === INGEST_TOPIC_PREFIX) return caller.type === 'Backend' ? 'allow' : 'deny';
    if (parts[0] !== this.domain) return 'deny';

    if (parts.length === 5) {
      if (caller.type === 'Backend') return 'allow';
      const [, destination, unitUuid, purpose, suffix] = parts as [string, string, string, string, string];
      if (suffix !== BACKEND_SUFFIX || unitUuid.toLowerCase() !== caller.uuid) return 'deny';
      if (destination === 'output_base_topic' && action === 'publish' && OUTPUT_PURPOSES.has(purpose)) return 'allow';
      if (destination === 'input_base_topic' && action === 'subscribe' && INPUT_PURPOSES.has(purpose)) return 'allow';
      return 'deny';
    }

    if (parts.length === 2 || parts.length === 3) {
      if (parts.length === 3 && parts[2] !== BACKEND_SUFFIX) return 'deny';
      const nodePart = parts[1]!;
      if (caller.type === 'Backend' && (nodePart === '+' || isUuid(nodePart))) return 'allow';
      if (!isUuid(nodePart)) return 'deny';
      const { rows } = await this.pg.query<NodeRow>('SELECT uuid, type, unit_uuid, visibility_level, topic_name FROM units_nodes WHERE uuid = $1', [nodePart]);
      const node = rows[0];
      if (!node) return 'deny';
      const pipeShaped = node.topic_name.endsWith(`/${BACKEND_SUFFIX}`);
      if (pipeShaped !== (parts.length === 3)) return 'deny';
      const own = node.unit_uuid === caller.uuid;
      if (action === 'publish') return own && node.type === 'Output' ? 'allow' : 'deny';
      if (own) return 'allow';
      if (node.type !== 'Output') return 'deny';
      if (node.visibility_level === 'Public' || node.visibility_level === 'Internal') return 'allow';
      if (node.visibility_level === 'Private') {
        const { rowCount } = await this.pg.query('SELECT 1 FROM permissions WHERE resource_unit_node_uuid = $1 AND agent_unit_uuid = $2 LIMIT 1', [node.uuid, caller.uuid]);
        return rowCount ? 'allow' : 'deny';
      }
      return 'deny';
    }
    return 'deny';
  }

  /**
   * EMQX 5 HTTP authentication: a valid Backend token, or the token of an existing Unit whose
   * owner is not blocked connecting with one of its own client ids (`isUnitClientId`: the unit's
   * uuid, optionally with a `-`/`_` suffix). Nobody is superuser.
   */
  async authenticate(username: string, clientid: string | undefined): Promise<{ result: 'allow' | 'deny'; is_superuser: false; client_attrs?: Record<string, string> }> {
    const caller = await this.caller(username);
    if (!caller) return { result: 'deny', is_superuser: false };
    if (caller.type === 'Unit' && (clientid === undefined || !isUnitClientId(clientid, caller.uuid))) return { result: 'deny', is_superuser: false };
    return {
      result: 'allow',
      is_superuser: false,
      client_attrs: caller.type === 'Unit' ? { agent_type: 'Unit', unit_uuid: caller.uuid } : { agent_type: 'Backend' },
    };
  }
}
