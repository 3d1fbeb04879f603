/**
 * The packed layer: small objects reach the inner store in pack objects,
 * with an index, ranged reads and per-blob compression, instead of one
 * request each. See docs/packs.md for the format and `format.ts` for its
 * code; `writer.ts` for how a pack is published crash-safely; `catalog.ts`
 * for how indexes are found and kept; `repack.ts` for deletion and repacking.
 *
 * @module
 */
import { raceAbort, throwIfAborted, type AbortOptions } from '../../abort.js';
import { ClosedError, CorruptStoreError, IntegrityError, InvalidArgumentError, InvalidRefNameError, isCairnError } from '../../errors.js';
import { DEFAULT_ALGORITHM, hashBytes, type Hash, type HashAlgorithm } from '../../hash.js';
import { assertObjectSource, assertRange, chunksOf, isBytes, mapConcurrent, sliceRange, toHash } from '../../object-io.js';
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
} from '../../store.js';
import { storeOption } from '../options.js';
import { Catalog, type Location } from './catalog.js';
import { blobCodec, type BlobCodec, type CodecOptions } from './codec.js';
import { INDEX_ENTRY_BYTES, looksLikePackRecord, MAX_PACK_BYTES, PACK_HEADER_BYTES, RESERVED_REF_PREFIX, type Removal } from './format.js';
import { GroupCommit } from './group-commit.js';
import type { IndexCache } from './index-cache.js';
import { SealedLargeObjects } from './large.js';
import { SealedRefs, type RefSide } from './sealed-refs.js';
import { SpanReads } from './span-reads.js';
import { encryptingSealer, plainSealer } from './sealing.js';
import { missingError, readBlob, readPacked } from './reader.js';
import { resolvePackedOptions, type PackedOptions } from './options.js';
import { repack, type RepackOptions, type RepackReport } from './repack.js';
import { commitPack, commitRemovals, type PendingBlob } from './writer.js';

export type { PackedOptions } from './options.js';

/**
 * Wraps `inner` so that objects up to `maxObjectBytes` are written into
 * pack objects of about `packBytes`, each with an index published by a
 * create-only ref under `.cairn/packs/`. `put` resolves once the pack and
 * its index are durable in `inner`; concurrent puts share a pack. `get`
 * of a packed object is one ranged read, verified against the hash. Objects
 * written loose before (or too large for a pack) still read through to
 * `inner`. Refs pass through, except names under `.cairn/`, which are
 * reserved. Closing the layer closes `inner`.
 *
 * @example
 * ```ts
 * const store = packed(s3Store({ bucket: 'b' }), { indexCache: await openDiskStore('~/.cache/cairn/idx') });
 * const hashes = await store.putMany(smallFiles); // a few requests, not one per file
 * await store.get(hashes[0]);                      // one ranged GET
 * ```
 */
export function packed(inner: Store, options: PackedOptions = {}): PackedStore {
  return new PackedStore(inner, options);
}

/** See {@link packed}. */
export class PackedStore implements Store {
  readonly capabilities: StoreCapabilities;
  readonly #inner: Store;
  readonly #catalog: Catalog;
  readonly #codec: BlobCodec;
  readonly #maxObjectBytes: number;
  readonly #packBytes: number;
  readonly #packs: GroupCommit<PendingBlob>;
  readonly #removals: GroupCommit<Removal>;
  /** Blobs queued or being uploaded, by hash: a second put of one joins the first. */
  readonly #pending = new Map<string, Promise<void>>();
  readonly #indexCache: IndexCache | undefined;
  readonly #maxCatalogAgeMs: number;
  /** Where refs go: the inner store, or encrypted bodies over it. */
  readonly #refs: RefSide;
  /** Encrypted large objects; undefined in a plain store, whose large objects are loose in `inner`. */
  readonly #large: SealedLargeObjects | undefined;
  /** Packed blob reads, neighbours merged into one ranged read. */
  readonly #spans: SpanReads;
  #loaded: Promise<void> | undefined;
  /** The remote checked to be on this store's side (plain or encrypted) before the first ref is read or written. */
  #sideChecked: Promise<void> | undefined;
  #closed = false;

