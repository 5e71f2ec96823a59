/**
 * Failed logins per account (issue 10): after `maxFailures` failures within `windowMs`, further
 * attempts for that login are refused with 429 until the window passes, whoever sends them. The
 * per-address limit is the rate-limit plugin's job (routes/api/v1/users); this one stops a
 * distributed guess of one password. Bounded: at most `maxEntries` logins are tracked (the oldest
 * forgotten first), keys are capped in length.
 */
import { LRUCache } from 'lru-cache';
import { PepeunitError } from '../errors.js';

export class TooManyAttemptsError extends PepeunitError {
  constructor(readonly retryAfterSeconds: number) {
    super(429, 18, 'Too Many Requests', `Too many failed logins for this account; retry in ${retryAfterSeconds} s`);
  }
}

export interface LoginThrottleOptions {
  readonly maxFailures: number;
  readonly windowMs: number;
  readonly maxEntries?: number;
  readonly now?: () => number;
}

export class LoginThrottle {
  readonly #failures: LRUCache<string, { count: number; since: number }>;
  readonly #now: () => number;

  constructor(private readonly options: LoginThrottleOptions) {
    this.#failures = new LRUCache({ max: options.maxEntries ?? 10_000 });
    this.#now = options.now ?? Date.now;
  }

  #key(login: string): string {
    return login.slice(0, 256).toLowerCase();
  }

  /** Throws TooManyAttemptsError while the login is over its limit. */
  check(login: string): void {
    if (this.options.maxFailures <= 0) return;
    const entry = this.#failures.get(this.#key(login));
    if (!entry) return;
    const age = this.#now() - entry.since;
    if (age >= this.options.windowMs) {
      this.#failures.delete(this.#key(login));
      return;
    }
    if (entry.count >= this.options.maxFailures) throw new TooManyAttemptsError(Math.ceil((this.options.windowMs - age) / 1000));
  }

  failed(login: string): void {
    if (this.options.maxFailures <= 0) return;
    const key = this.#key(login);
    const entry = this.#failures.get(key);
    if (!entry || this.#now() - entry.since >= this.options.windowMs) this.#failures.set(key, { count: 1, since: this.#now() });
    else entry.count += 1;
  }

  succeeded(login: string): void {
    this.#failures.delete(this.#key(login));
  }
}
