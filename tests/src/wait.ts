/**
 * The one wait of the tests: polls a condition until it holds or a deadline passes, then fails
 * with what was awaited. Tests wait for events or states, never for a fixed time.
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

export async function waitFor<T>(probe: () => T | Promise<T>, options: WaitOptions): Promise<Truthy<T>> {
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
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
