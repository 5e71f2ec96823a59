import fp from 'fastify-plugin';
import { ACL_NOTIFY_CHANNEL } from '@pepeunit/common';
import type { Client } from 'pg';
import pg from 'pg';
import { normalizePostgresUrl } from '@pepeunit/common/postgres';
import { MqttAccess } from '../services/mqtt-access.js';

declare module 'fastify' {
  interface FastifyInstance {
    readonly acl: {
      readonly access: MqttAccess;
      /**
       * Drops cached MQTT decisions here, in every other replica (NOTIFY) and in the broker's
       * cache; then, when access was removed, cuts the live sessions that hold it (`cut`).
       */
      invalidate(reason: string, cut?: AccessCut): Promise<void>;
    };
  }
}

const CHANNEL = ACL_NOTIFY_CHANNEL;

/** Sessions to cut after a change that removed access (issue 10). */
export interface AccessCut {
  /** Every session of these units (a revoked permission, a deleted unit, a blocked owner). */
  readonly units?: readonly string[];
  /** Subscribers of a topic that may no longer read it, except the units still allowed. */
  readonly topic?: { readonly topic: string; readonly keepUnits: readonly string[] };
}

export default fp(async (app) => {
  const access = new MqttAccess(app.pg, app.config.domain, app.config.secretKey);
  const listener: Client = new pg.Client({ connectionString: normalizePostgresUrl(app.config.postgresUrl) });
  let listening = false;
  try {
    await listener.connect();
    await listener.query(`LISTEN ${CHANNEL}`);
    listening = true;
    listener.on('notification', () => {
      access.invalidate();
      app.forgetAgents();
    });
    listener.on('error', (err) => app.log.warn({ err }, 'ACL LISTEN connection error; decisions still invalidate locally'));
  } catch (err) {
    app.log.warn({ err }, 'could not LISTEN for ACL changes; other replicas will not be notified');
  }

  app.decorate('acl', {
    access,
    async invalidate(reason: string, cut?: AccessCut) {
      access.invalidate();
      app.forgetAgents();
      try {
        await app.pg.query(`SELECT pg_notify('${CHANNEL}', $1)`, [reason.slice(0, 200)]);
      } catch (err) {
        app.log.warn({ err }, 'ACL NOTIFY failed');
      }
      await app.deps.clearBrokerAuthzCache?.().catch((err: unknown) => app.log.warn({ err }, 'clearing the broker authorization cache failed'));
      // Decisions are fresh everywhere now: a cut session reconnects into the new rules.
      const sessions = app.deps.brokerSessions;
      if (cut && sessions) {
        if (cut.units?.length) await sessions.kickUnits(cut.units, reason);
        if (cut.topic) await sessions.kickTopicSubscribers(cut.topic.topic, new Set(cut.topic.keepUnits.map((u) => u.toLowerCase())), reason);
      }
    },
  });

  app.addHook('onClose', async () => {
    if (listening) await listener.end().catch(() => {});
  });
}, { name: 'pepeunit-acl', dependencies: ['pepeunit-core', 'pepeunit-auth'] });
