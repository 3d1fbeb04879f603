/**
 * A local cache of pack records on disk, opened lazily: nothing is created
 * until the first record is kept, so a command that fails on bad input, or
 * only reads, leaves the directory as it was.
 *
 * @module
 */
import { access } from 'node:fs/promises';
import { openDiskStore, type DiskStore } from '../../backends/disk.js';
import { NotFoundError } from '../../errors.js';
import type { Hash } from '../../hash.js';
import type { AbortOptions, HashLike, PutOptions } from '../../store.js';

/** What the packed layer needs of an index cache: verified get, put, close. A {@link Store} is one. */
export interface IndexCache {
  get(hash: HashLike, options?: AbortOptions): Promise<Uint8Array>;
  put(bytes: Uint8Array, options?: PutOptions): Promise<Hash>;
  close(): Promise<void>;
}

/**
 * An index cache in a disk store at `dir`, created by the first `put`.
 *
 * @example
 * ```ts
 * const store = packed(remote, { indexCache: diskIndexCache(join(dir, 'pack-indexes')) });
 * ```
 */
export function diskIndexCache(dir: string): IndexCache {
  let store: Promise<DiskStore> | undefined;
  const exists = (): Promise<boolean> => access(dir).then(() => true, () => false);
  return {
    async get(hash, options) {
      if (store === undefined && !(await exists())) throw new NotFoundError(`no index cache at ${dir}`, { key: String(hash) });
      return (await (store ??= openDiskStore(dir))).get(hash, options);
    },
    async put(bytes, options) {
      return (await (store ??= openDiskStore(dir))).put(bytes, options);
    },
    async close() {
      if (store !== undefined) await (await store).close();
    },
  };
}
