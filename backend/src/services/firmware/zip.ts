/**
 * A streaming zip writer: one deflated (or stored, when deflate does not help) entry per file,
 * directory entries like Python's `shutil.make_archive(..., 'zip', root)` (names without a
 * leading `./`, directories ending with `/`), CRC-32 from `zlib.crc32`. Files are compressed one
 * at a time, so memory is bounded by the largest file (repositories are limited to
 * PU_MAX_EXTERNAL_REPO_SIZE). No zip64: an archive over 4 GiB or 65535 entries is refused.
 */
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { crc32, deflateRawSync } from 'node:zlib';
import type { ArchiveEntry } from './entries.js';

const LOCAL_HEADER = 0x04034b50;
const CENTRAL_HEADER = 0x02014b50;
const END_OF_CENTRAL_DIRECTORY = 0x06054b50;
const VERSION_NEEDED = 20;
const VERSION_MADE_BY = (3 << 8) | 20; // UNIX, 2.0
const FLAG_UTF8 = 0x0800;
const METHOD_STORED = 0;
const METHOD_DEFLATED = 8;
const MAX_32 = 0xffffffff;

/** MS-DOS date and time of a unix timestamp (seconds), in local-independent UTC. */
export function dosDateTime(seconds: number): { date: number; time: number } {
  const d = new Date(seconds * 1000);
  const year = Math.min(Math.max(d.getUTCFullYear(), 1980), 2107);
  return {
    date: ((year - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate(),
    time: (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | Math.floor(d.getUTCSeconds() / 2),
  };
}

interface CentralRecord {
  name: Buffer;
  flags: number;
  method: number;
  date: number;
  time: number;
  crc: number;
  compressedSize: number;
  size: number;
  externalAttributes: number;
  offset: number;
}

function localHeader(r: Omit<CentralRecord, 'externalAttributes' | 'offset'>): Buffer {
  const buf = Buffer.alloc(30);
  buf.writeUInt32LE(LOCAL_HEADER, 0);
  buf.writeUInt16LE(VERSION_NEEDED, 4);
  buf.writeUInt16LE(r.flags, 6);
  buf.writeUInt16LE(r.method, 8);
  buf.writeUInt16LE(r.time, 10);
  buf.writeUInt16LE(r.date, 12);
  buf.writeUInt32LE(r.crc >>> 0, 14);
  buf.writeUInt32LE(r.compressedSize, 18);
  buf.writeUInt32LE(r.size, 22);
  buf.writeUInt16LE(r.name.length, 26);
  buf.writeUInt16LE(0, 28);
  return Buffer.concat([buf, r.name]);
}

function centralHeader(r: CentralRecord): Buffer {
  const buf = Buffer.alloc(46);
  buf.writeUInt32LE(CENTRAL_HEADER, 0);
  buf.writeUInt16LE(VERSION_MADE_BY, 4);
  buf.writeUInt16LE(VERSION_NEEDED, 6);
  buf.writeUInt16LE(r.flags, 8);
  buf.writeUInt16LE(r.method, 10);
  buf.writeUInt16LE(r.time, 12);
  buf.writeUInt16LE(r.date, 14);
  buf.writeUInt32LE(r.crc >>> 0, 16);
  buf.writeUInt32LE(r.compressedSize, 20);
  buf.writeUInt32LE(r.size, 24);
  buf.writeUInt16LE(r.name.length, 28);
  buf.writeUInt16LE(0, 30); // extra
  buf.writeUInt16LE(0, 32); // comment
  buf.writeUInt16LE(0, 34); // disk number start
  buf.writeUInt16LE(0, 36); // internal attributes
  buf.writeUInt32LE(r.externalAttributes >>> 0, 38);
  buf.writeUInt32LE(r.offset, 42);
  return Buffer.concat([buf, r.name]);
}

/** Entry name inside the zip: `dir/`, `dir/file` (the root directory itself is not listed). */
export function zipEntryName(entry: ArchiveEntry): string {
  return entry.type === 'directory' ? `${entry.path}/` : entry.path;
}

async function* generateZip(entries: readonly ArchiveEntry[]): AsyncGenerator<Buffer> {
  const central: CentralRecord[] = [];
  let offset = 0;
  const listed = entries.filter((entry) => entry.path !== '');
  if (listed.length > 0xfffe) throw new Error('zip: too many entries for a non-zip64 archive');
  for (const entry of listed) {
    const nameText = zipEntryName(entry);
    const name = Buffer.from(nameText, 'utf8');
    const flags = /^[\x20-\x7e]*$/.test(nameText) ? 0 : FLAG_UTF8;
    const { date, time } = dosDateTime(entry.mtime);
    let method = METHOD_STORED;
    let data = Buffer.alloc(0);
    let crc = 0;
    let size = 0;
    let externalAttributes: number;
    if (entry.type === 'directory') {
      externalAttributes = (((0o040000 | entry.mode) << 16) | 0x10) >>> 0;
    } else {
      const content = await readFile(entry.absolutePath);
      size = content.length;
      crc = crc32(content);
      const deflated = deflateRawSync(content);
      if (deflated.length < content.length) {
        method = METHOD_DEFLATED;
        data = deflated;
      } else {
        data = content;
      }
      externalAttributes = ((0o100000 | entry.mode) << 16) >>> 0;
    }
    if (size > MAX_32 || data.length > MAX_32 || offset > MAX_32) throw new Error('zip: archive too large for a non-zip64 archive');
    const record: CentralRecord = { name, flags, method, date, time, crc, compressedSize: data.length, size, externalAttributes, offset };
    const head = localHeader(record);
    central.push(record);
    yield head;
    offset += head.length;
    if (data.length > 0) {
      yield data;
      offset += data.length;
    }
  }
  const centralStart = offset;
  let centralSize = 0;
  for (const record of central) {
    const head = centralHeader(record);
    centralSize += head.length;
    yield head;
  }
  if (centralStart > MAX_32 || centralSize > MAX_32) throw new Error('zip: archive too large for a non-zip64 archive');
  const end = Buffer.alloc(22);
  end.writeUInt32LE(END_OF_CENTRAL_DIRECTORY, 0);
  end.writeUInt16LE(0, 4);
  end.writeUInt16LE(0, 6);
  end.writeUInt16LE(central.length, 8);
  end.writeUInt16LE(central.length, 10);
  end.writeUInt32LE(centralSize, 12);
  end.writeUInt32LE(centralStart, 16);
  end.writeUInt16LE(0, 20);
  yield end;
}

/** A readable stream of the zip archive of `entries`. */
export function zipStream(entries: readonly ArchiveEntry[]): Readable {
  return Readable.from(generateZip(entries), { objectMode: false });
}
