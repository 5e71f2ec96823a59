/**
 * Error tracker (issue 13): every error logged at error level or above by a logger made with
 * `createLogger` (the hook `onErrorLogged`), and every crash, is fingerprinted — sha1 of the
 * normalised message (uuids, hex ids, numbers, quoted values replaced) and the top stack frames
 * (paths made relative, line/column numbers dropped) — and counted per process in Postgres
 * (`error_fingerprints`, `error_counts_hourly`; backend migration 021).
 *
 * Recording is an in-memory map update (bounded: beyond `maxFingerprints` distinct errors per
 * flush, the rest are counted under one "other errors" fingerprint); `flush()` writes all
 * counts in two statements. `recordCrash` writes at once, so a crash is stored before the
 * process exits. Alerts for crashes are raised by the backend (it reads the rows).
 */
import { createHash } from 'node:crypto';
import type { Pool } from 'pg';

export type TrackedKind = 'error' | 'crash';

export interface TrackedError {
  fingerprint: string;
  kind: TrackedKind;
  level: string;
  message: string;
  sample: string;
  frames: string;
  count: number;
  first: number;
  last: number;
}

const MAX_TEXT = 1000;
const UUID = /\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi;
const HEX = /\b(?:0x)?[0-9a-f]*\d[0-9a-f]*[a-f][0-9a-f]*\b|\b(?:0x)?[0-9a-f]*[a-f][0-9a-f]*\d[0-9a-f]*\b/gi;
const NUMBER = /\b\d+(?:\.\d+)?\b/g;
const QUOTED = /"[^"\n]{0,200}"|'[^'\n]{0,200}'/g;

/** The message with its variable parts replaced, so occurrences of one error share a fingerprint. */
export function normaliseMessage(message: string): string {
  return message
    .replace(UUID, '<uuid>')
    .replace(QUOTED, '<str>')
    .replace(HEX, (m) => (m.length >= 8 ? '<hex>' : m))
    .replace(NUMBER, '<n>')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, MAX_TEXT);
}

/**
 * The first `count` "at ..." frames of a stack outside Node's internals (`node:` frames vary with
 * how a call was scheduled), without line/column numbers, `async` markers, and with paths
 * relative to `root`.
 */
export function topFrames(stack: string | undefined, count = 5, root = process.cwd()): string[] {
  if (!stack) return [];
  const frames: string[] = [];
  for (const line of stack.split('\n')) {
    const trimmed = line.trim().replace(/^at async /, 'at ');
    if (!trimmed.startsWith('at ') || /\(node:|^at node:/.test(trimmed)) continue;
    frames.push(
      trimmed
        .replace(/:\d+:\d+\)?$/, (m) => (m.endsWith(')') ? ')' : ''))
        .replaceAll(`file://${root}/`, '')
        .replaceAll(`${root}/`, ''),
    );
    if (frames.length >= count) break;
  }
  return frames;
}

export function errorFingerprint(normalised: string, frames: readonly string[]): string {
  return createHash('sha1').update(normalised).update('\n').update(frames.join('\n')).digest('hex');
}

const LEVEL_NAMES: Record<number, string> = { 50: 'error', 60: 'fatal' };

/** What a pino call's arguments say: the message and the error (if any). */
export function describeLogCall(args: readonly unknown[]): { message: string; error?: Error } {
  const [first, second] = args;
  let error: Error | undefined;
  let message = '';
  if (first instanceof Error) {
    error = first;
    message = typeof second === 'string' ? second : '';
  } else if (first && typeof first === 'object') {
    const obj = first as Record<string, unknown>;
    const candidate = obj.err ?? obj.error;
    if (candidate instanceof Error) error = candidate;
    message = typeof second === 'string' ? second : typeof obj.msg === 'string' ? obj.msg : '';
  } else if (typeof first === 'string') {
    message = first;
  }
  if (error) message = message ? `${message}: ${error.message}` : error.message;
  return error ? { message, error } : { message };
}

export interface ErrorTrackerOptions {
  pool: Pool;
  /** '<role>@<host>:<pid>' */
  process: string;
  flushIntervalMs?: number;
  maxFingerprints?: number;
  /** Reports flush failures (never through the tracked logger: that would loop). */
  onFlushError?: (error: unknown) => void;
}

export class ErrorTracker {
  private pending = new Map<string, TrackedError>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private readonly maxFingerprints: number;
  /** Errors recorded since start (all fingerprints). */
  recorded = 0;

  constructor(private readonly options: ErrorTrackerOptions) {
    this.maxFingerprints = options.maxFingerprints ?? 1000;
  }

  get process(): string {
    return this.options.process;
  }

  start(): void {
    const ms = this.options.flushIntervalMs ?? 5000;
    this.timer = setInterval(() => void this.flush(), ms);
    this.timer.unref();
  }

