// MQTT fixed headers (MQTT 3.1.1 §2.2): the first byte (packet type and flags), then the
// Remaining Length in 1 to 4 bytes of 7 bits each, low bits first, high bit = more bytes follow.

export interface FixedHeader {
  /** The packet's first byte: type in the high nibble, flags in the low one. */
  readonly first: number;
  /** The Remaining Length (variable header + payload). */
  readonly length: number;
  /** Where the variable header starts. */
  readonly bodyStart: number;
  /** Where the packet ends (exclusive). */
  readonly end: number;
  /** True when the length used no more bytes than needed (the form an encoder writes). */
  readonly minimal: boolean;
}

/**
 * Reads the fixed header of the packet starting at `offset`. 'partial': the header or the body
 * continues beyond `buf`; 'malformed': the Remaining Length runs past 4 bytes.
 */
export function readFixedHeader(buf: Buffer, offset: number): FixedHeader | 'partial' | 'malformed' {
  const end = buf.length;
  if (end - offset < 2) return 'partial';
  let length = 0;
  let multiplier = 1;
  let index = offset + 1;
  for (let count = 0; count < 4; count += 1) {
    if (index >= end) return 'partial';
    const byte = buf[index++] as number;
    length += (byte & 127) * multiplier;
    multiplier *= 128;
    if ((byte & 128) === 0) {
      const packetEnd = index + length;
      if (packetEnd > end) return 'partial';
      return { first: buf[offset] as number, length, bodyStart: index, end: packetEnd, minimal: byte !== 0 || index - offset === 2 };
    }
  }
  return 'malformed';
}

/** The Remaining Length encoding of `n`. */
export function encodeRemainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 128;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

/** A QoS 0 PUBLISH packet (no DUP, no RETAIN) of `topic` with `payload`. */
export function encodeQos0Publish(topic: string, payload: string | Buffer): Buffer {
  const topicBytes = Buffer.from(topic);
  const body = Buffer.concat([Buffer.from([topicBytes.length >> 8, topicBytes.length & 255]), topicBytes, Buffer.isBuffer(payload) ? payload : Buffer.from(payload)]);
  return Buffer.concat([Buffer.from([0x30]), encodeRemainingLength(body.length), body]);
}
