// The embedded broker's connection limits (security issue 10): the packet size is enforced on the
// fixed header before anything is buffered (with a small limit before CONNACK), sockets without a
// CONNECT are closed after the zone's idle_timeout, and the listener's messages_rate, bytes_rate
// and max_conn_rate slow clients down like EMQX does (the reader pauses; nothing is dropped).
// Rate checks are upper bounds over the elapsed time (a slow machine only makes them easier):
// without the limits every message arrives at once and the bound fails.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { MqttClient } from 'mqtt';
import { encodeRemainingLength } from '../src/embedded/mqtt-frames.js';
import { PRE_CONNACK_MAX_BYTES } from '../src/embedded/inbound-limits.js';
import { waitFor } from '@pepeunit/tests/wait';
import { collect, connectClient, startTestBroker } from './helpers.js';
import type { TestBroker } from './helpers.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function str(text: string | Buffer): Buffer {
  const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text);
  return Buffer.concat([Buffer.from([bytes.length >> 8, bytes.length & 255]), bytes]);
}

function packet(first: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([first]), encodeRemainingLength(body.length), body]);
}

function connectPacket(clientId: string | Buffer): Buffer {
  return packet(0x10, Buffer.concat([str('MQTT'), Buffer.from([4, 0x02, 0, 0]), str(clientId)]));
}

function publishPacket(topic: string, payload: string, qos: 0 | 1 = 0, id = 1): Buffer {
  const packetId = qos === 1 ? Buffer.from([id >> 8, id & 255]) : Buffer.alloc(0);
  return packet(0x30 | (qos << 1), Buffer.concat([str(topic), packetId, Buffer.from(payload)]));
}

interface RawSocket {
  socket: net.Socket;
  /** Resolves when the broker closed the connection. */
  closed: Promise<void>;
  isClosed(): boolean;
  /** Bytes the broker sent (CONNACK is 0x20 0x02 0x00 0x00). */
  received(): Buffer;
}

async function rawSocket(port: number): Promise<RawSocket> {
  const socket = net.connect({ host: '127.0.0.1', port });
  let closed = false;
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => undefined); // a reset while writing is how a refused peer learns of it
  const closedPromise = new Promise<void>((resolve) =>
    socket.once('close', () => {
      closed = true;
      resolve();
    }),
  );
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  return { socket, closed: closedPromise, isClosed: () => closed, received: () => Buffer.concat(chunks) };
}

async function connectedRaw(port: number, clientId: string): Promise<RawSocket> {
  const raw = await rawSocket(port);
  raw.socket.write(connectPacket(clientId));
  await waitFor(() => raw.received().length >= 4, { what: `CONNACK for ${clientId}` });
  assert.deepEqual([...raw.received().subarray(0, 4)], [0x20, 2, 0, 0]);
  return raw;
}

/** Keeps writing `chunk` (waiting for drain) until the peer closes or `maxBytes` were written; returns what was written. */
async function flood(raw: RawSocket, chunk: Buffer, maxBytes: number): Promise<number> {
  let written = 0;
  while (written < maxBytes && !raw.isClosed()) {
    const more = raw.socket.write(chunk);
    written += chunk.length;
    if (!more) {
      await Promise.race([new Promise((resolve) => raw.socket.once('drain', resolve)), raw.closed]);
    }
  }
  return written;
}

/** Resolves when the broker closed `raw`; fails after `timeoutMs`. */
async function closedWithin(raw: RawSocket, timeoutMs: number, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      raw.closed,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: still open after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function rssAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().rss;
}

const MB = 1024 * 1024;

