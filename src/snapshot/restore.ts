/**
 * Restoring a snapshot into a directory, byte for byte, with file modes.
 *
 * The tree is written into a fresh staging directory beside the target and
 * renamed into place only once every file is complete and verified, so an
 * error or Ctrl-C leaves nothing half-written: either the whole tree
 * appears, or nothing does. Every name comes from a validated tree
 * (`decodeTree` refuses `/`, `..` and NUL) and every file is created with
 * an exclusive open inside directories this restore created, so no entry,
 * symlink or crafted tree can write outside the target.
 *
 * @module
 */
import { chmod, mkdir, mkdtemp, open, readdir, rename, rm, rmdir, symlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { throwIfAborted, type AbortOptions } from '../abort.js';
import { CorruptStoreError, InvalidArgumentError, NotFoundError } from '../errors.js';
import type { Hash } from '../hash.js';
import type { Store } from '../store.js';
import { decodeChunkList, decodeTree, looksLike, TREE_TAG, type FileEntry, type TreeEntry } from './format.js';
import { forEachLimit, type ProgressListener } from './progress.js';

/** Options of {@link restore}. */
export interface RestoreOptions extends AbortOptions {
  /** Called as files are written. */
  onProgress?: ProgressListener | undefined;
  /**
   * Files written at once.
   * @default 8
   */
  concurrency?: number | undefined;
  /**
   * Chunks read per `getMany` for a large file; one such group is prefetched while the previous is written.
   * @default 16
   */
  readWindow?: number | undefined;
}

/** What {@link restore} wrote. */
export interface RestoreResult {
  readonly files: number;
  readonly dirs: number;
  readonly symlinks: number;
  readonly bytes: number;
}

/**
 * Reads and validates a tree object; a missing object or one that is not a
 * tree is reported as such, naming the hash.
 *
 * @example
 * ```ts
 * const entries = await readTree(store, dirEntry.hash);
 * ```
 */
export async function readTree(store: Store, hash: Hash, options: AbortOptions = {}): Promise<TreeEntry[]> {
  const bytes = await store.get(hash, options);
  return decodeTree(bytes, hash);
}

interface FileJob {
  readonly path: string;
  readonly entry: FileEntry;
}

/**
 * Checks that `target` can receive a restore: absent, or an empty
 * directory. Lets callers refuse bad input before opening stores.
 */
export async function assertRestoreTarget(target: string): Promise<void> {
  await targetState(resolve(target));
}

async function targetState(target: string): Promise<'absent' | 'empty'> {
  try {
    const names = await readdir(target);
    if (names.length > 0) {
      throw new InvalidArgumentError(
        `restore target ${JSON.stringify(target)} is not empty; restore into a new or empty directory`,
        { key: target },
      );
    }
    return 'empty';
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'absent';
    if (code === 'ENOTDIR') {
      throw new InvalidArgumentError(`restore target ${JSON.stringify(target)} is a file; give a directory path`, { key: target });
    }
    throw error;
  }
}

/**
 * Restores the snapshot `root` into `target`, which must not exist or be
 * an empty directory. On failure or abort, nothing is left behind.
 *
 * @example
 * ```ts
 * const ref = await store.getRef('snapshots/photos');
 * await restore(store, ref!.hash, './photos-restored');
 * ```
 */
export async function restore(store: Store, root: Hash, target: string, options: RestoreOptions = {}): Promise<RestoreResult> {
  const signal = options.signal;
  throwIfAborted(signal);
  const finalPath = resolve(target);
  const state = await targetState(finalPath);
  const rootEntries = await readRootTree(store, root, { signal });
  await mkdir(dirname(finalPath), { recursive: true });
  const staging = await mkdtemp(join(dirname(finalPath), `.${basename(finalPath)}.cairn-restore-`));
  try {
    const result = await restoreInto(store, rootEntries, staging, options);
    throwIfAborted(signal);
    if (state === 'empty') await rmdir(finalPath);
    await rename(staging, finalPath);
    return result;
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Reads a snapshot's root tree; an object that is not a tree at all (a
 * file put with `cairn put`) is an {@link InvalidArgumentError} that says so.
 *
 * @example
 * ```ts
 * const top = await readRootTree(store, root);
 * ```
 */
export async function readRootTree(store: Store, root: Hash, options: AbortOptions = {}): Promise<TreeEntry[]> {
  const bytes = await store.get(root, options);
  if (!looksLike(bytes, TREE_TAG)) {
    throw new InvalidArgumentError(`object ${root.toString()} is not a snapshot (not a tree); give a snapshot's root hash or ref`, {
      key: root.toString(),
    });
  }
  return decodeTree(bytes, root);
}

async function restoreInto(store: Store, rootEntries: TreeEntry[], staging: string, options: RestoreOptions): Promise<RestoreResult> {
  const signal = options.signal;
  const jobs: FileJob[] = [];
  const dirModes: Array<readonly [string, number]> = [];
  let symlinks = 0;
  let totalBytes = 0;

  // Walk every tree first: directories and links are made, files are queued.
  const visit = async (entries: TreeEntry[], dir: string): Promise<void> => {
    const subdirs: Array<readonly [Hash, string]> = [];
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.type === 'dir') {
        await mkdir(path, { mode: 0o700 });
        dirModes.push([path, entry.mode]);
        subdirs.push([entry.hash, path]);
      } else if (entry.type === 'symlink') {
        await symlink(entry.target, path);
        symlinks++;
      } else {
        jobs.push({ path, entry });
        totalBytes += entry.size;
      }
    }
    await forEachLimit(subdirs, 8, async ([hash, path]) => {
      throwIfAborted(signal);
      await visit(await readTree(store, hash, { signal }), path);
    });
  };
  await visit(rootEntries, staging);

  let done = 0;
  let bytes = 0;
  const report = (): void => options.onProgress?.({ phase: 'restore', done, total: jobs.length, bytes, totalBytes });
  report();
  // Small single-object files are read in batches (one getMany: one round trip, and one batched
  // copy into the local store when a layered store reads through); larger ones stream one by one.
  const small = jobs.filter((j) => j.entry.hash !== undefined && j.entry.size <= SMALL_FILE_BYTES);
  const large = jobs.filter((j) => !(j.entry.hash !== undefined && j.entry.size <= SMALL_FILE_BYTES));
  const batches: FileJob[][] = [];
  let batchBytes = 0;
  for (const job of small) {
    const last = batches.at(-1);
    if (last === undefined || last.length >= 256 || batchBytes + job.entry.size > 8 * 2 ** 20) {
      batches.push([job]);
      batchBytes = job.entry.size;
    } else {
      last.push(job);
      batchBytes += job.entry.size;
    }
  }
  await forEachLimit(batches, 2, async (batch) => {
    throwIfAborted(signal);
    const contents = await store.getMany(
      batch.map((j) => j.entry.hash!),
      { signal },
    );
    await forEachLimit(
      batch.map((job, i) => [job, contents[i]!] as const),
      options.concurrency ?? 8,
      async ([job, content]) => {
        await writeSmallFile(job, content);
        bytes += content.length;
        done++;
        report();
      },
    );
  });
  await forEachLimit(large, options.concurrency ?? 8, async (job) => {
    throwIfAborted(signal);
    await writeFile(store, job, options, (n) => {
      bytes += n;
      report();
    });
    done++;
    report();
  });
  // Deepest first, so that a read-only directory is locked only after everything inside it exists.
  for (const [path, mode] of dirModes.reverse()) await chmod(path, mode);
  return { files: jobs.length, dirs: dirModes.length + 1, symlinks, bytes };
}

