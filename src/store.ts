/**
 * The Store contract: what every Cairn backend and layer guarantees.
 *
 * A store holds two kinds of things:
 *
 * - **Objects**: immutable bytes addressed by their {@link Hash}. Writing the
 *   same bytes twice is a no-op that returns the same hash. Reading verifies
 *   the bytes against the hash, so a store never returns corrupt data: it
 *   throws {@link IntegrityError} instead.
 * - **Refs**: mutable names (see {@link assertRefName}) that point at a hash.
 *   {@link Store.compareAndSwap} changes a ref only if it still holds the
 *   value the caller saw; on every backend whose capabilities say
 *   `atomicRefs`, that holds across processes and machines, so no update is
 *   ever lost.
 *
 * Every method rejects with a {@link CairnError} subclass; the error set is
 * in `errors.ts`. Every async method takes `{ signal }` and rejects with
 * {@link AbortError} once it fires; an operation aborted part-way either
 * happened completely or not at all.
 *
 * The conformance suite in `test/conformance.ts` is the executable form of
 * this contract: every backend and layer passes it.
 *
 * @module
 */
import { throwIfAborted, type AbortOptions } from './abort.js';
import { InvalidArgumentError } from './errors.js';
import type { Hash, HashAlgorithm } from './hash.js';
import { toHash } from './object-io.js';

export type { AbortOptions } from './abort.js';

/** Bytes to store: a buffer, or a (possibly async) iterable of chunks for large inputs. */
export type ObjectSource = Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/** A hash, or its text form (parsed with {@link parseHash}; bad text is an {@link InvalidHashError}). */
export type HashLike = Hash | string;

/** Options of {@link Store.put} and {@link Store.putMany}. */
export interface PutOptions extends AbortOptions {
  /**
   * The algorithm that addresses the new object.
   * @default 'sha256'
   */
  algorithm?: HashAlgorithm | undefined;
}

/** What a ref holds: a hash, and a version that changes on every write. */
export interface RefValue {
  readonly hash: Hash;
  /**
   * Opaque and backend-specific (a counter, an S3 ETag): equal versions mean
   * no write happened in between. Compare with `===`, never order.
   */
  readonly version: string;
}

/** A ref and its value, as {@link Store.listRefs} yields them. */
export interface RefEntry extends RefValue {
  readonly name: string;
}

/**
 * The outcome of {@link Store.compareAndSwap}. On success `current` is the
 * value just written (`undefined` after a delete); on failure it is the value
 * that made the swap fail (`undefined` if the ref is absent), so the caller
 * can retry without another read.
 */
export type CasResult =
  | { readonly ok: true; readonly current: RefValue | undefined }
  | { readonly ok: false; readonly current: RefValue | undefined };

/** Called by {@link Store.watchRef} with a ref's new value (`undefined` once deleted). */
export type RefListener = (value: RefValue | undefined) => void;

/** Options of {@link Store.watchRef}. */
export interface WatchOptions extends AbortOptions {
  /**
   * Poll interval for backends that watch by polling (see
   * {@link StoreCapabilities.watch}); ignored by push backends.
   * @default 1000
   */
  intervalMs?: number | undefined;
}

/** What a store can do. A layer reports what it and its inner store can do together. */
export interface StoreCapabilities {
  /** Writes are accepted. A read-only store rejects them with {@link ReadOnlyError}. */
  readonly writable: boolean;
  /** Acknowledged writes survive a crash of this process (and, for disk, power loss). */
  readonly durable: boolean;
  /**
   * `compareAndSwap` is atomic between every client of the same data: other
   * store objects, processes and machines on the same backend. Every store
   * is atomic between the callers of one store object; without this flag
   * that is all, and two processes sharing the data may both win a swap.
   * Code that coordinates processes through refs (key-value swaps, event
   * streams, `push`) needs it. The conformance suite checks it with two
   * clients wherever the target can open a second one (`peer`).
   */
  readonly atomicRefs: boolean;
  /**
   * `compareAndSwap(name, expected, null)` deletes atomically: never a value
   * the caller did not see. Without it, that call rejects with
   * {@link UnsupportedError} and changes nothing (it never deletes
   * unconditionally in its place); `deleteRef`, which is unconditional,
   * still works. Backends on servers that ignore conditions on DELETE get
   * it by writing a tombstone conditionally, as the S3 backend does. The
   * conformance suite runs the delete-by-swap cases only with it and the
   * refusal case only without it.
   */
  readonly conditionalDelete: boolean;
  /** `push`: every change reaches a watcher; `poll`: changes within one interval coalesce to the latest. */
  readonly watch: 'push' | 'poll';
  /** Large objects stream in parts (bounded memory on put and get). */
  readonly multipart: boolean;
}

