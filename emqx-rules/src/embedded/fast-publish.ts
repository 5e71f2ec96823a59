// The embedded broker's fast path for QoS 0 publishes.
//
// aedes routes every PUBLISH through a parser object, a chain of callbacks (authorize, store
// retained, mqemitter, one setImmediate per subscriber, a re-encoded packet per delivery): about
// 16 µs of CPU per message, so one broker process tops out near 60 000 msg/s. Devices publish
// telemetry as QoS 0 packets, and for those the broker's work is small: decide the publish, find
// the subscribers of the topic, copy the packet's bytes to them.
//
// This module takes over exactly that case and hands everything else to aedes unchanged:
// - It wraps a client's parser. While the client is connected and aedes has nothing of this
//   client in flight (no packet being handled, no partial packet in its parser), each complete
//   packet of a read is inspected: a plain QoS 0 PUBLISH (first byte 0x30: no DUP, no RETAIN)
//   of an MQTT 3.1/3.1.1 client to a topic without wildcards and not starting with `$`, whose
//   authorization is known without a callout (`admit`: superuser, ACL from authentication, or
//   the client's authorization cache) and within the zone's limits, is routed here (or dropped
//   and counted, when denied with `deny_action: ignore`). The first
//   packet that is anything else, and every packet after it in the read, goes to aedes' parser,
//   so a client's packets keep their order; the fast path resumes once aedes has handled them.
// - Subscribers are aedes' own: the topic is matched with aedes' matcher (so wildcard semantics
//   are aedes'), and each matched subscription of an MQTT 3.1/3.1.1 client gets the packet's
//   bytes (a QoS 0 PUBLISH is byte-identical for every such subscriber); any other listener
//   (shared subscription groups, MQTT 5 subscribers) is called with the packet exactly as
//   aedes' emitter would call it. Matches are cached per topic and the cache is dropped on every
//   subscription change.
// - The client's counters, the `message.publish` event for the rule engine and hooks, and the
//   keep-alive are maintained as aedes' path does. Writes to each subscriber are batched per
//   read; when a subscriber's socket is over its high-water mark, the publisher is paused until
//   it drains (aedes waits for the same drain before reading on).
import type { Aedes, Client } from 'aedes';
import { readFixedHeader } from './mqtt-frames.js';

/** The parts of aedes' Client this module uses (all present in aedes 1.x). */
interface AedesClientInternals {
  id: string;
  version: number | null;
  connected: boolean;
  closed: boolean;
  conn: import('node:net').Socket;
  subscriptions: Record<string, { func: unknown }>;
  _paused?: boolean;
  _nextBatch: (error?: Error) => void;
  _keepaliveInterval: number;
  _keepaliveTimer: NodeJS.Timeout | null;
  _parser: ParserInternals;
  resume(): void;
  pause(): void;
}

interface ParserInternals {
  parse(buf: Buffer): number;
  prependListener(event: 'packet', listener: () => void): unknown;
  packet: { length: number };
  _list: { length: number };
  _stateCounter: number;
  _queue: unknown[] | null;
  error: unknown;
}

type Listener = (packet: unknown, callback: () => void) => void;

interface MatcherInternals {
  match(topic: string): Listener[];
}

/** Per-topic state a hook keeps in the route cache (see `FastPublishHooks.published`). */
export interface TopicHookCache {
  hookVersion: number;
  hookState: unknown;
}

/** A topic's routes in the cache, with the hooks' state. */
interface TopicEntry extends TopicHookCache {
  routes: Route[];
}

/** A subscriber the fast path writes to directly, or a listener called like aedes' emitter does. */
type Route = { client: AedesClientInternals; listener?: undefined } | { client?: undefined; listener: Listener };

export interface FastPublishHooks {
  /**
   * Decides a QoS 0 publish without a callout: 'allow' (counted as received), 'drop' (denied with
   * `deny_action: ignore`, counted as received and dropped), or undefined to let aedes' path
   * decide and count it (a callout, a disconnect, a limit).
   */
  admit(client: Client, topic: string, payload: Buffer): 'allow' | 'drop' | undefined;
  /**
   * Called for every admitted message before it is routed (rule engine, `message.publish`).
   * `cache` is the topic's entry in the route cache: hooks may keep per-topic state in it
   * (saves them a lookup of their own per message); it is dropped with the route cache.
   */
  published(client: Client, topic: string, payload: Buffer, cache: TopicHookCache): void;
  /** Counts a delivery to a subscriber (what aedes' authorizeForward hook does). */
  forwarded(client: Client): void;
}

