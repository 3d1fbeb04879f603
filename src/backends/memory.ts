/**
 * The memory backend: the reference implementation of the Store contract.
 *
 * Everything lives in two Maps. Objects are copied on the way in and on the
 * way out, so no caller can change stored bytes behind the hash; that is why
 * reads need not re-hash. Refs are atomic trivially (one thread), watchers
 * are told of every change synchronously, in order.
 *
 * @module
 */
import { throwIfAborted, type AbortOptions } from '../abort.js';
import { ClosedError, NotFoundError } from '../errors.js';
import type { Hash } from '../hash.js';
import { casAccepts } from '../internal/cas.js';
import { ListenerSet } from '../internal/listeners.js';
import { assertRange, collectBytes, hashOf, sliceRange, toHash } from '../object-io.js';
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

/** Options of {@link memoryStore}. Reserved for future use. */
export type MemoryStoreOptions = Record<string, never>;

/**
 * Creates an empty in-memory store. Not durable: everything is gone when the
 * process exits.
 *
 * @example
 * ```ts
 * const store = memoryStore();
 * const hash = await store.put(new TextEncoder().encode('hi'));
 * ```
 */
export function memoryStore(_options: MemoryStoreOptions = {}): Store {
  return new MemoryStore();
}

interface StoredObject {
  readonly hash: Hash;
  readonly bytes: Uint8Array;
}

/** See {@link memoryStore}. */
export class MemoryStore implements Store {
  readonly capabilities: StoreCapabilities = {
    writable: true,
    durable: false,
    atomicRefs: true,
    conditionalDelete: true,
    watch: 'push',
    multipart: false,
  };

  readonly #objects = new Map<string, StoredObject>();
  readonly #refs = new Map<string, RefValue>();
  readonly #watchers = new Map<string, ListenerSet<RefValue | undefined>>();
  #version = 0;
  #closed = false;

  #check(options: AbortOptions | undefined): void {
    if (this.#closed) throw new ClosedError('the memory store is closed');
    throwIfAborted(options?.signal);
  }

  async put(source: ObjectSource, options?: PutOptions): Promise<Hash> {
    this.#check(options);
    const bytes = await collectBytes(source, options?.signal);
    throwIfAborted(options?.signal);
    return this.#putBytes(bytes, options);
  }

  #putBytes(bytes: Uint8Array, options: PutOptions | undefined): Hash {
    const hash = hashOf(bytes, options?.algorithm);
    const key = hash.toString();
    if (!this.#objects.has(key)) this.#objects.set(key, { hash, bytes: Uint8Array.prototype.slice.call(bytes) });
    return hash;
  }

  async get(hashLike: HashLike, options?: AbortOptions): Promise<Uint8Array> {
    this.#check(options);
    return this.#getBytes(toHash(hashLike)).slice();
  }

  #getBytes(hash: Hash): Uint8Array {
    const found = this.#objects.get(hash.toString());
    if (found === undefined) throw new NotFoundError(`object ${hash.toString()} not found`, { key: hash.toString() });
    return found.bytes;
  }

  async *getStream(hashLike: HashLike, options?: AbortOptions): AsyncIterable<Uint8Array> {
    this.#check(options);
    yield this.#getBytes(toHash(hashLike)).slice();
  }

  async getRange(hashLike: HashLike, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
    this.#check(options);
    assertRange(offset, length);
    return sliceRange(this.#getBytes(toHash(hashLike)), offset, length);
  }

  async has(hashLike: HashLike, options?: AbortOptions): Promise<boolean> {
    this.#check(options);
    return this.#objects.has(toHash(hashLike).toString());
  }

  async delete(hashLike: HashLike, options?: AbortOptions): Promise<void> {
    this.#check(options);
    this.#objects.delete(toHash(hashLike).toString());
  }

  async *listObjects(options?: AbortOptions): AsyncIterable<Hash> {
    this.#check(options);
    // A snapshot of the keys, so that writes during the listing cannot break iteration.
    for (const { hash } of [...this.#objects.values()]) {
      throwIfAborted(options?.signal);
      yield hash;
    }
  }

  async putMany(items: readonly Uint8Array[], options?: PutOptions): Promise<Hash[]> {
    this.#check(options);
    const all = await Promise.all(items.map((item) => collectBytes(item, options?.signal)));
    return all.map((bytes) => this.#putBytes(bytes, options));
  }

  async getMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<Uint8Array[]> {
    this.#check(options);
    const parsed = hashes.map(toHash);
    return parsed.map((hash) => this.#getBytes(hash).slice());
  }

  async hasMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<boolean[]> {
    this.#check(options);
    return hashes.map(toHash).map((hash) => this.#objects.has(hash.toString()));
  }

  async getRef(name: string, options?: AbortOptions): Promise<RefValue | undefined> {
    this.#check(options);
    assertRefName(name);
    return this.#refs.get(name);
  }

  async setRef(name: string, hashLike: HashLike, options?: AbortOptions): Promise<RefValue> {
    this.#check(options);
    assertRefName(name);
    const value = this.#write(name, toHash(hashLike));
    return value!;
  }

  async deleteRef(name: string, options?: AbortOptions): Promise<void> {
    this.#check(options);
    assertRefName(name);
    if (this.#refs.has(name)) this.#write(name, null);
  }

  async compareAndSwap(
    name: string,
    expected: HashLike | null,
    next: HashLike | null,
    options?: AbortOptions,
  ): Promise<CasResult> {
    this.#check(options);
    assertRefName(name);
    const expectedHash = expected === null ? null : toHash(expected);
    const nextHash = next === null ? null : toHash(next);
    const current = this.#refs.get(name);
    if (!casAccepts(current, expectedHash)) return { ok: false, current };
    if (nextHash === null && current === undefined) return { ok: true, current: undefined };
    return { ok: true, current: this.#write(name, nextHash) };
  }

  #write(name: string, hash: Hash | null): RefValue | undefined {
    let value: RefValue | undefined;
    if (hash === null) {
      this.#refs.delete(name);
    } else {
      value = { hash, version: String(++this.#version) };
      this.#refs.set(name, value);
    }
    this.#watchers.get(name)?.emit(value);
    return value;
  }

  async *listRefs(prefix = '', options?: AbortOptions): AsyncIterable<RefEntry> {
    this.#check(options);
    assertRefPrefix(prefix);
    const names = [...this.#refs.keys()].filter((name) => name.startsWith(prefix)).sort();
    for (const name of names) {
      throwIfAborted(options?.signal);
      const value = this.#refs.get(name);
      if (value !== undefined) yield { name, ...value };
    }
  }

  async watchRef(name: string, listener: RefListener, options?: WatchOptions): Promise<void> {
    this.#check(options);
    assertRefName(name);
    let watchers = this.#watchers.get(name);
    if (watchers === undefined) this.#watchers.set(name, (watchers = new ListenerSet()));
    const set = watchers;
    const remove = set.add(listener);
    options?.signal?.addEventListener(
      'abort',
      () => {
        remove();
        if (set.size === 0 && this.#watchers.get(name) === set) this.#watchers.delete(name);
      },
      { once: true },
    );
  }

  async flush(options?: AbortOptions): Promise<void> {
    this.#check(options);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#watchers.clear();
  }
}