/**
 * A content-addressed object store with atomic refs.
 *
 * @example
 * ```ts
 * import { memoryStore } from 'cairn';
 * const store = memoryStore();
 * const hash = await store.put(new TextEncoder().encode('hello'));
 * await store.compareAndSwap('heads/main', null, hash); // create only if absent
 * const ref = await store.getRef('heads/main');
 * new TextDecoder().decode(await store.get(ref!.hash)); // 'hello'
 * ```
 */
export interface Store {
  /** What this store supports. Constant for the store's life. */
  readonly capabilities: StoreCapabilities;

  /**
   * Stores bytes and returns their hash. Idempotent: storing bytes that are
   * already present succeeds and changes nothing. When it resolves the
   * object is readable, and durable if `capabilities.durable`. A stream is
   * hashed as it is read and never held whole in memory by backends with
   * `multipart`.
   *
   * @example
   * ```ts
   * const hash = await store.put(new Uint8Array([1, 2, 3]));
   * const same = await store.put(new Uint8Array([1, 2, 3])); // same.equals(hash)
   * ```
   */
  put(source: ObjectSource, options?: PutOptions): Promise<Hash>;

  /**
   * Returns an object's bytes, verified against its hash.
   * Rejects with {@link NotFoundError} if absent and {@link IntegrityError}
   * if the stored bytes do not match (which are then never returned).
   *
   * @example
   * ```ts
   * const bytes = await store.get(hash);
   * ```
   */
  get(hash: HashLike, options?: AbortOptions): Promise<Uint8Array>;

  /**
   * Streams an object's bytes for objects too large to hold in memory. The
   * hash is checked as the bytes pass: a mismatch makes the iteration throw
   * {@link IntegrityError} at the end, before it completes, so a consumer
   * that only commits its output on normal completion never commits bad
   * data. A missing object throws {@link NotFoundError} on first iteration.
   *
   * @example
   * ```ts
   * await pipeline(Readable.from(store.getStream(hash)), fs.createWriteStream(path));
   * ```
   */
  getStream(hash: HashLike, options?: AbortOptions): AsyncIterable<Uint8Array>;

