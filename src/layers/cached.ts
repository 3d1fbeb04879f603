/**
 * The cache layer: a byte-bounded LRU of verified object bytes in front of a
 * slower store.
 *
 * Policy lives here, eviction in `lru-cache` (`maxSize` + `sizeCalculation`).
 * Only objects are cached: they are immutable, so a cached copy can never be
 * stale. Refs are mutable and always pass through, so a ref read is never
 * served from a stale copy.
 *
 * `has` answers true for a cached object without asking the inner store: an
 * object deleted behind the cache (by another process) is still reported,
 * and still served, until it is evicted. Deletes through the cache evict.
 *
 * Concurrent misses for one hash share one inner read through an in-flight
 * map rather than lru-cache's `fetch`: with `fetch`, one caller's abort
 * would abort the shared read for every caller. Here each caller races its
 * own signal against the shared read, which always runs to completion.
 *
 * Reads hand out copies by default, so no caller can change cached bytes
 * under their hash. `shareBytes` trades that guarantee for speed: a hit
 * then costs a map lookup and no copy, and the caller promises not to
 * write; `shareBytes: 'checked'` re-hashes to catch a caller that breaks
 * the promise.
 *
 * @module
 */
import { LRUCache } from 'lru-cache';
import { raceAbort, throwIfAborted, type AbortOptions } from '../abort.js';
import type { Hash } from '../hash.js';
import { IntegrityError } from '../errors.js';
import { hashBytes, parseHash } from '../hash.js';
import { copyOf } from '../internal/byte-copy.js';
import { assertRange, sliceRange, toHash, verifyBytes } from '../object-io.js';
import type { HashLike, Store } from '../store.js';
import { integerOption, invalidOption, storeOption } from '../internal/options.js';
import { SingleFlight } from '../internal/single-flight.js';
import { ForwardingStore } from './forwarding.js';
import { nativeStreams, nativeStreamsOf, type NativeStreams } from '../data/streams/native.js';

/** Options of {@link cached}. */
export interface CachedOptions {
  /**
   * Most bytes of object data the cache holds; least recently used objects
   * are evicted beyond it.
   * @default 67108864 (64 MiB)
   */
  maxBytes?: number | undefined;
  /**
   * Objects larger than this are served but not cached, so that one large
   * read cannot evict everything else.
   * @default maxBytes / 8
   */
  maxObjectBytes?: number | undefined;
  /**
   * What reads of cached objects return:
   *
   * - `false`: a copy per read, so a caller may change what it got without
   *   touching the cache.
   * - `true`: the cached bytes themselves, shared by every reader: no copy,
   *   so a hit costs little more than a `Map` lookup. The caller **must not
   *   change them**: a change would be served to every later reader of
   *   that object, as bytes that no longer match their hash. For callers
   *   that only read (parse, hash, send) what they get.
   * - `'checked'`: shared as with `true`, and every hit, eviction and
   *   delete re-hashes the bytes; bytes a caller changed are dropped from
   *   the cache and the read (on a hit) or the next read (after an
   *   eviction or delete) rejects with {@link IntegrityError} naming the
   *   object. A debugging and test mode: re-hashing costs what a copy saves.
   *
   * Reads that miss the cache return the bytes that are now cached, shared
   * in the same way; objects the cache does not keep are the caller's own.
   * @default false
   */
  shareBytes?: boolean | 'checked' | undefined;
}

/** Counters of a {@link CachedStore}, for tuning and benchmarks. */
export interface CacheStats {
  /** Reads served from the cache. */
  readonly hits: number;
  /** Reads that went to the inner store. */
  readonly misses: number;
  /** Reads that joined another caller's in-flight inner read (not counted in misses). */
  readonly coalesced: number;
  /** Objects evicted to stay under `maxBytes`. */
  readonly evictions: number;
  /** Objects in the cache now. */
  readonly entries: number;
  /** Bytes in the cache now. */
  readonly bytes: number;
  /** hits / (hits + misses + coalesced), 0 before any read. */
  readonly hitRate: number;
}

/**
 * Wraps `store` with a byte-bounded LRU read cache. Objects are cached only
 * after their bytes are verified against their hash; concurrent misses for
 * one hash make one inner read; refs are not cached. Closing the cache
 * closes `store`.
 *
 * @example
 * ```ts
 * const store = cached(s3Store({ bucket: 'b' }), { maxBytes: 256 * 2 ** 20 });
 * await store.get(hash); // from S3
 * await store.get(hash); // from memory
 * store.stats().hitRate; // 0.5
 * ```
 */
export function cached(store: Store, options: CachedOptions = {}): CachedStore {
  return new CachedStore(store, options);
}