export interface FastPublishStats {
  /** Publishes routed by the fast path. */
  fast: number;
  /** Reads (or parts of reads) handed to aedes' parser. */
  slowReads: number;
}

const MAX_CACHED_TOPICS = 100_000;
/** Bytes a client may have read while aedes finishes its earlier packets; beyond, aedes takes them. */
const MAX_HELD_BYTES = 1024 * 1024;
/** A partial packet larger than this at the end of a read is left to aedes' parser. */
const MAX_CARRIED_PARTIAL_BYTES = 64 * 1024;

export class FastPublish {
  readonly stats: FastPublishStats = { fast: 0, slowReads: 0 };
  private readonly routes = new Map<string, TopicEntry>();
  private readonly direct = new WeakMap<object, AedesClientInternals>();
  private readonly matcher: MatcherInternals | undefined;
  private readonly pending = new Map<AedesClientInternals, Buffer[]>();
  private enabled = true;
  private readonly maxLevels: number;

  constructor(
    private readonly aedes: Aedes,
    private readonly hooks: FastPublishHooks,
  ) {
    const levels = (aedes as unknown as { maxTopicLevels?: unknown }).maxTopicLevels;
    this.maxLevels = typeof levels === 'number' ? levels : 100;
    const mq = (aedes as unknown as { mq?: { _matcher?: MatcherInternals; on?: unknown; removeListener?: unknown } }).mq;
    this.matcher = mq?._matcher && typeof mq._matcher.match === 'function' ? mq._matcher : undefined;
    if (!this.matcher || typeof mq?.on !== 'function' || typeof mq.removeListener !== 'function') {
      this.enabled = false; // an aedes/mqemitter without the expected internals: aedes does everything
      return;
    }
    // Every change of the emitter's listeners invalidates the cached routes.
    const emitter = mq as { on: (...args: unknown[]) => unknown; removeListener: (...args: unknown[]) => unknown };
    const on = emitter.on.bind(mq);
    const removeListener = emitter.removeListener.bind(mq);
    emitter.on = (...args: unknown[]) => {
      this.routes.clear();
      return on(...args);
    };
    emitter.removeListener = (...args: unknown[]) => {
      this.routes.clear();
      return removeListener(...args);
    };
  }

  /** Learns which emitter listeners are this client's subscriptions (after SUBSCRIBE or a session restore). */
  learnSubscriptions(client: Client): void {
    const internals = client as unknown as AedesClientInternals;
    for (const subscription of Object.values(internals.subscriptions ?? {})) {
      if (typeof subscription?.func === 'function') this.direct.set(subscription.func, internals);
    }
    this.routes.clear();
  }

  /** Disables the fast path (aedes then handles every packet); for tests and as a kill switch. */
  disable(): void {
    this.enabled = false;
  }

  /**
   * Takes over `client`'s parser. Call right after `aedes.handle(socket)` returned it, before any
   * byte was read, so every packet aedes handles is counted.
   */
  install(client: Client): void {
    if (!this.enabled) return;
    const internals = client as unknown as AedesClientInternals;
    const parser = internals._parser;
    if (!parser || typeof parser.parse !== 'function' || typeof internals._nextBatch !== 'function') return;
    const aedesParse = parser.parse.bind(parser);
    const nextBatch = internals._nextBatch;
    let inFlight = 0; // packets aedes' parser emitted whose handling has not completed
    let held: Buffer | undefined; // bytes read and not processed yet (may end in a partial packet)
    let needMore = false; // `held` is one partial packet: wait for the next read
    let pumping = false;
    let pausedFor = 0; // congested subscribers this client waits for

    // aedes calls `client._nextBatch` when a packet's handling completes (and from resume()).
    internals._nextBatch = (error?: Error) => {
      inFlight -= 1;
      if (inFlight === 0 && held && !needMore && !pumping) pump();
      nextBatch(error);
    };
    internals.resume = () => {
      internals._paused = false;
      nextBatch();
    };
    parser.prependListener('packet', () => {
      inFlight += 1;
    });
    // The peer finished sending (FIN) while bytes wait here for aedes' earlier packets: without
    // the fast path they would still be unread in the socket and 'end' would come after them, so
    // aedes gets them now, in order, before its own 'end' listener closes the client.
    internals.conn.prependListener('end', () => {
      if (!held || internals.closed) return;
      const rest = held;
      held = undefined;
      needMore = false;
      aedesParse(rest);
    });

    const resumeOne = (): void => {
      pausedFor -= 1;
      if (pausedFor === 0 && !internals.closed) internals.resume();
    };
    const waitForDrain = (subscriber: AedesClientInternals): void => {
      if (pausedFor === 0) internals.pause();
      pausedFor += 1;
      const conn = subscriber.conn;
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        conn.off('drain', release);
        conn.off('close', release);
        resumeOne();
      };
      conn.on('drain', release);
      conn.on('close', release);
    };

