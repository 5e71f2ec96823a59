// The embedded broker's QoS 0 fast path (src/embedded/fast-publish.ts) against aedes' own path:
// the same traffic gives the same bytes to every subscriber and the same counters, a client's
// packets keep their order whatever mixes fast and slow packets and however reads split them,
// denied publishes stay denied, rules fire, a subscriber that stops reading pauses publishers
// instead of growing the broker's memory, and keep-alive is honoured.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { buildEmqxBaseConfig, reconcileEmqxBase } from '../src/controller.js';
import type { ListenerConfig } from '../src/emqx-types.js';
import { encodeRemainingLength, readFixedHeader } from '../src/embedded/mqtt-frames.js';
import { elapse, waitFor } from '@pepeunit/tests/wait';
import { startTestBroker, startBackendStub } from './helpers.js';
import type { TestBroker } from './helpers.js';

// ---- a raw MQTT 3.1.1 client: exact bytes in, exact bytes out ------------------------------

function str(text: string): Buffer {
  const bytes = Buffer.from(text);
  return Buffer.concat([Buffer.from([bytes.length >> 8, bytes.length & 255]), bytes]);
}

function packet(first: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([first]), encodeRemainingLength(body.length), body]);
}

function connect(clientId: string, opts: { keepalive?: number; username?: string; password?: string } = {}): Buffer {
  const flags = 0x02 | (opts.username !== undefined ? 0x80 : 0) | (opts.password !== undefined ? 0x40 : 0);
  const parts = [str('MQTT'), Buffer.from([4, flags, (opts.keepalive ?? 0) >> 8, (opts.keepalive ?? 0) & 255]), str(clientId)];
  if (opts.username !== undefined) parts.push(str(opts.username));
  if (opts.password !== undefined) parts.push(str(opts.password));
  return packet(0x10, Buffer.concat(parts));
}

function subscribe(id: number, filter: string, qos = 0): Buffer {
  return packet(0x82, Buffer.concat([Buffer.from([id >> 8, id & 255]), str(filter), Buffer.from([qos])]));
}

function publish(topic: string, payload: string, opts: { qos?: 0 | 1; retain?: boolean; id?: number } = {}): Buffer {
  const qos = opts.qos ?? 0;
  const first = 0x30 | (qos << 1) | (opts.retain ? 1 : 0);
  const id = qos > 0 ? Buffer.from([(opts.id ?? 1) >> 8, (opts.id ?? 1) & 255]) : Buffer.alloc(0);
  return packet(first, Buffer.concat([str(topic), id, Buffer.from(payload)]));
}

interface Received {
  first: number;
  topic: string;
  payload: string;
  raw: Buffer;
}

interface RawClient {
  socket: net.Socket;
  /** Every PUBLISH received, in order. */
  publishes: Received[];
  /** Every other packet type received (first byte). */
  others: number[];
  closed: Promise<void>;
  send(bytes: Buffer): void;
  waitFor(count: number, timeoutMs?: number): Promise<void>;
  end(): Promise<void>;
}

