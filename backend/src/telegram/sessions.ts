/**
 * grammY session storage shared by every replica: Redis when PU_REDIS_URL is set (keys
 * `pepeunit:tg:session:<chat>`, 30 days TTL), else the Postgres table `telegram_sessions`.
 * Session data is small (list filters, page, a pending search).
 */
import type { Pool } from 'pg';
import type { StorageAdapter } from 'grammy';
import { Redis } from 'ioredis';

const TTL_SECONDS = 30 * 86400;
const MAX_SESSION_BYTES = 16 * 1024;

export function postgresSessionStorage<T>(pg: Pool): StorageAdapter<T> {
  return {
    async read(key) {
      const { rows } = await pg.query<{ value: T }>('SELECT value FROM telegram_sessions WHERE key = $1', [key]);
      return rows[0]?.value;
    },
    async write(key, value) {
      const json = JSON.stringify(value);
      if (json.length > MAX_SESSION_BYTES) throw new Error('bot session too large');
      await pg.query(
        `INSERT INTO telegram_sessions (key, value, update_datetime) VALUES ($1, $2::jsonb, now())
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, update_datetime = now()`,
        [key, json],
      );
    },
    async delete(key) {
      await pg.query('DELETE FROM telegram_sessions WHERE key = $1', [key]);
    },
  };
}

export function redisSessionStorage<T>(redis: Redis): StorageAdapter<T> {
  const k = (key: string) => `pepeunit:tg:session:${key}`;
  return {
    async read(key) {
      const raw = await redis.get(k(key));
      return raw === null ? undefined : (JSON.parse(raw) as T);
    },
    async write(key, value) {
      const json = JSON.stringify(value);
      if (json.length > MAX_SESSION_BYTES) throw new Error('bot session too large');
      await redis.set(k(key), json, 'EX', TTL_SECONDS);
    },
    async delete(key) {
      await redis.del(k(key));
    },
  };
}

export function createSessionStorage<T>(pg: Pool, redisUrl: string): { storage: StorageAdapter<T>; close(): Promise<void> } {
  if (!redisUrl) return { storage: postgresSessionStorage<T>(pg), close: async () => {} };
  const redis = new Redis(redisUrl, { lazyConnect: false, maxRetriesPerRequest: 2 });
  redis.on('error', () => {});
  return { storage: redisSessionStorage<T>(redis), close: async () => void (await redis.quit().catch(() => redis.disconnect())) };
}
