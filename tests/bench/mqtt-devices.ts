/**
 * Simulated MQTT 3.1.1 devices and a counting subscriber for the broker benchmarks, both on raw
 * sockets with pre-encoded packets (as emqtt-bench does): an mqtt.js client spends several
 * microseconds of the same two cores per message, which would be charged to the broker under
 * test.
 */
import net from 'node:net';
import { encodeQos0Publish, encodeRemainingLength, readFixedHeader } from '@pepeunit/emqx-rules/embedded/mqtt-frames';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** An MQTT 3.1.1 CONNECT packet: clean session, no keep-alive, no credentials. */
export function connectPacket(clientId: string): Buffer {
  const id = Buffer.from(clientId);
  const body = Buffer.concat([Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 0, id.length >> 8, id.length & 255]), id]);
  return Buffer.concat([Buffer.from([0x10]), encodeRemainingLength(body.length), body]);
}

/** A SUBSCRIBE packet (packet id 1) for one filter. */
export function subscribePacket(filter: string, qos = 0): Buffer {
  const topic = Buffer.from(filter);
  const body = Buffer.concat([Buffer.from([0, 1, topic.length >> 8, topic.length & 255]), topic, Buffer.from([qos])]);
  return Buffer.concat([Buffer.from([0x82]), encodeRemainingLength(body.length), body]);
}

/** One device: a TCP connection that completed CONNECT/CONNACK (used by the ingest and load-broker benches). */
export async function connectDevice(port: number, clientId: string): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(connectPacket(clientId));
  const ack = await new Promise<Buffer>((resolve, reject) => {
    let got = Buffer.alloc(0);
    const onData = (data: Buffer): void => {
      got = Buffer.concat([got, data]);
      if (got.length < 4) return;
      socket.off('data', onData);
      resolve(got);
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`${clientId}: closed before CONNACK`)));
  });
  if (ack[0] !== 0x20 || ack[3] !== 0) throw new Error(`${clientId}: CONNACK refused (${ack.subarray(0, 4).toString('hex')})`);
  socket.on('data', () => {}); // keeps the socket flowing; callers add their own reader when they expect packets
  return socket;
}

/**
 * Publishes `rate` QoS 0 messages/s in total for `seconds` over `connections` devices, paced
 * every 5 ms, round-robin over the devices; device c owns the topics with index ≡ c (mod
 * connections). Returns the number sent and the publishing time.
 */
export async function publishPaced(port: number, topics: readonly string[], options: { seconds: number; connections: number; rate: number; payload?: string; clientPrefix: string }): Promise<{ sent: number; seconds: number }> {
  const devices = await Promise.all(
    Array.from({ length: options.connections }, async (_, c) => {
      const socket = await connectDevice(port, `${options.clientPrefix}-${c}`);
      const own = topics.filter((_, i) => i % options.connections === c);
      const packets = own.map((topic) => encodeQos0Publish(topic, options.payload ?? '21.5'));
      return { socket, packets, next: 0, batch: [] as Buffer[] };
    }),
  );
  let sent = 0;
  let turn = 0;
  const started = Date.now();
  const total = options.rate * options.seconds;
  while (Date.now() - started < options.seconds * 1000) {
    const due = Math.min(total, Math.floor(((Date.now() - started) / 1000) * options.rate));
    while (sent < due) {
      const device = devices[turn++ % devices.length] as (typeof devices)[number];
      device.batch.push(device.packets[device.next++ % device.packets.length] as Buffer);
      sent++;
    }
    for (const device of devices) {
      if (device.batch.length === 0) continue;
      device.socket.write(device.batch.length === 1 ? (device.batch[0] as Buffer) : Buffer.concat(device.batch));
      device.batch = [];
    }
    await sleep(5);
  }
  const seconds = (Date.now() - started) / 1000;
  await Promise.all(
    devices.map(
      (device) =>
        new Promise<void>((resolve) => {
          device.socket.once('close', () => resolve());
          device.socket.end(Buffer.from([0xe0, 0])); // DISCONNECT
        }),
    ),
  );
  return { sent, seconds };
}

/**
 * A subscriber that only counts the PUBLISH packets it receives (no decoding): the cheapest
 * possible receiver, so the broker is what a benchmark measures. `onCount` gets the running
 * count and the times of the first and last message.
 */
export async function countingSubscriber(port: number, clientId: string, filter: string): Promise<{ count: () => { count: number; first: number; last: number }; close: () => void }> {
  const socket = await connectDevice(port, clientId);
  let pending: Buffer = Buffer.alloc(0);
  let count = 0;
  let first = 0;
  let last = 0;
  let subscribed: () => void = () => {};
  const ready = new Promise<void>((resolve) => (subscribed = resolve));
  socket.on('data', (data: Buffer) => {
    pending = pending.length === 0 ? data : Buffer.concat([pending, data]);
    let offset = 0;
    let publishes = 0;
    for (;;) {
      const header = readFixedHeader(pending, offset);
      if (header === 'partial') break;
      if (header === 'malformed') throw new Error('malformed packet from the broker');
      const type = header.first >> 4;
      if (type === 3) publishes += 1;
      else if (type === 9) subscribed();
      offset = header.end;
    }
    pending = offset === pending.length ? Buffer.alloc(0) : pending.subarray(offset);
    if (publishes > 0) {
      last = Date.now();
      if (count === 0) first = last;
      count += publishes;
    }
  });
  socket.write(subscribePacket(filter));
  await ready;
  return { count: () => ({ count, first, last }), close: () => socket.destroy() };
}
