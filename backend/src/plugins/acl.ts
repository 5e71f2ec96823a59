import fp from 'fastify-plugin';
import type { Client } from 'pg';
import pg from 'pg';
import { normalizePostgresUrl } from '@pepeunit/common/postgres';
import { MqttAccess } from '../services/mqtt-access.js';

declare module 'fastify' {
  interface FastifyInstance {
    readonly acl: {
      readonly access: MqttAccess;
      /** Drops cached MQTT decisions here, in every other replica (NOTIFY) and in the broker's cache. */
      invalidate(reason: string): Promise<void>;
    };
  }
}

const CHANNEL = 'pepeunit_acl_changed';

export default fp(async (app) => {
  const access = new MqttAccess(app.pg, app.config.domain, app.config.secretKey);
  const listener: Client = new pg.Client({ connectionString: normalizePostgresUrl(app.config.postgresUrl) });
  let listening = false;
  try {
    await listener.connect();
    await listener.query(`LISTEN ${CHANNEL}`);
    listening = true;
    listener.on('notification', () => access.invalidate());
    listener.on('error', (err) => app.log.warn({ err }, 'ACL LISTEN connection error; decisions still invalidate locally'));
  } catch (err) {
    app.log.warn({ err }, 'could not LISTEN for ACL changes; other replicas will not be notified');
  }

  app.decorate('acl', {
    access,
    async invalidate(reason: string) {
      access.invalidate();
      try {
        await app.pg.query(`SELECT pg_notify('${CHANNEL}', $1)`, [reason.slice(0, 200)]);
      } catch (err) {
        app.log.warn({ err }, 'ACL NOTIFY failed');
      }
      await app.deps.clearBrokerAuthzCache?.().catch((err: unknown) => app.log.warn({ err }, 'clearing the broker authorization cache failed'));
    },
  });

  app.addHook('onClose', async () => {
    if (listening) await listener.end().catch(() => {});
  });
});
