/**
 * Taking a snapshot: a directory tree stored as content-addressed objects
 * (format in `format.ts`). Files are read as streams and cut into chunks as
 * they pass, so a file of any size is stored in bounded memory. Symbolic
 * links are stored as links and never followed, so a snapshot never reads
 * anything outside the directory it was given.
 *
 * @module
 */
import { createReadStream, type Stats } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { throwIfAborted, type AbortOptions } from '../abort.js';
import { BackendError, CairnError, InvalidArgumentError, NotFoundError, PermissionError } from '../errors.js';
import { hashBytes, parseHash, type Hash, type HashAlgorithm } from '../hash.js';
import type { Store } from '../store.js';
import { chunkStream, DEFAULT_CHUNKING, type ChunkerOptions } from './chunker.js';
import { encodeChunkList, encodeTree, MODE_MASK, type FileEntry, type TreeEntry } from './format.js';
import { PutBatcher } from './batcher.js';
import { forEachLimit, type ProgressListener } from './progress.js';

/** Options of {@link snapshot}. */
export interface SnapshotOptions extends AbortOptions {
  /** Called as files are stored. */
  onProgress?: ProgressListener | undefined;
  /**
   * Files read and stored at once.
   * @default 8
   */
  concurrency?: number | undefined;
  /**
   * Hash algorithm of the new objects.
   * @default 'sha256'
   */
  algorithm?: HashAlgorithm | undefined;
  /**
   * A store to consult before each put: objects it already holds are not
   * put again. Give the local store under a layered one, so that unchanged
   * chunks are neither rewritten nor queued for upload a second time.
   * @default undefined (every object is put; puts of present objects are no-ops)
   */
  known?: Store | undefined;
  /**
   * Remembers each file's content hash by path, size, times and inode, so
   * that a later snapshot skips reading files that did not change (as
   * restic and git do). Read and updated in place; persist it between runs.
   * Only files unchanged for two seconds are cached, and a cached hash is
   * used only if the store still holds it.
   * @default undefined (every file is read)
   */
  cache?: FileCache | undefined;
  /**
   * Files changed less than this long ago are not cached: a write within the
   * file system's timestamp granularity could otherwise go unnoticed.
   * @default 2000
   */
  cacheSettleMs?: number | undefined;
  /**
   * Chunk size bounds. Changing them loses de-duplication with snapshots cut differently.
   * @default { minSize: 16384, avgSize: 65536, maxSize: 262144 }
   */
  chunking?: ChunkerOptions | undefined;
}

/** What {@link SnapshotOptions.cache} remembers of a file. */
export interface CachedFile {
  /** Size, modification and change times, and inode, as the scan saw them. */
  readonly stamp: string;
  /** The hash text of the file's content, or of its chunk list. */
  readonly content: string;
  readonly chunked: boolean;
}

/** File cache by absolute path; a `Map` will do. */
export type FileCache = Map<string, CachedFile>;

/** What {@link snapshot} stored. */
export interface SnapshotResult {
  /** The root tree: the snapshot's name. */
  readonly root: Hash;
  readonly files: number;
  readonly dirs: number;
  readonly symlinks: number;
  /** Bytes of file content read. */
  readonly bytes: number;
  /** Chunks of all files (including ones the store already held). */
  readonly chunks: number;
  /** Distinct objects put (with `known`: only those it lacked). */
  readonly written: number;
  /** Files taken from `cache` without reading them. */
  readonly reused: number;
  /** Paths (relative) skipped because they are sockets, FIFOs or devices. */
  readonly skipped: readonly string[];
}

interface FileNode {
  kind: 'file';
  name: string;
  path: string;
  mode: number;
  size: number;
  /** What the file cache compares: size, times and inode from the scan. */
  stamp: string;
  entry?: TreeEntry;
}
interface LinkNode {
  kind: 'symlink';
  name: string;
  target: string;
}
interface DirNode {
  kind: 'dir';
  name: string;
  path: string;
  mode: number;
  depth: number;
  children: Array<FileNode | LinkNode | DirNode>;
  hash?: Hash;
}

function fsError(error: unknown, path: string, action: string): Error {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    return new NotFoundError(`cannot ${action} ${JSON.stringify(path)}: it does not exist; check the path`, { key: path, cause: error });
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new PermissionError(`cannot ${action} ${JSON.stringify(path)}: permission denied; check its permissions`, { key: path, cause: error });
  }
  return new BackendError(`cannot ${action} ${JSON.stringify(path)}: ${(error as Error).message}`, { key: path, cause: error });
}

