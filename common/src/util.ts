/**
 * Small utilities every package uses (issue 11: one copy each): waiting, timeouts, redacting
 * URLs for logs, and Postgres transactions.
 */
import type { Pool, PoolClient } from 'pg';

/**
 * Resolves after `ms`. `unref: true` does not keep the process alive for it (background loops);
 * tests wait for events or conditions instead (tests/src/wait.ts).
 */
export function sleep(ms: number, opts: { unref?: boolean } = {}): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (opts.unref) timer.unref();
  });
}

/** Rejects with `<what> timed out after <ms> ms` unless `promise` settles first. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Replaces the password of every `scheme://user:password@` in `text` with `***`, keeping the
 * user (Postgres, Redis, ClickHouse, MQTT URLs in logs and error messages).
 */
export function redactUrlPassword(text: string): string {
  return text.replace(/([A-Za-z][A-Za-z0-9+.-]*:\/\/[^:@/?#\s]*):[^@/?#\s]*@/g, '$1:***@');
}

/**
 * Runs `work` in one transaction on one pooled client: COMMIT when it resolves, ROLLBACK (whose
 * own failure is ignored, the original error wins) when it throws; the client always goes back.
 */
export async function inTransaction<T>(pool: Pool, work: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
