// A token bucket, the shape of EMQX's limiter for the listener rates (`messages_rate`,
// `bytes_rate`, `max_conn_rate`): `rate` tokens per second flow into a bucket that holds one
// second's worth (at least one token). Taking may overdraw the bucket: a packet larger than the
// bucket still passes, and the debt is waited out before the next one (EMQX pauses the socket for
// the same debt instead of refusing the packet).

export class TokenBucket {
  private tokens: number;
  private last: number;
  readonly capacity: number;

  constructor(
    readonly ratePerSecond: number,
    now: number,
  ) {
    this.capacity = Math.max(1, ratePerSecond);
    this.tokens = this.capacity;
    this.last = now;
  }

  /** Tokens available at `now` (negative while a debt is being paid). */
  available(now: number): number {
    if (now > this.last) {
      this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) * this.ratePerSecond) / 1000);
      this.last = now;
    }
    return this.tokens;
  }

  take(count: number): void {
    this.tokens -= count;
  }

  /** Milliseconds from `now` until at least `needed` tokens are available (Infinity at rate 0). */
  msUntil(needed: number, now: number): number {
    const missing = needed - this.available(now);
    if (missing <= 0) return 0;
    return this.ratePerSecond > 0 ? (missing * 1000) / this.ratePerSecond : Number.POSITIVE_INFINITY;
  }
}
