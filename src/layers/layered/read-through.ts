/**
 * Object reads of the layered store: the upper store first, then the lower
 * one, verifying what comes from below and keeping a copy of it above.
 *
 * @module
 */
import type { AbortOptions } from '../../abort.js';
import { NotFoundError } from '../../errors.js';
import type { Hash, HashAlgorithm } from '../../hash.js';
import { toHash, verifiedStream, verifyBytes } from '../../object-io.js';
import type { HashLike, Store } from '../../store.js';
import { COPY_BATCH, verifyStored } from './names.js';

/** Reads through `upper` to `lower`. */
export class ReadThrough {
  readonly #upper: Store;
  readonly #lower: Store;

  constructor(upper: Store, lower: Store) {
    this.#upper = upper;
    this.#lower = lower;
  }

  async get(hashLike: HashLike, options?: AbortOptions): Promise<Uint8Array> {
    const hash = toHash(hashLike);
    try {
      return await this.#upper.get(hash, options);
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
    }
    const bytes = await this.#lower.get(hash, options);
    verifyBytes(hash, bytes);
    await this.#copyUp([bytes], hash.algorithm);
    return bytes;
  }

  /** Keeps a verified copy from the lower store; a failure to keep it does not fail the read. */
  async #copyUp(items: Uint8Array[], algorithm: HashAlgorithm): Promise<void> {
    try {
      await this.#upper.putMany(items, { algorithm });
    } catch {
      // The bytes were verified and are returned; the next read simply fetches them again.
    }
  }

  async *getStream(hashLike: HashLike, options?: AbortOptions): AsyncIterable<Uint8Array> {
    const hash = toHash(hashLike);
    if (!(await this.#upper.has(hash, options))) {
      // Copied up as a stream (bounded memory), then served from the upper store.
      const stored = await this.#upper.put(verifiedStream(hash, this.#lower.getStream(hash, options)), {
        algorithm: hash.algorithm,
        signal: options?.signal,
      });
      verifyStored(hash, stored);
    }
    yield* this.#upper.getStream(hash, options);
  }

  /** Upper first, then lower. A range is not copied up: it cannot be verified on its own. */
  async getRange(hashLike: HashLike, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
    const hash = toHash(hashLike);
    try {
      return await this.#upper.getRange(hash, offset, length, options);
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
    }
    return this.#lower.getRange(hash, offset, length, options);
  }

  async has(hashLike: HashLike, options?: AbortOptions): Promise<boolean> {
    const hash = toHash(hashLike);
    return (await this.#upper.has(hash, options)) || this.#lower.has(hash, options);
  }

  async hasMany(hashLikes: readonly HashLike[], options?: AbortOptions): Promise<boolean[]> {
    const hashes = hashLikes.map(toHash);
    const upper = await this.#upper.hasMany(hashes, options);
    const missing = hashes.filter((_, i) => !upper[i]);
    if (missing.length === 0) return upper;
    const lower = await this.#lower.hasMany(missing, options);
    let next = 0;
    return upper.map((found) => found || lower[next++]!);
  }

  async getMany(hashLikes: readonly HashLike[], options?: AbortOptions): Promise<Uint8Array[]> {
    const hashes = hashLikes.map(toHash);
    const inUpper = await this.#upper.hasMany(hashes, options);
    const upperIndexes = hashes.map((_, i) => i).filter((i) => inUpper[i]);
    const lowerIndexes = hashes.map((_, i) => i).filter((i) => !inUpper[i]);
    const [fromUpper, fromLower] = await Promise.all([
      upperIndexes.length > 0 ? this.#upper.getMany(upperIndexes.map((i) => hashes[i]!), options) : [],
      lowerIndexes.length > 0 ? this.#lower.getMany(lowerIndexes.map((i) => hashes[i]!), options) : [],
    ]);
    const results = new Array<Uint8Array>(hashes.length);
    upperIndexes.forEach((index, position) => {
      results[index] = fromUpper[position]!;
    });
    const byAlgorithm = new Map<HashAlgorithm, Uint8Array[]>();
    lowerIndexes.forEach((index, position) => {
      const bytes = fromLower[position]!;
      verifyBytes(hashes[index]!, bytes);
      results[index] = bytes;
      const algorithm = hashes[index]!.algorithm;
      byAlgorithm.set(algorithm, [...(byAlgorithm.get(algorithm) ?? []), bytes]);
    });
    for (const [algorithm, items] of byAlgorithm) await this.#copyUp(items, algorithm);
    return results;
  }

  /**
   * Every object in either store once: the upper store's, then the lower
   * store's that the upper lacks (checked in batches, so memory stays flat).
   * Objects in `hidden` (the journal's own lists) are left out.
   */
  async *listObjects(hidden: ReadonlySet<string>, options?: AbortOptions): AsyncIterable<Hash> {
    for await (const hash of this.#upper.listObjects(options)) {
      if (!hidden.has(hash.toString())) yield hash;
    }
    const upper = this.#upper;
    const onlyBelow = async (batch: Hash[]): Promise<Hash[]> => {
      const present = await upper.hasMany(batch, options);
      return batch.filter((_, i) => !present[i]);
    };
    let batch: Hash[] = [];
    for await (const hash of this.#lower.listObjects(options)) {
      batch.push(hash);
      if (batch.length >= COPY_BATCH) {
        yield* await onlyBelow(batch);
        batch = [];
      }
    }
    if (batch.length > 0) yield* await onlyBelow(batch);
  }
}
