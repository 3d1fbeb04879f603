/**
 * The disk backend: a durable, crash-safe store in one local directory,
 * built for many small objects.
 *
 * - Small objects (up to {@link DiskStoreOptions.smallObjectMaxBytes}) are
 *   records in append-only segment files; concurrent puts share one
 *   fdatasync (group commit). An in-memory index, checkpointed to disk,
 *   finds them; recovery replays segment tails after the checkpoint and
 *   drops torn or corrupt records, listing them in {@link DiskStore.recovery}.
 * - Large objects and streams that outgrow that limit get a file each
 *   (temp, fsync, rename, directory fsync), so memory stays bounded.
 * - Refs live in an append-only log written under a cross-process lock, so
 *   compare-and-swap is atomic between processes sharing the directory. A
 *   damaged ref record is reported (CorruptStoreError on the refs it may
 *   hide), never read as the older value (see `disk/ref-log.ts`).
 * - Opening never rewrites what it finds damaged; `readOnly` changes no file
 *   at all, for read-side work on a shared store.
 * - Every read is verified against its hash: wrong bytes are never returned.
 *
 * Several processes may open one directory at once: each appends to its own
 * segments and finds the others' on a lookup miss. Refs are always current
 * (every ref read catches up with the log). A delete made by another
 * process is seen here at the next look at the segments directory (a
 * lookup miss, `listObjects`, `compact`), so until then `has`/`get` may
 * still serve the deleted object's (intact, verified) bytes; likewise a
 * `put` that finds its hash already present does not write it again, so
 * run garbage collection while no other process is writing, as with any
 * deduplicating store.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { raceAbort, throwIfAborted, type AbortOptions } from '../abort.js';
import { ClosedError, InvalidArgumentError, NotFoundError, ReadOnlyError, type CorruptStoreError } from '../errors.js';
import { createHasher, type Hash } from '../hash.js';
import { assertObjectSource, assertRange, chunksOf, concatBytes, hashOf, isBytes, sliceRange, toHash, verifiedStream, verifyBytes } from '../object-io.js';
import { assertRefName, assertRefPrefix } from '../ref-name.js';
import type {
  CasResult,
  HashLike,
  ObjectSource,
  PutOptions,
  RefEntry,
  RefListener,
  RefValue,
  Store,
  StoreCapabilities,
  WatchOptions,
} from '../store.js';
import { mapFsError } from './disk/fs-errors.js';
import { nativeStreams, readOnlyNativeStreams, type NativeStreams } from '../data/streams/native.js';
import { LargeFiles, READ_CHUNK } from './disk/large.js';
import { checkLayout, openLayout } from './disk/layout.js';
import { ObjectLog, RECORD_PAYLOAD_LIMIT, type CompactionResult } from './disk/object-log.js';
import { DiskStreams } from './disk/native-streams.js';
import { RefLog } from './disk/ref-log.js';
import { flag, positiveInteger, type DiskStoreOptions } from './disk/options.js';
import { emptyReport, type RecoveryReport } from './disk/report.js';

export type { CompactionResult } from './disk/object-log.js';
export type { DiskStoreOptions } from './disk/options.js';
export type { DroppedStretch, RecoveryReport } from './disk/report.js';

/** Temp files of large puts older than this were left by a process that died. */
const TEMP_SWEEP_AGE_MS = 60 * 60 * 1000;

/**
 * Opens the disk store in `dir`, creating it if `dir` is missing or empty.
 * Rejects with {@link CorruptStoreError} (changing nothing) if `dir` holds
 * something that is not a Cairn store, or a store of an unknown layout.
 * Opening never rewrites what it finds damaged (see
 * {@link DiskStore.recovery}) unless `repair` asks; with `readOnly` it
 * changes nothing at all.
 *
 * @example
 * ```ts
 * const store = await openDiskStore('./data');
 * const hash = await store.put(new TextEncoder().encode('hello'));
 * await store.compareAndSwap('heads/main', null, hash);
 * console.log(store.recovery.droppedBytes); // 0 after a clean shutdown
 * await store.close();
 * ```
 */
