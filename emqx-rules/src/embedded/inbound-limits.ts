// Limits on what one MQTT connection may send, enforced on the bytes as they are read, before
// aedes' parser (or the fast path) sees them. aedes buffers a packet until it is complete,
// whatever Remaining Length it announces, so a peer that announces 256 MB and keeps sending
// would otherwise be buffered in full before anyone checked it (and before authentication).
//
// - Packet size: every packet's Remaining Length is checked as soon as its fixed header is
//   readable: above the zone's `max_packet_size` (EMQX's frame parser compares the same number),
//   or above PRE_CONNACK_MAX_BYTES for everything a client sends before its CONNACK, the
//   connection is closed at once; the bytes are never buffered.
// - Listener rates (`messages_rate`: PUBLISH packets/s, `bytes_rate`: bytes/s, per connection):
//   like EMQX, excess pauses reading the socket. The packets a read may pass are handed on, the
//   rest of the read is put back into the socket (`unshift`), and the socket is not read until
//   the token buckets allow the next packet; the kernel's receive window then slows the sender
//   down. Nothing is dropped and nobody is disconnected. Both aedes' path and the QoS 0 fast path
//   read through here, so both are throttled; with `infinity` rates this is a scan of each
//   packet's fixed header.
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Client } from 'aedes';
import { TokenBucket } from './token-bucket.js';

/**
 * Bytes a client may send before its CONNACK (the CONNECT and anything pipelined behind it).
 * A CONNECT holds the client id, username, password and will; Pepeunit's are under 1 KiB (a JWT
 * username), and EMQX's largest client id (65 535 bytes by default) does not fit but nobody
 * uses one. Unauthenticated peers can make the broker hold at most this much each (and only for
 * the zone's `idle_timeout` if they never complete a CONNECT).
 */
export const PRE_CONNACK_MAX_BYTES = 64 * 1024;
/** Longest single pause of a throttled reader: limits are read again at least this often, so a raised limit applies soon. */
const MAX_PAUSE_MS = 1000;
const PUBLISH = 3;

export interface InboundLimits {
  /** The zone's `max_packet_size` in bytes, compared with a packet's Remaining Length. */
  maxPacketSize: number;
  /** The listener's `messages_rate` in PUBLISH packets per second (Infinity: unlimited). */
  messagesPerSecond: number;
  /** The listener's `bytes_rate` in bytes per second (Infinity: unlimited). */
  bytesPerSecond: number;
}

export type InboundViolation =
  | { reason: 'packet_too_large'; announced: number; limit: number; beforeConnack: boolean }
  | { reason: 'malformed_remaining_length' };

export interface InboundLimitStats {
  /** Connections closed for a packet above the size limit or a malformed length. */
  closedOversized: number;
  /** Times a connection's reader was paused by a rate limit. */
  throttledReads: number;
}

/** The parts of aedes' Client this module uses (all present in aedes 1.x). */
interface ClientInternals {
  conn: Socket;
  closed: boolean;
  connackSent: boolean;
  _paused?: boolean;
  _parsingBatch: number;
  _parser: { parse(buf: Buffer): unknown };
  resume(): void;
}

export interface InboundLimitOptions {
  /** The limits in force; called once per read, so configuration changes apply to open connections. */
  limits(): InboundLimits;
  stats: InboundLimitStats;
  /** Called before the connection is destroyed for a violation (for the log). */
  onViolation(violation: InboundViolation): void;
}

function bucketFor(bucket: TokenBucket | undefined, rate: number, now: number): TokenBucket | undefined {
  if (!Number.isFinite(rate)) return undefined;
  return bucket?.ratePerSecond === rate ? bucket : new TokenBucket(Math.max(0, rate), now);
}

/**
 * Puts `client`'s reads under the limits. Call after `aedes.handle(socket)` and after anything
 * else that wraps the client's parser (the fast path), so every byte passes here first.
 */
