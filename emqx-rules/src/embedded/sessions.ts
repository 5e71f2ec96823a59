// Per-connection state the embedded broker keeps beside aedes' own client: who authenticated,
// the attributes and superuser flag from the authenticator, the authorization cache and the
// counters EMQX exposes on `/clients`.
import type { Client } from 'aedes';
import type { AccessSubject } from './access/acl-file.js';
import type { ResponseAcl } from './access/response-acl.js';

export interface CachedDecision {
  decision: 'allow' | 'deny';
  expiresAt: number;
}

export interface ClientCounters {
  recv_msg: number;
  'recv_msg.qos0': number;
  'recv_msg.qos1': number;
  'recv_msg.qos2': number;
  'recv_msg.dropped': number;
  send_msg: number;
  'send_msg.qos0': number;
  'send_msg.qos1': number;
  'send_msg.qos2': number;
}

export class ClientSession implements AccessSubject {
  readonly createdAt = Date.now();
  connectedAt?: number;
  isSuperuser = false;
  clientAttrs: Record<string, string> = {};
  acl?: ResponseAcl;
  expireAt?: number;
  expireTimer?: NodeJS.Timeout;
  readonly authzCache = new Map<string, CachedDecision>();
  readonly counters: ClientCounters = {
    recv_msg: 0,
    'recv_msg.qos0': 0,
    'recv_msg.qos1': 0,
    'recv_msg.qos2': 0,
    'recv_msg.dropped': 0,
    send_msg: 0,
    'send_msg.qos0': 0,
    'send_msg.qos1': 0,
    'send_msg.qos2': 0,
  };
  /** Publishes are authorised one after another so a client's messages keep their order. */
  publishQueue: Promise<void> = Promise.resolve();
  /** Publishes waiting in `publishQueue` (0: a known decision may be applied synchronously). */
  pendingPublishes = 0;

  constructor(
    readonly client: Client,
    readonly clientid: string,
    readonly username: string | null,
    readonly peerhost: string,
    readonly peerport: number,
    readonly protoVer: number,
    readonly cleanStart: boolean,
    readonly keepalive: number,
    readonly listenerId: string,
  ) {}
}

export class SessionRegistry {
  private readonly byClient = new WeakMap<Client, ClientSession>();
  private readonly connected = new Map<string, ClientSession>();

  attach(session: ClientSession): void {
    this.byClient.set(session.client, session);
  }

  of(client: Client | null | undefined): ClientSession | undefined {
    return client ? this.byClient.get(client) : undefined;
  }

  markConnected(session: ClientSession): void {
    session.connectedAt = Date.now();
    this.connected.set(session.clientid, session);
  }

  markDisconnected(session: ClientSession): void {
    if (session.expireTimer) clearTimeout(session.expireTimer);
    if (this.connected.get(session.clientid) === session) this.connected.delete(session.clientid);
  }

  find(clientid: string): ClientSession | undefined {
    return this.connected.get(clientid);
  }

  /** Connected sessions in connection order. */
  list(): ClientSession[] {
    return [...this.connected.values()];
  }

  clearAllAuthzCaches(): void {
    for (const session of this.connected.values()) session.authzCache.clear();
  }
}
