/**
 * Large objects of an encrypted store: the objects too large for a pack.
 *
 * A plain store writes them to the inner store as they are (loose, under
 * their own address). An encrypted store cannot: the address is the hash of
 * the plaintext, which the bucket must not learn. So each is written as one
 * inner object of independently authenticated segments
 * (src/crypto/segments.ts), streamed in bounded memory, under the hash of
 * those ciphertext bytes; then a sealed **large-object record** (format.ts:
 * address, inner object, length, segment size, key salt) is stored and
 * published by a create-only ref `.cairn/packs/large/<record hex>`, in that
 * order, so a crash leaves either nothing visible or a complete object. The
 * catalog loads these records like indexes; a delete withdraws one with a
 * removal record naming (inner object, address), as it does a packed blob.
 *
 * A read checks the object's header against the record's salt before it
 * decrypts anything, and yields each segment only once it authenticates:
 * no byte of another object, a reordered or a truncated one comes out.
 *
 * @module
 */
import type { AbortOptions } from '../../abort.js';
import { cipherLength, decryptSegments, encryptSegments, readSegmentRange } from '../../crypto/segments.js';
import type { RepositoryKeys } from '../../crypto/master-key.js';
import { IntegrityError, isCairnError, NotFoundError } from '../../errors.js';
import { createHasher, DEFAULT_ALGORITHM, hashBytes, type Hash } from '../../hash.js';
import { chunksOf, concatBytes, isBytes, toHash, verifyBytes } from '../../object-io.js';
import type { HashLike, ObjectSource, PutOptions, Store } from '../../store.js';
import type { Catalog } from './catalog.js';
import { encodeLarge, LARGE_MAGIC, LARGE_REF_PREFIX, type LargeRecord } from './format.js';
import { publish, putExact } from './writer.js';

/** Encrypted large objects over `inner`; see the module comment. */
export class SealedLargeObjects {
  constructor(
    readonly inner: Store,
    readonly catalog: Catalog,
    readonly keys: RepositoryKeys,
  ) {}

  /** Stores a large object; resolves once it is durable and published. */
  async put(source: ObjectSource, options?: PutOptions): Promise<Hash> {
    const signal = options?.signal;
    const algorithm = options?.algorithm ?? DEFAULT_ALGORITHM;
    if (isBytes(source)) {
      const known = hashBytes(source, algorithm);
      if (this.catalog.locateLarge(known).length > 0) return known;
    }
    const hasher = createHasher(algorithm);
    async function* plain(): AsyncIterable<Uint8Array> {
      for await (const chunk of chunksOf(source, signal)) {
        hasher.update(chunk);
        yield chunk;
      }
    }
    const segments = encryptSegments(plain(), this.keys.segment, { signal });
    const object = await this.inner.put(segments.stream, { signal });
    const hash = hasher.digest();
    if (this.catalog.locateLarge(hash).length > 0) {
      // Someone stored it meanwhile: ours is a second copy under another salt, never named; drop it.
      await this.inner.delete(object, { signal }).catch(() => undefined);
      return hash;
    }
    const { salt, segmentBytes } = segments.header();
    const record: LargeRecord = { hash, object, plainLength: segments.plainLength(), segmentBytes, salt };
    const sealed = this.catalog.sealer.sealRecord(LARGE_MAGIC, encodeLarge(record));
    const recordHash = hashBytes(sealed);
    await putExact(this.inner, sealed, recordHash);
    await publish(this.inner, LARGE_REF_PREFIX + recordHash.hex, recordHash);
    this.catalog.addLarge(recordHash, record);
    await this.catalog.remember(sealed);
    return hash;
  }

  async putMany(items: readonly ObjectSource[], options?: PutOptions): Promise<Hash[]> {
    const out: Hash[] = [];
    for (const item of items) out.push(await this.put(item, options));
    return out;
  }

  /** The live records of `hash`, refreshing the catalog once when there are none. */
  async #records(hash: Hash, signal: AbortSignal | undefined): Promise<LargeRecord[]> {
    const known = this.catalog.locateLarge(hash);
    if (known.length > 0) return known;
    await this.catalog.refresh(signal);
    const fresh = this.catalog.locateLarge(hash);
    if (fresh.length === 0) throw new NotFoundError(`object ${hash.toString()} not found`, { key: hash.toString() });
    return fresh;
  }

  /** Runs `read` on each copy until one is there (a copy collected by a repack is skipped). */
  async #eachCopy<T>(hash: Hash, signal: AbortSignal | undefined, read: (record: LargeRecord) => Promise<T>): Promise<T> {
    const records = await this.#records(hash, signal);
    let firstError: unknown;
    for (const record of records) {
      try {
        return await read(record);
      } catch (error) {
        if (!isCairnError(error, 'ERR_NOT_FOUND')) throw error;
        firstError ??= error;
      }
    }
    throw firstError;
  }

  #expect(record: LargeRecord): { salt: Uint8Array; segmentBytes: number; plainLength: number } {
    return { salt: record.salt, segmentBytes: record.segmentBytes, plainLength: record.plainLength };
  }

  async get(hashLike: HashLike, options?: AbortOptions): Promise<Uint8Array> {
    const hash = toHash(hashLike);
    return this.#eachCopy(hash, options?.signal, async (record) => {
      const parts: Uint8Array[] = [];
      for await (const part of this.#decrypt(record, options)) parts.push(part);
      const bytes = concatBytes(parts);
      verifyBytes(hash, bytes);
      return bytes;
    });
  }

  #decrypt(record: LargeRecord, options: AbortOptions | undefined): AsyncIterable<Uint8Array> {
    return decryptSegments(this.inner.getStream(record.object, options), this.keys.segment, this.#expect(record), { label: `object ${record.hash.toString()}` });
  }

  async *getStream(hashLike: HashLike, options?: AbortOptions): AsyncIterable<Uint8Array> {
    const hash = toHash(hashLike);
    const records = await this.#records(hash, options?.signal);
    // The first copy only: once bytes have been yielded, falling over to another copy would repeat them.
    const record = records[0]!;
    const hasher = createHasher(hash.algorithm);
    for await (const part of this.#decrypt(record, options)) {
      hasher.update(part);
      yield part;
    }
    const got = hasher.digest();
    if (!got.equals(hash)) {
      throw new IntegrityError(`object ${hash.toString()} is corrupt: its segments authenticate but hash to ${got.toString()}; its record is wrong`, { key: hash.toString() });
    }
  }

  async getRange(hashLike: HashLike, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
    const hash = toHash(hashLike);
    return this.#eachCopy(hash, options?.signal, (record) =>
      readSegmentRange((at, n) => this.inner.getRange(record.object, at, n, options), this.keys.segment, this.#expect(record), offset, length, {
        label: `object ${hash.toString()}`,
      }),
    );
  }

  /** The inner bytes a large object occupies (for reports). */
  static storedLength(record: LargeRecord): number {
    return cipherLength(record.plainLength, record.segmentBytes);
  }
}