describe('embedded broker packet size limits', () => {
  let broker: TestBroker;
  before(async () => {
    broker = await startTestBroker();
  });
  after(async () => {
    await broker.close();
  });

  it('closes a CONNECT announcing 256 MB as soon as its header is read, without buffering what follows', async () => {
    const baseline = rssAfterGc();
    const attackers = await Promise.all([rawSocket(broker.broker.mqttPort), rawSocket(broker.broker.mqttPort)]);
    const junk = Buffer.alloc(MB, 0x41);
    // 0x10 + Remaining Length 268 435 455 (the MQTT maximum), then megabytes of "body".
    const written = await Promise.all(
      attackers.map(async (raw) => {
        raw.socket.write(Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]));
        return flood(raw, junk, 96 * MB);
      }),
    );
    // Without the limit aedes buffers every byte sent (2 x 96 MB, kept until the idle timeout); with it nothing is held.
    const grown = rssAfterGc() - baseline;
    assert.ok(grown < 48 * MB, `memory grew by ${Math.round(grown / MB)} MB`);
    await Promise.all(attackers.map((raw) => closedWithin(raw, 5000, 'attacker')));
    for (const count of written) assert.ok(count < 96 * MB, `the broker closed the connection before 96 MB arrived (${count} bytes written)`);
    assert.equal(broker.broker.limitStats.closedOversized, 2, 'both connections closed for the announced size');
    assert.equal(broker.broker.sessions.list().length, 0);
  });

  it(`limits what a client sends before CONNACK to ${PRE_CONNACK_MAX_BYTES / 1024} KiB, and accepts an ordinary CONNECT`, async () => {
    const before = broker.broker.limitStats.closedOversized;
    const bigId = await rawSocket(broker.broker.mqttPort);
    bigId.socket.write(connectPacket(Buffer.alloc(PRE_CONNACK_MAX_BYTES, 0x61)));
    await closedWithin(bigId, 5000, 'a 64 KiB client id');
    assert.equal(bigId.received().length, 0, 'no CONNACK');
    assert.equal(broker.broker.limitStats.closedOversized, before + 1);

    const ordinary = await connectedRaw(broker.broker.mqttPort, `id-${'x'.repeat(1000)}`);
    ordinary.socket.destroy();
  });

  it("closes a client whose PUBLISH header announces more than the zone's max_packet_size, before the body arrives", async () => {
    await broker.client.updateGlobalZone({ mqtt: { max_packet_size: '1KB' } });
    try {
      const subscriber = await connectClient(broker.broker.mqttUrl, { clientId: 'size-sub' });
      const received = collect(subscriber);
      await subscriber.subscribeAsync('size/#');
      const client = await connectedRaw(broker.broker.mqttPort, 'size-pub');
      // In one write: a publish under the limit, then only the fixed header and the topic of a
      // 2 KB publish (aedes alone would wait for the rest of it).
      const oversizedStart = Buffer.concat([Buffer.from([0x30]), encodeRemainingLength(2048), str('size/big')]);
      client.socket.write(Buffer.concat([publishPacket('size/ok', 'x'.repeat(900)), oversizedStart]));
      await closedWithin(client, 5000, 'a publish over max_packet_size');
      await waitFor(() => received.length === 1, { what: 'the publish before the oversized one' });
      assert.equal(received[0]?.topic, 'size/ok');
      await subscriber.endAsync();
    } finally {
      await broker.client.updateGlobalZone({ mqtt: { max_packet_size: '1MB' } });
    }
  });
});

describe('embedded broker idle_timeout', () => {
  let broker: TestBroker;
  before(async () => {
    broker = await startTestBroker();
  });
  after(async () => {
    await broker.close();
  });

  it('closes sockets that send no (complete) CONNECT within the zone idle_timeout, and only those', async () => {
    const zone = await broker.client.updateGlobalZone({ mqtt: { idle_timeout: '1s' } });
    assert.equal(zone.mqtt?.idle_timeout, '1s');
    const connected = await connectClient(broker.broker.mqttUrl, { clientId: 'idle-but-connected' });
    const silent = await Promise.all(Array.from({ length: 20 }, () => rawSocket(broker.broker.mqttPort)));
    const partial = await rawSocket(broker.broker.mqttPort);
    partial.socket.write(connectPacket('slow').subarray(0, 6)); // a CONNECT that never completes
    // aedes' own timer would wait 30 s.
    await Promise.all([...silent, partial].map((raw) => closedWithin(raw, 10_000, 'a socket without CONNECT')));
    assert.equal(broker.broker.limitStats.closedIdle, 21);
    assert.equal(connected.connected, true, 'a client that sent CONNECT is not affected');
    assert.ok(await broker.client.getClient('idle-but-connected'));
    await connected.endAsync();
  });
});

