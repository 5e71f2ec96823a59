/**
 * The waits of the tests. Tests wait for events or states, never for a fixed time:
 *
 * - `waitFor(probe, { what })` polls a condition until it holds or a deadline passes, then fails
 *   with what was awaited;
 * - `waitForEvent(emitter, name, { what, filter })` resolves with the arguments of the first
 *   matching event (or fails at the deadline);
 * - `elapse(ms, why)` is the only fixed wait, for tests where the passage of time IS the feature
 *   (a throttle interval, an outage of N seconds, a keep-alive expiry); `why` says which.
 *
 * Deadlines bound a broken feature's failure time; they are not performance claims (numbers
 * belong in benchmarks).
 */
export interface WaitOptions {
  /** What is awaited, for the error message. */
  readonly what: string;
  /** Deadline (default 15 s): a bound on a broken feature's failure time, not a performance claim. */
  readonly timeoutMs?: number;
  /** Poll period (default 25 ms). */
  readonly intervalMs?: number;
}

type Truthy<T> = Exclude<T, false | null | undefined | 0 | ''>;

const DEFAULT_TIMEOUT_MS = 15_000;

export async function waitFor<T>(probe: () => T | Promise<T>, options: WaitOptions): Promise<Truthy<T>> {
  const deadline = Date.now() + (options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const interval = options.intervalMs ?? 25;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value as Truthy<T>;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const cause = lastError instanceof Error ? `: last error ${lastError.message}` : '';
      throw new Error(`timed out waiting for ${options.what}${cause}`);
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

/** Anything with Node's listener methods (EventEmitter, mqtt.js clients, sockets, child processes). */
export interface Emitter {
  on(name: string, listener: (...args: any[]) => void): unknown; // eslint-disable-line @typescript-eslint/no-explicit-any
  removeListener(name: string, listener: (...args: any[]) => void): unknown; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export interface WaitForEventOptions<A extends unknown[]> {
  /** What is awaited, for the error message. */
  readonly what: string;
  /** Deadline (default 15 s). */
  readonly timeoutMs?: number;
  /** Only an event whose arguments pass this counts. */
  readonly filter?: (...args: A) => boolean;
}

/**
 * Resolves with the arguments of the first `name` event of `emitter` that passes `filter`. The
 * listener is attached synchronously: call it before the action that causes the event and await
 * the promise after.
 */
export function waitForEvent<A extends unknown[] = unknown[]>(emitter: Emitter, name: string, options: WaitForEventOptions<A>): Promise<A> {
  return new Promise<A>((resolve, reject) => {
    const listener = (...args: unknown[]): void => {
      try {
        if (options.filter && !options.filter(...(args as A))) return;
      } catch (err) {
        done();
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      done();
      resolve(args as A);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out waiting for ${options.what} (event '${name}')`));
    }, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const done = (): void => {
      clearTimeout(timer);
      emitter.removeListener(name, listener);
    };
    emitter.on(name, listener);
  });
}

/**
 * Lets `ms` of real time pass, where the passage of time is what the test exercises (a throttle
 * interval, an outage, a keep-alive expiry). `why` names it, so no wait is a hidden sleep.
 */
export async function elapse(ms: number, why: string): Promise<void> {
  if (!why) throw new Error('elapse: say why time must pass');
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}