/** See {@link cached}. */
export class CachedStore extends ForwardingStore {
  /** The inner store's native event streams, passed on as they are (see `data/streams/native.ts`). */
  readonly [nativeStreams]: NativeStreams | undefined;
  readonly #lru: LRUCache<string, Uint8Array>;
  readonly #maxObjectBytes: number;
  readonly #loads = new SingleFlight<string, Uint8Array>();
  /** Bumped by every delete, so a read that started before it does not re-cache a deleted object. */
  #epoch = 0;
  readonly #share: boolean | 'checked';
  /** A change to shared bytes found on eviction or delete ('checked' mode), thrown by the next read. */
  #detected: IntegrityError | undefined;
  #hits = 0;
  #misses = 0;
  #coalesced = 0;
  #evictions = 0;

  constructor(inner: Store, options: CachedOptions = {}) {
    storeOption('cached', 'store', inner);
    const maxBytes = integerOption('cached', 'maxBytes', options.maxBytes, 64 * 2 ** 20, 1);
    const maxObjectBytes = integerOption('cached', 'maxObjectBytes', options.maxObjectBytes, Math.max(1, Math.floor(maxBytes / 8)), 0, maxBytes);
    const share = options.shareBytes ?? false;
    if (share !== true && share !== false && share !== 'checked') throw invalidOption('cached', 'shareBytes', "true, false or 'checked'", share);
    super(inner, { name: 'cached store' });
    this[nativeStreams] = nativeStreamsOf(inner);
    this.#maxObjectBytes = maxObjectBytes;
    this.#share = share;
    this.#lru = new LRUCache<string, Uint8Array>({
      maxSize: maxBytes,
      // The empty object still takes an entry; lru-cache needs a positive size.
      sizeCalculation: (bytes) => Math.max(1, bytes.length),
      dispose: (value, key, reason) => {
        if (reason === 'evict') this.#evictions++;
        // 'set' is a replacement by the same verified bytes' key; 'delete' includes our own drop of a changed entry, checked already.
        if (this.#share === 'checked' && (reason === 'evict' || reason === 'delete') && !this.closed) this.#detected ??= changedBy(key, value);
      },
    });
  }

  /** Hit and miss counters and the current size. */
  stats(): CacheStats {
    const reads = this.#hits + this.#misses + this.#coalesced;
    return {
      hits: this.#hits,
      misses: this.#misses,
      coalesced: this.#coalesced,
      evictions: this.#evictions,
      entries: this.#lru.size,
      bytes: this.#lru.calculatedSize,
      hitRate: reads === 0 ? 0 : this.#hits / reads,
    };
  }

  #check(options: AbortOptions | undefined): void {
    this.assertOpen();
    throwIfAborted(options?.signal);
    if (this.#detected !== undefined) {
      const error = this.#detected;
      this.#detected = undefined;
      throw error;
    }
  }

  /** What a read of a cached object returns: a copy, or the shared bytes (checked first in 'checked' mode). */
  #handOut(key: string, cached: Uint8Array): Uint8Array {
    if (this.#share === false) return copyOf(cached);
    if (this.#share === 'checked') {
      const changed = changedBy(key, cached);
      if (changed !== undefined) {
        // Dropped without a second report from dispose.
        this.#lru.delete(key);
        this.#detected = undefined;
        throw changed;
      }
    }
    return cached;
  }

  #remember(key: string, hash: Hash, bytes: Uint8Array, epoch: number): void {
    verifyBytes(hash, bytes);
    if (bytes.length <= this.#maxObjectBytes && epoch === this.#epoch && !this.closed) this.#lru.set(key, bytes);
  }

  /** One shared inner read per hash; the read ignores callers' signals so that one abort cannot fail the others. */
  #load(hash: Hash, key: string): Promise<Uint8Array> {
    const epoch = this.#epoch;
    const { flight, joined } = this.#loads.run(key, () =>
      this.inner.get(hash).then((bytes) => {
        this.#remember(key, hash, bytes, epoch);
        return bytes;
      }),
    );
    if (joined) this.#coalesced++;
    else this.#misses++;
    return flight.promise;
  }

  /** The cached bytes for `key` as handed to a caller (counted as a hit), or `undefined` on a miss. */
  #hit(key: string): Uint8Array | undefined {
    const hit = this.#lru.get(key);
    if (hit === undefined) return undefined;
    this.#hits++;
    return this.#handOut(key, hit);
  }

  override async get(hashLike: HashLike, options?: AbortOptions): Promise<Uint8Array> {
    this.#check(options);
    const hash = toHash(hashLike);
    const key = hash.toString();
    const hit = this.#hit(key);
    if (hit !== undefined) return hit;
    const bytes = await raceAbort(this.#load(hash, key), options?.signal);
    return this.#share === false ? copyOf(bytes) : bytes;
  }

  override async *getStream(hashLike: HashLike, options?: AbortOptions): AsyncIterable<Uint8Array> {
    this.#check(options);
    const hash = toHash(hashLike);
    const key = hash.toString();
    const hit = this.#hit(key);
    if (hit !== undefined) {
      yield hit;
      return;
    }
    // Streams are for objects too large to hold: pass through uncached (the inner store verifies).
    yield* this.inner.getStream(hash, options);
  }

  /** A range of a cached object is cut from the cache; a miss reads only the range from the inner store, uncached. */
  override async getRange(hashLike: HashLike, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
    this.#check(options);
    assertRange(offset, length);
    const hash = toHash(hashLike);
    const key = hash.toString();
    const hit = this.#lru.get(key);
    if (hit !== undefined) {
      this.#hits++;
      if (this.#share === false) return sliceRange(hit, offset, length);
      const whole = this.#handOut(key, hit);
      return whole.subarray(Math.min(offset, whole.length), Math.min(offset + length, whole.length));
    }
    return this.inner.getRange(hash, offset, length, options);
  }

  override async has(hashLike: HashLike, options?: AbortOptions): Promise<boolean> {
    this.#check(options);
    const hash = toHash(hashLike);
    if (this.#lru.has(hash.toString())) return true;
    return this.inner.has(hash, options);
  }

  override async getMany(hashLikes: readonly HashLike[], options?: AbortOptions): Promise<Uint8Array[]> {
    this.#check(options);
    const hashes = hashLikes.map(toHash);
    const results = new Array<Uint8Array | Promise<Uint8Array>>(hashes.length);
    const fetch = new Map<string, { hash: Hash; indexes: number[] }>();
    hashes.forEach((hash, index) => {
      const key = hash.toString();
      const hit = this.#lru.get(key);
      if (hit !== undefined) {
        this.#hits++;
        results[index] = this.#share === 'checked' ? this.#handOut(key, hit) : hit;
        return;
      }
      const shared = this.#loads.join(key);
      if (shared !== undefined) {
        this.#coalesced++;
        results[index] = shared.promise;
        return;
      }
      const entry = fetch.get(key);
      if (entry !== undefined) entry.indexes.push(index);
      else fetch.set(key, { hash, indexes: [index] });
    });
    if (fetch.size > 0) {
      // The misses go to the inner store's batch path in one call.
      const epoch = this.#epoch;
      const entries = [...fetch.entries()];
      this.#misses += entries.length;
      const batch = this.inner.getMany(
        entries.map(([, { hash }]) => hash),
        options,
      );
      entries.forEach(([key, { hash, indexes }], position) => {
        // Concurrent single reads of these keys join this batch.
        const { promise } = this.#loads.start(key, () =>
          batch.then((all) => {
            const bytes = all[position]!;
            this.#remember(key, hash, bytes, epoch);
            return bytes;
          }),
        );
        for (const index of indexes) results[index] = promise;
      });
    }
    const settled = await raceAbort(Promise.all(results), options?.signal);
    return this.#share === false ? settled.map(copyOf) : settled;
  }

  override async hasMany(hashLikes: readonly HashLike[], options?: AbortOptions): Promise<boolean[]> {
    this.#check(options);
    const hashes = hashLikes.map(toHash);
    const answers = hashes.map((hash) => this.#lru.has(hash.toString()));
    const unknown = hashes.filter((_, i) => !answers[i]);
    if (unknown.length === 0) return answers;
    const inner = await this.inner.hasMany(unknown, options);
    let next = 0;
    return answers.map((known) => known || inner[next++]!);
  }

  override async delete(hashLike: HashLike, options?: AbortOptions): Promise<void> {
    this.#check(options);
    const hash = toHash(hashLike);
    const key = hash.toString();
    this.#epoch++;
    this.#lru.delete(key);
    this.#loads.forget(key);
    await this.inner.delete(hash, options);
  }

  override async close(): Promise<void> {
    if (!this.closed) {
      this.#loads.clear();
      // Marked closed before clearing, so 'checked' mode does not re-hash everything on the way out.
      const closing = super.close();
      this.#lru.clear();
      await closing;
      return;
    }
    await super.close();
  }
}

/** The error for cached bytes that a reader changed, or `undefined` if they still match their hash (the key). */
function changedBy(key: string, bytes: Uint8Array): IntegrityError | undefined {
  if (hashBytes(bytes, parseHash(key).algorithm).toString() === key) return undefined;
  return new IntegrityError(
    `object ${key}: bytes shared by cached({ shareBytes }) were changed by a reader; callers must not modify bytes they get from a cache with shareBytes on`,
    { key },
  );
}
