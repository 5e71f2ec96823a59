/**
 * Firmware archives of a Unit (pepeunit-backend.md §7.5): the repository tree at the target
 * commit (interpretable repos) or nothing (compilable repos), minus what `.pepeignore`
 * excludes, plus `env.json` and `schema.json` (4-space indented JSON) at the root, packed as
 * zip, tar or "tgz" (the tar through a zlib stream with the caller's wbits/level).
 *
 * The build directory lives under the OS temp directory and is removed when the archive
 * stream closes (fully sent, aborted by the client, or failed).
 */
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline, type Readable } from 'node:stream';
import { pipeline as streamPipeline } from 'node:stream/promises';
import { applyIgnoreRules, collectEntries, type ArchiveEntry } from './entries.js';
import { IgnoreMatcher } from './pepeignore.js';
import { tarStream } from './tar.js';
import { zipStream } from './zip.js';
import { createTgzCompressor } from './compress.js';

export type ArchiveFormat = 'zip' | 'tar' | 'tgz';

/** The part of the GitStore a build needs. */
export interface TreeExporter {
  exportTree(key: string, commit: string, destination: string): Promise<void>;
}

export interface FirmwareBuildInput {
  /** null for compilable repositories (only env.json and schema.json are shipped). */
  source: { store: TreeExporter; key: string; commit: string } | null;
  env: Record<string, unknown>;
  schema: Record<string, unknown>;
  /** Parent of the build directories; default `<os tmp>/pepeunit-firmware`. */
  workRoot?: string;
}

export interface FirmwareBuild {
  readonly directory: string;
  readonly entries: readonly ArchiveEntry[];
  /** Idempotent. */
  cleanup(): Promise<void>;
}

export const PEPEIGNORE_FILE = '.pepeignore';

/**
 * JSON as Python's `json.dumps(value, indent=4)` writes it (ensure_ascii: non-ASCII characters
 * as \uXXXX escapes), the form of env.json and schema.json inside the reference archives.
 */
export function pythonIndentedJson(value: unknown): string {
  return JSON.stringify(value, null, 4).replace(/[\u0080-\uffff]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function defaultWorkRoot(): string {
  return join(tmpdir(), 'pepeunit-firmware');
}

/**
 * Removes build directories older than `maxAgeMs` (left by a process that crashed mid-download).
 * Younger ones may belong to another process sharing the temp directory and are kept.
 */
export async function cleanupStaleBuilds(workRoot = defaultWorkRoot(), maxAgeMs = 60 * 60_000): Promise<number> {
  let names: string[];
  try {
    names = await readdir(workRoot);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const path = join(workRoot, name);
    try {
      if (Date.now() - (await stat(path)).mtimeMs < maxAgeMs) continue;
      await rm(path, { recursive: true, force: true });
      removed++;
    } catch {
      // vanished meanwhile or not ours to remove: ignore
    }
  }
  return removed;
}

export async function buildFirmware(input: FirmwareBuildInput): Promise<FirmwareBuild> {
  const directory = join(input.workRoot ?? defaultWorkRoot(), randomUUID());
  let cleaned = false;
  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    await rm(directory, { recursive: true, force: true, maxRetries: 3 });
  };
  try {
    await mkdir(directory, { recursive: true });
    if (input.source) {
      await input.source.store.exportTree(input.source.key, input.source.commit, directory);
      const ignore = await readFile(join(directory, PEPEIGNORE_FILE), 'utf8').catch(() => null);
      if (ignore !== null) await applyIgnoreRules(directory, new IgnoreMatcher(ignore));
    }
    await writeFile(join(directory, 'env.json'), pythonIndentedJson(input.env));
    await writeFile(join(directory, 'schema.json'), pythonIndentedJson(input.schema));
    const entries = await collectEntries(directory);
    return { directory, entries, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/**
 * The archive of a build as a stream; the build is cleaned up when the stream closes.
 * `tgz` needs `wbits`/`level` already validated with `assertTgzParameters`.
 */
export function firmwareArchiveStream(
  build: FirmwareBuild,
  format: ArchiveFormat,
  tgz: { wbits: number; level: number } = { wbits: 9, level: 9 },
  onCleanupError?: (error: unknown) => void,
): Readable {
  let stream: Readable;
  if (format === 'zip') stream = zipStream(build.entries);
  else if (format === 'tar') stream = tarStream(build.entries);
  else {
    const compressor = createTgzCompressor(tgz.wbits, tgz.level);
    stream = pipeline(tarStream(build.entries), compressor, () => {
      // errors surface on the returned stream; cleanup happens on 'close' below
    });
  }
  stream.once('close', () => {
    build.cleanup().catch((error: unknown) => onCleanupError?.(error));
  });
  return stream;
}

export interface FirmwareArchiveFile {
  readonly path: string;
  /** Bytes: sent as Content-Length (the MicroPython client saves the raw body, chunk framing included). */
  readonly size: number;
  /** A read stream of the file; the file and the build are removed when it closes. */
  open(onCleanupError?: (error: unknown) => void): Readable;
  /** Removes the file and the build without reading it. */
  discard(): Promise<void>;
}

/**
 * The archive written to a file beside the build first, so its length is known before the
 * response starts: the reference sends Content-Length, and clients that do not decode chunked
 * transfer encoding (MicroPython's raw socket reader) depend on it.
 */
export async function firmwareArchiveFile(build: FirmwareBuild, format: ArchiveFormat, tgz: { wbits: number; level: number } = { wbits: 9, level: 9 }): Promise<FirmwareArchiveFile> {
  const path = `${build.directory}.${format}`;
  const discard = async (): Promise<void> => {
    await rm(path, { force: true });
    await build.cleanup();
  };
  try {
    const archive = firmwareArchiveStream({ ...build, cleanup: async () => {} }, format, tgz);
    await streamPipeline(archive, createWriteStream(path, { mode: 0o600 }));
    const { size } = await stat(path);
    return {
      path,
      size,
      discard,
      open(onCleanupError) {
        const stream = createReadStream(path);
        stream.once('close', () => {
          discard().catch((error: unknown) => onCleanupError?.(error));
        });
        return stream;
      },
    };
  } catch (error) {
    await discard();
    throw error;
  }
}

export const ARCHIVE_CONTENT_TYPES: Record<ArchiveFormat, string> = {
  zip: 'application/zip',
  tar: 'application/x-tar',
  tgz: 'application/octet-stream',
};
