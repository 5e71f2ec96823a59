import type { AppDeps } from '../../deps.js';

export interface ComponentStatus {
  readonly up: boolean;
  readonly latency_ms: number;
  readonly error?: string;
}

async function timed(check: () => Promise<unknown>, timeoutMs: number): Promise<ComponentStatus> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      check(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return { up: true, latency_ms: Math.round(performance.now() - started) };
  } catch (err) {
    return { up: false, latency_ms: Math.round(performance.now() - started), error: err instanceof Error ? err.message : String(err) };
  } finally {
    if (timer) clearTimeout(timer);
  }
}

/** Readiness of the three dependencies the backend cannot work without. */
export async function checkDependencies(deps: AppDeps, timeoutMs = 2000): Promise<Record<'postgres' | 'clickhouse' | 'broker', ComponentStatus>> {
  const [postgres, clickhouse, broker] = await Promise.all([
    timed(() => deps.pg.query('SELECT 1'), timeoutMs),
    timed(async () => {
      const result = await deps.clickhouse.ping();
      if (!result.success) throw result.error;
    }, timeoutMs),
    timed(async () => {
      if (deps.mqtt.connected) return;
      const status = deps.mqttStatus?.();
      const details = [
        status?.lastError,
        status?.failedAttempts ? `${status.failedAttempts} failed attempt${status.failedAttempts === 1 ? '' : 's'}` : undefined,
        status?.downSince ? `down for ${Math.round((Date.now() - status.downSince) / 1000)} s` : undefined,
      ].filter(Boolean);
      throw new Error(`MQTT connection is down${details.length ? ` (${details.join('; ')})` : ''}; reconnecting`);
    }, timeoutMs),
  ]);
  return { postgres, clickhouse, broker };
}
