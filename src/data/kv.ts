/**
 * A key-value namespace on any {@link Store}: each key is the ref
 * `prefix + key`, each value an object. Writes are as atomic as the store's
 * refs, and {@link KeyValue.compareAndSwap} is the store's compare-and-swap,
 * so it holds between processes on every backend with `atomicRefs`.
 *
 * Values are bytes or JSON, chosen per view with `encoding`; both views of
 * one store and prefix see the same keys (a JSON value's bytes are its UTF-8
 * JSON text).
 *
 * @module
 */
import type { AbortOptions } from '../abort.js';
import { InvalidArgumentError } from '../errors.js';
import { hashBytes } from '../hash.js';
import type { Store } from '../store.js';
import { encodeJson, plainBytes, tryDecodeJson, type JsonValue } from './json.js';
import { assertKeyName, assertKeyPrefix, assertNamespace } from './names.js';

/** How values are encoded: raw bytes, or JSON values stored as UTF-8 JSON text. */
export type KeyValueEncoding = 'bytes' | 'json';

/** Options of {@link keyValue}. */
export interface KeyValueOptions<E extends KeyValueEncoding = KeyValueEncoding> {
  /**
   * `'bytes'`: values are `Uint8Array`. `'json'`: values are JSON values
   * that read back unchanged (others are an {@link InvalidArgumentError}).
   * @default 'bytes'
   */
  encoding?: E | undefined;
  /**
   * Ref prefix of the namespace; `""` or ending in `/`.
   * @default 'kv/'
   */
  prefix?: string | undefined;
}

/** The outcome of {@link KeyValue.compareAndSwap}: `current` is the value now held (`undefined`: absent). */
export interface KeyValueSwap<V> {
  readonly ok: boolean;
  readonly current: V | undefined;
}

/**
 * Opens a key-value view of `store`.
 *
 * @example
 * ```ts
 * const kv = keyValue(store, { encoding: 'json' });
 * await kv.put('users/42', { name: 'Ada' });
 * await kv.get('users/42');                    // { name: 'Ada' }
 * await kv.compareAndSwap('users/42', { name: 'Ada' }, { name: 'Ada L.' }); // { ok: true, ... }
 * for await (const key of kv.keys('users/')) console.log(key);
 * ```
 */
export function keyValue(store: Store, options: KeyValueOptions<'json'> & { encoding: 'json' }): KeyValue<JsonValue>;
export function keyValue(store: Store, options?: KeyValueOptions<'bytes'>): KeyValue<Uint8Array>;
export function keyValue(store: Store, options: KeyValueOptions = {}): KeyValue<JsonValue> | KeyValue<Uint8Array> {
  const encoding = options.encoding ?? 'bytes';
  if (encoding !== 'bytes' && encoding !== 'json') {
    throw new InvalidArgumentError(`option encoding must be "bytes" or "json", got ${JSON.stringify(encoding)}`);
  }
  const prefix = options.prefix ?? 'kv/';
  assertNamespace(prefix, 'prefix');
  return encoding === 'json' ? new KeyValue(store, prefix, jsonCodec) : new KeyValue(store, prefix, bytesCodec);
}

interface Codec<V> {
  encode(value: unknown): Uint8Array;
  decode(bytes: Uint8Array, key: string): V;
}

const bytesCodec: Codec<Uint8Array> = {
  encode(value) {
    if (!(value instanceof Uint8Array)) {
      throw new InvalidArgumentError(
        `a bytes key-value view stores Uint8Array values, got ${value === null ? 'null' : typeof value}; open it with { encoding: 'json' } for JSON`,
      );
    }
    return value;
  },
  decode: (bytes) => plainBytes(bytes),
};

const jsonCodec: Codec<JsonValue> = {
  encode: (value) => encodeJson(value, 'value'),
  decode(bytes, key) {
    const decoded = tryDecodeJson(bytes);
    if (decoded === undefined) {
      throw new InvalidArgumentError(`the value of key "${key}" is not JSON; read it with a { encoding: 'bytes' } view`, { key });
    }
    return decoded.value;
  },
};

/** See {@link keyValue}. `V` is `Uint8Array` or {@link JsonValue}. */
export class KeyValue<V> {
  readonly #store: Store;
  readonly #prefix: string;
  readonly #codec: Codec<V>;

  /** @internal Use {@link keyValue}. */
  constructor(store: Store, prefix: string, codec: Codec<V>) {
    this.#store = store;
    this.#prefix = prefix;
    this.#codec = codec;
  }