  /** Records one occurrence (synchronous, no I/O). */
  record(input: { level: string; message: string; error?: Error; kind?: TrackedKind; now?: number }): string {
    const frames = topFrames(input.error?.stack);
    const normalised = normaliseMessage(input.message || input.error?.name || 'error');
    let fingerprint = errorFingerprint(`${input.kind ?? 'error'}\n${normalised}`, frames);
    const now = input.now ?? Date.now();
    this.recorded += 1;
    let entry = this.pending.get(fingerprint);
    if (!entry && this.pending.size >= this.maxFingerprints) {
      fingerprint = errorFingerprint('other errors (too many distinct errors in one flush interval)', []);
      entry = this.pending.get(fingerprint);
      if (!entry) {
        entry = { fingerprint, kind: 'error', level: input.level, message: 'other errors (too many distinct errors in one flush interval)', sample: '', frames: '', count: 0, first: now, last: now };
        this.pending.set(fingerprint, entry);
      }
    }
    if (!entry) {
      entry = { fingerprint, kind: input.kind ?? 'error', level: input.level, message: normalised, sample: input.message.slice(0, MAX_TEXT), frames: frames.join('\n'), count: 0, first: now, last: now };
      this.pending.set(fingerprint, entry);
    }
    entry.count += 1;
    entry.last = Math.max(entry.last, now);
    return fingerprint;
  }

  /** The hook for `onErrorLogged` (logger.ts). */
  readonly tap = (level: number, args: readonly unknown[]): void => {
    const { message, error } = describeLogCall(args);
    this.record({ level: LEVEL_NAMES[level] ?? (level >= 60 ? 'fatal' : 'error'), message, error });
  };

  /** Records a crash and writes everything pending at once (call before exiting). */
  async recordCrash(error: unknown, origin: string): Promise<string> {
    const err = error instanceof Error ? error : new Error(String(error));
    const fingerprint = this.record({ level: 'fatal', kind: 'crash', message: `${origin}: ${err.message}`, error: err });
    await this.flush();
    return fingerprint;
  }

  /** Writes the pending counts (one flush at a time; counts of a failed flush are kept). */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      if (this.pending.size === 0) return;
      const batch = [...this.pending.values()];
      this.pending = new Map();
      try {
        await writeTrackedErrors(this.options.pool, this.options.process, batch);
      } catch (error) {
        for (const entry of batch) {
          const now = this.pending.get(entry.fingerprint);
          if (now) {
            now.count += entry.count;
            now.first = Math.min(now.first, entry.first);
          } else if (this.pending.size < this.maxFingerprints) this.pending.set(entry.fingerprint, entry);
        }
        this.options.onFlushError?.(error);
      }
    });
    return this.flushing;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.flush();
  }
}

/** Upserts counts of one process (also used by supervisors to record a child that died). */
export async function writeTrackedErrors(pool: Pool, processName: string, batch: readonly TrackedError[]): Promise<void> {
  if (batch.length === 0) return;
  const cols = {
    fingerprint: batch.map((e) => e.fingerprint),
    kind: batch.map((e) => e.kind),
    level: batch.map((e) => e.level),
    message: batch.map((e) => e.message),
    sample: batch.map((e) => e.sample),
    frames: batch.map((e) => e.frames),
    count: batch.map((e) => e.count),
    first: batch.map((e) => e.first / 1000),
    last: batch.map((e) => e.last / 1000),
  };
  await pool.query(
    `INSERT INTO error_fingerprints (fingerprint, process, kind, level, message, sample, frames, count, first_seen, last_seen)
     SELECT f, $1, k, l, m, s, fr, c, to_timestamp(fs) AT TIME ZONE 'utc', to_timestamp(ls) AT TIME ZONE 'utc'
       FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[], $9::float8[], $10::float8[]) AS t(f, k, l, m, s, fr, c, fs, ls)
     ON CONFLICT (fingerprint, process) DO UPDATE SET count = error_fingerprints.count + EXCLUDED.count,
       last_seen = greatest(error_fingerprints.last_seen, EXCLUDED.last_seen), sample = EXCLUDED.sample, level = EXCLUDED.level`,
    [processName, cols.fingerprint, cols.kind, cols.level, cols.message, cols.sample, cols.frames, cols.count, cols.first, cols.last],
  );
  await pool.query(
    `INSERT INTO error_counts_hourly (fingerprint, process, hour, count)
     SELECT f, $1, date_trunc('hour', to_timestamp(ls) AT TIME ZONE 'utc'), sum(c)
       FROM unnest($2::text[], $3::bigint[], $4::float8[]) AS t(f, c, ls) GROUP BY 1, 2, 3
     ON CONFLICT (hour, fingerprint, process) DO UPDATE SET count = error_counts_hourly.count + EXCLUDED.count`,
    [processName, cols.fingerprint, cols.count, cols.last],
  );
}