export async function openDiskStore(dir: string, options: DiskStoreOptions = {}): Promise<DiskStore> {
  if (typeof dir !== 'string' || dir === '') throw new InvalidArgumentError('openDiskStore needs a directory path');
  const smallObjectMaxBytes = positiveInteger(options, 'smallObjectMaxBytes', RECORD_PAYLOAD_LIMIT);
  const segmentMaxBytes = positiveInteger(options, 'segmentMaxBytes', 2 ** 40);
  const checkpointEveryBytes = positiveInteger(options, 'checkpointEveryBytes', 2 ** 40);
  const staleLockMs = positiveInteger(options, 'staleLockMs', 24 * 60 * 60 * 1000);
  const refLogMaxBytes = positiveInteger(options, 'refLogMaxBytes', 2 ** 40);
  const readOnly = flag(options, 'readOnly', false);
  const repair = flag(options, 'repair', false);
  const root = resolve(dir);
  await (readOnly ? checkLayout(root) : openLayout(root));
  const report = emptyReport();
  const objects = await ObjectLog.open(
    root,
    { segmentMaxBytes, checkpointEveryBytes, staleLockMs, fullScan: options.fullScan === true, autoCompact: options.autoCompact !== false, readOnly },
    report,
  );
  let refs: RefLog;
  try {
    refs = await RefLog.open(root, { staleLockMs, rewriteAboveBytes: refLogMaxBytes, readOnly, repair }, report);
  } catch (error) {
    await objects.close().catch(() => {});
    throw error;
  }
  const large = new LargeFiles(root);
  if (!readOnly) void large.sweepTemps(TEMP_SWEEP_AGE_MS).catch(() => {});
  return new DiskStore(root, { objects, refs, large, report, smallObjectMaxBytes, readOnly, staleLockMs });
}

interface Parts {
  readonly objects: ObjectLog;
  readonly refs: RefLog;
  readonly large: LargeFiles;
  readonly report: RecoveryReport;
  readonly smallObjectMaxBytes: number;
  readonly readOnly: boolean;
  readonly staleLockMs: number;
}

