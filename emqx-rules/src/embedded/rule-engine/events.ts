// Event sources of the embedded rule engine (`FROM "$events/..."`, reference/emqx-5.md §3.6,
// wave2-integrations.md §4.4) and the columns each event carries, named and typed as EMQX's
// `emqx_rule_events` builds them. Only the events the platform's rules use are implemented; a
// rule on another event is refused at creation, never accepted and left silent.
import type { Columns } from './evaluator.js';

export const AUTHZ_COMPLETE_EVENT = '$events/client_check_authz_complete';
export const DISCONNECTED_EVENT = '$events/client_disconnected';

export const SUPPORTED_EVENTS: ReadonlySet<string> = new Set([AUTHZ_COMPLETE_EVENT, DISCONNECTED_EVENT]);

/** One authorization decision (every check, cache hits included, as EMQX's hook fires). */
export interface AuthzCompleteEvent {
  clientid: string;
  username: string | null;
  peerhost: string;
  peerport: number;
  topic: string;
  action: 'publish' | 'subscribe';
  result: 'allow' | 'deny';
  /** `cache`, `superuser`, `file`, `http`, `default` (no source matched). */
  authzSource: string;
  clientAttrs: Record<string, string>;
}

/** A connection that ended, with EMQX's reason (`normal`, `kicked`, `keepalive_timeout`, `tcp_closed`, ...). */
export interface DisconnectedEvent {
  clientid: string;
  username: string | null;
  peerhost: string;
  peerport: number;
  sockname: string;
  protoVer: number;
  reason: string;
  connectedAt: number;
  disconnectedAt: number;
  clientAttrs: Record<string, string>;
}

export function authzCompleteColumns(event: AuthzCompleteEvent, node: string): Columns {
  return {
    clientid: event.clientid,
    username: event.username ?? undefined,
    peerhost: event.peerhost,
    peername: `${event.peerhost}:${event.peerport}`,
    topic: event.topic,
    action: event.action,
    result: event.result,
    authz_source: event.authzSource,
    client_attrs: { ...event.clientAttrs },
    event: 'client.check_authz_complete',
    timestamp: Date.now(),
    node,
  };
}

export function disconnectedColumns(event: DisconnectedEvent, node: string): Columns {
  return {
    reason: event.reason,
    clientid: event.clientid,
    username: event.username ?? undefined,
    peername: `${event.peerhost}:${event.peerport}`,
    sockname: event.sockname,
    proto_name: 'MQTT',
    proto_ver: event.protoVer,
    disconn_props: {},
    connected_at: event.connectedAt,
    disconnected_at: event.disconnectedAt,
    client_attrs: { ...event.clientAttrs },
    event: 'client.disconnected',
    timestamp: Date.now(),
    node,
  };
}