    /** Routes the complete fast-path packets at the start of `buf`; returns where it stopped. */
    const routeFast = (buf: Buffer): { offset: number; partial: boolean } => {
      let offset = 0;
      let handled = 0;
      let partial = false;
      const end = buf.length;
      while (offset < end) {
        const header = readFixedHeader(buf, offset);
        if (header === 'partial') {
          partial = true;
          break;
        }
        // Not a plain QoS 0 PUBLISH, a malformed length (aedes reports it), or a non-minimal
        // length encoding (the bytes must equal what aedes would encode for a subscriber).
        if (header === 'malformed' || header.first !== 0x30 || header.length < 3 || !header.minimal) break;
        const index = header.bodyStart;
        const packetEnd = header.end;
        const topicLength = ((buf[index] as number) << 8) | (buf[index + 1] as number);
        const topicStart = index + 2;
        const payloadStart = topicStart + topicLength;
        if (topicLength === 0 || payloadStart > packetEnd) break;
        const topic = buf.toString('utf8', topicStart, payloadStart);
        if (!isPlainTopic(topic, this.maxLevels)) break;
        const payload = buf.subarray(payloadStart, packetEnd);
        const verdict = this.hooks.admit(client, topic, payload);
        if (verdict === undefined) break;
        if (verdict === 'allow') {
          const entry = this.resolve(topic);
          this.hooks.published(client, topic, payload, entry);
          this.route(client, topic, payload, buf.subarray(offset, packetEnd), entry.routes);
        }
        this.stats.fast += 1;
        handled += 1;
        offset = packetEnd;
      }
      if (handled > 0) {
        if (internals._keepaliveInterval > 0) internals._keepaliveTimer?.refresh();
        this.flush(waitForDrain);
      }
      return { offset, partial };
    };

    // Processes `held` in order: through the fast path while the client is ready for it, else
    // through aedes' parser. Waits (keeps `held`) while aedes still handles earlier packets.
    const pump = (): void => {
      pumping = true;
      try {
        while (held && !needMore) {
          const fastClient = this.enabled && this.fastClient(internals);
          if (fastClient && inFlight > 0 && held.length <= MAX_HELD_BYTES) return; // resumed by _nextBatch
          const buf = held;
          held = undefined;
          if (!fastClient || inFlight > 0) {
            aedesParse(buf);
            continue;
          }
          const { offset, partial } = routeFast(buf);
          if (offset >= buf.length) continue;
          // aedes takes the complete packets from the first one the fast path does not route;
          // a partial packet at the end stays here (so aedes' parser is left clean and the fast
          // path can resume with the next read) unless it is large (aedes' parser buffers those
          // without copying them again on every read).
          const boundary = partial ? offset : completePacketsEnd(buf, offset);
          if (boundary > offset) {
            this.stats.slowReads += 1;
            aedesParse(buf.subarray(offset, boundary));
          }
          if (boundary < buf.length) {
            const tail = buf.subarray(boundary);
            if (tail.length > MAX_CARRIED_PARTIAL_BYTES) aedesParse(tail);
            else {
              held = tail;
              needMore = true;
            }
          }
        }
      } finally {
        pumping = false;
      }
    };