describe('embedded broker listener rates', () => {
  let broker: TestBroker;
  const clients: MqttClient[] = [];
  before(async () => {
    broker = await startTestBroker();
  });
  after(async () => {
    await Promise.all(clients.map((client) => client.endAsync(true).catch(() => undefined)));
    await broker.close();
  });

  it('throttles QoS 0 publishes to messages_rate (fast path): slower, in order, nothing dropped, no disconnect', async () => {
    await broker.client.updateListener('tcp:default', { messages_rate: '20/s' });
    const subscriber = await connectClient(broker.broker.mqttUrl, { clientId: 'rate-sub' });
    clients.push(subscriber);
    const received = collect(subscriber);
    await subscriber.subscribeAsync('rate/m');
    const publisher = await connectedRaw(broker.broker.mqttPort, 'rate-pub');
    const fastBefore = broker.broker.fastPublishStats.fast;

    const started = Date.now();
    publisher.socket.write(Buffer.concat(Array.from({ length: 100 }, (_, i) => publishPacket('rate/m', String(i)))));
    await waitFor(() => received.length >= 30, { what: '30 messages' });
    const elapsedS = (Date.now() - started) / 1000;
    const count = received.length;
    // A bucket of one second (20) plus 20/s since; one extra for the packet the timer lets through at the edge.
    assert.ok(count <= 20 + 20 * elapsedS + 1, `${count} messages in ${elapsedS.toFixed(2)} s at messages_rate 20/s`);
    assert.ok(broker.broker.limitStats.throttledReads > 0);

    await broker.client.updateListener('tcp:default', { messages_rate: 'infinity' });
    await waitFor(() => received.length === 100, { what: 'every message once the limit is lifted' });
    assert.deepEqual(
      received.map((message) => message.payload),
      Array.from({ length: 100 }, (_, i) => String(i)),
    );
    assert.ok(broker.broker.fastPublishStats.fast > fastBefore, 'the QoS 0 publishes took the fast path');
    assert.equal(publisher.isClosed(), false, 'the publisher was slowed down, not disconnected');
    assert.equal((await broker.client.getClient('rate-pub'))?.recv_msg, 100);
    publisher.socket.destroy();
  });

  it("throttles QoS 1 publishes to bytes_rate (aedes' path)", async () => {
    await broker.client.updateListener('tcp:default', { bytes_rate: '4KB/s' });
    const subscriber = await connectClient(broker.broker.mqttUrl, { clientId: 'bytes-sub' });
    clients.push(subscriber);
    const received = collect(subscriber);
    await subscriber.subscribeAsync('rate/b', { qos: 1 });
    const publisher = await connectedRaw(broker.broker.mqttPort, 'bytes-pub');

    const payload = 'p'.repeat(200);
    const packets = Array.from({ length: 60 }, (_, i) => publishPacket('rate/b', `${String(i).padStart(3, '0')}${payload}`, 1, i + 1));
    const packetBytes = packets[0]?.length ?? 0;
    const started = Date.now();
    publisher.socket.write(Buffer.concat(packets));
    await waitFor(() => received.length >= 35, { what: '35 messages' });
    const elapsedS = (Date.now() - started) / 1000;
    const count = received.length;
    const allowed = (4096 + 4096 * elapsedS) / packetBytes + 1;
    assert.ok(count <= allowed, `${count} messages of ${packetBytes} bytes in ${elapsedS.toFixed(2)} s at bytes_rate 4KB/s (at most ${allowed.toFixed(1)})`);

    await broker.client.updateListener('tcp:default', { bytes_rate: 'infinity' });
    await waitFor(() => received.length === 60, { what: 'every message once the limit is lifted' });
    assert.deepEqual(
      received.map((message) => message.payload.slice(0, 3)),
      Array.from({ length: 60 }, (_, i) => String(i).padStart(3, '0')),
    );
    // Every PUBACK came back: the QoS 1 publishes were handled by aedes, none refused.
    await waitFor(() => publisher.received().length >= 4 + 60 * 4, { what: 'PUBACKs' });
    assert.equal(publisher.isClosed(), false);
    publisher.socket.destroy();
  });

  it('accepts connections no faster than max_conn_rate; the others wait their turn', async () => {
    await broker.client.updateListener('tcp:default', { max_conn_rate: '5/s' });
    const started = Date.now();
    let connected = 0;
    const attempts = Array.from({ length: 15 }, (_, i) =>
      connectClient(broker.broker.mqttUrl, { clientId: `conn-rate-${i}`, connectTimeout: 20_000 }).then((client) => {
        connected += 1;
        clients.push(client);
        return client;
      }),
    );
    await waitFor(() => connected >= 8, { what: '8 connections' });
    const elapsedS = (Date.now() - started) / 1000;
    const count = connected;
    assert.ok(count <= 5 + 5 * elapsedS + 1, `${count} connections in ${elapsedS.toFixed(2)} s at max_conn_rate 5/s`);
    assert.ok(broker.broker.limitStats.delayedConnections > 0);
    await broker.client.updateListener('tcp:default', { max_conn_rate: 'infinity' });
    await Promise.all(attempts);
    assert.equal(connected, 15, 'every waiting connection was accepted in the end');
  });
});
