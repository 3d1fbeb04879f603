/**
 * Derived stores: an ephemeral, in-memory store over a parent.
 *
 * Reads fall through to the parent; writes (objects, refs, deletes) stay in
 * memory and vanish on close; the parent is never written, flushed or
 * closed. Use it for a dry run, a test fixture over real data, or a
 * scratch branch.
 *
 * Why not `layered({ upper: memoryStore(), lower: parent })`: the layered
 * store uploads every write to its lower store (write-back), keeps refs in
 * the upper store only (so parent refs would not be visible), and closes
 * both stores on close. A derived store needs the opposite on all three, so
 * it is a small overlay of its own: a memory store for what was written,
 * plus tombstones for what was deleted.
 *
 * @module
 */
import { throwIfAborted, type AbortOptions } from '../abort.js';
import { ClosedError, NotFoundError } from '../errors.js';
import type { Hash } from '../hash.js';
import { MemoryStore } from '../backends/memory.js';
import { casAccepts } from '../internal/cas.js';
import { ListenerSet } from '../internal/listeners.js';
import { assertObjectSource, toHash } from '../object-io.js';
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

/**
 * Creates an ephemeral store over `parent`: reads fall through to it,
 * writes stay in memory and vanish on {@link Store.close}, which does not
 * close the parent.
 *
 * @example
 * ```ts
 * const scratch = derivedStore(store);
 * await scratch.setRef('heads/main', await scratch.put(bytes)); // parent unchanged
 * await scratch.close();                                        // and all of it is gone
 * ```
 */
export function derivedStore(parent: Store): Store {
  return new DerivedStore(parent);
}

/** The overlay's record of a ref: a value written here, or a deletion that hides the parent's. */
type Shadow = { readonly value: RefValue } | { readonly deleted: true };

class DerivedStore implements Store {
  readonly capabilities: StoreCapabilities;
  readonly #parent: Store;
  readonly #upper = new MemoryStore();
  /** Objects deleted here: hidden even if the parent has them. */
  readonly #deleted = new Set<string>();
  readonly #refs = new Map<string, Shadow>();
  readonly #watchers = new Map<string, ListenerSet<RefValue | undefined>>();
  /** Per-ref queue, so a swap's read-compare-write is not interleaved with another write to that ref. */
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #closing = new AbortController();
  #version = 0;
  #closed = false;

  constructor(parent: Store) {
    this.#parent = parent;
    this.capabilities = {
      writable: true,
      durable: false,
      // Only this store writes its overlay, and it orders writes per ref.
      atomicRefs: true,
      conditionalDelete: true,
      watch: parent.capabilities.watch,
      multipart: false,
    };
  }

  #check(options: AbortOptions | undefined): void {
    if (this.#closed) throw new ClosedError('the derived store is closed');
    throwIfAborted(options?.signal);
  }

  async put(source: ObjectSource, options?: PutOptions): Promise<Hash> {
    this.#check(options);
    assertObjectSource(source);
    const hash = await this.#upper.put(source, options);
    this.#deleted.delete(hash.toString());
    return hash;
  }

