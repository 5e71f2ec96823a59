/**
 * Tar archives of a firmware build, written by `modern-tar` (headers, checksums, block padding,
 * streaming with backpressure) in the layout Python's `shutil.make_archive(..., 'tar', root)`
 * gives, because devices depend on it:
 *  - every entry is named `./<path>` (the MicroPython client strips the first two characters),
 *    the root directory comes first as `./`, directory names end with `/` (MicroPython's tarfile
 *    derives the type from that slash);
 *  - a name over 100 bytes gets a PAX 'x' header named `././@PaxHeader` (the MicroPython client
 *    skips entries whose name contains `@PaxHeader`; the library's own PAX headers are named
 *    `PaxHeader/...`, which that client would unpack as a file), followed by the entry under its
 *    name cut to 100 bytes for readers without PAX support;
 *  - shorter non-ASCII names stay UTF-8 in the ustar name field, which MicroPython reads as is;
 *  - the archive ends with two zero blocks padded to a 10240-byte record.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { createTarPacker, type TarHeader } from 'modern-tar';
import type { ArchiveEntry } from './entries.js';

const USTAR_NAME_BYTES = 100;
/** Python's tarfile writes whole records of 20 blocks of 512 bytes. */
const RECORD_BYTES = 20 * 512;
const PAX_HEADER_NAME = '././@PaxHeader';

/** Entry name inside the tar: `./`, `./dir/`, `./dir/file`. */
function tarEntryName(entry: ArchiveEntry): string {
  if (entry.path === '') return './';
  return `./${entry.path}${entry.type === 'directory' ? '/' : ''}`;
}

/** One PAX record, "<length> <key>=<value>\n", where the length counts the whole record. */
function paxRecord(key: string, value: string): string {
  const payloadBytes = Buffer.byteLength(` ${key}=${value}\n`);
  let length = payloadBytes + 1;
  while (String(length).length + payloadBytes !== length) length = String(length).length + payloadBytes;
  return `${length} ${key}=${value}\n`;
}

/** `name` cut to at most `limit` bytes without splitting a UTF-8 character. */
function truncateUtf8(name: string, limit: number): string {
  return Buffer.from(name, 'utf8').subarray(0, limit).toString('utf8').replace(/\uFFFD+$/, '');
}

/** The headers written for one entry: a PAX header and its body first when the name is too long. */
function tarHeaders(entry: ArchiveEntry): { pax?: { header: TarHeader; body: Buffer }; header: TarHeader } {
  const name = tarEntryName(entry);
  const mtime = new Date(entry.mtime * 1000);
  const type = entry.type === 'directory' ? 'directory' : 'file';
  const size = entry.type === 'directory' ? 0 : entry.size;
  if (Buffer.byteLength(name) <= USTAR_NAME_BYTES) return { header: { name, type, size, mode: entry.mode, mtime } };
  const body = Buffer.from(paxRecord('path', name), 'utf8');
  // Directories keep their trailing "/" in the cut name (readers without PAX derive the type from it).
  const fallback = type === 'directory' ? `${truncateUtf8(name, USTAR_NAME_BYTES - 1).replace(/\/+$/, '')}/` : truncateUtf8(name, USTAR_NAME_BYTES);
  return {
    pax: { header: { name: PAX_HEADER_NAME, type: 'pax-header', size: body.length, mode: 0o644, mtime }, body },
    header: { name: fallback, type, size, mode: entry.mode, mtime },
  };
}

async function* padToRecord(archive: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let written = 0;
  for await (const chunk of archive) {
    written += chunk.length;
    yield chunk;
  }
  const rest = written % RECORD_BYTES;
  if (rest !== 0) yield new Uint8Array(RECORD_BYTES - rest);
}

/**
 * A readable stream of the tar archive of `entries` (sorted, directories before their files).
 * Files are read when their turn comes; a file whose size changed since `collectEntries` fails
 * the archive (the library refuses a body that disagrees with its header).
 */
export function tarStream(entries: readonly ArchiveEntry[]): Readable {
  const { readable, controller } = createTarPacker();
  async function writeEntries(): Promise<void> {
    for (const entry of entries) {
      const { pax, header } = tarHeaders(entry);
      if (pax) {
        const body = controller.add(pax.header).getWriter();
        await body.write(pax.body);
        await body.close();
      }
      const body = controller.add(header);
      if (entry.type === 'file' && entry.size > 0) await Readable.toWeb(createReadStream(entry.absolutePath)).pipeTo(body);
      else await body.close();
    }
    controller.finalize();
  }
  writeEntries().catch((error: unknown) => controller.error(error));
  return Readable.from(padToRecord(readable), { objectMode: false });
}
