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

export interface SerialRunner<T> {
  /**
   * A run of the task that starts after this call: the running one when none is in flight
   * (started now); else the one queued behind the run in flight, which every call made
   * meanwhile shares. A caller's result therefore reflects state read after its call, while at
   * most one run is in flight and one waits.
   */
  run(): Promise<T>;
  /** Resolves once nothing runs and nothing waits (shutdown). */
  idle(): Promise<void>;
}

/**
 * Serialises and coalesces a periodic task such as a full reconcile. Joining the run in flight
 * instead would hand its caller a result computed from state read before the call (a rule
 * reconcile that listed Postgres before the caller's last write reported "done" without it).
 */
export function serialRunner<T>(task: () => Promise<T>): SerialRunner<T> {
  let inFlight: Promise<T> | undefined;
  let waiting: { promise: Promise<T>; resolve: (value: T) => void; reject: (error: unknown) => void } | undefined;
  const launch = (): Promise<T> => {
    const promise = Promise.resolve().then(task);
    inFlight = promise;
    const settled = (): void => {
      inFlight = undefined;
      const next = waiting;
      waiting = undefined;
      if (next) launch().then(next.resolve, next.reject);
    };
    promise.then(settled, settled);
    return promise;
  };
  return {
    run() {
      if (!inFlight) return launch();
      if (!waiting) {
        let resolve!: (value: T) => void;
        let reject!: (error: unknown) => void;
        const promise = new Promise<T>((res, rej) => {
          resolve = res;
          reject = rej;
        });
        promise.catch(() => undefined); // handled like the launched run's; awaiting callers still see it
        waiting = { promise, resolve, reject };
      }
      return waiting.promise;
    },
    async idle() {
      while (inFlight || waiting) await Promise.allSettled([inFlight, waiting?.promise]);
    },
  };
}
