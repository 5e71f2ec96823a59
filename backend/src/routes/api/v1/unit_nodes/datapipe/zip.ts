/**
 * A streaming ZIP archive with one deflated member (what the reference's CSV export returns),
 * built from node:zlib (raw deflate, CRC-32) without a zip package. The member's CRC and sizes
 * follow its data in a data descriptor (general purpose flag bit 3), so the archive streams
 * without buffering the file. ZIP64 is not written: a member must stay below 4 GiB.
 */
import { Readable } from 'node:stream';
import { once } from 'node:events';
import { constants, crc32, createDeflateRaw } from 'node:zlib';

const LIMIT_32 = 0xffffffff;
/** Bit 3: sizes and CRC in a data descriptor; bit 11: the name is UTF-8. */
const FLAGS = 0x0008 | 0x0800;
const METHOD_DEFLATE = 8;
const VERSION = 20;

/** MS-DOS time and date fields of a JS date (local fields of UTC, as zip tools expect plain). */
function dosDateTime(date: Date): { time: number; date: number } {
  const year = Math.max(1980, date.getUTCFullYear());
  return {
    time: (date.getUTCHours() << 11) | (date.getUTCMinutes() << 5) | Math.floor(date.getUTCSeconds() / 2),
    date: ((year - 1980) << 9) | ((date.getUTCMonth() + 1) << 5) | date.getUTCDate(),
  };
}

async function* zipChunks(fileName: string, source: AsyncIterable<Buffer | string>, modified: Date): AsyncGenerator<Buffer> {
  const name = Buffer.from(fileName, 'utf8');
  const { time, date } = dosDateTime(modified);

  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(VERSION, 4);
  local.writeUInt16LE(FLAGS, 6);
  local.writeUInt16LE(METHOD_DEFLATE, 8);
  local.writeUInt16LE(time, 10);
  local.writeUInt16LE(date, 12);
  // CRC and sizes (14..25) stay 0: they are in the data descriptor.
  local.writeUInt16LE(name.length, 26);
  local.writeUInt16LE(0, 28);
  yield local;
  yield name;

  let crc = 0;
  let size = 0;
  let compressedSize = 0;
  const deflate = createDeflateRaw({ level: constants.Z_DEFAULT_COMPRESSION });
  const feeding = (async () => {
    try {
      for await (const piece of source) {
        const chunk = typeof piece === 'string' ? Buffer.from(piece, 'utf8') : piece;
        if (chunk.length === 0) continue;
        crc = crc32(chunk, crc);
        size += chunk.length;
        if (size > LIMIT_32) throw new Error('the exported file is larger than 4 GiB (ZIP64 is not supported)');
        if (!deflate.write(chunk)) await once(deflate, 'drain');
      }
      deflate.end();
    } catch (err) {
      deflate.destroy(err instanceof Error ? err : new Error(String(err)));
    }
  })();
  for await (const out of deflate as AsyncIterable<Buffer>) {
    compressedSize += out.length;
    yield out;
  }
  await feeding;
  if (compressedSize > LIMIT_32) throw new Error('the compressed file is larger than 4 GiB (ZIP64 is not supported)');

  const descriptor = Buffer.alloc(16);
  descriptor.writeUInt32LE(0x08074b50, 0);
  descriptor.writeUInt32LE(crc >>> 0, 4);
  descriptor.writeUInt32LE(compressedSize, 8);
  descriptor.writeUInt32LE(size, 12);
  yield descriptor;

  const centralOffset = 30 + name.length + compressedSize + 16;
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE((3 << 8) | VERSION, 4); // made by: Unix, 2.0
  central.writeUInt16LE(VERSION, 6);
  central.writeUInt16LE(FLAGS, 8);
  central.writeUInt16LE(METHOD_DEFLATE, 10);
  central.writeUInt16LE(time, 12);
  central.writeUInt16LE(date, 14);
  central.writeUInt32LE(crc >>> 0, 16);
  central.writeUInt32LE(compressedSize, 20);
  central.writeUInt32LE(size, 24);
  central.writeUInt16LE(name.length, 28);
  // extra (30), comment (32), disk (34), internal attributes (36): 0
  central.writeUInt32LE((0o100644 << 16) >>> 0, 38); // external attributes: a regular file, rw-r--r--
  central.writeUInt32LE(0, 42); // offset of the local header
  yield central;
  yield name;

  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(46 + name.length, 12);
  end.writeUInt32LE(centralOffset, 16);
  yield end;
}

/** A readable ZIP archive holding `fileName` with the bytes of `source`. */
export function zipSingleFile(fileName: string, source: AsyncIterable<Buffer | string>, modified = new Date()): Readable {
  return Readable.from(zipChunks(fileName, source, modified), { objectMode: false });
}