function validName(raw: Buffer): string | undefined {
  const text = raw.toString('utf8');
  return Buffer.from(text, 'utf8').equals(raw) ? text : undefined;
}

/**
 * Checks that `dir` can be snapshotted (it exists and is a directory, not a
 * link to one), so that callers can refuse bad input before opening stores.
 */
export async function statSnapshotDir(dir: string): Promise<Stats> {
  let info: Stats;
  try {
    info = await lstat(resolve(dir));
  } catch (error) {
    throw fsError(error, dir, 'snapshot');
  }
  if (!info.isDirectory()) {
    throw new InvalidArgumentError(`cannot snapshot ${JSON.stringify(dir)}: it is not a directory; give a directory path`, { key: dir });
  }
  return info;
}

/**
 * Stores the directory `dir` in `store` and returns its root hash. Nothing
 * but objects is written (no ref): a snapshot that fails or is aborted
 * part-way leaves only unreferenced objects, which `gc` can remove.
 *
 * @example
 * ```ts
 * const { root } = await snapshot(store, './photos');
 * await store.setRef('snapshots/photos', root);
 * ```
 */
export async function snapshot(store: Store, dir: string, options: SnapshotOptions = {}): Promise<SnapshotResult> {
  const signal = options.signal;
  throwIfAborted(signal);
  const top = resolve(dir);
  const info = await statSnapshotDir(dir);
  const skipped: string[] = [];
  const settleMs = options.cacheSettleMs ?? 2000;
  const root: DirNode = { kind: 'dir', name: '', path: top, mode: info.mode & MODE_MASK, depth: 0, children: [] };
  const dirs: DirNode[] = [root];
  const files: FileNode[] = [];
  let symlinks = 0;
  let totalBytes = 0;

  // Scan first: totals for progress, and every directory listed before any byte is stored.
  for (let i = 0; i < dirs.length; i++) {
    throwIfAborted(signal);
    const node = dirs[i]!;
    let names: Buffer[];
    try {
      names = await readdir(node.path, { encoding: 'buffer' });
    } catch (error) {
      throw fsError(error, node.path, 'read directory');
    }
    const rel = (name: string): string => join(node.path.slice(top.length + 1), name);
    await forEachLimit(names, 16, async (raw) => {
      const name = validName(raw);
      if (name === undefined) {
        throw new InvalidArgumentError(
          `cannot snapshot ${JSON.stringify(join(node.path, raw.toString('utf8')))}: its name is not valid UTF-8; rename it`,
        );
      }
      const path = join(node.path, name);
      let st;
      try {
        st = await lstat(path);
      } catch (error) {
        throw fsError(error, path, 'read');
      }
      if (st.isDirectory()) {
        const child: DirNode = { kind: 'dir', name, path, mode: st.mode & MODE_MASK, depth: node.depth + 1, children: [] };
        node.children.push(child);
        dirs.push(child);
      } else if (st.isFile()) {
        const stamp = `${st.size}:${st.mtimeMs}:${st.ctimeMs}:${st.ino}`;
        // A file changed within the last two seconds may change again within the clock's granularity: never cached.
        const stable = Date.now() - Math.max(st.mtimeMs, st.ctimeMs) >= settleMs;
        const file: FileNode = { kind: 'file', name, path, mode: st.mode & MODE_MASK, size: st.size, stamp: stable ? stamp : '' };
        node.children.push(file);
        files.push(file);
        totalBytes += st.size;
      } else if (st.isSymbolicLink()) {
        let raw: Buffer;
        try {
          raw = await readlink(path, { encoding: 'buffer' });
        } catch (error) {
          throw fsError(error, path, 'read link');
        }
        // Stored as text: bytes that are not UTF-8 would be replaced, and two different trees would hash equal.
        const target = validName(raw);
        if (target === undefined) {
          throw new InvalidArgumentError(
            `cannot snapshot ${JSON.stringify(path)}: it is a symbolic link whose target is not valid UTF-8 ` +
              `(${JSON.stringify(raw.toString('utf8').slice(0, 60))}); point it at a UTF-8 path or move it out of the tree`,
            { key: path },
          );
        }
        node.children.push({ kind: 'symlink', name, target });
        symlinks++;
      } else {
        skipped.push(rel(name));
      }
    });
  }

  const algorithm = options.algorithm;
  const chunking = options.chunking ?? DEFAULT_CHUNKING;
  const minSize = chunking.minSize ?? DEFAULT_CHUNKING.minSize;
  const batcher = new PutBatcher(store, { algorithm, signal, known: options.known });
  let done = 0;
  let bytes = 0;
  let chunks = 0;
  const report = (): void =>
    options.onProgress?.({ phase: 'snapshot', done, total: files.length, bytes, totalBytes });
  report();
  // Hashes are computed here, so trees never wait for a put; the batcher only applies backpressure.
  const putNew = async (content: Uint8Array): Promise<Hash> => {
    const hash = hashBytes(content, algorithm);
    await batcher.add(content, hash);
    return hash;
  };

  const cache = options.cache;
  let reused = 0;
  const storeFile = async (file: FileNode): Promise<void> => {
    throwIfAborted(signal);
    const hit = file.stamp === '' ? undefined : cache?.get(file.path);
    if (hit !== undefined && hit.stamp === file.stamp) {
      // Unchanged since the last snapshot: reuse its content if the store still has it (gc may have run).
      const content = parseHash(hit.content);
      if (await (options.known ?? store).has(content, { signal })) {
        file.entry = hit.chunked
          ? { name: file.name, type: 'file', mode: file.mode, size: file.size, chunks: content }
          : { name: file.name, type: 'file', mode: file.mode, size: file.size, hash: content };
        bytes += file.size;
        done++;
        reused++;
        report();
        return;
      }
    }
    await readAndStore(file);
    const entry = file.entry as FileEntry;
    if (cache !== undefined && file.stamp !== '') {
      cache.set(file.path, { stamp: file.stamp, content: (entry.chunks ?? entry.hash)!.toString(), chunked: entry.chunks !== undefined });
    }
  };
  const readAndStore = async (file: FileNode): Promise<void> => {
    if (file.size < minSize) {
      // Below the minimum chunk size a file is one chunk whatever its bytes: skip the chunker.
      let content: Uint8Array;
      try {
        content = await readFile(file.path, { signal });
      } catch (error) {
        throwIfAborted(signal);
        throw fsError(error, file.path, 'read');
      }
      if (content.length < minSize) {
        const hash = await putNew(content);
        file.entry = { name: file.name, type: 'file', mode: file.mode, size: content.length, hash };
        chunks++;
        bytes += content.length;
        done++;
        report();
        return;
      }
    }
    const list: Array<readonly [Hash, number]> = [];
    let size = 0;
    try {
      const stream = createReadStream(file.path, { highWaterMark: 256 * 1024, signal });
      for await (const chunk of chunkStream(stream, chunking)) {
        list.push([await putNew(chunk), chunk.length]);
        size += chunk.length;
        bytes += chunk.length;
        chunks++;
        report();
      }
    } catch (error) {
      throwIfAborted(signal);
      // Store failures are already typed; anything else came from reading the file.
      throw error instanceof CairnError ? error : fsError(error, file.path, 'read');
    }
    if (list.length <= 1) {
      const hash = list[0]?.[0] ?? (await putNew(new Uint8Array(0)));
      file.entry = { name: file.name, type: 'file', mode: file.mode, size, hash };
    } else {
      const hash = await putNew(encodeChunkList({ size, chunks: list }));
      file.entry = { name: file.name, type: 'file', mode: file.mode, size, chunks: hash };
    }
    done++;
    report();
  };
  try {
    await forEachLimit(files, options.concurrency ?? 8, storeFile);
    // Trees bottom-up; they go through the batcher too, so a deep tree costs a few batches.
    const maxDepth = Math.max(...dirs.map((d) => d.depth));
    for (let depth = maxDepth; depth >= 0; depth--) {
      throwIfAborted(signal);
      for (const d of dirs.filter((x) => x.depth === depth)) {
        const encoded = encodeTree(
          d.children.map((c): TreeEntry => {
            if (c.kind === 'dir') return { name: c.name, type: 'dir', mode: c.mode, hash: c.hash! };
            if (c.kind === 'symlink') return { name: c.name, type: 'symlink', target: c.target };
            return c.entry!;
          }),
        );
        d.hash = await putNew(encoded);
      }
    }
    await batcher.flush();
  } catch (error) {
    await batcher.settle();
    throw error;
  }
  const written = batcher.written;
  return {
    reused,
    root: root.hash!,
    files: files.length,
    dirs: dirs.length,
    symlinks,
    bytes,
    chunks,
    written,
    skipped: skipped.sort(),
  };
}
