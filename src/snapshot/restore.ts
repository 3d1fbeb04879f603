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
import { chmod, lstat, mkdir, open, readdir, rename, rmdir, symlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { throwIfAborted, type AbortOptions } from '../abort.js';
import { BackendError, CairnError, CorruptStoreError, InvalidArgumentError, LimitExceededError, NotFoundError } from '../errors.js';
import type { Hash } from '../hash.js';
import { verifyBytes } from '../object-io.js';
import type { Store } from '../store.js';
import { decodeChunkList, decodeTree, looksLike, TREE_TAG, type FileEntry, type TreeEntry } from './format.js';
import { TreeReadAhead } from './read-ahead.js';
import { cut, measureSnapshot, NAME_MAX, type ExpandLimits, type SnapshotSize } from './limits.js';
import { forEachLimit, type ProgressListener } from './progress.js';
import { makeStaging, removeTree, sweepStaleStaging } from './staging.js';
import { TaskPool } from './task-pool.js';

/** Options of {@link restore}. */
export interface RestoreOptions extends AbortOptions, ExpandLimits {
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
  /**
   * Apply file and directory modes exactly as stored. Off, the process
   * umask is applied (a mode of 0777 from a remote becomes 0755 under the
   * usual umask 022), as `tar` does for a user other than root.
   * @default false
   */
  exactModes?: boolean | undefined;
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

/** One level of the restore walk: its entries, the next to handle, and its subtrees being read ahead. */
interface Frame {
  readonly entries: TreeEntry[];
  i: number;
  readonly dir: string;
  readonly ahead: TreeReadAhead;
}

interface FileJob {
  readonly path: string;
  readonly entry: FileEntry;
}

/** The longest path most systems take (Linux PATH_MAX, less the NUL). */
const PATH_MAX = 4095;

/**
 * Checks that `target` can receive a restore: absent, or an empty
 * directory, not a symbolic link, with a path the file system takes. Lets
 * callers refuse bad input before opening stores.
 */
export async function assertRestoreTarget(target: string): Promise<void> {
  await targetState(resolve(target));
}

async function targetState(target: string): Promise<'absent' | 'empty'> {
  const shown = JSON.stringify(cut(target));
  const long = target.split('/').find((part) => Buffer.byteLength(part) > NAME_MAX);
  if (long !== undefined || Buffer.byteLength(target) > PATH_MAX) {
    throw new InvalidArgumentError(
      `restore target ${shown} is too long (${long !== undefined ? `a name of ${Buffer.byteLength(long)} bytes; the limit is ${NAME_MAX}` : `more than ${PATH_MAX} bytes`}); give a shorter path`,
      { key: cut(target) },
    );
  }
  let st;
  try {
    st = await lstat(target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'absent';
    if (code === 'ENOTDIR') {
      throw new InvalidArgumentError(`restore target ${shown} is inside a file, not a directory; give a directory path`, { key: cut(target) });
    }
    throw error;
  }
  if (st.isSymbolicLink()) {
    throw new InvalidArgumentError(`restore target ${shown} is a symbolic link; give the real directory path (restore never writes through links)`, {
      key: cut(target),
    });
  }
  if (!st.isDirectory()) {
    throw new InvalidArgumentError(`restore target ${shown} is a file; give a directory path`, { key: cut(target) });
  }
  if ((await readdir(target)).length > 0) {
    throw new InvalidArgumentError(`restore target ${shown} is not empty; restore into a new or empty directory`, { key: cut(target) });
  }
  return 'empty';
}

/**
 * Restores the snapshot `root` into `target`, which must not exist or be
 * an empty directory. On failure or abort, nothing is left behind.
 *
 * The snapshot is measured first (each distinct tree read once) and refused
 * with {@link LimitExceededError} if it expands past the limits, before
 * anything is written; then it is walked depth-first, one tree at a time,
 * with at most `concurrency` files in flight, so memory does not grow with
 * the number of files. Each file's object is checked to be no longer than
 * its entry declares (a ranged read of one byte past the end) before it is
 * read, so a crafted entry cannot make a restore read or cache a huge
 * object. Staging directories left by a killed restore into the same place
 * are swept first.
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
  const size = await measureSnapshot(store, rootEntries, options, { signal });
  let staging: string;
  try {
    await mkdir(dirname(finalPath), { recursive: true });
    await sweepStaleStaging(finalPath);
    staging = await makeStaging(finalPath);
  } catch (error) {
    throw fsProblem(error, finalPath);
  }
  try {
    if (Buffer.byteLength(staging) + 1 + size.longestPath > PATH_MAX) {
      throw new LimitExceededError(
        `the snapshot holds a path of ${size.longestPath} bytes, too long for the file system under ${JSON.stringify(cut(finalPath))}; restore into a shorter path`,
      );
    }
    const result = await restoreInto(store, rootEntries, staging, size, options);
    throwIfAborted(signal);
    if (state === 'empty') await rmdir(finalPath);
    await rename(staging, finalPath);
    return result;
  } catch (error) {
    await removeTree(staging);
    throw fsProblem(error, finalPath);
  }
}

/**
 * A file-system failure while writing the restore, as a typed error that
 * names the target (cut to a readable length) and what to do, instead of a
 * raw errno message echoing a long staging path.
 */
function fsProblem(error: unknown, target: string): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (error instanceof CairnError || typeof code !== 'string') return error;
  const where = JSON.stringify(cut(target));
  switch (code) {
    case 'ENAMETOOLONG':
      return new LimitExceededError(`a name or path in the snapshot is too long for the file system under ${where}; restore into a shorter path`, { cause: error });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new InvalidArgumentError(`cannot write under ${where} (${code}); restore into a directory you can write to`, { key: cut(target), cause: error });
    case 'ENOSPC':
    case 'EDQUOT':
      return new BackendError(`no space left under ${where} (${code}); free some space or restore elsewhere`, { key: cut(target), cause: error });
    default:
      return new BackendError(`restore into ${where} failed: ${code}; nothing was left behind`, { key: cut(target), cause: error });
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

/** The process umask (0o022 where it cannot be read, as in a worker thread). */
function currentUmask(): number {
  try {
    return process.umask();
  } catch {
    return 0o022;
  }
}

async function restoreInto(store: Store, rootEntries: TreeEntry[], staging: string, size: SnapshotSize, options: RestoreOptions): Promise<RestoreResult> {
  const signal = options.signal;
  const umask = options.exactModes === true ? 0 : currentUmask();
  const concurrency = Math.max(1, options.concurrency ?? 8);
  const pool = new TaskPool(concurrency, signal);
  // Directories the owner cannot write into are locked only at the end, deepest first.
  const locked: Array<readonly [string, number]> = [];
  let files = 0;
  let dirs = 1;
  let symlinks = 0;
  let done = 0;
  let bytes = 0;
  const report = (): void => options.onProgress?.({ phase: 'restore', done, total: size.files, bytes, totalBytes: size.bytes });
  report();
  const fileMode = (entry: FileEntry): number => entry.mode & ~umask;
  let batch: FileJob[] = [];
  let batchBytes = 0;
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const jobs = batch;
    batch = [];
    batchBytes = 0;
    await pool.run(async () => {
      const contents = await readSmallFiles(store, jobs, signal);
      await forEachLimit(jobs.keys(), concurrency, async (i) => {
        await writeSmallFile(jobs[i]!, contents[i]!, fileMode(jobs[i]!.entry));
        bytes += contents[i]!.length;
        done++;
        report();
      });
    });
  };
  // Depth-first, one tree in memory per level plus the next few subtrees read ahead: memory follows the depth
  // (bounded by maxDepth), not the file count. Reading ahead lets a remote serve sibling trees in one request
  // (they sit side by side in a pack) instead of one round trip per directory.
  const stack: Frame[] = [frame(rootEntries, staging)];
  try {
    await walk();
  } catch (error) {
    await pool.settle();
    throw error;
  }
  for (const [path, mode] of locked.reverse()) await chmod(path, mode);
  return { files, dirs, symlinks, bytes };

  function frame(entries: TreeEntry[], dir: string): Frame {
    return { entries, i: 0, dir, ahead: new TreeReadAhead(store, entries, signal) };
  }

  async function walk(): Promise<void> {
    while (stack.length > 0) {
      const top = stack.at(-1)!;
      const entry = top.entries[top.i++];
      if (entry === undefined) {
        stack.pop();
        continue;
      }
      pool.check();
      const path = join(top.dir, entry.name);
      if (entry.type === 'dir') {
        const mode = entry.mode & ~umask;
        await mkdir(path, { mode: 0o700 });
        if ((mode & 0o700) !== 0o700) locked.push([path, mode]);
        else if (mode !== 0o700) await chmod(path, mode);
        dirs++;
        stack.push(frame(decodeTree(await top.ahead.take(top.i - 1), entry.hash), path));
      } else if (entry.type === 'symlink') {
        await symlink(entry.target, path);
        symlinks++;
      } else {
        files++;
        const job = { path, entry };
        if (entry.hash !== undefined && entry.size <= SMALL_FILE_BYTES) {
          batch.push(job);
          batchBytes += entry.size;
          if (batch.length >= 256 || batchBytes >= 8 * 2 ** 20) await flush();
        } else {
          await pool.run(async () => {
            await writeFile(store, job, options, fileMode(entry), (n) => {
              bytes += n;
              report();
            });
            done++;
            report();
          });
        }
      }
    }
    await flush();
    await pool.drain();
  }
}

/**
 * Reads small single-object files, one request each: a ranged read of the
 * declared size plus one byte. A longer object is refused unread past that
 * byte (memory is bounded by what the entry declares, never by what the
 * store holds), and a full-length result is the whole object, so it is
 * verified against its hash like a `get`. A probe for the extra byte
 * followed by a `get` would cost two requests per file on a remote.
 */
async function readSmallFiles(store: Store, jobs: readonly FileJob[], signal: AbortSignal | undefined): Promise<Uint8Array[]> {
  return Promise.all(
    jobs.map(async (job) => {
      const hash = job.entry.hash!;
      let bytes: Uint8Array;
      try {
        bytes = await store.getRange(hash, 0, job.entry.size + 1, { signal });
      } catch (error) {
        throw withPath(error, job.path);
      }
      if (bytes.length > job.entry.size) throw sizeMismatch(job.path, job.entry, `more than ${job.entry.size}`);
      if (bytes.length < job.entry.size) throw sizeMismatch(job.path, job.entry, bytes.length);
      verifyBytes(hash, bytes);
      return bytes;
    }),
  );
}

async function assertNotLonger(store: Store, job: FileJob, signal: AbortSignal | undefined): Promise<void> {
  const hash = (job.entry.hash ?? job.entry.chunks)!;
  let past: Uint8Array;
  try {
    past = await store.getRange(hash, job.entry.size, 1, { signal });
  } catch (error) {
    throw withPath(error, job.path);
  }
  if (past.length > 0) throw sizeMismatch(job.path, job.entry, `more than ${job.entry.size}`);
}

function withPath(error: unknown, path: string): unknown {
  if (error instanceof NotFoundError) {
    return new NotFoundError(`${error.message} (needed for ${JSON.stringify(cut(path))}); pull it or restore a complete snapshot`, {
      key: error.key,
      cause: error,
    });
  }
  return error;
}

/** Files up to this size that are one object are read in batches. */
const SMALL_FILE_BYTES = 256 * 1024;

async function writeSmallFile(job: FileJob, content: Uint8Array, mode: number): Promise<void> {
  if (content.length !== job.entry.size) throw sizeMismatch(job.path, job.entry, content.length);
  const handle = await open(job.path, 'wx', 0o600);
  try {
    await handle.writeFile(content);
    await handle.chmod(mode);
  } finally {
    await handle.close();
  }
}

function sizeMismatch(path: string, entry: FileEntry, got: number | string): CorruptStoreError {
  const what = (entry.hash ?? entry.chunks)!.toString();
  return new CorruptStoreError(
    `file ${JSON.stringify(cut(path))} should have ${entry.size} bytes but its content ${what} has ${got}; the snapshot is damaged`,
    { key: what },
  );
}

async function writeFile(store: Store, job: FileJob, options: RestoreOptions, mode: number, onBytes: (n: number) => void): Promise<void> {
  const { entry, path } = job;
  const signal = options.signal;
  // Before any read: an object longer than declared (or a chunk list longer than such a file's could be) is refused unread.
  if (entry.hash !== undefined) await assertNotLonger(store, job, signal);
  else await assertListNotLonger(store, job, signal);
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
    await handle.chmod(mode);
  } catch (error) {
    throw withPath(error, path);
  } finally {
    await handle.close();
  }
}

/** A chunk list names each chunk in under 90 bytes, and a file of n bytes has at most n chunks. */
async function assertListNotLonger(store: Store, job: FileJob, signal: AbortSignal | undefined): Promise<void> {
  const bound = 200 + 90 * (job.entry.size + 1);
  const past = await store.getRange(job.entry.chunks!, bound, 1, { signal }).catch((error: unknown) => {
    throw withPath(error, job.path);
  });
  if (past.length > 0) {
    throw new CorruptStoreError(
      `file ${JSON.stringify(cut(job.path))} declares ${job.entry.size} bytes but its chunk list ${job.entry.chunks!.toString()} is longer than such a file's could be; the snapshot is damaged`,
      { key: job.entry.chunks!.toString() },
    );
  }
}
