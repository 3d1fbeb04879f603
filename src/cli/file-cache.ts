/**
 * The CLI's file cache (`<dir>/file-cache.json`): for each file it
 * snapshotted, the stamp (size, times, inode) and content hash, so that the
 * next snapshot reads only the files that changed. Losing or corrupting
 * this file costs only speed: the next snapshot reads everything again.
 *
 * @module
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import type { CachedFile, FileCache } from '../snapshot/snapshot.js';

const FILE = 'file-cache.json';

/** A cache that remembers which paths this run used, so that entries for deleted files can be dropped. */
class TrackingCache extends Map<string, CachedFile> {
  readonly used = new Set<string>();

  override get(key: string): CachedFile | undefined {
    const value = super.get(key);
    if (value !== undefined) this.used.add(key);
    return value;
  }

  override set(key: string, value: CachedFile): this {
    this.used?.add(key);
    return super.set(key, value);
  }
}

/** Loads the cache of local directory `dir` (empty when absent or unreadable). */
export async function loadFileCache(dir: string): Promise<FileCache> {
  const cache = new TrackingCache();
  try {
    const json = JSON.parse(await readFile(join(dir, FILE), 'utf8')) as { version: number; files: Record<string, [string, string, boolean]> };
    if (json.version === 1) {
      for (const [path, [stamp, content, chunked]] of Object.entries(json.files)) cache.set(path, { stamp, content, chunked });
    }
  } catch {
    // No cache yet, or a damaged one: start empty.
  }
  cache.used.clear();
  return cache;
}

/** Saves the cache, dropping entries under `snapshotted` that this run did not see (deleted files). */
export async function saveFileCache(dir: string, cache: FileCache, snapshotted: string): Promise<void> {
  const root = resolve(snapshotted) + sep;
  const used = cache instanceof TrackingCache ? cache.used : undefined;
  const files: Record<string, [string, string, boolean]> = {};
  for (const [path, entry] of cache) {
    if (used !== undefined && path.startsWith(root) && !used.has(path)) continue;
    files[path] = [entry.stamp, entry.content, entry.chunked];
  }
  const tmp = join(dir, `${FILE}.tmp-${process.pid}`);
  await writeFile(tmp, JSON.stringify({ version: 1, files }));
  await rename(tmp, join(dir, FILE));
}
