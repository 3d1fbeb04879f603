/**
 * Secret keys: a namespace kept apart from content.
 *
 * Content is meant to be copied (cached, pushed to a bucket, pulled by
 * others); secret keys are not. So keys never live in a content store's
 * object space: a {@link KeyStore} is its own thing, with a memory, a disk
 * (owner-only files, see `keys-disk.ts`) and a Store-backed implementation
 * (for Redis or S3: give it a store, or a prefix, used for keys only). Keys
 * leave a key store only when asked, through {@link moveKeys}.
 *
 * @module
 */
import { throwIfAborted, type AbortOptions } from '../abort.js';
import { ClosedError, ConflictError, InvalidArgumentError, NotFoundError } from '../errors.js';
import type { Hash } from '../hash.js';
import type { Store } from '../store.js';
import { plainBytes } from './json.js';
import { assertNamespace, assertSegmentName } from './names.js';

/**
 * A place for secret keys. Names are one segment of `A-Z a-z 0-9 . _ -`
 * (not starting with `.`); a bad name is an {@link InvalidArgumentError}
 * and changes nothing.
 */
export interface KeyStore {
  /**
   * Stores `secret` under `name`, replacing any key of that name. When it
   * resolves the key is readable (and durable, for the disk store).
   *
   * @example
   * ```ts
   * await keys.set('signing', crypto.getRandomValues(new Uint8Array(32)));
   * ```
   */
  set(name: string, secret: Uint8Array, options?: AbortOptions): Promise<void>;
  /**
   * The key stored under `name`; {@link NotFoundError} if there is none.
   *
   * @example
   * ```ts
   * const secret = await keys.get('signing');
   * ```
   */
  get(name: string, options?: AbortOptions): Promise<Uint8Array>;
  /**
   * True if a key is stored under `name`.
   *
   * @example
   * ```ts
   * if (!(await keys.has('signing'))) await keys.set('signing', generate());
   * ```
   */
  has(name: string, options?: AbortOptions): Promise<boolean>;
  /**
   * The names of all keys, sorted.
   *
   * @example
   * ```ts
   * for (const name of await keys.list()) console.log(name);
   * ```
   */
  list(options?: AbortOptions): Promise<string[]>;
  /**
   * Removes the key `name`. Idempotent.
   *
   * @example
   * ```ts
   * await keys.delete('old-signing');
   * ```
   */
  delete(name: string, options?: AbortOptions): Promise<void>;
  /**
   * Releases resources; later calls reject with {@link ClosedError}. Idempotent.
   *
   * @example
   * ```ts
   * await keys.close();
   * ```
   */
  close(): Promise<void>;
}

/** Options of {@link moveKeys}. */
export interface MoveKeysOptions extends AbortOptions {
  /**
   * The keys to move.
   * @default every key in the source
   */
  names?: readonly string[] | undefined;
  /**
   * Replace a different key of the same name in the target. Off, such a
   * name is a {@link ConflictError} and that key stays in the source.
   * @default false
   */
  overwrite?: boolean | undefined;
}

/**
 * Moves keys from `source` to `target`, one at a time: each is written to
 * the target, read back and compared, and only then removed from the
 * source, so a crash or error at any point leaves every key in at least one
 * of the two. Re-running after a failure finishes the job (a key already in
 * the target with the same bytes counts as written). Resolves to the names
 * moved.
 *
 * @example
 * ```ts
 * const local = await openDiskKeyStore('/home/me/.cairn-keys');
 * const moved = await moveKeys(memoryKeys, local); // ['signing', ...]
 * ```
 */
