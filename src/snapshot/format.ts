/**
 * The snapshot format: how a directory tree is laid out as objects.
 *
 * A snapshot is named by the hash of its root **tree**. Three kinds of
 * objects make it up, each immutable and content-addressed like any other:
 *
 * - **Chunks**: raw file bytes. Files are cut by content-defined chunking
 *   (FastCDC, gear hash, 16 KiB min / 64 KiB average / 256 KiB max; see
 *   `chunker.ts`), so a small edit changes one or two chunks and the rest
 *   de-duplicate against earlier snapshots.
 * - **Chunk lists** (files of more than one chunk), canonical JSON:
 *   `{"cairn":"chunks/v1","size":N,"chunks":[["sha256:…",n],…]}`.
 * - **Trees** (directories), canonical JSON:
 *   `{"cairn":"tree/v1","entries":[…]}` with entries sorted by the UTF-8
 *   bytes of their names, names unique, keys in this order:
 *   - `{"name","type":"dir","mode","hash"}`: `hash` names the subtree;
 *   - `{"name","type":"file","mode","size","hash"}`: a file of zero or one
 *     chunk, `hash` names its whole content (so `cairn cat` prints it);
 *   - `{"name","type":"file","mode","size","chunks"}`: a larger file,
 *     `chunks` names its chunk list;
 *   - `{"name","type":"symlink","target"}`: a symbolic link, stored as its
 *     target text and never followed.
 *
 * `mode` is the permission bits (`0o777` mask, as a decimal number).
 * Modification times, owners and extended attributes are not stored, so an
 * unchanged tree always snapshots to the same root hash. Names must be valid
 * UTF-8 (any character but `/` and NUL, including spaces and newlines), and
 * so must symlink targets: `snapshot` refuses a name or link target that is
 * not valid UTF-8 (with {@link InvalidArgumentError}) rather than store a
 * replacement character, so two different trees never hash equal.
 * Sockets, FIFOs and devices are skipped and reported.
 *
 * Decoding is strict: a tree read back must be canonical, and an entry
 * whose name is empty, `.`, `..`, or holds `/` or NUL is refused with
 * {@link CorruptStoreError}, so that a crafted tree cannot make a restore
 * write outside its target directory.
 *
 * @module
 */
import { CorruptStoreError, type InvalidArgumentError } from '../errors.js';
import type { Hash } from '../hash.js';
import { parseHash } from '../hash.js';

/** The `cairn` tag of a tree object. */
export const TREE_TAG = 'tree/v1';
/** The `cairn` tag of a chunk-list object. */
export const CHUNKS_TAG = 'chunks/v1';

/** Permission bits kept for files and directories. */
export const MODE_MASK = 0o777;

/** A subdirectory entry. */
export interface DirEntry {
  readonly name: string;
  readonly type: 'dir';
  readonly mode: number;
  readonly hash: Hash;
}

/** A regular file entry: `hash` (0 or 1 chunk) or `chunks` (a chunk list), never both. */
export interface FileEntry {
  readonly name: string;
  readonly type: 'file';
  readonly mode: number;
  readonly size: number;
  readonly hash?: Hash | undefined;
  readonly chunks?: Hash | undefined;
}

/** A symbolic link entry. */
export interface SymlinkEntry {
  readonly name: string;
  readonly type: 'symlink';
  readonly target: string;
}

/** One entry of a tree. */
export type TreeEntry = DirEntry | FileEntry | SymlinkEntry;

/** A decoded chunk list: each chunk's hash and byte length. */
export interface ChunkList {
  readonly size: number;
  readonly chunks: ReadonlyArray<readonly [Hash, number]>;
}

const encoder = new TextEncoder();

/** Orders names by their UTF-8 bytes, the canonical order (JS string order differs above U+FFFF). */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Why `name` cannot be a tree entry name, or `undefined` if it can. */
export function entryNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return 'it is not a string';
  if (name === '' || name === '.' || name === '..') return `it is ${JSON.stringify(name)}`;
  if (name.includes('/')) return 'it contains "/"';
  if (name.includes('\0')) return 'it contains NUL';
  if (Buffer.from(name, 'utf8').toString('utf8') !== name) return 'it is not valid Unicode text';
  return undefined;
}

function entryJson(entry: TreeEntry): unknown {
  switch (entry.type) {
    case 'dir':
      return { name: entry.name, type: 'dir', mode: entry.mode, hash: entry.hash.toString() };
    case 'symlink':
      return { name: entry.name, type: 'symlink', target: entry.target };
    case 'file':
      return entry.chunks !== undefined
        ? { name: entry.name, type: 'file', mode: entry.mode, size: entry.size, chunks: entry.chunks.toString() }
        : { name: entry.name, type: 'file', mode: entry.mode, size: entry.size, hash: entry.hash!.toString() };
  }
}

/**
 * Encodes a tree canonically (sorts a copy of `entries`): equal trees give equal bytes, so equal hashes.
 *
 * @example
 * ```ts
 * const tree = await store.put(encodeTree([{ name: 'a.txt', type: 'file', mode: 0o644, size: 5, hash }]));
 * ```
 */
export function encodeTree(entries: readonly TreeEntry[]): Uint8Array {
  const sorted = [...entries].sort((a, b) => compareNames(a.name, b.name));
  return encoder.encode(JSON.stringify({ cairn: TREE_TAG, entries: sorted.map(entryJson) }));
}

/**
 * Encodes a chunk list.
 *
 * @example
 * ```ts
 * const list = await store.put(encodeChunkList({ size: 3, chunks: [[chunkHash, 3]] }));
 * ```
 */
