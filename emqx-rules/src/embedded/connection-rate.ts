// The listener's `max_conn_rate`. EMQX's acceptors take new connections no faster than the rate;
// the others wait in the kernel's listen backlog (`tcp_options.backlog`, 1024 by default) and
// beyond it are refused. Node cannot pause accepting, so here the accepted sockets wait instead,
// unread (the server accepts with `pauseOnConnect`) and in arrival order, in a queue bounded like
// the backlog; a socket that closes while it waits leaves the queue.
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { TokenBucket } from './token-bucket.js';

/** Longest wait before the rate is read again (so a raised limit applies soon). */
const MAX_WAIT_MS = 1000;

export interface ConnectionRateOptions {
  /** Connections per second allowed now (Infinity: unlimited). */
  rate(): number;
  /** Sockets that may wait (the listener's backlog). */
  maxWaiting(): number;
  /** Hands a socket whose turn has come to the broker. */
  accept(socket: Socket): void;
  /** Closes a socket the full queue cannot take. */
  refuse(socket: Socket): void;
}

export class ConnectionRateGate {
  private bucket: TokenBucket | undefined;
  private readonly waiting: Socket[] = [];
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Connections that had to wait for their turn. */
  delayed = 0;

  constructor(private readonly options: ConnectionRateOptions) {}

  admit(socket: Socket): void {
    if (this.waiting.length === 0 && this.takeTurn()) {
      this.options.accept(socket);
      return;
    }
    if (this.waiting.length >= this.options.maxWaiting()) {
      this.options.refuse(socket);
      return;
    }
    this.delayed += 1;
    this.waiting.push(socket);
    socket.once('close', () => {
      const index = this.waiting.indexOf(socket);
      if (index !== -1) this.waiting.splice(index, 1);
    });
    this.schedule();
  }

  /** Closes the sockets still waiting (broker shutdown). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const socket of this.waiting.splice(0)) socket.destroy();
  }

  private takeTurn(): boolean {
    const rate = this.options.rate();
    if (!Number.isFinite(rate)) {
      this.bucket = undefined;
      return true;
    }
    const now = performance.now();
    if (this.bucket?.ratePerSecond !== rate) this.bucket = new TokenBucket(Math.max(0, rate), now);
    if (this.bucket.available(now) < 1) return false;
    this.bucket.take(1);
    return true;
  }

  private schedule(): void {
    if (this.timer || this.stopped) return;
    const wait = this.bucket ? this.bucket.msUntil(1, performance.now()) : 0;
    this.timer = setTimeout(() => this.release(), Math.min(MAX_WAIT_MS, Math.max(1, Math.ceil(wait))));
  }

  private release(): void {
    this.timer = undefined;
    while (this.waiting.length > 0 && this.takeTurn()) {
      const socket = this.waiting.shift() as Socket;
      if (!socket.destroyed) this.options.accept(socket);
    }
    if (this.waiting.length > 0) this.schedule();
  }
}