    parser.parse = (input: Buffer): number => {
      held = held ? Buffer.concat([held, input]) : input;
      needMore = false;
      if (!pumping) pump();
      return 0;
    };
  }

  /**
   * True when the client's next packets may take the fast path once aedes has nothing of it in
   * flight: connected MQTT 3.1/3.1.1, and aedes' parser holds no partial packet.
   */
  private fastClient(client: AedesClientInternals): boolean {
    const parser = client._parser;
    return (
      client.connected &&
      !client.closed &&
      (client.version === 4 || client.version === 3) &&
      !parser.error &&
      parser._queue === null &&
      parser._stateCounter === 0 &&
      parser._list.length === 0 &&
      parser.packet.length === -1
    );
  }

  private resolve(topic: string): TopicEntry {
    const cached = this.routes.get(topic);
    if (cached) return cached;
    const routes: Route[] = [];
    const subscribers = new Set<AedesClientInternals>();
    let cacheable = true;
    for (const listener of (this.matcher as MatcherInternals).match(topic)) {
      const subscriber = this.direct.get(listener);
      if (subscriber && (subscriber.version === 4 || subscriber.version === 3)) {
        // Overlapping subscriptions of one client get one copy: aedes' per-client dedupe drops
        // the second delivery of the same message.
        if (subscribers.has(subscriber)) continue;
        subscribers.add(subscriber);
        routes.push({ client: subscriber });
      } else {
        // Not known as a direct subscription yet (SUBSCRIBE still completing): call it, don't cache.
        if (!subscriber) cacheable = false;
        routes.push({ listener });
      }
    }
    const entry: TopicEntry = { routes, hookVersion: -1, hookState: undefined };
    if (cacheable) {
      if (this.routes.size >= MAX_CACHED_TOPICS) this.routes.clear();
      this.routes.set(topic, entry);
    }
    return entry;
  }

  private route(publisher: Client, topic: string, payload: Buffer, bytes: Buffer, routes: Route[]): void {
    for (let index = 0; index < routes.length; index += 1) {
      const route = routes[index] as Route;
      if (route.client) {
        const subscriber = route.client;
        if (!subscriber.connected || subscriber.closed) continue;
        this.hooks.forwarded(subscriber as unknown as Client);
        const queued = this.pending.get(subscriber);
        if (queued) queued.push(bytes);
        else this.pending.set(subscriber, [bytes]);
      } else {
        // What aedes' emitter hands its listeners: an aedes packet of this publish.
        const aedes = this.aedes as unknown as { id: string; counter: number };
        aedes.counter += 1;
        route.listener(
          {
            cmd: 'publish',
            brokerId: aedes.id,
            brokerCounter: aedes.counter,
            topic,
            payload,
            qos: 0,
            retain: false,
            dup: false,
            clientId: (publisher as unknown as AedesClientInternals).id,
          },
          noop,
        );
      }
    }
  }

  private flush(waitForDrain: (subscriber: AedesClientInternals) => void): void {
    for (const [subscriber, chunks] of this.pending) {
      if (subscriber.closed || subscriber.conn.destroyed) continue;
      const accepted = subscriber.conn.write(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
      if (!accepted) waitForDrain(subscriber);
    }
    this.pending.clear();
  }
}

/** A topic the fast path routes: no wildcards, not a `$` topic, within aedes' level limit (else aedes' checks apply). */
function isPlainTopic(topic: string, maxLevels: number): boolean {
  if (topic.charCodeAt(0) === 36) return false; // '$'
  let levels = 1;
  for (let index = 0; index < topic.length; index += 1) {
    const code = topic.charCodeAt(index);
    if (code === 47) levels += 1;
    else if (code === 43 || code === 35 || code === 0 || code === 0xfffd) return false; // + # NUL, invalid UTF-8
  }
  return levels <= maxLevels;
}

/**
 * Where the complete packets starting at `from` end (the start of a trailing partial packet, or
 * `buf.length`). A malformed remaining length counts as complete: aedes reports it.
 */
function completePacketsEnd(buf: Buffer, from: number): number {
  let offset = from;
  while (offset < buf.length) {
    const header = readFixedHeader(buf, offset);
    if (header === 'partial') return offset;
    if (header === 'malformed') return buf.length;
    offset = header.end;
  }
  return offset;
}

function noop(): void {}
