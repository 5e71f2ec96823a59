// /api/v5/subscriptions — who is subscribed to what (EMQX `emqx_mgmt_api_subscriptions`): `topic`
// (exact filter as subscribed), `match_topic` (filters that match a topic name), `clientid`, `qos`,
// paginated. The backend uses it to cut the sessions of units that lost access to a topic.
import type { FastifyPluginAsync } from 'fastify';
import { badRequest } from '../api-error.js';
import type { ManagementContext } from '../http-api.js';
import { topicMatches } from '../access/topic-match.js';
import { pageParams, paginate } from './pagination.js';

export interface SubscriptionRecord {
  clientid: string;
  topic: string;
  qos: number;
  node: string;
  nl: number;
  rap: number;
  rh: number;
}

export function subscriptionsRoutes(context: ManagementContext): FastifyPluginAsync {
  return async (app) => {
    app.get('/subscriptions', async (request) => {
      const query = request.query as Record<string, unknown>;
      const { page, limit } = pageParams(query);
      const topic = typeof query.topic === 'string' ? query.topic : undefined;
      const matchTopic = typeof query.match_topic === 'string' ? query.match_topic : undefined;
      const clientid = typeof query.clientid === 'string' ? query.clientid : undefined;
      const qosText = typeof query.qos === 'string' ? query.qos : undefined;
      if (qosText !== undefined && !['0', '1', '2'].includes(qosText)) {
        throw badRequest(JSON.stringify({ kind: 'validation_error', path: 'qos', reason: 'not_in_range', value: qosText }));
      }
      const records: SubscriptionRecord[] = [];
      for (const session of context.sessions.list()) {
        if (clientid !== undefined && session.clientid !== clientid) continue;
        const subscriptions = (session.client as unknown as { subscriptions?: Record<string, { qos?: number }> }).subscriptions ?? {};
        for (const [filter, subscription] of Object.entries(subscriptions)) {
          const qos = subscription?.qos ?? 0;
          if (topic !== undefined && filter !== topic) continue;
          if (matchTopic !== undefined && !topicMatches(matchTopic, filter)) continue;
          if (qosText !== undefined && qos !== Number(qosText)) continue;
          records.push({ clientid: session.clientid, topic: filter, qos, node: context.nodeName, nl: 0, rap: 0, rh: 0 });
        }
      }
      return paginate(records, page, limit);
    });
  };
}