  async get(hashLike: HashLike, options?: AbortOptions): Promise<Uint8Array> {
    this.#check(options);
    const hash = toHash(hashLike);
    if (this.#deleted.has(hash.toString())) throw notFound(hash);
    if (await this.#upper.has(hash)) return this.#upper.get(hash, options);
    return this.#parent.get(hash, options);
  }

  async *getStream(hashLike: HashLike, options?: AbortOptions): AsyncIterable<Uint8Array> {
    this.#check(options);
    const hash = toHash(hashLike);
    if (this.#deleted.has(hash.toString())) throw notFound(hash);
    if (await this.#upper.has(hash)) yield* this.#upper.getStream(hash, options);
    else yield* this.#parent.getStream(hash, options);
  }

  async getRange(hashLike: HashLike, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
    this.#check(options);
    const hash = toHash(hashLike);
    if (this.#deleted.has(hash.toString())) throw notFound(hash);
    if (await this.#upper.has(hash)) return this.#upper.getRange(hash, offset, length, options);
    return this.#parent.getRange(hash, offset, length, options);
  }

  async has(hashLike: HashLike, options?: AbortOptions): Promise<boolean> {
    this.#check(options);
    const hash = toHash(hashLike);
    if (this.#deleted.has(hash.toString())) return false;
    return (await this.#upper.has(hash)) || this.#parent.has(hash, options);
  }

  async delete(hashLike: HashLike, options?: AbortOptions): Promise<void> {
    this.#check(options);
    const hash = toHash(hashLike);
    await this.#upper.delete(hash);
    this.#deleted.add(hash.toString());
  }

  async *listObjects(options?: AbortOptions): AsyncIterable<Hash> {
    this.#check(options);
    const seen = new Set<string>();
    for await (const hash of this.#upper.listObjects(options)) {
      seen.add(hash.toString());
      yield hash;
    }
    for await (const hash of this.#parent.listObjects(options)) {
      const key = hash.toString();
      if (!seen.has(key) && !this.#deleted.has(key) && !(await this.#upper.has(hash))) yield hash;
    }
  }

  async putMany(items: readonly Uint8Array[], options?: PutOptions): Promise<Hash[]> {
    this.#check(options);
    const hashes = await this.#upper.putMany(items, options);
    for (const hash of hashes) this.#deleted.delete(hash.toString());
    return hashes;
  }

  async getMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<Uint8Array[]> {
    this.#check(options);
    const parsed = hashes.map(toHash);
    const local = await this.#upper.hasMany(parsed);
    const fromParent: Hash[] = [];
    parsed.forEach((hash, i) => {
      if (this.#deleted.has(hash.toString())) throw notFound(hash);
      if (!local[i]) fromParent.push(hash);
    });
    const below = fromParent.length > 0 ? await this.#parent.getMany(fromParent, options) : [];
    let next = 0;
    return Promise.all(parsed.map((hash, i) => (local[i] ? this.#upper.get(hash) : Promise.resolve(below[next++]!))));
  }

  async hasMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<boolean[]> {
    this.#check(options);
    const parsed = hashes.map(toHash);
    const local = await this.#upper.hasMany(parsed);
    const ask = parsed.filter((hash, i) => !local[i] && !this.#deleted.has(hash.toString()));
    const below = ask.length > 0 ? await this.#parent.hasMany(ask, options) : [];
    let next = 0;
    return parsed.map((hash, i) => local[i]! || (!this.#deleted.has(hash.toString()) && below[next++]!));
  }

  async getRef(name: string, options?: AbortOptions): Promise<RefValue | undefined> {
    this.#check(options);
    assertRefName(name);
    return this.#effective(name, options);
  }

  async #effective(name: string, options: AbortOptions | undefined): Promise<RefValue | undefined> {
    const shadow = this.#refs.get(name);
    if (shadow !== undefined) return 'value' in shadow ? shadow.value : undefined;
    return this.#parent.getRef(name, options);
  }

  async setRef(name: string, hashLike: HashLike, options?: AbortOptions): Promise<RefValue> {
    this.#check(options);
    assertRefName(name);
    const hash = toHash(hashLike);
    return this.#locked(name, async () => this.#write(name, hash)!);
  }

  async deleteRef(name: string, options?: AbortOptions): Promise<void> {
    this.#check(options);
    assertRefName(name);
    await this.#locked(name, async () => {
      if ((await this.#effective(name, options)) !== undefined) this.#write(name, null);
      else this.#refs.set(name, { deleted: true });
    });
  }

  async compareAndSwap(name: string, expected: HashLike | null, next: HashLike | null, options?: AbortOptions): Promise<CasResult> {
    this.#check(options);
    assertRefName(name);
    const expectedHash = expected === null ? null : toHash(expected);
    const nextHash = next === null ? null : toHash(next);
    return this.#locked(name, async () => {
      const current = await this.#effective(name, options);
      throwIfAborted(options?.signal);
      if (!casAccepts(current, expectedHash)) return { ok: false, current };
      if (nextHash === null && current === undefined) return { ok: true, current: undefined };
      return { ok: true, current: this.#write(name, nextHash) };
    });
  }

  async *listRefs(prefix = '', options?: AbortOptions): AsyncIterable<RefEntry> {
    this.#check(options);
    assertRefPrefix(prefix);
    // Both sides sorted: merge them, the overlay winning on equal names.
    const mine = [...this.#refs.entries()].filter(([name]) => name.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    let i = 0;
    const emitMine = function* (upTo: string | undefined): Iterable<RefEntry> {
      while (i < mine.length && (upTo === undefined || mine[i]![0] <= upTo)) {
        const [name, shadow] = mine[i++]!;
        if ('value' in shadow) yield { name, ...shadow.value };
      }
    };
    for await (const ref of this.#parent.listRefs(prefix, options)) {
      yield* emitMine(ref.name);
      if (!this.#refs.has(ref.name)) yield ref;
    }
    yield* emitMine(undefined);
  }

  async watchRef(name: string, listener: RefListener, options?: WatchOptions): Promise<void> {
    this.#check(options);
    assertRefName(name);
    let watchers = this.#watchers.get(name);
    if (watchers === undefined) this.#watchers.set(name, (watchers = new ListenerSet()));
    const set = watchers;
    let watching = true;
    const remove = set.add(listener);
    const stop = AbortSignal.any([this.#closing.signal, ...(options?.signal ? [options.signal] : [])]);
    stop.addEventListener(
      'abort',
      () => {
        watching = false;
        remove();
        if (set.size === 0 && this.#watchers.get(name) === set) this.#watchers.delete(name);
      },
      { once: true },
    );
    // The parent's changes show through only while this store has not shadowed the ref.
    await this.#parent.watchRef(
      name,
      (value) => {
        if (!this.#refs.has(name) && watching) listener(value);
      },
      { signal: stop, intervalMs: options?.intervalMs },
    );
  }

  async flush(options?: AbortOptions): Promise<void> {
    this.#check(options);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort();
    this.#watchers.clear();
    this.#refs.clear();
    this.#deleted.clear();
    await this.#upper.close();
  }

  #write(name: string, hash: Hash | null): RefValue | undefined {
    let value: RefValue | undefined;
    if (hash === null) {
      this.#refs.set(name, { deleted: true });
    } else {
      // A prefix keeps overlay versions from ever equalling a parent version of the same ref.
      value = { hash, version: `derived-${++this.#version}` };
      this.#refs.set(name, { value });
    }
    this.#watchers.get(name)?.emit(value);
    return value;
  }

  async #locked<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(name) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.#locks.set(name, settled);
    try {
      return await run;
    } finally {
      if (this.#locks.get(name) === settled) this.#locks.delete(name);
    }
  }
}

function notFound(hash: Hash): NotFoundError {
  return new NotFoundError(`object ${hash.toString()} not found`, { key: hash.toString() });
}
