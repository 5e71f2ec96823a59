/**
 * Reader of the reference invalidation stream `backend_data_pipe_nodes` (pepeunit-datapipe.md
 * §2.3), for drop-in compatibility with a backend that notifies through Redis.
 *
 * Like the Go service it starts at the stream's end (entries written while the ingest was down
 * are covered by the full sync at start-up and the periodic sync), remembered as an explicit id
 * so nothing is skipped between two XREAD calls. Unlike it, an entry reloads only the node
 * named in `unit_node_data.uuid` when that parses (any other entry asks for a full reload), and
 * errors back off (exponentially, capped) instead of spinning. After a connection problem the
 * reader asks for a full reload, since entries may have been missed.
 */
import { DATAPIPE_STREAM_KEY, redactUrlPassword, sleep as sleepFor } from '@pepeunit/common';
import { Redis } from 'ioredis';
import { isUuid, type Logger } from '@pepeunit/common';

export const DATAPIPE_STREAM = DATAPIPE_STREAM_KEY;

export interface RedisStreamReaderOptions {
  url: string;
  /** Called with the node uuid of an entry, or null when the entry names no usable node. */
  onEntry: (nodeUuid: string | null) => void;
  /** Called after a connection problem: entries may have been missed. */
  onGap: () => void;
  logger: Logger;
  stream?: string;
  /** Milliseconds one XREAD blocks (the loop re-issues it). Default 5000. */
  blockMs?: number;
}

export interface RedisStreamReader {
  /** Resolves once the first XREAD has been issued (the reader is listening). */
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

/** The node uuid named by a stream entry's fields, or null. */
export function nodeUuidOfStreamEntry(fields: readonly string[]): string | null {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] !== 'unit_node_data') continue;
    try {
      const data = JSON.parse(fields[i + 1] as string) as unknown;
      const uuid = data && typeof data === 'object' ? (data as { uuid?: unknown }).uuid : undefined;
      return typeof uuid === 'string' && isUuid(uuid) ? uuid.toLowerCase() : null;
    } catch {
      return null;
    }
  }
  return null;
}

const redact = redactUrlPassword;

export function startRedisStreamReader(options: RedisStreamReaderOptions): RedisStreamReader {
  const stream = options.stream ?? DATAPIPE_STREAM;
  const blockMs = options.blockMs ?? 5000;
  const logger = options.logger;
  const redis = new Redis(options.url, {
    lazyConnect: true,
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 5000),
    connectionName: 'pepeunit-ingest-stream',
  });
  redis.on('error', (err: Error) => logger.debug({ err: err.message, redis: redact(options.url) }, 'Redis stream connection error'));
  let closed = false;
  let lastId = '$';
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));

  const sleep = (ms: number): Promise<void> => sleepFor(ms, { unref: true });

  const loop = async (): Promise<void> => {
    let backoff = 200;
    let hadError = false;
    while (!closed) {
      try {
        if (redis.status === 'wait') await redis.connect();
        if (lastId === '$') {
          // Start after the newest entry that exists now (what `$` means), but as an explicit id,
          // so nothing written between two XREAD calls is skipped.
          const newest = await redis.xrevrange(stream, '+', '-', 'COUNT', 1);
          lastId = newest[0]?.[0] ?? '0-0';
          markReady();
        }
        const result = await redis.xread('BLOCK', blockMs, 'STREAMS', stream, lastId);
        if (hadError) {
          hadError = false;
          options.onGap();
        }
        backoff = 200;
        if (!result) continue;
        for (const [, entries] of result) {
          for (const [id, fields] of entries) {
            lastId = id;
            options.onEntry(nodeUuidOfStreamEntry(fields));
          }
        }
      } catch (err) {
        if (closed) break;
        hadError = true;
        logger.warn({ err: err instanceof Error ? err.message : String(err), retryInMs: backoff }, 'Redis stream read failed; retrying');
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 10_000);
      }
    }
  };
  const running = loop();

  return {
    ready,
    async close() {
      closed = true;
      markReady();
      redis.disconnect();
      await running;
    },
  };
}