  constructor(inner: Store, options: PackedOptions = {}) {
    storeOption('packed', 'inner', inner);
    const { maxObjectBytes, packBytes, maxIndexBytes, lingerMs, maxInFlight, maxCatalogAgeMs } = resolvePackedOptions(options);
    this.#maxObjectBytes = maxObjectBytes;
    this.#packBytes = packBytes;
    this.#maxCatalogAgeMs = maxCatalogAgeMs;
    this.#inner = inner;
    this.#indexCache = options.indexCache;
    const keys = options.encryption?.keys();
    const sealer = keys === undefined ? plainSealer : encryptingSealer(keys);
    this.#codec = blobCodec(options, sealer);
    this.#catalog = new Catalog(inner, { maxObjectBytes: this.#maxObjectBytes, maxIndexBytes, cipher: sealer.cipher }, options.indexCache, sealer);
    this.#refs = keys === undefined ? inner : new SealedRefs(inner, keys.ref);
    this.#spans = new SpanReads(inner, { maxGapBytes: 64 * 1024, maxSpanBytes: Math.max(8 * 2 ** 20, this.#maxObjectBytes + INDEX_ENTRY_BYTES) });
    this.#large = keys === undefined ? undefined : new SealedLargeObjects(inner, this.#catalog, keys);
    const maxItems = Math.floor((maxIndexBytes - 52) / INDEX_ENTRY_BYTES);
    this.#packs = new GroupCommit((blobs) => commitPack(inner, this.#catalog, blobs).then(() => undefined), { targetSize: packBytes, maxItems, lingerMs, maxInFlight });
    this.#removals = new GroupCommit((removals) => commitRemovals(inner, this.#catalog, removals), {
      targetSize: Number.MAX_SAFE_INTEGER,
      maxItems: Math.floor((maxIndexBytes - 12) / 65),
      lingerMs,
      maxInFlight: 1,
    });
    this.capabilities = { ...inner.capabilities };
  }

  #open(signal: AbortSignal | undefined): void {
    if (this.#closed) throw new ClosedError('the packed store is closed');
    throwIfAborted(signal);
  }

  /** Loads the catalog on first use (one listing plus the indexes not cached locally). */
  async #ready(signal: AbortSignal | undefined): Promise<void> {
    this.#loaded ??= Promise.all([this.#catalog.refresh(), this.#codec.ready()]).then(() => undefined);
    this.#loaded.catch(() => {
      this.#loaded = undefined;
    });
    await raceAbort(this.#loaded, signal);
    if (Date.now() - this.#catalog.refreshedAt > this.#maxCatalogAgeMs) await this.#catalog.refresh(signal);
  }

  /**
   * Loads the indexes, removal records and retirements published since the
   * last refresh (by other writers, or by a gc). Costs one listing plus one
   * read per record not seen yet.
   *
   * @example
   * ```ts
   * await store.refresh(); // now sees what another process pushed
   * ```
   */
  async refresh(options?: AbortOptions): Promise<void> {
    this.#open(options?.signal);
    const first = this.#loaded === undefined;
    await this.#ready(options?.signal);
    if (!first) await this.#catalog.refresh(options?.signal);
  }

  /** Damaged pack records seen so far (garbage or tampered indexes), as typed errors. */
  damaged(): (CorruptStoreError | IntegrityError)[] {
    return this.#catalog.damaged();
  }

  // --------------------------------------------------------------- objects

  async put(source: ObjectSource, options?: PutOptions): Promise<Hash> {
    const signal = options?.signal;
    this.#open(signal);
    assertObjectSource(source);
    const algorithm = options?.algorithm ?? DEFAULT_ALGORITHM;
    if (isBytes(source)) {
      if (source.length > this.#maxObjectBytes) return this.#putLarge(source, options);
      return this.#putSmall(source, algorithm, signal);
    }
    const iterator = chunksOf(source, signal)[Symbol.asyncIterator]();
    const head: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const step = await iterator.next();
      if (step.done) return this.#putSmall(Buffer.concat(head, size), algorithm, signal);
      head.push(step.value);
      size += step.value.length;
      if (size > this.#maxObjectBytes) break;
    }
    async function* rest(): AsyncIterable<Uint8Array> {
      yield* head.splice(0);
      for (;;) {
        const step = await iterator.next();
        if (step.done) return;
        yield step.value;
      }
    }
    return this.#putLarge(rest(), options);
  }

  /** An object too large for a pack: loose in the inner store, or (encrypted) in segments. */
  async #putLarge(source: ObjectSource, options: PutOptions | undefined): Promise<Hash> {
    if (this.#large === undefined) return this.#inner.put(source, options);
    await this.#ready(options?.signal);
    return this.#large.put(source, options);
  }

  async #putSmall(bytes: Uint8Array, algorithm: HashAlgorithm, signal: AbortSignal | undefined): Promise<Hash> {
    await this.#ready(signal);
    const hash = hashBytes(bytes, algorithm);
    const done = this.#enqueue(hash, bytes);
    if (done !== undefined) await raceAbort(done, signal);
    return hash;
  }

  /** Queues a blob for the next pack; undefined when it is already packed (no request at all). */
  #enqueue(hash: Hash, bytes: Uint8Array): Promise<void> | undefined {
    const key = hash.toString();
    if (this.#catalog.has(hash)) return undefined;
    const pending = this.#pending.get(key);
    if (pending !== undefined) return pending;
    const encoded = this.#codec.encode(bytes, hash);
    // Copied when stored as is (Buffer#slice would share memory): the caller may reuse its buffer before the pack is sealed.
    const blob: PendingBlob = { hash, rawLength: bytes.length, encoded: encoded.bytes === bytes ? { ...encoded, bytes: Uint8Array.prototype.slice.call(bytes) } : encoded };
    const done = this.#packs.add(blob, encoded.bytes.length + INDEX_ENTRY_BYTES).finally(() => this.#pending.delete(key));
    this.#pending.set(key, done);
    return done;
  }

  async putMany(items: readonly Uint8Array[], options?: PutOptions): Promise<Hash[]> {
    const signal = options?.signal;
    this.#open(signal);
    if (!Array.isArray(items)) throw new InvalidArgumentError('putMany takes an array of Uint8Array');
    items.forEach((item) => assertObjectSource(item));
    await this.#ready(signal);
    const algorithm = options?.algorithm ?? DEFAULT_ALGORITHM;
    const hashes = new Array<Hash>(items.length);
    const waits: Promise<unknown>[] = [];
    const large: number[] = [];
    items.forEach((item, i) => {
      if (!isBytes(item) || item.length > this.#maxObjectBytes) {
        large.push(i);
        return;
      }
      hashes[i] = hashBytes(item, algorithm);
      const done = this.#enqueue(hashes[i], item);
      if (done !== undefined) waits.push(done);
    });
    if (large.length > 0) {
      waits.push(
        (this.#large ?? this.#inner).putMany(large.map((i) => items[i]!), options).then((got) => got.forEach((h, j) => (hashes[large[j]!] = h))),
      );
    }
    await raceAbort(Promise.all(waits), signal);
    return hashes;
  }

  async get(hashLike: HashLike, options?: AbortOptions): Promise<Uint8Array> {
    const signal = options?.signal;
    this.#open(signal);
    const hash = toHash(hashLike);
    await this.#ready(signal);
    const packedBytes = await this.#getPacked(hash, signal);
    if (packedBytes !== undefined) return packedBytes;
    if (this.#large !== undefined) return this.#sealedLarge(hash, () => this.#large!.get(hash, options));
    try {
      return await this.#inner.get(hash, options);
    } catch (error) {
      if (!isCairnError(error, 'ERR_NOT_FOUND')) throw error;
      // Perhaps another writer packed it since we last looked.
      await this.#catalog.refresh(signal);
      const late = await this.#getPacked(hash, signal);
      if (late !== undefined) return late;
      throw this.#missing(hash, error);
    }
  }

  /** A large object of an encrypted store; not found is reported as the packed store reports it. */
  async #sealedLarge<T>(hash: Hash, read: () => Promise<T>): Promise<T> {
    try {
      return await read();
    } catch (error) {
      throw isCairnError(error, 'ERR_NOT_FOUND') ? this.#missing(hash, error) : error;
    }
  }

  #missing(hash: Hash, cause: unknown): Error {
    return missingError(this.#catalog, hash, cause);
  }

  #getPacked(hash: Hash, signal: AbortSignal | undefined): Promise<Uint8Array | undefined> {
    return readPacked(this.#spans, this.#catalog, this.#codec, hash, signal);
  }

  #readBlob(location: Location, signal: AbortSignal | undefined): Promise<Uint8Array> {
    return readBlob(this.#spans, this.#codec, location, signal);
  }

  async *getStream(hashLike: HashLike, options?: AbortOptions): AsyncIterable<Uint8Array> {
    const signal = options?.signal;
    this.#open(signal);
    const hash = toHash(hashLike);
    await this.#ready(signal);
    const packedBytes = await this.#getPacked(hash, signal);
    if (packedBytes !== undefined) {
      yield packedBytes;
      return;
    }
    if (this.#large === undefined) {
      yield* this.#inner.getStream(hash, options);
      return;
    }
    const large = this.#large.getStream(hash, options)[Symbol.asyncIterator]();
    // The first step finds the record: a missing object is reported before any byte, like a packed one.
    const first = await this.#sealedLarge(hash, () => large.next());
    if (first.done === true) return;
    yield first.value;
    for (;;) {
      const step = await large.next();
      if (step.done === true) return;
      yield step.value;
    }
  }

  async getRange(hashLike: HashLike, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
    const signal = options?.signal;
    this.#open(signal);
    assertRange(offset, length);
    const hash = toHash(hashLike);
    await this.#ready(signal);
    // A packed blob is at most maxObjectBytes: reading and verifying it whole is bounded, and lets the range be checked.
    const packedBytes = await this.#getPacked(hash, signal);
    if (packedBytes !== undefined) return sliceRange(packedBytes, offset, length);
    if (this.#large !== undefined) return this.#sealedLarge(hash, () => this.#large!.getRange(hash, offset, length, options));
    try {
      return await this.#inner.getRange(hash, offset, length, options);
    } catch (error) {
      if (!isCairnError(error, 'ERR_NOT_FOUND')) throw error;
      await this.#catalog.refresh(signal);
      const late = await this.#getPacked(hash, signal);
      if (late !== undefined) return sliceRange(late, offset, length);
      throw this.#missing(hash, error);
    }
  }

  async has(hashLike: HashLike, options?: AbortOptions): Promise<boolean> {
    this.#open(options?.signal);
    const hash = toHash(hashLike);
    await this.#ready(options?.signal);
    // Encrypted: nothing of the user's is loose in the inner store; the catalog knows every object.
    return this.#catalog.has(hash) || (this.#large === undefined && this.#inner.has(hash, options));
  }

  async hasMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<boolean[]> {
    this.#open(options?.signal);
    const parsed = hashes.map(toHash);
    await this.#ready(options?.signal);
    const out = parsed.map((h) => this.#catalog.has(h));
    const unknown = parsed.flatMap((h, i) => (out[i] ? [] : [i]));
    if (unknown.length > 0 && this.#large === undefined) {
      const loose = await this.#inner.hasMany(unknown.map((i) => parsed[i]!), options);
      unknown.forEach((i, j) => (out[i] = loose[j]!));
    }
    return out;
  }

  async getMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<Uint8Array[]> {
    this.#open(options?.signal);
    const parsed = hashes.map(toHash);
    // Each packed read is its own ranged request; 32 in flight keeps a large batch from opening thousands at once.
    return mapConcurrent(parsed, 32, (h) => this.get(h, options));
  }

  /**
   * Deletes an object: its packed copies are withdrawn by a removal record
   * (their bytes go at the next {@link PackedStore.repack}), a loose copy is
   * deleted from the inner store. Pack objects and records of this layer are
   * never deleted through here, even when asked by hash (a collector that
   * lists the inner store sees other writers' packs before their index).
   */
  async delete(hashLike: HashLike, options?: AbortOptions): Promise<void> {
    const signal = options?.signal;
    this.#open(signal);
    const hash = toHash(hashLike);
    await this.#ready(signal);
    const removals = this.#catalog.locate(hash).map((l) => this.#removals.add({ pack: l.pack, hash }, 1));
    for (const record of this.#catalog.locateLarge(hash)) removals.push(this.#removals.add({ pack: record.object, hash }, 1));
    const loose = this.#large === undefined ? this.#deleteLoose(hash, signal) : Promise.resolve();
    await raceAbort(Promise.all([...removals, loose]), signal);
  }

  async #deleteLoose(hash: Hash, signal: AbortSignal | undefined): Promise<void> {
    if (this.#catalog.owns(hash)) return;
    let head: Uint8Array;
    try {
      head = await this.#inner.getRange(hash, 0, PACK_HEADER_BYTES, { signal });
    } catch (error) {
      if (isCairnError(error, 'ERR_NOT_FOUND')) return;
      throw error;
    }
    if (looksLikePackRecord(head)) return;
    await this.#inner.delete(hash, { signal });
  }

  async *listObjects(options?: AbortOptions): AsyncIterable<Hash> {
    const signal = options?.signal;
    this.#open(signal);
    await this.#ready(signal);
    await this.#catalog.refresh(signal);
    const yielded = new Set<string>();
    for (const hash of this.#catalog.liveHashes()) {
      yielded.add(hash.toString());
      yield hash;
    }
    if (this.#large !== undefined) return;
    for await (const hash of this.#inner.listObjects(options)) {
      if (this.#catalog.owns(hash) || yielded.has(hash.toString())) continue;
      yield hash;
    }
  }

  /**
   * Rewrites packs whose live share is under a threshold and collects packs
   * retired more than a grace period ago. See {@link repack}.
   *
   * @example
   * ```ts
   * const report = await store.repack({ threshold: 0.5, graceMs: 3_600_000 });
   * ```
   */
  async repack(options: RepackOptions = {}): Promise<RepackReport> {
    this.#open(options.signal);
    await this.#ready(options.signal);
    await this.flush(options);
    // Encrypted: loose inner objects are this layer's own (segments, ref bodies, keys), never a user's object to pack.
    if (this.#large !== undefined) options = { ...options, loose: false };
    return repack(this.#inner, this.#catalog, {
      read: (location) => this.#readBlob(location, options.signal),
      write: async (blobs) => {
        if (blobs.length > 0) await commitPack(this.#inner, this.#catalog, blobs.map(({ hash, bytes }) => ({ hash, rawLength: bytes.length, encoded: this.#codec.encode(bytes, hash) })));
      },
      maxPackBytes: this.#packBytes,
      maxObjectBytes: this.#maxObjectBytes,
    }, options);
  }

  // ------------------------------------------------------------------ refs

  /**
   * Before the first ref call: a plain store over an encrypted remote would
   * read a ref body's address as the ref's value, and an encrypted one over
   * a plain remote would fail on every ref; both are refused first.
   */
  async #refsReady(signal: AbortSignal | undefined): Promise<void> {
    this.#sideChecked ??= this.#catalog.verifyEncryption(signal);
    this.#sideChecked.catch(() => {
      this.#sideChecked = undefined;
    });
    await raceAbort(this.#sideChecked, signal);
  }

  #userRef(name: string, operation: string): void {
    if (typeof name === 'string' && name.startsWith(RESERVED_REF_PREFIX)) {
      throw new InvalidRefNameError(`${operation} refused: ref names under "${RESERVED_REF_PREFIX}" are reserved for Cairn's own records; choose another name`, { ref: name.slice(0, 200) });
    }
  }

  async getRef(name: string, options?: AbortOptions): Promise<RefValue | undefined> {
    this.#open(options?.signal);
    await this.#refsReady(options?.signal);
    return this.#refs.getRef(name, options);
  }

  async setRef(name: string, hash: HashLike, options?: AbortOptions): Promise<RefValue> {
    this.#open(options?.signal);
    this.#userRef(name, 'setRef');
    await this.#refsReady(options?.signal);
    return this.#refs.setRef(name, hash, options);
  }

  async deleteRef(name: string, options?: AbortOptions): Promise<void> {
    this.#open(options?.signal);
    this.#userRef(name, 'deleteRef');
    await this.#refsReady(options?.signal);
    return this.#refs.deleteRef(name, options);
  }

  async compareAndSwap(name: string, expected: HashLike | null, next: HashLike | null, options?: AbortOptions): Promise<CasResult> {
    this.#open(options?.signal);
    this.#userRef(name, 'compareAndSwap');
    await this.#refsReady(options?.signal);
    return this.#refs.compareAndSwap(name, expected, next, options);
  }

  async *listRefs(prefix?: string, options?: AbortOptions): AsyncIterable<RefEntry> {
    this.#open(options?.signal);
    await this.#refsReady(options?.signal);
    for await (const ref of this.#refs.listRefs(prefix, options)) {
      if (!ref.name.startsWith(RESERVED_REF_PREFIX)) yield ref;
    }
  }

  async watchRef(name: string, listener: RefListener, options?: WatchOptions): Promise<void> {
    this.#open(options?.signal);
    await this.#refsReady(options?.signal);
    return this.#refs.watchRef(name, listener, options);
  }

  // ------------------------------------------------------------- lifecycle

  async flush(options?: AbortOptions): Promise<void> {
    this.#open(options?.signal);
    await raceAbort(Promise.all([this.#packs.drain(), this.#removals.drain()]), options?.signal);
    await this.#inner.flush(options);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await Promise.all([this.#packs.drain(), this.#removals.drain()]);
    this.#closed = true;
    await this.#inner.close();
    await this.#indexCache?.close();
  }
}
