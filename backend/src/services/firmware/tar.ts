/**
 * A streaming tar writer (POSIX ustar, PAX extended headers only for names that do not fit).
 *
 * The layout follows what Python's `shutil.make_archive(..., 'tar', root)` produces, because
 * devices depend on it: every entry is named `./<path>` (the MicroPython client strips the
 * first two characters), the root directory comes first as `./`, directory names end with
 * `/` (MicroPython's tarfile derives the type from that slash), and the archive ends with two
 * zero blocks padded to a 10240-byte record.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type { ArchiveEntry } from './entries.js';

const BLOCK = 512;
const RECORD = 20 * BLOCK;

function writeString(buf: Buffer, offset: number, length: number, value: string): void {
  const bytes = Buffer.from(value, 'utf8');
  bytes.copy(buf, offset, 0, Math.min(bytes.length, length));
}

/** Octal number field: `length - 1` zero-padded digits and a NUL. */
function writeOctal(buf: Buffer, offset: number, length: number, value: number): void {
  const digits = Math.max(0, Math.floor(value)).toString(8);
  if (digits.length > length - 1) throw new Error(`tar: value ${value} does not fit into a ${length}-byte field`);
  writeString(buf, offset, length, digits.padStart(length - 1, '0') + '\0');
}

interface HeaderFields {
  name: string;
  prefix?: string;
  mode: number;
  size: number;
  mtime: number;
  typeflag: string;
}

function header(fields: HeaderFields): Buffer {
  const buf = Buffer.alloc(BLOCK, 0);
  writeString(buf, 0, 100, fields.name);
  writeOctal(buf, 100, 8, fields.mode & 0o7777);
  writeOctal(buf, 108, 8, 0); // uid
  writeOctal(buf, 116, 8, 0); // gid
  writeOctal(buf, 124, 12, fields.size);
  writeOctal(buf, 136, 12, fields.mtime);
  buf.fill(0x20, 148, 156); // checksum placeholder: eight spaces
  writeString(buf, 156, 1, fields.typeflag);
  writeString(buf, 257, 6, 'ustar\0');
  writeString(buf, 263, 2, '00');
  // uname/gname (265/297) stay empty; devmajor/devminor as zero octal like Python does
  writeOctal(buf, 329, 8, 0);
  writeOctal(buf, 337, 8, 0);
  if (fields.prefix) writeString(buf, 345, 155, fields.prefix);
  let sum = 0;
  for (const byte of buf) sum += byte;
  writeString(buf, 148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return buf;
}

/** Splits a name into ustar prefix (≤155 bytes) + name (≤100 bytes), or null when impossible. */
export function splitUstarName(fullName: string): { name: string; prefix: string } | null {
  if (Buffer.byteLength(fullName) <= 100) return { name: fullName, prefix: '' };
  const trailing = fullName.endsWith('/') ? '/' : '';
  const body = trailing ? fullName.slice(0, -1) : fullName;
  for (let i = body.indexOf('/'); i !== -1; i = body.indexOf('/', i + 1)) {
    const prefix = body.slice(0, i);
    const name = body.slice(i + 1) + trailing;
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100 && name !== '') return { name, prefix };
  }
  return null;
}

/** One PAX record: "<length> <key>=<value>\n" where length counts the whole record. */
function paxRecord(key: string, value: string): string {
  const payload = ` ${key}=${value}\n`;
  const payloadBytes = Buffer.byteLength(payload);
  let length = payloadBytes + 1;
  while (String(length).length + payloadBytes !== length) length = String(length).length + payloadBytes;
  return `${length}${payload}`;
}

function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return rest === 0 ? Buffer.alloc(0) : Buffer.alloc(BLOCK - rest, 0);
}

function* headerBlocks(fullName: string, fields: Omit<HeaderFields, 'name' | 'prefix'>): Generator<Buffer> {
  const split = splitUstarName(fullName);
  if (split) {
    yield header({ ...fields, name: split.name, prefix: split.prefix });
    return;
  }
  // Name too long for ustar: a PAX 'x' header carries the path (Python names it ././@PaxHeader,
  // which the MicroPython client skips); the ustar name is a truncated fallback.
  const data = Buffer.from(paxRecord('path', fullName), 'utf8');
  yield header({ name: '././@PaxHeader', mode: 0o644, size: data.length, mtime: fields.mtime, typeflag: 'x' });
  yield data;
  yield padding(data.length);
  // Directories keep their trailing "/" (readers without PAX support derive the type from it).
  const isDirectory = fields.typeflag === '5';
  const limit = isDirectory ? 99 : 100;
  let truncated = Buffer.from(fullName, 'utf8').subarray(0, limit).toString('utf8').replace(/\uFFFD+$/, '');
  if (isDirectory) truncated = `${truncated.replace(/\/+$/, '')}/`;
  yield header({ ...fields, name: truncated });
}

/** Entry name inside the tar: `./`, `./dir/`, `./dir/file`. */
export function tarEntryName(entry: ArchiveEntry): string {
  if (entry.path === '') return './';
  return `./${entry.path}${entry.type === 'directory' ? '/' : ''}`;
}

async function* generateTar(entries: readonly ArchiveEntry[]): AsyncGenerator<Buffer> {
  let written = 0;
  const emit = (chunk: Buffer): Buffer => {
    written += chunk.length;
    return chunk;
  };
  for (const entry of entries) {
    const name = tarEntryName(entry);
    if (entry.type === 'directory') {
      for (const block of headerBlocks(name, { mode: entry.mode, size: 0, mtime: entry.mtime, typeflag: '5' })) yield emit(block);
      continue;
    }
    for (const block of headerBlocks(name, { mode: entry.mode, size: entry.size, mtime: entry.mtime, typeflag: '0' })) yield emit(block);
    let copied = 0;
    for await (const chunk of createReadStream(entry.absolutePath, { highWaterMark: 64 * 1024 })) {
      const buf = chunk as Buffer;
      // Never write more than the header announced, even if the file grew meanwhile.
      const allowed = buf.subarray(0, Math.max(0, entry.size - copied));
      copied += allowed.length;
      if (allowed.length > 0) yield emit(allowed);
      if (copied >= entry.size) break;
    }
    if (copied < entry.size) yield emit(Buffer.alloc(entry.size - copied, 0)); // file shrank: keep the archive consistent
    const pad = padding(entry.size);
    if (pad.length > 0) yield emit(pad);
  }
  yield emit(Buffer.alloc(2 * BLOCK, 0));
  const rest = written % RECORD;
  if (rest !== 0) yield emit(Buffer.alloc(RECORD - rest, 0));
}

/** A readable stream of the tar archive of `entries` (already sorted, directories before their files). */
export function tarStream(entries: readonly ArchiveEntry[]): Readable {
  return Readable.from(generateTar(entries), { objectMode: false });
}