/** Files up to this size that are one object are read in batches. */
const SMALL_FILE_BYTES = 256 * 1024;

async function writeSmallFile(job: FileJob, content: Uint8Array): Promise<void> {
  if (content.length !== job.entry.size) throw sizeMismatch(job.path, job.entry, content.length);
  const handle = await open(job.path, 'wx', 0o600);
  try {
    await handle.writeFile(content);
    await handle.chmod(job.entry.mode);
  } finally {
    await handle.close();
  }
}

function sizeMismatch(path: string, entry: FileEntry, got: number): CorruptStoreError {
  const what = (entry.hash ?? entry.chunks)!.toString();
  return new CorruptStoreError(
    `file ${JSON.stringify(path)} should have ${entry.size} bytes but its content ${what} has ${got}; the snapshot is damaged`,
    { key: what },
  );
}

async function writeFile(store: Store, job: FileJob, options: RestoreOptions, onBytes: (n: number) => void): Promise<void> {
  const { entry, path } = job;
  const signal = options.signal;
  // 'wx': exclusive create, so an existing path (or a link planted there) is never written through.
  const handle = await open(path, 'wx', 0o600);
  try {
    let written = 0;
    if (entry.hash !== undefined) {
      for await (const piece of store.getStream(entry.hash, { signal })) {
        written += piece.length;
        if (written > entry.size) throw sizeMismatch(path, entry, written);
        await handle.write(piece);
        onBytes(piece.length);
      }
    } else {
      const list = decodeChunkList(await store.get(entry.chunks!, { signal }), entry.chunks);
      if (list.size !== entry.size) throw sizeMismatch(path, entry, list.size);
      // Chunks are read in groups (one getMany each, so a layered store copies them down in one
      // batch), with the next group prefetched while this one is written.
      const group = Math.max(1, options.readWindow ?? 16);
      const groups: Array<ReadonlyArray<readonly [Hash, number]>> = [];
      for (let i = 0; i < list.chunks.length; i += group) groups.push(list.chunks.slice(i, i + group));
      const fetch = (i: number): Promise<Uint8Array[]> | undefined => {
        const g = groups[i];
        if (g === undefined) return undefined;
        const read = store.getMany(
          g.map(([h]) => h),
          { signal },
        );
        read.catch(() => undefined);
        return read;
      };
      let next = fetch(0);
      try {
        for (let i = 0; i < groups.length; i++) {
          const current = await next!;
          next = fetch(i + 1);
          for (const [k, bytes] of current.entries()) {
            const expected = groups[i]![k]![1];
            if (bytes.length !== expected) throw sizeMismatch(path, entry, written + bytes.length);
            written += bytes.length;
            await handle.write(bytes);
            onBytes(bytes.length);
          }
        }
      } finally {
        await next?.catch(() => undefined);
      }
    }
    if (written !== entry.size) throw sizeMismatch(path, entry, written);
    await handle.chmod(entry.mode);
  } catch (error) {
    if (error instanceof NotFoundError) {
      throw new NotFoundError(`${error.message} (needed for ${JSON.stringify(path)}); pull it or restore a complete snapshot`, {
        key: error.key,
        cause: error,
      });
    }
    throw error;
  } finally {
    await handle.close();
  }
}