export async function moveKeys(source: KeyStore, target: KeyStore, options: MoveKeysOptions = {}): Promise<string[]> {
  if (source === target) throw new InvalidArgumentError('moveKeys needs two different key stores');
  const names = options.names ?? (await source.list(options));
  for (const name of names) assertSegmentName(name, 'key name');
  const moved: string[] = [];
  for (const name of names) {
    throwIfAborted(options.signal);
    const secret = await source.get(name, options);
    if (!options.overwrite && (await target.has(name, options))) {
      const existing = await target.get(name, options);
      if (!sameBytes(existing, secret)) {
        throw new ConflictError(
          `the target already holds a different key named "${name}"; nothing was moved for it (pass overwrite: true to replace it)`,
          { key: name },
        );
      }
    } else {
      await target.set(name, secret, options);
    }
    const written = await target.get(name, options);
    if (!sameBytes(written, secret)) {
      throw new ConflictError(`key "${name}" changed in the target while it was being moved; it stays in the source`, { key: name });
    }
    await source.delete(name, options);
    moved.push(name);
  }
  return moved;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

/** Throws {@link InvalidArgumentError} unless `secret` is bytes. */
export function assertSecret(secret: unknown): asserts secret is Uint8Array {
  if (!(secret instanceof Uint8Array)) {
    throw new InvalidArgumentError(`a secret key must be a Uint8Array, got ${secret === null ? 'null' : typeof secret}`);
  }
}

/**
 * A key store in memory: for tests, and for keys that must never touch a disk.
 *
 * @example
 * ```ts
 * const keys = memoryKeyStore();
 * await keys.set('api', new TextEncoder().encode('s3cr3t'));
 * ```
 */
export function memoryKeyStore(): KeyStore {
  const keys = new Map<string, Uint8Array>();
  let closed = false;
  const check = (options: AbortOptions | undefined): void => {
    if (closed) throw new ClosedError('the key store is closed');
    throwIfAborted(options?.signal);
  };
  return {
    async set(name, secret, options) {
      check(options);
      assertSegmentName(name, 'key name');
      assertSecret(secret);
      keys.set(name, secret.slice());
    },
    async get(name, options) {
      check(options);
      assertSegmentName(name, 'key name');
      const found = keys.get(name);
      if (found === undefined) throw new NotFoundError(`no key named "${name}"`, { key: name });
      return found.slice();
    },
    async has(name, options) {
      check(options);
      assertSegmentName(name, 'key name');
      return keys.has(name);
    },
    async list(options) {
      check(options);
      return [...keys.keys()].sort();
    },
    async delete(name, options) {
      check(options);
      assertSegmentName(name, 'key name');
      keys.get(name)?.fill(0);
      keys.delete(name);
    },
    async close() {
      for (const secret of keys.values()) secret.fill(0);
      keys.clear();
      closed = true;
    },
  };
}

/** Options of {@link storeKeyStore}. */
export interface StoreKeyStoreOptions {
  /**
   * Ref prefix of the keys; `""` or ending in `/`.
   * @default 'keys/'
   */
  prefix?: string | undefined;
}

/**
 * A key store on a {@link Store} (Redis, S3, ...). Each key is an object
 * named by the ref `<prefix><name>`; deleting or replacing a key deletes its
 * bytes too. Give it a store (or bucket prefix, Redis key prefix) used for
 * keys only: a store that is also synced as content would carry the keys
 * along. It does not close `store`.
 *
 * @example
 * ```ts
 * const keys = storeKeyStore(await openRedisStore({ url, keyPrefix: 'myapp-keys:' }));
 * ```
 */
export function storeKeyStore(store: Store, options: StoreKeyStoreOptions = {}): KeyStore {
  const prefix = options.prefix ?? 'keys/';
  assertNamespace(prefix, 'prefix');
  let closed = false;
  const refOf = (name: unknown): string => {
    if (closed) throw new ClosedError('the key store is closed');
    assertSegmentName(name, 'key name');
    return prefix + name;
  };
  // Bytes are deleted only when no other key holds the same secret.
  const dropBytes = async (hash: Hash, options: AbortOptions | undefined): Promise<void> => {
    for await (const ref of store.listRefs(prefix, options)) if (ref.hash.equals(hash)) return;
    await store.delete(hash, options);
  };
  return {
    async set(name, secret, opts) {
      const ref = refOf(name);
      assertSecret(secret);
      const hash = await store.put(secret, opts);
      const previous = await store.getRef(ref, opts);
      await store.setRef(ref, hash, opts);
      if (previous !== undefined && !previous.hash.equals(hash)) await dropBytes(previous.hash, opts);
    },
    async get(name, opts) {
      const ref = refOf(name);
      const value = await store.getRef(ref, opts);
      if (value === undefined) throw new NotFoundError(`no key named "${name}"`, { key: name });
      return plainBytes(await store.get(value.hash, opts));
    },
    async has(name, opts) {
      return (await store.getRef(refOf(name), opts)) !== undefined;
    },
    async list(opts) {
      if (closed) throw new ClosedError('the key store is closed');
      const names: string[] = [];
      for await (const ref of store.listRefs(prefix, opts)) names.push(ref.name.slice(prefix.length));
      return names;
    },
    async delete(name, opts) {
      const ref = refOf(name);
      const value = await store.getRef(ref, opts);
      if (value === undefined) return;
      const swap = await store.compareAndSwap(ref, value.hash, null, opts);
      if (swap.ok) await dropBytes(value.hash, opts);
    },
    async close() {
      closed = true;
    },
  };
}