  /**
   * Reads `length` bytes at byte `offset` of an object: an S3 Range GET, a
   * disk pread, a memory slice. The result is clipped to the object's end,
   * so a result shorter than `length` (possibly empty) means the object ends
   * sooner; callers that expect a full range treat a short one as damage.
   * The bytes are **not** verified (a range cannot be checked against the
   * object's hash): the caller checks what it asked for, as packs do with
   * the hash of each blob they cut out.
   *
   * Rejects with {@link NotFoundError} if the object is absent and
   * {@link InvalidArgumentError} if `offset` or `length` is not a
   * non-negative safe integer.
   *
   * @example
   * ```ts
   * const header = await store.getRange(hash, 0, 16); // at most 16 bytes
   * ```
   */
  getRange(hash: HashLike, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array>;

  /**
   * True if the object is present. Does not read or verify its bytes.
   *
   * @example
   * ```ts
   * if (!(await store.has(hash))) await store.put(bytes);
   * ```
   */
  has(hash: HashLike, options?: AbortOptions): Promise<boolean>;

  /**
   * Removes an object, for garbage collection. Idempotent: deleting an
   * absent object succeeds. Refs naming it are not changed; callers (`gc`)
   * decide what is unreachable.
   *
   * @example
   * ```ts
   * await store.delete(hash);
   * await store.has(hash); // false
   * ```
   */
  delete(hash: HashLike, options?: AbortOptions): Promise<void>;

  /**
   * Yields the hash of every stored object once, in no particular order.
   * Objects written or deleted during the listing may or may not appear.
   *
   * @example
   * ```ts
   * for await (const hash of store.listObjects()) console.log(hash.toString());
   * ```
   */
  listObjects(options?: AbortOptions): AsyncIterable<Hash>;

  /**
   * Stores many objects; resolves to their hashes in input order. Backends
   * implement it faster than a loop of `put` (shared fsyncs, pipelined
   * requests). Not atomic as a whole: on rejection, some may be stored.
   *
   * @example
   * ```ts
   * const [a, b] = await store.putMany([bytesA, bytesB]);
   * ```
   */
  putMany(items: readonly Uint8Array[], options?: PutOptions): Promise<Hash[]>;

  /**
   * Reads many objects, verified, in input order. Rejects with
   * {@link NotFoundError} naming the first missing hash.
   *
   * @example
   * ```ts
   * const [a, b] = await store.getMany([hashA, hashB]);
   * ```
   */
  getMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<Uint8Array[]>;

  /**
   * Presence of many objects, in input order.
   *
   * @example
   * ```ts
   * const missing = hashes.filter((_, i) => !present[i]);
   * ```
   */
  hasMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<boolean[]>;

  /**
   * A ref's current value, or `undefined` if it does not exist.
   *
   * @example
   * ```ts
   * const head = await store.getRef('heads/main');
   * ```
   */
  getRef(name: string, options?: AbortOptions): Promise<RefValue | undefined>;

  /**
   * Points a ref at a hash unconditionally (last writer wins). Prefer
   * {@link Store.compareAndSwap} wherever another writer may exist.
   *
   * @example
   * ```ts
   * const value = await store.setRef('tags/v1', hash);
   * ```
   */
  setRef(name: string, hash: HashLike, options?: AbortOptions): Promise<RefValue>;

  /**
   * Deletes a ref unconditionally. Idempotent.
   *
   * @example
   * ```ts
   * await store.deleteRef('tags/v1');
   * ```
   */
  deleteRef(name: string, options?: AbortOptions): Promise<void>;

  /**
   * Atomically replaces a ref's value if it still holds `expected`.
   *
   * - `expected = null`: succeed only if the ref is absent (create).
   * - `next = null`: delete the ref.
   *
   * Returns `{ ok: true, current: <new value> }` or `{ ok: false, current:
   * <value found> }`; a lost race is a result, not an error. On a backend
   * with `atomicRefs`, two swaps from the same `expected` never both
   * succeed, even from different machines, and a swap whose response was
   * lost in transit is still reported truthfully.
   *
   * @example
   * ```ts
   * // read-then-swap loop: no lost update
   * for (;;) {
   *   const cur = await store.getRef('counter');
   *   const next = await store.put(encode(decode(cur) + 1));
   *   if ((await store.compareAndSwap('counter', cur?.hash ?? null, next)).ok) break;
   * }
   * ```
   */
  compareAndSwap(name: string, expected: HashLike | null, next: HashLike | null, options?: AbortOptions): Promise<CasResult>;

  /**
   * Yields every ref whose name starts with `prefix` (all refs by default),
   * each once, sorted by name.
   *
   * @example
   * ```ts
   * for await (const ref of store.listRefs('heads/')) console.log(ref.name, ref.hash.toString());
   * ```
   */
  listRefs(prefix?: string, options?: AbortOptions): AsyncIterable<RefEntry>;

  /**
   * Calls `listener` with a ref's new value after each change, in order,
   * until `signal` fires or the store closes. Resolves once the watch is in
   * place: any change made after that is reported. On `watch: 'poll'`
   * backends, changes within one interval coalesce into the latest.
   *
   * @example
   * ```ts
   * const ac = new AbortController();
   * await store.watchRef('heads/main', (v) => console.log(v?.hash.toString()), { signal: ac.signal });
   * // later: ac.abort();
   * ```
   */
  watchRef(name: string, listener: RefListener, options?: WatchOptions): Promise<void>;

  /**
   * Resolves once every write acknowledged so far is as durable as this
   * store makes it (for write-back layers: in the remote). A no-op for
   * backends that are durable on acknowledgement.
   *
   * @example
   * ```ts
   * await store.flush();
   * ```
   */
  flush(options?: AbortOptions): Promise<void>;

  /**
   * Flushes, stops watchers and releases resources. Later calls reject with
   * {@link ClosedError}. Idempotent.
   *
   * @example
   * ```ts
   * await store.close();
   * ```
   */
  close(): Promise<void>;
}

/**
 * How many single calls the default batch helpers ({@link defaultPutMany},
 * {@link defaultGetMany}, {@link defaultHasMany}) keep in flight at once.
 */
export const DEFAULT_BATCH_CONCURRENCY = 16;

/**
 * `putMany` built from `put`: at most {@link DEFAULT_BATCH_CONCURRENCY} puts
 * in flight, hashes in input order. Every item is checked before the first
 * put, so bad input changes nothing; a pre-aborted signal rejects before
 * any work. For a backend with no faster batch path, and for a layer that
 * changes `put` and wants `putMany` to go through its own `put`.
 *
 * @example
 * ```ts
 * class MyStore implements Store {
 *   putMany(items: readonly Uint8Array[], options?: PutOptions): Promise<Hash[]> {
 *     return defaultPutMany(this, items, options);
 *   }
 *   // ...
 * }
 * ```
 */
export async function defaultPutMany(store: Pick<Store, 'put'>, items: readonly Uint8Array[], options?: PutOptions): Promise<Hash[]> {
  throwIfAborted(options?.signal);
  if (!Array.isArray(items)) throw new InvalidArgumentError(`putMany takes an array of Uint8Array, got ${typeof items}`);
  items.forEach((item, i) => {
    if (!(item instanceof Uint8Array)) throw new InvalidArgumentError(`putMany item ${i} must be a Uint8Array, got ${item === null ? 'null' : typeof item}`);
  });
  return inOrder(items, (item) => store.put(item, options));
}

/**
 * `getMany` built from `get`: at most {@link DEFAULT_BATCH_CONCURRENCY} gets
 * in flight, bytes in input order. Every hash is parsed before the first
 * get (a bad one is an {@link InvalidHashError}); a missing object rejects
 * with the {@link NotFoundError} of the first missing hash in input order.
 *
 * @example
 * ```ts
 * getMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<Uint8Array[]> {
 *   return defaultGetMany(this, hashes, options);
 * }
 * ```
 */
export async function defaultGetMany(store: Pick<Store, 'get'>, hashes: readonly HashLike[], options?: AbortOptions): Promise<Uint8Array[]> {
  throwIfAborted(options?.signal);
  const parsed = hashesOf('getMany', hashes);
  return inOrder(parsed, (hash) => store.get(hash, options));
}

/**
 * `hasMany` built from `has`: at most {@link DEFAULT_BATCH_CONCURRENCY} calls
 * in flight, answers in input order; hashes parsed first, as in
 * {@link defaultGetMany}.
 *
 * @example
 * ```ts
 * hasMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<boolean[]> {
 *   return defaultHasMany(this, hashes, options);
 * }
 * ```
 */
export async function defaultHasMany(store: Pick<Store, 'has'>, hashes: readonly HashLike[], options?: AbortOptions): Promise<boolean[]> {
  throwIfAborted(options?.signal);
  const parsed = hashesOf('hasMany', hashes);
  return inOrder(parsed, (hash) => store.has(hash, options));
}

function hashesOf(call: string, hashes: readonly HashLike[]): Hash[] {
  if (!Array.isArray(hashes)) throw new InvalidArgumentError(`${call} takes an array of hashes, got ${typeof hashes}`);
  return hashes.map(toHash);
}

/**
 * Maps with bounded concurrency, results in input order. After a failure no
 * new call starts; once the started ones settle, the failure with the lowest
 * index is thrown: every lower index was started, so it is the first failure
 * in input order, whatever order the calls finished in.
 */
async function inOrder<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const failed: { index: number; error: unknown }[] = [];
  const worker = async (): Promise<void> => {
    while (failed.length === 0 && next < items.length) {
      const index = next++;
      try {
        results[index] = await fn(items[index]!);
      } catch (error) {
        failed.push({ index, error });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(DEFAULT_BATCH_CONCURRENCY, items.length) }, worker));
  if (failed.length > 0) throw failed.reduce((a, b) => (b.index < a.index ? b : a)).error;
  return results;
}
