/**
 * Node state of one process (issue 13): CPU, memory, event-loop delay, free disk of its data
 * folders, uptime, version and messages handled per channel, sampled on an interval and written
 * by the caller (ClickHouse `node_state`, migration 007). Used by the backend and the ingest; the
 * broker's state is read through its management API (`GET /api/v5/nodes`).
 *
 * Counting is a plain property increment (`count`) or a cumulative total read at sample time
 * (`countFrom`), so hot paths pay nothing measurable.
 */
import { statfs } from 'node:fs/promises';
import { hostname } from 'node:os';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/** One row of ClickHouse `node_state`. */
export interface NodeStateRow {
  process: string;
  role: string;
  host: string;
  pid: number;
  version: string;
  /** Unix seconds. */
  ts: number;
  uptime_seconds: number;
  /** Process CPU (user + system) over the last interval, percent of one core; -1 = unknown. */
  cpu_percent: number;
  rss_bytes: number;
  heap_used_bytes: number;
  heap_total_bytes: number;
  event_loop_delay_mean_ms: number;
  event_loop_delay_p99_ms: number;
  /** Messages per channel since the previous sample. */
  messages: Record<string, number>;
  /** Free bytes of each data folder's file system. */
  disk_free_bytes: Record<string, number>;
}

export interface NodeStateOptions {
  role: string;
  version: string;
  /** Data folders whose free disk is reported (missing ones are skipped). */
  dataDirs?: readonly string[];
}

export class NodeStateCollector {
  readonly role: string;
  readonly version: string;
  readonly host = hostname();
  readonly pid = process.pid;
  readonly process: string;
  private readonly dataDirs: readonly string[];
  private readonly counts = new Map<string, number>();
  private readonly totals = new Map<string, { read: () => number; last: number }>();
  private readonly delay: IntervalHistogram;
  private lastCpu = process.cpuUsage();
  private lastAt = performance.now();
  /** Channel counts since start (for Prometheus). */
  readonly cumulative = new Map<string, number>();

  constructor(options: NodeStateOptions) {
    this.role = options.role;
    this.version = options.version;
    this.process = `${options.role}@${this.host}:${this.pid}`;
    this.dataDirs = [...new Set(options.dataDirs ?? [])];
    this.delay = monitorEventLoopDelay({ resolution: 20 });
    this.delay.enable();
  }

  /** `n` messages handled on `channel` (mqtt, rest, telegram, ...). */
  count(channel: string, n = 1): void {
    this.counts.set(channel, (this.counts.get(channel) ?? 0) + n);
  }

  /** A channel whose cumulative total is read at sample time (e.g. an existing counter). */
  countFrom(channel: string, read: () => number): void {
    this.totals.set(channel, { read, last: read() });
  }

  async sample(now = Date.now()): Promise<NodeStateRow> {
    const cpu = process.cpuUsage(this.lastCpu);
    const at = performance.now();
    const wallUs = (at - this.lastAt) * 1000;
    this.lastCpu = process.cpuUsage();
    this.lastAt = at;
    const memory = process.memoryUsage();
    const messages: Record<string, number> = {};
    for (const [channel, n] of this.counts) messages[channel] = n;
    this.counts.clear();
    for (const [channel, total] of this.totals) {
      const value = total.read();
      messages[channel] = (messages[channel] ?? 0) + (value >= total.last ? value - total.last : value);
      total.last = value;
    }
    for (const [channel, n] of Object.entries(messages)) this.cumulative.set(channel, (this.cumulative.get(channel) ?? 0) + n);
    const disk: Record<string, number> = {};
    for (const dir of this.dataDirs) {
      try {
        const stats = await statfs(dir);
        disk[dir] = Number(stats.bavail) * Number(stats.bsize);
      } catch {
        // A folder that does not exist (yet) is not reported.
      }
    }
    const row: NodeStateRow = {
      process: this.process,
      role: this.role,
      host: this.host,
      pid: this.pid,
      version: this.version,
      ts: Math.floor(now / 1000),
      uptime_seconds: process.uptime(),
      cpu_percent: wallUs > 0 ? (100 * (cpu.user + cpu.system)) / wallUs : 0,
      rss_bytes: memory.rss,
      heap_used_bytes: memory.heapUsed,
      heap_total_bytes: memory.heapTotal,
      event_loop_delay_mean_ms: Number.isFinite(this.delay.mean) ? this.delay.mean / 1e6 : 0,
      event_loop_delay_p99_ms: this.delay.count > 0 ? this.delay.percentile(99) / 1e6 : 0,
      messages,
      disk_free_bytes: disk,
    };
    this.delay.reset();
    return row;
  }

  close(): void {
    this.delay.disable();
  }
}

export interface NodeStateReporter {
  readonly latest: NodeStateRow | null;
  /** Takes a last sample, writes it, stops. */
  stop(): Promise<void>;
}

/**
 * Samples every `intervalMs` and hands the row to `write` (errors are reported through `onError`
 * and the row is dropped: node state is best effort, it never holds up the process).
 */
export function startNodeStateReporter(
  collector: NodeStateCollector,
  options: { intervalMs: number; write: (rows: NodeStateRow[]) => Promise<void>; onSample?: (row: NodeStateRow) => void; onError?: (error: unknown) => void },
): NodeStateReporter {
  let latest: NodeStateRow | null = null;
  let running: Promise<void> = Promise.resolve();
  const tick = (): Promise<void> =>
    (running = running.then(async () => {
      try {
        const row = await collector.sample();
        latest = row;
        options.onSample?.(row);
        await options.write([row]);
      } catch (error) {
        options.onError?.(error);
      }
    }));
  const timer = options.intervalMs > 0 ? setInterval(() => void tick(), options.intervalMs) : undefined;
  timer?.unref();
  return {
    get latest() {
      return latest;
    },
    async stop() {
      if (timer) clearInterval(timer);
      if (options.intervalMs > 0) await tick();
      await running;
      collector.close();
    },
  };
}
