/**
 * Blobs by CID: the store's objects named as IPFS names raw blocks.
 *
 * A blob is an ordinary object; its CIDv1 (raw codec 0x55, sha2-256
 * multihash, base32 `bafkrei...`) is another spelling of its SHA-256 hash,
 * so a CID printed by another tool for the same bytes (for example
 * `ipfs add --raw-leaves --cid-version=1` for content of one block) names
 * the same object. `putBlob` also pins the blob with the ref
 * `<prefix><cid>`, so that `gc` keeps it and {@link BlobStore.listBlobs} can
 * list it.
 *
 * @module
 */
import type { AbortOptions } from '../abort.js';
import { InvalidHashError } from '../errors.js';
import { parseCid, type Hash } from '../hash.js';
import { assertObjectSource } from '../object-io.js';
import type { ObjectSource, Store } from '../store.js';
import { plainBytes } from './json.js';
import { assertNamespace } from './names.js';

/** Options of {@link blobStore}. */
export interface BlobStoreOptions {
  /**
   * Ref prefix of the pins; `""` or ending in `/`.
   * @default 'blobs/'
   */
  prefix?: string | undefined;
}

/**
 * Opens a CID view of `store`.
 *
 * @example
 * ```ts
 * const blobs = blobStore(store);
 * const cid = await blobs.putBlob(new TextEncoder().encode('hello world\n'));
 * // 'bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4'
 * const bytes = await blobs.getBlob(cid);
 * ```
 */
export function blobStore(store: Store, options: BlobStoreOptions = {}): BlobStore {
  const prefix = options.prefix ?? 'blobs/';
  assertNamespace(prefix, 'prefix');
  return new BlobStore(store, prefix);
}

/**
 * Parses a CID into the hash of the bytes it names; anything else
 * (including a `sha256:<hex>` hash text) is an {@link InvalidHashError}.
 *
 * @example
 * ```ts
 * cidToHash('bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4').hex; // 'a948904f...'
 * ```
 */
export function cidToHash(cid: unknown): Hash {
  if (typeof cid !== 'string') throw new InvalidHashError(`a CID must be a string, got ${cid === null ? 'null' : typeof cid}`);
  return parseCid(cid);
}

/** See {@link blobStore}. */
export class BlobStore {
  readonly #store: Store;
  readonly #prefix: string;

  /** @internal Use {@link blobStore}. */
  constructor(store: Store, prefix: string) {
    this.#store = store;
    this.#prefix = prefix;
  }

  /**
   * Stores bytes (or a stream of chunks) and resolves to their CIDv1 (raw,
   * sha2-256, base32). Idempotent: the same bytes give the same CID and one
   * stored object.
   *
   * @example
   * ```ts
   * const cid = await blobs.putBlob(bytes); // 'bafkrei...'
   * ```
   */
  async putBlob(source: ObjectSource, options: AbortOptions = {}): Promise<string> {
    assertObjectSource(source);
    const hash = await this.#store.put(source, { ...options, algorithm: 'sha256' });
    const cid = hash.toCid();
    // Create-only: a second put of the same bytes finds the pin there and leaves it.
    await this.#store.compareAndSwap(this.#prefix + cid, null, hash, options);
    return cid;
  }

  /**
   * The bytes a CID names, verified against it. A malformed CID, or one that
   * does not name raw bytes, is an {@link InvalidHashError}; a missing blob a
   * {@link NotFoundError}.
   *
   * @example
   * ```ts
   * const bytes = await blobs.getBlob('bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4');
   * ```
   */
  async getBlob(cid: string, options: AbortOptions = {}): Promise<Uint8Array> {
    return plainBytes(await this.#store.get(cidToHash(cid), options));
  }

  /**
   * Streams a large blob's bytes; see {@link Store.getStream}.
   *
   * @example
   * ```ts
   * for await (const chunk of blobs.getBlobStream(cid)) out.write(chunk);
   * ```
   */
  getBlobStream(cid: string, options: AbortOptions = {}): AsyncIterable<Uint8Array> {
    const store = this.#store;
    return (async function* () {
      yield* store.getStream(cidToHash(cid), options);
    })();
  }

  /**
   * True if the blob's bytes are present.
   *
   * @example
   * ```ts
   * if (!(await blobs.hasBlob(cid))) await fetchFromPeer(cid);
   * ```
   */
  async hasBlob(cid: string, options: AbortOptions = {}): Promise<boolean> {
    return this.#store.has(cidToHash(cid), options);
  }

  /**
   * Unpins a blob and deletes its bytes. Idempotent. Other refs naming the
   * same bytes are not consulted: delete only what only blobs use.
   *
   * @example
   * ```ts
   * await blobs.deleteBlob(cid);
   * ```
   */
  async deleteBlob(cid: string, options: AbortOptions = {}): Promise<void> {
    const hash = cidToHash(cid);
    await this.#store.deleteRef(this.#prefix + hash.toCid(), options);
    await this.#store.delete(hash, options);
  }

  /**
   * Yields the CID of every blob stored through `putBlob` (pinned), sorted.
   *
   * @example
   * ```ts
   * for await (const cid of blobs.listBlobs()) console.log(cid);
   * ```
   */
  async *listBlobs(options: AbortOptions = {}): AsyncIterable<string> {
    for await (const ref of this.#store.listRefs(this.#prefix, options)) yield ref.name.slice(this.#prefix.length);
  }
}