export function encodeChunkList(list: ChunkList): Uint8Array {
  return encoder.encode(
    JSON.stringify({ cairn: CHUNKS_TAG, size: list.size, chunks: list.chunks.map(([h, n]) => [h.toString(), n]) }),
  );
}

/** Cheap test used by reachability: could these bytes be a Cairn JSON object with `tag`? */
export function looksLike(bytes: Uint8Array, tag: string): boolean {
  const prefix = `{"cairn":"${tag}"`;
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix.charCodeAt(i)) return false;
  return true;
}

function corrupt(hash: Hash | undefined, what: string): CorruptStoreError {
  const subject = hash === undefined ? 'object' : `object ${hash.toString()}`;
  return new CorruptStoreError(`${subject} is not a valid snapshot ${what}; refusing to use it`, { key: hash?.toString() });
}

function parseJson(bytes: Uint8Array, hash: Hash | undefined, what: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8'));
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not an object');
    return value as Record<string, unknown>;
  } catch (cause) {
    throw new CorruptStoreError(`object ${hash?.toString() ?? ''} is not a snapshot ${what} (not JSON)`, {
      key: hash?.toString(),
      cause,
    });
  }
}

function hashField(value: unknown, hash: Hash | undefined, what: string): Hash {
  try {
    return parseHash(value);
  } catch (cause) {
    throw new CorruptStoreError(`${what} in object ${hash?.toString() ?? ''} has a bad hash`, { key: hash?.toString(), cause });
  }
}

/** Text that survives a UTF-8 round trip (no lone surrogates), so that it is written to disk as it reads. */
const isUnicode = (text: string): boolean => Buffer.from(text, 'utf8').toString('utf8') === text;
const isSize = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isMode = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MODE_MASK;

/**
 * Decodes and validates a tree object. Throws {@link CorruptStoreError} for
 * anything but a canonical tree with safe names, so that callers (restore,
 * diff, gc) can trust every entry.
 *
 * @example
 * ```ts
 * for (const entry of decodeTree(await store.get(root), root)) console.log(entry.type, entry.name);
 * ```
 */
export function decodeTree(bytes: Uint8Array, hash?: Hash): TreeEntry[] {
  if (!looksLike(bytes, TREE_TAG)) throw corrupt(hash, 'tree');
  const json = parseJson(bytes, hash, 'tree');
  if (!Array.isArray(json.entries)) throw corrupt(hash, 'tree');
  const entries: TreeEntry[] = [];
  let previous: string | undefined;
  for (const raw of json.entries as unknown[]) {
    if (raw === null || typeof raw !== 'object') throw corrupt(hash, 'tree');
    const e = raw as Record<string, unknown>;
    const problem = entryNameProblem(e.name);
    if (problem !== undefined) {
      throw new CorruptStoreError(
        `tree ${hash?.toString() ?? ''} has an unsafe entry name ${JSON.stringify(String(e.name)).slice(0, 100)} (${problem}); refusing to use it`,
        { key: hash?.toString() },
      );
    }
    const name = e.name as string;
    if (previous !== undefined && compareNames(previous, name) >= 0) {
      throw new CorruptStoreError(`tree ${hash?.toString() ?? ''} has duplicate or unsorted entries near ${JSON.stringify(name)}`, {
        key: hash?.toString(),
      });
    }
    previous = name;
    if (e.type === 'dir' && isMode(e.mode)) {
      entries.push({ name, type: 'dir', mode: e.mode, hash: hashField(e.hash, hash, `entry ${JSON.stringify(name)}`) });
    } else if (e.type === 'symlink' && typeof e.target === 'string' && e.target !== '' && !e.target.includes('\0') && isUnicode(e.target)) {
      entries.push({ name, type: 'symlink', target: e.target });
    } else if (e.type === 'file' && isMode(e.mode) && isSize(e.size) && (e.hash === undefined) !== (e.chunks === undefined)) {
      const at = `entry ${JSON.stringify(name)}`;
      entries.push(
        e.chunks !== undefined
          ? { name, type: 'file', mode: e.mode, size: e.size, chunks: hashField(e.chunks, hash, at) }
          : { name, type: 'file', mode: e.mode, size: e.size, hash: hashField(e.hash, hash, at) },
      );
    } else {
      throw new CorruptStoreError(`tree ${hash?.toString() ?? ''} has a malformed entry ${JSON.stringify(name)}`, {
        key: hash?.toString(),
      });
    }
  }
  return entries;
}

/**
 * Decodes and validates a chunk list (sizes must add up).
 *
 * @example
 * ```ts
 * const { chunks } = decodeChunkList(await store.get(entry.chunks), entry.chunks);
 * ```
 */
export function decodeChunkList(bytes: Uint8Array, hash?: Hash): ChunkList {
  if (!looksLike(bytes, CHUNKS_TAG)) throw corrupt(hash, 'chunk list');
  const json = parseJson(bytes, hash, 'chunk list');
  if (!isSize(json.size) || !Array.isArray(json.chunks)) throw corrupt(hash, 'chunk list');
  let total = 0;
  const chunks: Array<readonly [Hash, number]> = [];
  for (const item of json.chunks as unknown[]) {
    if (!Array.isArray(item) || item.length !== 2 || !isSize(item[1])) throw corrupt(hash, 'chunk list');
    chunks.push([hashField(item[0], hash, 'a chunk'), item[1]]);
    total += item[1];
  }
  if (total !== json.size) throw corrupt(hash, 'chunk list (sizes do not add up)');
  return { size: json.size, chunks };
}
