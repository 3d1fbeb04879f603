/**
 * The forwarding base for layers: a {@link Store} that passes every call to
 * an inner store, so that a layer overrides only what it changes.
 *
 * Batch calls forward to the inner store's batch calls (never a loop of
 * single calls), so a layer keeps the inner store's fast path for free. The
 * flip side: a layer that changes what `get` returns (decrypts, rewrites)
 * must override `getMany` and `getStream` too, or build them from its own
 * `get` with {@link defaultGetMany}; the same holds for `put`/`putMany` and
 * `has`/`hasMany`.
 *
 * @module
 */
import type { AbortOptions } from '../abort.js';
import { ClosedError } from '../errors.js';
import type { Hash } from '../hash.js';
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

/** Options of {@link ForwardingStore}'s constructor. */
export interface ForwardingOptions {
  /**
   * Capabilities that differ from the inner store's (a read-only view says
   * `{ writable: false }`); the rest are the inner store's.
   * @default {}
   */
  capabilities?: Partial<StoreCapabilities> | undefined;
  /**
   * What the layer is called in errors, as in "the cached store is closed".
   * @default 'layer'
   */
  name?: string | undefined;
}

/**
 * A store that forwards every call to `inner`. Extend it and override what
 * your layer changes; everything else, including batch calls, ranged reads,
 * refs and watches, reaches the inner store unchanged.
 *
 * Lifecycle: the layer owns its inner store, like every Cairn layer.
 * {@link ForwardingStore.close} closes the inner store once; after it every
 * forwarded call rejects with {@link ClosedError} naming the layer. An
 * override that answers without asking the inner store (from a cache, say)
 * calls {@link ForwardingStore.assertOpen} first.
 *
 * @example
 * ```ts
 * import { ForwardingStore, type Store, type ObjectSource, type PutOptions, type Hash } from 'cairn';
 *
 * // Counts puts; every other call goes straight through.
 * class CountingStore extends ForwardingStore {
 *   puts = 0;
 *   constructor(inner: Store) {
 *     super(inner, { name: 'counting store' });
 *   }
 *   override put(source: ObjectSource, options?: PutOptions): Promise<Hash> {
 *     this.puts++;
 *     return super.put(source, options);
 *   }
 * }
 * ```
 */
export class ForwardingStore implements Store {
  readonly capabilities: StoreCapabilities;
  /** The store every call is forwarded to. */
  protected readonly inner: Store;
  readonly #name: string;
  #closed = false;

  constructor(inner: Store, options: ForwardingOptions = {}) {
    this.inner = inner;
    this.#name = options.name ?? 'layer';
    this.capabilities = { ...inner.capabilities, ...options.capabilities };
  }

  /** True once {@link ForwardingStore.close} was called. */
  protected get closed(): boolean {
    return this.#closed;
  }

  /** Throws {@link ClosedError} naming the layer once it is closed. */
  protected assertOpen(): void {
    if (this.#closed) throw new ClosedError(`the ${this.#name} is closed`);
  }

  async put(source: ObjectSource, options?: PutOptions): Promise<Hash> {
    this.assertOpen();
    return this.inner.put(source, options);
  }

  async get(hash: HashLike, options?: AbortOptions): Promise<Uint8Array> {
    this.assertOpen();
    return this.inner.get(hash, options);
  }

  async *getStream(hash: HashLike, options?: AbortOptions): AsyncIterable<Uint8Array> {
    this.assertOpen();
    yield* this.inner.getStream(hash, options);
  }

  async getRange(hash: HashLike, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
    this.assertOpen();
    return this.inner.getRange(hash, offset, length, options);
  }

  async has(hash: HashLike, options?: AbortOptions): Promise<boolean> {
    this.assertOpen();
    return this.inner.has(hash, options);
  }

  async delete(hash: HashLike, options?: AbortOptions): Promise<void> {
    this.assertOpen();
    return this.inner.delete(hash, options);
  }

  async *listObjects(options?: AbortOptions): AsyncIterable<Hash> {
    this.assertOpen();
    yield* this.inner.listObjects(options);
  }

  async putMany(items: readonly Uint8Array[], options?: PutOptions): Promise<Hash[]> {
    this.assertOpen();
    return this.inner.putMany(items, options);
  }

  async getMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<Uint8Array[]> {
    this.assertOpen();
    return this.inner.getMany(hashes, options);
  }

  async hasMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<boolean[]> {
    this.assertOpen();
    return this.inner.hasMany(hashes, options);
  }

  async getRef(name: string, options?: AbortOptions): Promise<RefValue | undefined> {
    this.assertOpen();
    return this.inner.getRef(name, options);
  }

  async setRef(name: string, hash: HashLike, options?: AbortOptions): Promise<RefValue> {
    this.assertOpen();
    return this.inner.setRef(name, hash, options);
  }

  async deleteRef(name: string, options?: AbortOptions): Promise<void> {
    this.assertOpen();
    return this.inner.deleteRef(name, options);
  }

  async compareAndSwap(name: string, expected: HashLike | null, next: HashLike | null, options?: AbortOptions): Promise<CasResult> {
    this.assertOpen();
    return this.inner.compareAndSwap(name, expected, next, options);
  }

  async *listRefs(prefix?: string, options?: AbortOptions): AsyncIterable<RefEntry> {
    this.assertOpen();
    yield* this.inner.listRefs(prefix, options);
  }

  async watchRef(name: string, listener: RefListener, options?: WatchOptions): Promise<void> {
    this.assertOpen();
    return this.inner.watchRef(name, listener, options);
  }

  async flush(options?: AbortOptions): Promise<void> {
    this.assertOpen();
    return this.inner.flush(options);
  }

  /** Closes the inner store, once; later calls resolve at once. Overrides release their own state, then call this. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.inner.close();
  }
}