  /**
   * The value of `key`, or `undefined` if absent.
   *
   * @example
   * ```ts
   * const settings = await kv.get('settings');
   * ```
   */
  async get(key: string, options: AbortOptions = {}): Promise<V | undefined> {
    const ref = await this.#store.getRef(this.#ref(key), options);
    if (ref === undefined) return undefined;
    return this.#codec.decode(await this.#store.get(ref.hash, options), key);
  }

  /**
   * Sets `key` to `value` (last writer wins; use {@link KeyValue.compareAndSwap}
   * where another writer may exist). A bad key or value is an
   * {@link InvalidArgumentError} and writes nothing.
   *
   * @example
   * ```ts
   * await kv.put('settings', { theme: 'dark' });
   * ```
   */
  async put(key: string, value: V, options: AbortOptions = {}): Promise<void> {
    const ref = this.#ref(key);
    const bytes = this.#codec.encode(value);
    const hash = await this.#store.put(bytes, options);
    await this.#store.setRef(ref, hash, options);
  }

  /**
   * Removes `key`. Idempotent.
   *
   * @example
   * ```ts
   * await kv.delete('sessions/abc');
   * ```
   */
  async delete(key: string, options: AbortOptions = {}): Promise<void> {
    await this.#store.deleteRef(this.#ref(key), options);
  }

  /**
   * True if `key` holds a value.
   *
   * @example
   * ```ts
   * if (!(await kv.has('lock/owner'))) console.log('free');
   * ```
   */
  async has(key: string, options: AbortOptions = {}): Promise<boolean> {
    return (await this.#store.getRef(this.#ref(key), options)) !== undefined;
  }

  /**
   * Yields every key that starts with `prefix`, sorted, each once.
   *
   * @example
   * ```ts
   * for await (const key of kv.keys('users/')) console.log(key);
   * ```
   */
  async *keys(prefix = '', options: AbortOptions = {}): AsyncIterable<string> {
    assertKeyPrefix(prefix, this.#prefix, 'key');
    for await (const ref of this.#store.listRefs(this.#prefix + prefix, options)) yield ref.name.slice(this.#prefix.length);
  }

  /**
   * Sets `key` to `next` only if it holds `expected` (`undefined`: only if
   * absent; `next` `undefined`: delete). Atomic on stores with `atomicRefs`.
   * A lost race is `{ ok: false, current }` with the value that won.
   *
   * @example
   * ```ts
   * const { ok } = await kv.compareAndSwap('leader', undefined, { id: 'node-1' }); // take it if free
   * ```
   */
  async compareAndSwap(key: string, expected: V | undefined, next: V | undefined, options: AbortOptions = {}): Promise<KeyValueSwap<V>> {
    const ref = this.#ref(key);
    // Encode both before writing anything, so a bad value changes nothing.
    const expectedBytes = expected === undefined ? undefined : this.#codec.encode(expected);
    const nextBytes = next === undefined ? undefined : this.#codec.encode(next);
    const expectedHash = expectedBytes === undefined ? null : hashBytes(expectedBytes);
    const nextHash = nextBytes === undefined ? null : await this.#store.put(nextBytes, options);
    const swap = await this.#store.compareAndSwap(ref, expectedHash, nextHash, options);
    if (swap.ok) return { ok: true, current: next };
    if (swap.current === undefined) return { ok: false, current: undefined };
    return { ok: false, current: this.#codec.decode(await this.#store.get(swap.current.hash, options), key) };
  }

  /**
   * Read-modify-write without lost updates: calls `fn` with the current
   * value (`undefined` if absent) and stores its result by compare-and-swap,
   * calling `fn` again with the newer value after a lost race. `fn`
   * returning `undefined` deletes the key. Resolves to what was stored.
   *
   * @example
   * ```ts
   * await kv.update('counters/visits', (n) => ((n as number | undefined) ?? 0) + 1);
   * ```
   */
  async update(key: string, fn: (current: V | undefined) => V | undefined, options: AbortOptions = {}): Promise<V | undefined> {
    let current: V | undefined = await this.get(key, options);
    for (;;) {
      const next = fn(current);
      const swap = await this.compareAndSwap(key, current, next, options);
      if (swap.ok) return next;
      current = swap.current as V | undefined;
    }
  }

  #ref(key: string): string {
    assertKeyName(key, this.#prefix, 'key');
    return this.#prefix + key;
  }
}