/** See {@link openDiskStore}. */
export class DiskStore implements Store {
  readonly capabilities: StoreCapabilities;
  static readonly #capabilities: StoreCapabilities = {
    writable: true,
    durable: true,
    atomicRefs: true,
    conditionalDelete: true,
    // In this process every change reaches a watcher; other processes' changes are read at least
    // every intervalMs and all delivered in order, except across a rewrite of the ref log.
    watch: 'poll',
    multipart: true,
  };

  /** The store's directory, resolved to an absolute path. */
  readonly directory: string;
  readonly #objects: ObjectLog;
  readonly #refs: RefLog;
  readonly #large: LargeFiles;
  readonly #report: RecoveryReport;
  readonly #smallMax: number;
  readonly #readOnly: boolean;
  #closed = false;
  readonly #streams: DiskStreams;
  /** Native event streams (`disk/native-streams.ts`), found by `eventStreams`. */
  readonly [nativeStreams]: NativeStreams;

  /** Use {@link openDiskStore}. */
  constructor(directory: string, parts: Parts) {
    this.directory = directory;
    this.#objects = parts.objects;
    this.#refs = parts.refs;
    this.#large = parts.large;
    this.#report = parts.report;
    this.#smallMax = parts.smallObjectMaxBytes;
    this.#readOnly = parts.readOnly;
    this.capabilities = parts.readOnly ? { ...DiskStore.#capabilities, writable: false } : DiskStore.#capabilities;
    this.#streams = DiskStreams.open(directory, { staleLockMs: parts.staleLockMs, report: parts.report }, (o) => this.#check(o));
    // A read-only store reads its native streams but never appends to them.
    this[nativeStreams] = parts.readOnly ? readOnlyNativeStreams(this.#streams) : this.#streams;
  }

  /**
   * What recovery found wrong since the store was opened: torn tails left
   * by crashed writers (never acknowledged, dropped), damage to records that
   * may have been acknowledged (`corrupt`), a damaged checkpoint. Empty
   * after a clean shutdown. While `refLogDamaged` is true, reads of refs a
   * damaged ref record may hide throw {@link CorruptStoreError} instead of
   * returning an older value; show it as a warning, and repair on purpose
   * with `openDiskStore(dir, { repair: true })`.
   *
   * @example
   * ```ts
   * const store = await openDiskStore(dir);
   * for (const d of store.recovery.dropped) console.warn(`dropped ${d.bytes} bytes of ${d.file} (${d.reason})`);
   * if (store.recovery.refLogDamaged) console.warn('refs/log is damaged: some refs cannot be read until repaired');
   * ```
   */
  get recovery(): Readonly<RecoveryReport> {
    return this.#report;
  }

  #check(options: AbortOptions | undefined): void {
    if (this.#closed) throw new ClosedError('the disk store is closed; open it again with openDiskStore');
    throwIfAborted(options?.signal);
  }

  #checkWrite(options: AbortOptions | undefined, operation: string): void {
    this.#check(options);
    if (this.#readOnly) throw new ReadOnlyError(`${operation} was refused: the disk store was opened with readOnly; open it without readOnly to write`);
  }

  async put(source: ObjectSource, options?: PutOptions): Promise<Hash> {
    this.#checkWrite(options, 'put');
    assertObjectSource(source);
    const algorithm = options?.algorithm;
    if (isBytes(source)) {
      const hash = hashOf(source, algorithm);
      if (source.length <= this.#smallMax || this.#objects.lookup(hash.toString()) !== undefined) {
        await raceAbort(this.#objects.put(hash, source), options?.signal);
        return hash;
      }
      if (await this.#large.has(hash)) return hash;
      return this.#putLarge([source], hash, options);
    }
    // A stream: buffer up to the small-object limit, then spill to a temp file and keep hashing.
    const hasher = createHasher(algorithm);
    const parts: Uint8Array[] = [];
    let buffered = 0;
    let temp: Awaited<ReturnType<LargeFiles['createTemp']>> | undefined;
    try {
      for await (const chunk of chunksOf(source, options?.signal)) {
        hasher.update(chunk);
        if (temp !== undefined) {
          await temp.write(chunk);
          continue;
        }
        // Copied: a producer may reuse its buffer once it has yielded it.
        parts.push(Uint8Array.prototype.slice.call(chunk));
        buffered += chunk.length;
        if (buffered > this.#smallMax) {
          temp = await this.#large.createTemp();
          for (const part of parts) await temp.write(part);
          parts.length = 0;
        }
      }
      throwIfAborted(options?.signal);
    } catch (error) {
      await temp?.discard();
      throw error;
    }
    const hash = hasher.digest();
    if (temp === undefined) {
      await raceAbort(this.#objects.put(hash, concatBytes(parts)), options?.signal);
      return hash;
    }
    await this.#large.commit(temp, hash);
    return hash;
  }

  async #putLarge(chunks: readonly Uint8Array[], hash: Hash, options: PutOptions | undefined): Promise<Hash> {
    const temp = await this.#large.createTemp();
    try {
      for (const chunk of chunks) {
        for (let offset = 0; offset < chunk.length; offset += READ_CHUNK) {
          throwIfAborted(options?.signal);
          await temp.write(chunk.subarray(offset, offset + READ_CHUNK));
        }
      }
    } catch (error) {
      await temp.discard();
      throw mapFsError(error, `writing large object ${hash.toString()}`, { key: hash.toString() });
    }
    await this.#large.commit(temp, hash);
    return hash;
  }

  async get(hashLike: HashLike, options?: AbortOptions): Promise<Uint8Array> {
    this.#check(options);
    return this.#get(toHash(hashLike));
  }

  async #get(hash: Hash): Promise<Uint8Array> {
    // The hot path (a small object this process knows) stays synchronous up to the return.
    const entry = this.#objects.lookup(hash.toString());
    if (entry !== undefined) {
      let bytes = this.#objects.read(entry, hash.toString());
      if (bytes instanceof Promise) bytes = await bytes;
      if (bytes !== undefined) return verified(hash, bytes);
    }
    return verified(hash, await this.#read(hash));
  }

  /** Unverified bytes of an object, from a segment or its own file; NotFoundError if absent. */
  async #read(hash: Hash): Promise<Uint8Array> {
    const key = hash.toString();
    const fromLog = await this.#readFromLog(key);
    if (fromLog !== undefined) return fromLog;
    try {
      return await this.#large.read(hash);
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
    }
    // Perhaps another process wrote it since we last looked.
    await this.#objects.refresh();
    const afterRefresh = await this.#readFromLog(key);
    if (afterRefresh !== undefined) return afterRefresh;
    throw new NotFoundError(`object ${key} not found`, { key });
  }

  async #readFromLog(key: string): Promise<Uint8Array | undefined> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const entry = this.#objects.lookup(key);
      if (entry === undefined) return undefined;
      const bytes = await this.#objects.read(entry, key);
      if (bytes !== undefined) return bytes;
      // The segment was compacted away by another process: find where the record went.
      await this.#objects.refresh();
    }
    return undefined;
  }

  async *getStream(hashLike: HashLike, options?: AbortOptions): AsyncIterable<Uint8Array> {
    this.#check(options);
    const hash = toHash(hashLike);
    const key = hash.toString();
    let small = await this.#readFromLog(key);
    if (small === undefined && !(await this.#large.has(hash))) {
      await this.#objects.refresh();
      small = await this.#readFromLog(key);
    }
    if (small !== undefined) {
      yield verified(hash, small);
      return;
    }
    const { handle, size } = await this.#large.openRead(hash);
    const signal = options?.signal;
    async function* chunks(): AsyncIterable<Uint8Array> {
      try {
        let position = 0;
        while (position < size) {
          throwIfAborted(signal);
          const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, size - position));
          const { bytesRead } = await handle.read(buf, 0, buf.length, position);
          if (bytesRead === 0) break;
          position += bytesRead;
          yield buf.subarray(0, bytesRead);
        }
      } finally {
        await handle.close().catch(() => {});
      }
    }
    yield* verifiedStream(hash, chunks());
  }

  async getRange(hashLike: HashLike, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
    this.#check(options);
    assertRange(offset, length);
    const hash = toHash(hashLike);
    // Small objects live whole in a segment record (at most 1 MiB): read it and cut.
    const small = await this.#readFromLog(hash.toString());
    if (small !== undefined) return sliceRange(small, offset, length);
    try {
      return await this.#large.readRange(hash, offset, length);
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
      await this.#objects.refresh();
      const afterRefresh = await this.#readFromLog(hash.toString());
      if (afterRefresh !== undefined) return sliceRange(afterRefresh, offset, length);
      throw error;
    }
  }

  async has(hashLike: HashLike, options?: AbortOptions): Promise<boolean> {
    this.#check(options);
    return this.#has(toHash(hashLike));
  }

  async #has(hash: Hash): Promise<boolean> {
    const key = hash.toString();
    if (this.#objects.lookup(key) !== undefined) return true;
    if (await this.#large.has(hash)) return true;
    await this.#objects.refresh();
    return this.#objects.lookup(key) !== undefined;
  }

  async delete(hashLike: HashLike, options?: AbortOptions): Promise<void> {
    this.#checkWrite(options, 'delete');
    const hash = toHash(hashLike);
    await this.#objects.delete(hash);
    await this.#large.remove(hash);
  }

  async *listObjects(options?: AbortOptions): AsyncIterable<Hash> {
    this.#check(options);
    await this.#objects.refresh();
    const seen = new Set<string>();
    // A snapshot first, so that writes during the listing cannot break iteration.
    const all = [...this.#objects.hashes(), ...(await this.#large.list())];
    for (const hash of all) {
      throwIfAborted(options?.signal);
      const key = hash.toString();
      if (seen.has(key)) continue;
      seen.add(key);
      yield hash;
    }
  }

  async putMany(items: readonly Uint8Array[], options?: PutOptions): Promise<Hash[]> {
    this.#checkWrite(options, 'putMany');
    if (!Array.isArray(items)) throw new InvalidArgumentError('putMany takes an array of Uint8Array');
    for (const item of items) {
      if (!isBytes(item)) throw new InvalidArgumentError(`putMany takes Uint8Array items, got ${item === null ? 'null' : typeof item}`);
    }
    const hashes = items.map((item) => hashOf(item, options?.algorithm));
    // Every small item is queued before the first sync, so the whole batch shares one fdatasync.
    const writes = items.map((item, i) =>
      item.length <= this.#smallMax ? this.#objects.put(hashes[i]!, item) : this.put(item, options).then(() => {}),
    );
    await raceAbort(Promise.all(writes), options?.signal);
    return hashes;
  }

  async getMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<Uint8Array[]> {
    this.#check(options);
    const parsed = hashes.map(toHash);
    const settled = await Promise.allSettled(parsed.map((hash) => this.#get(hash)));
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    return settled.map((r) => (r as PromiseFulfilledResult<Uint8Array>).value);
  }

  async hasMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<boolean[]> {
    this.#check(options);
    const parsed = hashes.map(toHash);
    return Promise.all(parsed.map((hash) => this.#has(hash)));
  }

  async getRef(name: string, options?: AbortOptions): Promise<RefValue | undefined> {
    this.#check(options);
    assertRefName(name);
    return this.#refs.get(name);
  }

  async setRef(name: string, hashLike: HashLike, options?: AbortOptions): Promise<RefValue> {
    this.#checkWrite(options, 'setRef');
    assertRefName(name);
    const hash = toHash(hashLike);
    return (await this.#refs.apply({ type: 'set', name, hash })) as RefValue;
  }

  async deleteRef(name: string, options?: AbortOptions): Promise<void> {
    this.#checkWrite(options, 'deleteRef');
    assertRefName(name);
    await this.#refs.apply({ type: 'delete', name });
  }

  async compareAndSwap(name: string, expected: HashLike | null, next: HashLike | null, options?: AbortOptions): Promise<CasResult> {
    this.#checkWrite(options, 'compareAndSwap');
    assertRefName(name);
    const expectedHash = expected === null ? null : toHash(expected);
    const nextHash = next === null ? null : toHash(next);
    return (await this.#refs.apply({ type: 'cas', name, expected: expectedHash, next: nextHash })) as CasResult;
  }

  async *listRefs(prefix = '', options?: AbortOptions): AsyncIterable<RefEntry> {
    this.#check(options);
    assertRefPrefix(prefix);
    for (const entry of await this.#refs.list(prefix)) {
      throwIfAborted(options?.signal);
      yield entry;
    }
  }

  async watchRef(name: string, listener: RefListener, options?: WatchOptions): Promise<void> {
    this.#check(options);
    assertRefName(name);
    if (typeof listener !== 'function') throw new InvalidArgumentError('watchRef needs a listener function');
    const interval = options?.intervalMs ?? 1000;
    if (typeof interval !== 'number' || !(interval > 0)) {
      throw new InvalidArgumentError(`option intervalMs must be a positive number of milliseconds, got ${String(interval)}`);
    }
    await this.#refs.watch(name, listener, interval, options?.signal);
  }

  async flush(options?: AbortOptions): Promise<void> {
    this.#check(options);
    await this.#objects.flush();
    await this.#refs.flush();
  }

  /**
   * Reclaims the space of deleted objects: rewrites the live records of all
   * sealed segments into one new segment and removes the old files. Reads
   * and writes go on meanwhile; one compaction runs at a time across every
   * process sharing the directory.
   *
   * @example
   * ```ts
   * for (const h of unreachable) await store.delete(h);
   * const { bytesBefore, bytesAfter } = await store.compact();
   * ```
   */
  async compact(options?: AbortOptions): Promise<CompactionResult> {
    this.#checkWrite(options, 'compact');
    return this.#objects.compact();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#streams.close();
      await this.#objects.close();
    } finally {
      await this.#refs.close();
    }
  }
}

/** Returns `bytes` if they hash to `hash`, else throws IntegrityError; SHA-256 compared as hex without building a Hash. */
function verified(hash: Hash, bytes: Uint8Array): Uint8Array {
  if (hash.algorithm === 'sha256' && createHash('sha256').update(bytes).digest('hex') === hash.hex) return bytes;
  verifyBytes(hash, bytes);
  return bytes;
}
