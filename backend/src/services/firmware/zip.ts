/**
 * Zip archives of a firmware build, written by `yazl` in the layout of Python's
 * `shutil.make_archive(..., 'zip', root)`: names without a leading `./`, directories listed
 * with a trailing `/`, the root itself not listed, files deflated, unix modes kept. yazl
 * streams each file when its turn comes (memory stays flat whatever the repository size), marks
 * names as UTF-8 and switches to zip64 by itself when an archive needs it.
 */
import type { Readable } from 'node:stream';
import { ZipFile } from 'yazl';
import type { ArchiveEntry } from './entries.js';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

/** Entry name inside the zip: `dir/`, `dir/file` (the root directory itself is not listed). */
function zipEntryName(entry: ArchiveEntry): string {
  return entry.type === 'directory' ? `${entry.path}/` : entry.path;
}

/** A readable stream of the zip archive of `entries`; a failure while writing destroys it with the error. */
export function zipStream(entries: readonly ArchiveEntry[]): Readable {
  const zip = new ZipFile();
  const output = zip.outputStream as Readable;
  zip.on('error', (error: Error) => output.destroy(error));
  for (const entry of entries) {
    if (entry.path === '') continue;
    const mtime = new Date(entry.mtime * 1000);
    if (entry.type === 'directory') zip.addEmptyDirectory(zipEntryName(entry), { mtime, mode: S_IFDIR | entry.mode });
    else zip.addFile(entry.absolutePath, zipEntryName(entry), { mtime, mode: S_IFREG | entry.mode, compress: true });
  }
  zip.end();
  return output;
}
