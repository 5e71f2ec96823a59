// /api/v5/clients — connected clients, kick, per-client authorization cache
// (EMQX `emqx_mgmt_api_clients`).
import type { Socket } from 'node:net';
import type { FastifyPluginAsync } from 'fastify';
import { toRfc3339Millis } from '../../emqx-values.js';
import type { ClientInfo } from '../../emqx-types.js';
import { badRequest, notFound } from '../api-error.js';
import type { ManagementContext } from '../http-api.js';
import type { ClientSession } from '../sessions.js';
import { pageParams, paginate, repeated } from './pagination.js';

const clientNotFound = () => notFound('CLIENTID_NOT_FOUND', 'Client ID not found');

export function clientRecord(session: ClientSession, context: ManagementContext): ClientInfo {
  const socket = session.client.conn as Partial<Socket>;
  const subscriptions = Object.keys((session.client as unknown as { subscriptions?: Record<string, unknown> }).subscriptions ?? {});
  const zone = context.store.mqttZone();
  return {
    clientid: session.clientid,
    username: session.username,
    node: context.nodeName,
    ip_address: session.peerhost,
    port: session.peerport,
    listener: session.listenerId,
    proto_name: 'MQTT',
    proto_ver: session.protoVer,
    clean_start: session.cleanStart,
    keepalive: session.keepalive,
    expiry_interval: 0,
    is_bridge: false,
    is_persistent: !session.cleanStart,
    durable: false,
    mountpoint: null,
    zone: 'default',
    enable_authn: true,
    connected: true,
    connected_at: toRfc3339Millis(session.connectedAt ?? session.createdAt),
    created_at: toRfc3339Millis(session.createdAt),
    subscriptions_cnt: subscriptions.length,
    subscriptions_max: zone.max_subscriptions ?? 'infinity',
    inflight_cnt: 0,
    inflight_max: zone.max_inflight ?? 32,
    mqueue_len: 0,
    mqueue_max: zone.max_mqueue_len ?? 1000,
    mqueue_dropped: 0,
    awaiting_rel_cnt: 0,
    awaiting_rel_max: zone.max_awaiting_rel ?? 100,
    ...session.counters,
    recv_oct: socket.bytesRead ?? 0,
    send_oct: socket.bytesWritten ?? 0,
    client_attrs: { ...session.clientAttrs },
  };
}

function likeMatch(value: string | null, pattern: string): boolean {
  return value !== null && value.includes(pattern);
}

function project(record: ClientInfo, fields: string | undefined): Record<string, unknown> {
  if (!fields || fields === 'all') return record;
  const wanted = fields.split(',').map((field) => field.trim()).filter(Boolean);
  const result: Record<string, unknown> = {};
  for (const field of wanted) if (field in record) result[field] = record[field];
  return result;
}

export function clientsRoutes(context: ManagementContext): FastifyPluginAsync {
  const { sessions } = context;
  return async (app) => {
    app.get('/clients', async (request) => {
      const query = request.query as Record<string, unknown>;
      const { page, limit } = pageParams(query);
      const clientids = repeated(query.clientid);
      const usernames = repeated(query.username);
      const likeClientid = typeof query.like_clientid === 'string' ? query.like_clientid : undefined;
      const likeUsername = typeof query.like_username === 'string' ? query.like_username : undefined;
      const ipAddress = typeof query.ip_address === 'string' ? query.ip_address : undefined;
      const connState = typeof query.conn_state === 'string' ? query.conn_state : undefined;
      if (connState !== undefined && !['connected', 'idle', 'disconnected'].includes(connState)) {
        throw badRequest(JSON.stringify({ kind: 'validation_error', path: 'conn_state', reason: 'unable_to_convert_to_enum_symbol', value: connState }));
      }
      const matching = sessions.list().filter(
        (session) =>
          (clientids.length === 0 || clientids.includes(session.clientid)) &&
          (usernames.length === 0 || (session.username !== null && usernames.includes(session.username))) &&
          (likeClientid === undefined || likeMatch(session.clientid, likeClientid)) &&
          (likeUsername === undefined || likeMatch(session.username, likeUsername)) &&
          (ipAddress === undefined || session.peerhost === ipAddress) &&
          (connState === undefined || connState === 'connected'),
      );
      const result = paginate(matching, page, limit);
      const fields = typeof query.fields === 'string' ? query.fields : undefined;
      return { data: result.data.map((session) => project(clientRecord(session, context), fields)), meta: result.meta };
    });

    app.get<{ Params: { clientid: string } }>('/clients/:clientid', async (request) => {
      const session = sessions.find(request.params.clientid);
      if (!session) throw clientNotFound();
      return clientRecord(session, context);
    });

    app.delete<{ Params: { clientid: string } }>('/clients/:clientid', async (request, reply) => {
      const session = sessions.find(request.params.clientid);
      if (!session) throw clientNotFound();
      context.kick(session);
      return reply.code(204).send();
    });

    app.post('/clients/kickout/bulk', async (request, reply) => {
      const body = request.body;
      if (!Array.isArray(body) || !body.every((item) => typeof item === 'string')) throw badRequest('Expected a list of client ids');
      for (const clientid of body as string[]) {
        const session = sessions.find(clientid);
        if (session) context.kick(session);
      }
      return reply.code(204).send();
    });

    app.get<{ Params: { clientid: string } }>('/clients/:clientid/subscriptions', async (request) => {
      const session = sessions.find(request.params.clientid);
      if (!session) throw clientNotFound();
      const subscriptions = (session.client as unknown as { subscriptions?: Record<string, { qos?: number }> }).subscriptions ?? {};
      return Object.entries(subscriptions).map(([topic, subscription]) => ({
        topic,
        qos: subscription.qos ?? 0,
        clientid: session.clientid,
        node: context.nodeName,
        nl: 0,
        rap: 0,
        rh: 0,
      }));
    });

    app.get<{ Params: { clientid: string } }>('/clients/:clientid/authorization/cache', async (request) => {
      const session = sessions.find(request.params.clientid);
      if (!session) throw clientNotFound();
      const now = Date.now();
      return [...session.authzCache.entries()]
        .filter(([, cached]) => cached.expiresAt > now)
        .map(([key, cached]) => {
          const [action, qos, ...rest] = key.split('|');
          const topic = action === 'publish' ? rest.slice(1).join('|') : rest.join('|');
          const access: Record<string, unknown> = { action_type: action, qos: Number(qos) };
          if (action === 'publish') access.retain = rest[0] === 'true';
          return { access, topic, result: cached.decision, updated_time: cached.expiresAt };
        });
    });

    app.delete<{ Params: { clientid: string } }>('/clients/:clientid/authorization/cache', async (request, reply) => {
      const session = sessions.find(request.params.clientid);
      if (!session) throw clientNotFound();
      session.authzCache.clear();
      return reply.code(204).send();
    });
  };
}
