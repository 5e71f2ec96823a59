/**
 * Cuts live MQTT sessions when access is removed (issue 10): the broker checks a subscription
 * once, when it is made, so revoking a permission, making a node Private, deleting a unit or
 * blocking its owner must also end the sessions that hold what is no longer allowed. Clients are
 * kicked through the management API (`DELETE /api/v5/clients/{id}`, cluster-wide on EMQX, the
 * same on the embedded broker); a kicked device reconnects, re-subscribes, and the callbacks
 * decide again with the new rules (and a deleted unit, or one of a blocked owner, is refused).
 *
 * Which sessions: a unit's client ids are bound to its uuid (`isUnitClientId`), so its sessions
 * are found with `GET /api/v5/clients?like_clientid=<uuid>`; subscribers of a topic with
 * `GET /api/v5/subscriptions?topic=<topic>`. Failures are logged, never thrown into the request
 * that changed the rules (the change itself is already committed; the broker's authorization
 * cache was cleared).
 */
import { isUnitClientId, type Logger } from '@pepeunit/common';
import type { EmqxManagementClient } from '@pepeunit/emqx-rules';

export interface BrokerSessions {
  /** Kicks every session of these units; resolves with the number of clients kicked. */
  kickUnits(unitUuids: readonly string[], reason: string): Promise<number>;
  /** Kicks the subscribers of `topic` except the backend's own clients and the units in `keepUnits`. */
  kickTopicSubscribers(topic: string, keepUnits: ReadonlySet<string>, reason: string): Promise<number>;
}

const UUID_PREFIX = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/i;

/** The unit a client id belongs to under the binding rule, or null (backend, ingest, anything else). */
export function unitOfClientId(clientid: string): string | null {
  const match = UUID_PREFIX.exec(clientid);
  if (!match) return null;
  const uuid = match[1]!.toLowerCase();
  return isUnitClientId(clientid, uuid) ? uuid : null;
}

export function createBrokerSessions(client: () => EmqxManagementClient | null, logger: Logger): BrokerSessions {
  return {
    async kickUnits(unitUuids, reason) {
      const api = client();
      if (!api || unitUuids.length === 0) return 0;
      let kicked = 0;
      for (const unit of new Set(unitUuids.map((u) => u.toLowerCase()))) {
        try {
          for await (const info of api.iterateClients({ like_clientid: unit, fields: ['clientid'] })) {
            if (!isUnitClientId(info.clientid, unit)) continue;
            if (await api.kickClient(info.clientid)) kicked += 1;
          }
        } catch (err) {
          logger.warn({ unit, reason, err: (err as Error).message }, 'could not cut the MQTT sessions of a unit');
        }
      }
      if (kicked > 0) logger.info({ units: unitUuids.length, kicked, reason }, 'MQTT sessions cut after access was removed');
      return kicked;
    },

    async kickTopicSubscribers(topic, keepUnits, reason) {
      const api = client();
      if (!api) return 0;
      let kicked = 0;
      try {
        const subscribers = new Set<string>();
        for await (const subscription of api.iterateSubscriptions({ topic })) subscribers.add(subscription.clientid);
        for (const clientid of subscribers) {
          const unit = unitOfClientId(clientid);
          // Only unit sessions: the backend and the ingest are trusted and keep their subscriptions.
          if (unit === null || keepUnits.has(unit)) continue;
          if (await api.kickClient(clientid)) kicked += 1;
        }
      } catch (err) {
        logger.warn({ topic, reason, err: (err as Error).message }, 'could not cut the subscribers of a topic');
      }
      if (kicked > 0) logger.info({ topic, kicked, reason }, 'MQTT subscribers cut after access was removed');
      return kicked;
    },
  };
}