async function rawClient(port: number, clientId: string, opts: { keepalive?: number; username?: string; password?: string; subscribeTo?: Array<[string, number]> } = {}): Promise<RawClient> {
  const socket = net.connect({ host: '127.0.0.1', port });
  const publishes: Received[] = [];
  const others: number[] = [];
  let pending: Buffer = Buffer.alloc(0);
  let connack: (() => void) | undefined;
  let suback: (() => void) | undefined;
  socket.on('data', (data: Buffer) => {
    pending = pending.length > 0 ? Buffer.concat([pending, data]) : data;
    for (;;) {
      const header = readFixedHeader(pending, 0);
      if (header === 'partial') return;
      if (header === 'malformed') throw new Error(`${clientId}: malformed packet from the broker`);
      const raw = pending.subarray(0, header.end);
      const { first, bodyStart: index } = header;
      if (first >> 4 === 3) {
        const topicLength = ((raw[index] as number) << 8) | (raw[index + 1] as number);
        const qos = (first >> 1) & 3;
        const payloadStart = index + 2 + topicLength + (qos > 0 ? 2 : 0);
        publishes.push({ first, topic: raw.toString('utf8', index + 2, index + 2 + topicLength), payload: raw.toString('utf8', payloadStart), raw: Buffer.from(raw) });
        if (qos === 1) socket.write(Buffer.from([0x40, 2, raw[payloadStart - 2] as number, raw[payloadStart - 1] as number]));
      } else {
        others.push(first);
        if (first === 0x20) connack?.();
        if (first === 0x90) suback?.();
      }
      pending = pending.subarray(header.end);
    }
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  await new Promise<void>((resolve, reject) => {
    connack = resolve;
    socket.write(connect(clientId, opts));
    setTimeout(() => reject(new Error(`${clientId}: no CONNACK`)), 5000).unref();
  });
  let id = 1;
  for (const [filter, qos] of opts.subscribeTo ?? []) {
    await new Promise<void>((resolve, reject) => {
      suback = resolve;
      socket.write(subscribe(id++, filter, qos));
      setTimeout(() => reject(new Error(`${clientId}: no SUBACK`)), 5000).unref();
    });
  }
  return {
    socket,
    publishes,
    others,
    closed,
    send: (bytes) => socket.write(bytes),
    async waitFor(count, timeoutMs) {
      await waitFor(() => publishes.length >= count, { what: `${clientId}: ${count} publishes (got ${publishes.length})`, intervalMs: 10, ...(timeoutMs ? { timeoutMs } : {}) });
    },
    async end() {
      if (!socket.destroyed) socket.end(Buffer.from([0xe0, 0]));
      await closed;
    },
  };
}

/** Writes `bytes` in pieces cut at the given byte positions, with a pause between pieces. */
async function sendInPieces(client: RawClient, bytes: Buffer, cuts: number[]): Promise<void> {
  let start = 0;
  for (const cut of [...cuts.filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b), bytes.length]) {
    client.send(bytes.subarray(start, cut));
    start = cut;
    await elapse(3, 'a pause between pieces, so the broker reads them separately');
  }
}

const brokers: TestBroker[] = [];
after(async () => {
  for (const broker of brokers) await broker.close();
});

async function broker(fastPublish: boolean): Promise<TestBroker> {
  const started = await startTestBroker({ fastPublish });
  brokers.push(started);
  return started;
}

/**
 * A fast-path broker configured by the controller against a stand-in backend: user `dev`
 * (its publishes decided by `decisions`), superuser `sub`; passwords `pw`.
 */
async function brokerWithBackend(decisions: Record<string, 'allow' | 'deny'>) {
  const stub = await startBackendStub();
  stub.users.set('dev', { password: 'pw' });
  stub.users.set('sub', { password: 'pw', isSuperuser: true });
  for (const [topic, decision] of Object.entries(decisions)) stub.permissions.set(`dev|publish|${topic}`, decision);
  const tb = await broker(true);
  // Unlimited listener rates: these tests send bursts and look at which path took each packet
  // (the rates, which throttle the reader, have their own tests in embedded-limits.test.ts).
  const unlimited = { clientMaxMessagesRate: 'infinity', clientMaxBytesRate: 'infinity', maxClientConnectionRate: 'infinity' };
  await reconcileEmqxBase(tb.client, buildEmqxBaseConfig({ callbackBaseUrl: stub.baseUrl, ...unlimited }));
  return { stub, tb };
}

// ---- the tests ------------------------------------------------------------------------------

describe('QoS 0 fast path', () => {
  test('the same traffic gives every subscriber the same bytes and the same counters as aedes alone', async () => {
    const run = async (fast: boolean) => {
      const { broker: b } = await broker(fast);
      const exact = await rawClient(b.mqttPort, 'exact', { subscribeTo: [['d/1/pepeunit', 0]] });
      const wildcard = await rawClient(b.mqttPort, 'wildcard', { subscribeTo: [['d/+/pepeunit', 0], ['d/#', 1]] }); // overlapping: one copy (aedes dedupes)
      const shared1 = await rawClient(b.mqttPort, 'shared1', { subscribeTo: [['$share/g/d/+/pepeunit', 0]] });
      const shared2 = await rawClient(b.mqttPort, 'shared2', { subscribeTo: [['$share/g/d/+/pepeunit', 0]] });
      const other = await rawClient(b.mqttPort, 'other', { subscribeTo: [['x/#', 0]] });
      const device = await rawClient(b.mqttPort, 'device');
      const messages: Buffer[] = [];
      for (let i = 0; i < 300; i++) messages.push(publish(`d/${i % 3}/pepeunit`, `v${i}`));
      // Warm the authorization cache with one message per topic, then the rest in one write.
      device.send(Buffer.concat(messages.slice(0, 3)));
      await wildcard.waitFor(3);
      device.send(Buffer.concat(messages.slice(3)));
      await wildcard.waitFor(300);
      await exact.waitFor(100);
      await waitFor(() => shared1.publishes.length + shared2.publishes.length >= 300, { what: 'the shared group deliveries' });
      const sharedTotal = shared1.publishes.length + shared2.publishes.length;
      const counters = (id: string) => {
        const session = b.sessions.find(id);
        assert.ok(session, id);
        return { ...session.counters };
      };
      const result = {
        exact: exact.publishes.map((p) => p.raw.toString('hex')),
        wildcard: wildcard.publishes.map((p) => p.raw.toString('hex')),
        sharedTotal,
        sharedSplit: shared1.publishes.length > 0 && shared2.publishes.length > 0,
        other: other.publishes.length,
        device: counters('device'),
        wildcardCounters: counters('wildcard'),
        fast: b.fastPublishStats.fast,
      };
      for (const client of [exact, wildcard, shared1, shared2, other, device]) await client.end();
      return result;
    };
    const viaAedes = await run(false);
    const viaFast = await run(true);
    assert.equal(viaAedes.fast, 0, 'fastPublish: false leaves everything to aedes');
    assert.ok(viaFast.fast >= 290, `the messages after the first three took the fast path (${viaFast.fast})`);
    assert.equal(viaFast.exact.length, 100);
    assert.deepEqual(viaFast.exact, viaAedes.exact, 'exact subscriber: same bytes, same order');
    assert.equal(viaFast.wildcard.length, 300);
    assert.deepEqual(viaFast.wildcard, viaAedes.wildcard, 'overlapping subscriptions: one copy of each, in order');
    assert.equal(viaFast.sharedTotal, 300, 'a shared group gets each message once');
    assert.equal(viaAedes.sharedTotal, 300);
    assert.ok(viaFast.sharedSplit, 'round robin over both members');
    assert.equal(viaFast.other, 0);
    assert.deepEqual(viaFast.device, viaAedes.device, 'publisher counters');
    assert.deepEqual(viaFast.wildcardCounters, viaAedes.wildcardCounters, 'subscriber counters');
    assert.equal(viaFast.device.recv_msg, 300);
    assert.equal(viaFast.device['recv_msg.qos0'], 300);
  });

  // Every mix is sent in pieces cut inside headers, topics and payloads as well as on boundaries.
  const orderRun = async (
    name: string,
    subscriptionQos: number,
    kindOf: (i: number) => 'plain' | 'retained' | 'qos1' | 'ping',
    throttle?: { listener: ListenerConfig; lift: ListenerConfig },
  ) => {
    const { broker: b, client } = await broker(true);
    if (throttle) await client.updateListener('tcp:default', throttle.listener);
    const sub = await rawClient(b.mqttPort, `${name}-sub`, { subscribeTo: [['o/#', subscriptionQos]] });
    const device = await rawClient(b.mqttPort, `${name}-dev`);
    const parts: Buffer[] = [];
    let id = 1;
    for (let i = 0; i < 600; i++) {
      const kind = kindOf(i);
      if (kind === 'retained') parts.push(publish('o/t', String(i), { retain: true }));
      else if (kind === 'qos1') parts.push(publish('o/t', String(i), { qos: 1, id: id++ }));
      else if (kind === 'ping') parts.push(Buffer.from([0xc0, 0]));
      else parts.push(publish('o/t', String(i)));
    }
    const stream = Buffer.concat(parts);
    const cuts: number[] = [];
    for (let at = 1; at < stream.length; at += 7 + (at % 23)) cuts.push(at);
    // With a throttle: once the reader was paused, the limit is lifted (so the run's length does not depend on the rate).
    const lift = async (): Promise<void> => {
      if (!throttle) return;
      await waitFor(() => b.limitStats.throttledReads > 0, { what: 'the reader to be throttled', intervalMs: 10 });
      await client.updateListener('tcp:default', throttle.lift);
    };
    await Promise.all([sendInPieces(device, stream, cuts), lift()]);
    const published = Array.from({ length: 600 }, (_, i) => i).filter((i) => kindOf(i) !== 'ping');
    await sub.waitFor(published.length);
    // Every PINGREQ and QoS 1 publish answered on the device's connection.
    const expected = (kind: string) => Array.from({ length: 600 }, (_, i) => kindOf(i)).filter((k) => k === kind).length;
    await waitFor(() => device.others.filter((first) => first === 0xd0).length === expected('ping') && device.others.filter((first) => first === 0x40).length === expected('qos1'), {
      what: 'PINGRESPs and PUBACKs',
    });
    const received = sub.publishes.map((p) => Number(p.payload));
    const pings = device.others.filter((first) => first === 0xd0).length;
    const pubacks = device.others.filter((first) => first === 0x40).length;
    await sub.end();
    await device.end();
    return { received, published, fast: b.fastPublishStats.fast, pings, pubacks, throttledReads: b.limitStats.throttledReads };
  };

  test("a client's QoS 0 packets keep their order when fast and slow packets mix and reads split them anywhere", async () => {
    // Plain QoS 0 publishes (fast) with PINGREQs (aedes) in between. (Retained publishes are left
    // out: aedes alone loses some of them when reads are split this finely; docs/ARCHITECTURE.md,
    // Known issues.)
    const run = await orderRun('order0', 0, (i) => (i % 10 === 3 || i % 10 === 9 ? 'ping' : 'plain'));
    assert.deepEqual(run.received, run.published, 'every message, exactly in publish order');
    assert.ok(run.fast > 0, `the fast path took part (${run.fast})`);
    assert.equal(run.pings, 120, 'every PINGREQ answered');
  });

  test('with QoS 1 publishes in between, the QoS 0 ones keep their order and every QoS 1 one is delivered', async () => {
    // MQTT orders messages per QoS; aedes itself delivers QoS 1 later (through its persistence).
    const run = await orderRun('order1', 1, (i) => (i % 10 === 7 ? 'qos1' : i % 10 === 9 ? 'ping' : 'plain'));
    const qos1 = (n: number) => n % 10 === 7;
    assert.deepEqual(run.received.filter((n) => !qos1(n)), run.published.filter((n) => !qos1(n)), 'QoS 0 messages in publish order');
    assert.deepEqual([...run.received.filter(qos1)].sort((a, b) => a - b), run.published.filter(qos1), 'every QoS 1 message');
    assert.ok(run.fast > 0, `the fast path took part (${run.fast})`);
    assert.equal(run.pubacks, 60, 'every QoS 1 publish acknowledged');
  });

  test('a reader throttled by messages_rate keeps the order of fast, QoS 1 and other packets', async () => {
    const mix = (i: number): 'qos1' | 'ping' | 'plain' => (i % 10 === 7 ? 'qos1' : i % 10 === 9 ? 'ping' : 'plain');
    const run = await orderRun('order-rate', 1, mix, { listener: { messages_rate: '50/s' }, lift: { messages_rate: 'infinity' } });
    const qos1 = (n: number) => n % 10 === 7;
    assert.deepEqual(run.received.filter((n) => !qos1(n)), run.published.filter((n) => !qos1(n)), 'QoS 0 messages in publish order');
    assert.deepEqual([...run.received.filter(qos1)].sort((a, b) => a - b), run.published.filter(qos1), 'every QoS 1 message');
    assert.ok(run.throttledReads > 0, 'the reader was throttled');
    assert.ok(run.fast > 0, `the fast path took part (${run.fast})`);
    assert.equal(run.pings, 60, 'every PINGREQ answered');
    assert.equal(run.pubacks, 60, 'every QoS 1 publish acknowledged');
  });

  test('authorization is the same: denied publishes are dropped and counted, cached decisions are applied on the fast path', async () => {
    const { stub, tb } = await brokerWithBackend({ 'a/ok': 'allow', 'a/no': 'deny' });
    try {
      assert.equal((await tb.client.getAuthorizationSettings()).deny_action, 'ignore');
      const sub = await rawClient(tb.broker.mqttPort, 'authz-sub', { username: 'sub', password: 'pw', subscribeTo: [['a/#', 0]] });
      const dev = await rawClient(tb.broker.mqttPort, 'authz-dev', { username: 'dev', password: 'pw' });
      const before = tb.broker.fastPublishStats.fast;
      const burst = (round: number) => Buffer.concat(Array.from({ length: 50 }, (_, i) => publish(i % 2 ? 'a/no' : 'a/ok', `${round}-${i}`)));
      const session = tb.broker.sessions.find('authz-dev');
      assert.ok(session);
      dev.send(burst(0));
      // The callouts of the first round fill the cache (one decision per topic).
      await waitFor(() => session.counters.recv_msg === 50 && session.authzCache.size >= 2 && session.pendingPublishes === 0, { what: 'the first round decided' });
      dev.send(burst(1));
      await sub.waitFor(50);
      await waitFor(() => session.counters.recv_msg === 100 && session.counters['recv_msg.dropped'] === 50, { what: 'both rounds counted' });
      assert.deepEqual(new Set(sub.publishes.map((p) => p.topic)), new Set(['a/ok']), 'nothing denied was delivered');
      assert.equal(sub.publishes.length, 50);
      assert.equal(session.counters['recv_msg.dropped'], 50);
      assert.equal(session.counters.recv_msg, 100);
      assert.equal(tb.broker.fastPublishStats.fast - before, 50, 'the second round, allowed and denied, was decided from the cache on the fast path');
      await sub.end();
      await dev.end();
    } finally {
      await stub.close();
    }
  });

  test('a client that disconnects while aedes still handles its earlier packet loses nothing it sent', async () => {
    const { stub, tb } = await brokerWithBackend({ 'f/slow': 'allow', 'f/fast': 'allow' });
    try {
      stub.authzDelays.set('f/slow', 300); // the backend takes 300 ms to decide this one
      const sub = await rawClient(tb.broker.mqttPort, 'fin-sub', { username: 'sub', password: 'pw', subscribeTo: [['f/#', 0]] });
      const dev = await rawClient(tb.broker.mqttPort, 'fin-dev', { username: 'dev', password: 'pw' });
      dev.send(publish('f/fast', 'warm'));
      await sub.waitFor(1); // f/fast is now in the authorization cache
      const before = tb.broker.fastPublishStats.fast;
      dev.send(publish('f/slow', 'slow')); // in flight in aedes for 300 ms
      await waitFor(() => stub.authzRequests.some((request) => request.body.topic === 'f/slow'), { what: 'the f/slow callout in flight' });
      // The rest arrives while aedes still handles f/slow; then the device disconnects and closes.
      dev.socket.end(Buffer.concat([...Array.from({ length: 300 }, (_, i) => publish('f/fast', String(i))), Buffer.from([0xe0, 0])]));
      await dev.closed;
      await sub.waitFor(302);
      assert.deepEqual(
        sub.publishes.map((p) => p.payload),
        ['warm', 'slow', ...Array.from({ length: 300 }, (_, i) => String(i))],
        'everything, in order',
      );
      assert.equal(tb.broker.fastPublishStats.fast, before, 'the bytes waiting behind f/slow went to aedes when the peer closed');
      await sub.end();
    } finally {
      await stub.close();
    }
  });

  test('rules fire for fast-path publishes', async () => {
    const tb = await broker(true);
    await tb.client.createRule({
      id: 'fast-rule',
      sql: 'SELECT payload, topic FROM "r/+/pepeunit"',
      actions: [{ function: 'republish', args: { topic: 'out/${topic}', qos: 0, retain: false, payload: '${payload}' } }],
    } as never);
    const sub = await rawClient(tb.broker.mqttPort, 'rule-sub', { subscribeTo: [['out/#', 0]] });
    const dev = await rawClient(tb.broker.mqttPort, 'rule-dev');
    dev.send(publish('r/1/pepeunit', 'warm'));
    await sub.waitFor(1);
    dev.send(Buffer.concat(Array.from({ length: 200 }, (_, i) => publish('r/1/pepeunit', `m${i}`))));
    await sub.waitFor(201);
    assert.deepEqual(
      sub.publishes.slice(1).map((p) => [p.topic, p.payload]),
      Array.from({ length: 200 }, (_, i) => ['out/r/1/pepeunit', `m${i}`]),
    );
    assert.ok(tb.broker.fastPublishStats.fast >= 150);
    await sub.end();
    await dev.end();
  });

  test('a subscriber that stops reading pauses the publisher; everything arrives once it reads again', async () => {
    const tb = await broker(true);
    const slow = await rawClient(tb.broker.mqttPort, 'slow-sub', { subscribeTo: [['s/#', 0]] });
    const dev = await rawClient(tb.broker.mqttPort, 'slow-dev');
    dev.send(publish('s/t', 'warm'));
    await slow.waitFor(1);
    slow.socket.pause();
    const payload = 'x'.repeat(1000);
    const total = 30_000; // about 30 MB
    // The device writes everything at once; what the broker cannot pass on stays in the device's
    // socket buffers, because the broker stops reading it.
    for (let i = 0; i < total; i += 500) dev.send(Buffer.concat(Array.from({ length: 500 }, (_, k) => publish('s/t', `${i + k}:${payload}`))));
    await waitFor(() => dev.socket.writableLength > 10 * 1024 * 1024, { what: 'the publisher to be paused' });
    assert.ok(dev.socket.writableLength > 10 * 1024 * 1024, `the publisher was paused: ${dev.socket.writableLength} B still unsent on the device`);
    const brokerSide = tb.broker.sessions.find('slow-sub');
    const conn = (brokerSide?.client as unknown as { conn: net.Socket }).conn;
    assert.ok(conn.writableLength < 4 * 1024 * 1024, `the broker buffers at most a few MB for the stalled subscriber (${conn.writableLength} B)`);
    slow.socket.resume();
    await slow.waitFor(total + 1, 60_000);
    const order = slow.publishes.slice(1).map((p) => Number(p.payload.slice(0, p.payload.indexOf(':'))));
    assert.deepEqual(order, Array.from({ length: total }, (_, i) => i), 'every message, in order');
    await slow.end();
    await dev.end();
  });

  test('keep-alive: a client that only publishes fast-path packets stays connected', async () => {
    const tb = await broker(true);
    const sub = await rawClient(tb.broker.mqttPort, 'ka-sub', { subscribeTo: [['k/#', 0]] });
    const dev = await rawClient(tb.broker.mqttPort, 'ka-dev', { keepalive: 1 });
    let closed = false;
    void dev.closed.then(() => (closed = true));
    for (let i = 0; i < 30; i++) {
      dev.send(publish('k/t', String(i)));
      await elapse(100, 'publishing for 3 s, twice the 1.5 s keep-alive timeout');
    }
    await sub.waitFor(30);
    assert.equal(closed, false, 'not disconnected for inactivity');
    assert.ok(tb.broker.fastPublishStats.fast >= 25);
    // Silent now: the broker closes it after 1.5 x keep-alive.
    await waitFor(() => closed, { what: 'a silent client to be disconnected' });
    await sub.end();
  });
});
