/**
 * The read-only layer: a view of a store that refuses every write.
 *
 * Writes are refused before anything else is looked at (arguments, signal,
 * closed state), so a refused call can never have touched the inner store
 * and the caller always learns the real reason first: this view cannot write.
 *
 * @module
 */
import type { AbortOptions } from '../abort.js';
import { ClosedError, ReadOnlyError } from '../errors.js';
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
import { nativeStreams, nativeStreamsOf, readOnlyNativeStreams, type NativeStreams } from '../data/streams/native.js';

/**
 * Wraps `store` so that every write (put, putMany, delete, setRef,
 * deleteRef, compareAndSwap) rejects with {@link ReadOnlyError} and changes
 * nothing; reads, listings, watches and `flush` pass through.
 * `capabilities.writable` is false. Closing the view closes `store`: the
 * view owns it, like every Cairn layer.
 *
 * @example
 * ```ts
 * const view = readOnly(await openDiskStore('/srv/cairn'));
 * await view.get(hash);               // fine
 * await view.put(bytes);              // rejects with ReadOnlyError
 * ```
 */
export function readOnly(store: Store): Store {
  return new ReadOnlyStore(store);
}

/** See {@link readOnly}. */
export class ReadOnlyStore implements Store {
  readonly capabilities: StoreCapabilities;
  /** The inner store's native event streams, read-only (see `data/streams/native.ts`). */
  readonly [nativeStreams]: NativeStreams | undefined;
  readonly #inner: Store;
  #closed = false;

  constructor(inner: Store) {
    this.#inner = inner;
    this.capabilities = { ...inner.capabilities, writable: false };
    const native = nativeStreamsOf(inner);
    this[nativeStreams] = native && readOnlyNativeStreams(native);
  }

  #refuse(operation: string): Promise<never> {
    return Promise.reject(
      new ReadOnlyError(`${operation} was refused: this store is read-only; write through a writable store instead`),
    );
  }

  #open(): void {
    if (this.#closed) throw new ClosedError('the read-only store is closed');
  }

  put(_source: ObjectSource, _options?: PutOptions): Promise<Hash> {
    return this.#refuse('put');
  }

  putMany(_items: readonly Uint8Array[], _options?: PutOptions): Promise<Hash[]> {
    return this.#refuse('putMany');
  }

  delete(_hash: HashLike, _options?: AbortOptions): Promise<void> {
    return this.#refuse('delete');
  }

  setRef(_name: string, _hash: HashLike, _options?: AbortOptions): Promise<RefValue> {
    return this.#refuse('setRef');
  }

  deleteRef(_name: string, _options?: AbortOptions): Promise<void> {
    return this.#refuse('deleteRef');
  }

  compareAndSwap(_name: string, _expected: HashLike | null, _next: HashLike | null, _options?: AbortOptions): Promise<CasResult> {
    return this.#refuse('compareAndSwap');
  }

  async get(hash: HashLike, options?: AbortOptions): Promise<Uint8Array> {
    this.#open();
    return this.#inner.get(hash, options);
  }

  async *getStream(hash: HashLike, options?: AbortOptions): AsyncIterable<Uint8Array> {
    this.#open();
    yield* this.#inner.getStream(hash, options);
  }

  async getRange(hash: HashLike, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
    this.#open();
    return this.#inner.getRange(hash, offset, length, options);
  }

  async has(hash: HashLike, options?: AbortOptions): Promise<boolean> {
    this.#open();
    return this.#inner.has(hash, options);
  }

  async *listObjects(options?: AbortOptions): AsyncIterable<Hash> {
    this.#open();
    yield* this.#inner.listObjects(options);
  }

  async getMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<Uint8Array[]> {
    this.#open();
    return this.#inner.getMany(hashes, options);
  }

  async hasMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<boolean[]> {
    this.#open();
    return this.#inner.hasMany(hashes, options);
  }

  async getRef(name: string, options?: AbortOptions): Promise<RefValue | undefined> {
    this.#open();
    return this.#inner.getRef(name, options);
  }

  async *listRefs(prefix?: string, options?: AbortOptions): AsyncIterable<RefEntry> {
    this.#open();
    yield* this.#inner.listRefs(prefix, options);
  }

  async watchRef(name: string, listener: RefListener, options?: WatchOptions): Promise<void> {
    this.#open();
    return this.#inner.watchRef(name, listener, options);
  }

  async flush(options?: AbortOptions): Promise<void> {
    this.#open();
    return this.#inner.flush(options);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#inner.close();
  }
}