export function limitInbound(client: Client, options: InboundLimitOptions): void {
  const internals = client as unknown as ClientInternals;
  const parser = internals._parser;
  const conn = internals.conn;
  if (typeof parser?.parse !== 'function' || typeof conn?.read !== 'function' || typeof internals.resume !== 'function') {
    throw new Error('aedes client internals not found: the embedded broker cannot enforce its inbound limits with this aedes version');
  }
  const handOn = parser.parse.bind(parser);
  const readSocket = conn.read;

  // Where the scan is in the byte stream: a packet's fixed header may end in a later read than
  // it started, and a body spans reads.
  let streamOffset = 0; // bytes of the connection scanned before the current read
  let bodyLeft = 0; // body bytes of the current packet not seen yet
  let headerBytes = 0; // fixed-header bytes of the current packet seen so far (0: at a packet boundary)
  let packetType = 0;
  let remainingLength = 0;
  let multiplier = 1;
  let messages: TokenBucket | undefined;
  let bytes: TokenBucket | undefined;
  let throttled = false;
  let closed = false;
  let resumeTimer: NodeJS.Timeout | undefined;

  // While throttled, aedes' reads (on 'readable' and after each batch) find nothing: the bytes
  // stay in the socket's buffer, which stops reading from the kernel once full.
  conn.read = function throttledRead(this: Socket, size?: number) {
    if (throttled && size !== 0) return null;
    return readSocket.call(this, size);
  } as Socket['read'];
  conn.once('close', () => {
    closed = true;
    if (resumeTimer) clearTimeout(resumeTimer);
  });

  const resumeReading = (): void => {
    resumeTimer = undefined;
    throttled = false;
    if (closed || internals.closed) return;
    // A read is due now unless aedes still handles packets (it reads when they complete) or
    // someone else paused the client (it reads when they resume it).
    if (!internals._paused && internals._parsingBatch <= 0) internals.resume();
  };

  /** Hands on the complete packets before the offending one (EMQX handles what it parsed before a frame error), then closes. */
  const close = (violation: InboundViolation, before: Buffer | undefined): void => {
    closed = true;
    options.stats.closedOversized += 1;
    options.onViolation(violation);
    if (before && before.length > 0) handOn(before);
    conn.destroy();
  };

  parser.parse = (buf: Buffer): unknown => {
    if (closed) return 0;
    const limits = options.limits();
    const limited = Number.isFinite(limits.messagesPerSecond) || Number.isFinite(limits.bytesPerSecond);
    const now = limited ? performance.now() : 0;
    messages = limited ? bucketFor(messages, limits.messagesPerSecond, now) : undefined;
    bytes = limited ? bucketFor(bytes, limits.bytesPerSecond, now) : undefined;
    const beforeConnack = !internals.connackSent;
    const sizeLimit = beforeConnack ? Math.min(limits.maxPacketSize, PRE_CONNACK_MAX_BYTES) : limits.maxPacketSize;

    const end = buf.length;
    let index = 0;
    let pauseAt = -1;
    while (index < end) {
      if (bodyLeft > 0) {
        const take = Math.min(bodyLeft, end - index);
        index += take;
        bodyLeft -= take;
        continue;
      }
      const packetStart = index;
      const startedInThisRead = headerBytes === 0;
      if (startedInThisRead) {
        packetType = (buf[index++] as number) >> 4;
        headerBytes = 1;
        remainingLength = 0;
        multiplier = 1;
      }
      let complete = false;
      while (index < end) {
        const byte = buf[index++] as number;
        headerBytes += 1;
        remainingLength += (byte & 127) * multiplier;
        multiplier *= 128;
        if ((byte & 128) === 0) {
          complete = true;
          break;
        }
        if (headerBytes === 5) {
          close({ reason: 'malformed_remaining_length' }, startedInThisRead ? buf.subarray(0, packetStart) : undefined);
          return 0;
        }
      }
      if (!complete) break; // the header continues in the next read
      const packetEnd = streamOffset + index + remainingLength;
      if (remainingLength > sizeLimit || (beforeConnack && packetEnd > PRE_CONNACK_MAX_BYTES)) {
        close({ reason: 'packet_too_large', announced: remainingLength, limit: sizeLimit, beforeConnack }, startedInThisRead ? buf.subarray(0, packetStart) : undefined);
        return 0;
      }
      if (messages || bytes) {
        const isPublish = packetType === PUBLISH;
        // A packet whose header began in an earlier read passes (its first bytes are handed on already).
        if (startedInThisRead && ((bytes && bytes.available(now) <= 0) || (messages && isPublish && messages.available(now) < 1))) {
          pauseAt = packetStart;
          headerBytes = 0;
          break;
        }
        if (messages && isPublish) messages.take(1);
        bytes?.take(headerBytes + remainingLength);
      }
      bodyLeft = remainingLength;
      headerBytes = 0;
    }

    if (pauseAt === -1) {
      streamOffset += end;
      return handOn(buf);
    }
    // Throttle before handing anything on: aedes may read again synchronously while it handles
    // the packets, and must find nothing until the put-back bytes are due.
    throttled = true;
    options.stats.throttledReads += 1;
    if (!conn.destroyed) conn.unshift(buf.subarray(pauseAt));
    streamOffset += pauseAt;
    const waitMs = Math.max(messages?.msUntil(1, now) ?? 0, bytes?.msUntil(1, now) ?? 0);
    resumeTimer = setTimeout(resumeReading, Math.min(MAX_PAUSE_MS, Math.max(1, Math.ceil(waitMs))));
    return pauseAt > 0 ? handOn(buf.subarray(0, pauseAt)) : 0;
  };
}
