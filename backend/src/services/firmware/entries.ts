import { lstat, readdir, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { IgnoreMatcher } from './pepeignore.js';

/** One file or directory of a firmware build, relative to the build root. */
export interface ArchiveEntry {
  /** `/`-separated path relative to the root; `''` is the root directory itself. */
  readonly path: string;
  readonly type: 'file' | 'directory';
  readonly absolutePath: string;
  readonly size: number;
  /** Permission bits (0o644, 0o755...). */
  readonly mode: number;
  /** Seconds since the epoch. */
  readonly mtime: number;
}

/**
 * Removes what `.pepeignore` excludes (top-down: an excluded directory goes whole) and
 * directories left empty by that; returns the number of removed paths.
 */
export async function applyIgnoreRules(root: string, matcher: IgnoreMatcher): Promise<number> {
  let removed = 0;
  async function visit(relative: string): Promise<boolean> {
    const absolute = relative === '' ? root : join(root, relative);
    const names = (await readdir(absolute)).sort();
    let removedHere = false;
    for (const name of names) {
      const childRelative = relative === '' ? name : `${relative}/${name}`;
      const childAbsolute = join(absolute, name);
      const stats = await lstat(childAbsolute);
      const isDirectory = stats.isDirectory();
      if (matcher.isExcluded(childRelative, isDirectory)) {
        await rm(childAbsolute, { recursive: true, force: true });
        removed++;
        removedHere = true;
        continue;
      }
      if (isDirectory && (await visit(childRelative))) {
        // prune directories emptied by the rules (git would not have created them either)
        if ((await readdir(childAbsolute)).length === 0) {
          await rmdir(childAbsolute);
          removedHere = true;
        }
      }
    }
    return removedHere;
  }
  await visit('');
  return removed;
}

/** Every directory and regular file below `root`, sorted by path, the root first. */
export async function collectEntries(root: string, mtime = Math.floor(Date.now() / 1000)): Promise<ArchiveEntry[]> {
  const entries: ArchiveEntry[] = [{ path: '', type: 'directory', absolutePath: root, size: 0, mode: 0o755, mtime }];
  async function visit(relative: string): Promise<void> {
    const absolute = relative === '' ? root : join(root, relative);
    const names = (await readdir(absolute)).sort();
    for (const name of names) {
      const childRelative = relative === '' ? name : `${relative}/${name}`;
      const childAbsolute = join(absolute, name);
      const stats = await lstat(childAbsolute);
      if (stats.isDirectory()) {
        entries.push({ path: childRelative, type: 'directory', absolutePath: childAbsolute, size: 0, mode: 0o755, mtime });
        await visit(childRelative);
      } else if (stats.isFile()) {
        const mode = stats.mode & 0o111 ? 0o755 : 0o644;
        entries.push({ path: childRelative, type: 'file', absolutePath: childAbsolute, size: stats.size, mode, mtime });
      }
      // anything else (sockets, symlinks) is skipped; the git export writes symlinks as files
    }
  }
  await visit('');
  return entries;
}
