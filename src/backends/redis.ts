/**
 * The Redis backend: objects and refs in one Redis database (via `ioredis`).
 *
 * - Objects are string keys `<keyPrefix>o:<hash text>`, written with
 *   `SET NX` (so storing an object twice is one write) and verified against
 *   their hash on every read.
 * - Refs live in one Redis hash (name → `"<version> <hash>"`), mirrored in
 *   a sorted set for sorted, paged listing. Every ref write is a Lua script
 *   (see `redis/scripts.ts`), which Redis runs atomically: compare-and-swap
 *   checks the expected value and writes in one step, so `atomicRefs` holds
 *   between every client of the server.
 * - `watchRef` is push: each script publishes the new value on the ref's
 *   channel, and a subscriber connection relays it.
 *
 * Durability is the server's: acknowledged writes survive a crash of this
 * process; surviving a restart of Redis needs its persistence on
 * (`appendonly yes`; `appendfsync always` for power loss). Redis Cluster is
 * not supported (the scripts touch several keys).
 *
 * @module
 */
import { Redis, type RedisOptions } from 'ioredis';
import { raceAbort, throwIfAborted, type AbortOptions } from '../abort.js';
import { ClosedError, CorruptStoreError, NotFoundError } from '../errors.js';
import { parseHash, type Hash } from '../hash.js';
import { assertObjectSource, assertRange, collectBytes, hashOf, toHash, verifiedStream, verifyBytes } from '../object-io.js';
import { ListenerSet } from '../internal/listeners.js';
import { integerOption, invalidOption, stringOption } from '../internal/options.js';
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
import { nativeStreams } from '../data/streams/native.js';
import { mapRedisError } from './redis/errors.js';
import { COMPARE_AND_SWAP, DELETE_REF, SET_REF, type LuaScript } from './redis/scripts.js';
import { RedisStreams } from './redis/streams.js';

/** Options of {@link openRedisStore}. */
export interface RedisStoreOptions {
  /**
   * The server, as `redis://[[user]:password@]host[:port][/db]` (or
   * `rediss://` for TLS). Never logged: errors name host and port only.
   * @default 'redis://127.0.0.1:6379'
   */
  url?: string | undefined;
  /**
   * Extra `ioredis` options (TLS, sentinel, credentials...), applied over the URL.
   * @default {}
   */
  redis?: RedisOptions | undefined;
  /**
   * Prefix of every Redis key this store uses, so that several stores (or
   * other applications) share one database without meeting.
   * @default 'cairn:'
   */
  keyPrefix?: string | undefined;
  /**
   * What `capabilities.durable` reports. Acknowledged writes always survive
   * a crash of this process; set `false` when the server runs without
   * persistence and callers must not rely on a Redis restart keeping data.
   * @default true
   */
  durable?: boolean | undefined;
  /**
   * How long to wait for the connection before failing.
   * @default 10000
   */
  connectTimeoutMs?: number | undefined;
}

/** Objects larger than this are streamed by `getStream` in ranges of this size. */
const STREAM_RANGE = 1 << 20;
/** Refs fetched per page while listing. */
const LIST_PAGE = 500;
/** Keys per SCAN round trip. */
const SCAN_COUNT = 1000;

/**
 * Connects to Redis and opens a store on it. Rejects with a
 * {@link BackendError} (retryable) if the server cannot be reached, and a
 * {@link PermissionError} if it refuses the credentials.
 *
 * @example
 * ```ts
 * const store = await openRedisStore({ url: 'redis://127.0.0.1:6379', keyPrefix: 'myapp:' });
 * const hash = await store.put(new TextEncoder().encode('hello'));
 * await store.compareAndSwap('heads/main', null, hash);
 * await store.close();
 * ```
 */
export async function openRedisStore(options: RedisStoreOptions = {}): Promise<RedisStore> {
  const owner = 'openRedisStore';
  const url = options.url ?? 'redis://127.0.0.1:6379';
  const keyPrefix = stringOption(owner, 'keyPrefix', options.keyPrefix, 'cairn:');
  const connectTimeout = integerOption(owner, 'connectTimeoutMs', options.connectTimeoutMs, 10_000, 1);
  let server: string;
  try {
    const parsed = new URL(url);
    if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new Error(parsed.protocol);
    server = `${parsed.hostname}:${parsed.port || '6379'}`;
  } catch (cause) {
    // The URL may hold a password: it is not shown.
    throw invalidOption(owner, 'url', 'a redis:// or rediss:// URL such as "redis://127.0.0.1:6379"', url, { cause, hideValue: true });
  }
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout,
    // Fail calls after a couple of reconnect attempts instead of queueing them forever.
    maxRetriesPerRequest: 2,
    enableAutoPipelining: true,
    ...options.redis,
  });
  // Connection errors also reach every pending call; without a listener ioredis would log them.
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.ping();
  } catch (cause) {
    client.disconnect();
    throw mapRedisError(cause, 'cannot open the Redis store', server);
  }
  return new RedisStore(client, { keyPrefix, server, durable: options.durable ?? true });
}

interface Watch {
  readonly listeners: ListenerSet<RefValue | undefined>;
  /** Settles once the server acknowledged the subscription. */
  readonly subscribed: Promise<unknown>;
}

/** See {@link openRedisStore}. */
export class RedisStore implements Store {
  readonly capabilities: StoreCapabilities;
  /** Native event streams (`redis/streams.ts`), found by `eventStreams`. */
  readonly [nativeStreams]: RedisStreams;

  readonly #client: Redis;
  readonly #server: string;
  readonly #prefix: string;
  readonly #refsKey: string;
  readonly #namesKey: string;
  readonly #versionKey: string;
  #subscriber: Redis | undefined;
  readonly #watches = new Map<string, Watch>();
  readonly #stopWatching = new AbortController();
  #closed = false;

  /** @internal Use {@link openRedisStore}. */
  constructor(client: Redis, config: { keyPrefix: string; server: string; durable: boolean }) {
    this.#client = client;
    this.#server = config.server;
    this.#prefix = config.keyPrefix;
    this.#refsKey = `${config.keyPrefix}refs`;
    this.#namesKey = `${config.keyPrefix}refnames`;
    this.#versionKey = `${config.keyPrefix}refversion`;
    this.capabilities = {
      writable: true,
      durable: config.durable,
      atomicRefs: true,
      conditionalDelete: true,
      watch: 'push',
      multipart: false,
    };
    this[nativeStreams] = new RedisStreams(client, { keyPrefix: config.keyPrefix, server: config.server, check: (o) => this.#check(o) });
  }

  #check(options: AbortOptions | undefined): void {
    if (this.#closed) throw new ClosedError('the Redis store is closed');
    throwIfAborted(options?.signal);
  }

  /** Runs one Redis call, mapping its failure and honouring the signal. */
  async #call<T>(what: string, options: AbortOptions | undefined, fn: () => Promise<T>, key?: string): Promise<T> {
    try {
      return await raceAbort(fn(), options?.signal);
    } catch (cause) {
      throw mapRedisError(cause, what, this.#server, key);
    }
  }

  #objectKey(hash: Hash): string {
    return `${this.#prefix}o:${hash.toString()}`;
  }

  #channel(name: string): string {
    return `${this.#prefix}ref:${name}`;
  }

  async #eval(script: LuaScript, keys: string[], args: string[]): Promise<unknown> {
    try {
      return await this.#client.evalsha(script.sha, keys.length, ...keys, ...args);
    } catch (error) {
      // The server's script cache is empty after a restart or SCRIPT FLUSH.
      if (!String((error as Error | undefined)?.message).startsWith('NOSCRIPT')) throw error;
      return this.#client.eval(script.lua, keys.length, ...keys, ...args);
    }
  }

  async put(source: ObjectSource, options?: PutOptions): Promise<Hash> {
    this.#check(options);
    assertObjectSource(source);
    const bytes = await collectBytes(source, options?.signal);
    this.#check(options);
    const hash = hashOf(bytes, options?.algorithm);
    await this.#call('cannot store an object', options, () => this.#client.set(this.#objectKey(hash), Buffer.from(bytes), 'NX'), hash.toString());
    return hash;
  }

  async get(hashLike: HashLike, options?: AbortOptions): Promise<Uint8Array> {
    this.#check(options);
    const hash = toHash(hashLike);
    const bytes = await this.#call('cannot read an object', options, () => this.#client.getBuffer(this.#objectKey(hash)), hash.toString());
    if (bytes === null) throw notFound(hash);
    verifyBytes(hash, bytes);
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  async *getStream(hashLike: HashLike, options?: AbortOptions): AsyncIterable<Uint8Array> {
    this.#check(options);
    const hash = toHash(hashLike);
    const key = this.#objectKey(hash);
    const length = await this.#call('cannot read an object', options, () => this.#client.strlen(key), hash.toString());
    if (length === 0 && !(await this.#call('cannot read an object', options, () => this.#client.exists(key)))) throw notFound(hash);
    if (length <= STREAM_RANGE) {
      yield await this.get(hash, options);
      return;
    }
    const client = this.#client;
    const call = this.#call.bind(this);
    async function* ranges(): AsyncIterable<Uint8Array> {
      for (let start = 0; start < length; start += STREAM_RANGE) {
        const end = Math.min(length, start + STREAM_RANGE) - 1;
        const chunk = await call('cannot read an object', options, () => client.getrangeBuffer(key, start, end), hash.toString());
        // Objects are immutable, so a short range means the key was deleted while streaming.
        if (chunk.length !== end - start + 1) throw notFound(hash);
        yield new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length);
      }
    }
    yield* verifiedStream(hash, ranges());
  }

  async getRange(hashLike: HashLike, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
    this.#check(options);
    assertRange(offset, length);
    const hash = toHash(hashLike);
    const key = this.#objectKey(hash);
    const chunk =
      length === 0 ? Buffer.alloc(0) : await this.#call('cannot read an object', options, () => this.#client.getrangeBuffer(key, offset, offset + length - 1), hash.toString());
    // GETRANGE answers an empty string both past the end and for a missing key.
    if (chunk.length === 0 && !(await this.#call('cannot read an object', options, () => this.#client.exists(key), hash.toString()))) throw notFound(hash);
    return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length);
  }

  async has(hashLike: HashLike, options?: AbortOptions): Promise<boolean> {
    this.#check(options);
    const hash = toHash(hashLike);
    return (await this.#call('cannot check an object', options, () => this.#client.exists(this.#objectKey(hash)), hash.toString())) === 1;
  }

  async delete(hashLike: HashLike, options?: AbortOptions): Promise<void> {
    this.#check(options);
    const hash = toHash(hashLike);
    await this.#call('cannot delete an object', options, () => this.#client.del(this.#objectKey(hash)), hash.toString());
  }

  async *listObjects(options?: AbortOptions): AsyncIterable<Hash> {
    this.#check(options);
    const head = `${this.#prefix}o:`;
    const pattern = `${escapeGlob(head)}*`;
    // SCAN may return a key more than once (across a rehash); the contract says each once.
    const seen = new Set<string>();
    let cursor = '0';
    do {
      this.#check(options);
      const [next, keys] = await this.#call('cannot list objects', options, () =>
        this.#client.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT),
      );
      cursor = next;
      for (const key of keys) {
        if (seen.has(key)) continue;
        seen.add(key);
        yield parseHash(key.slice(head.length));
      }
    } while (cursor !== '0');
  }

  async putMany(items: readonly Uint8Array[], options?: PutOptions): Promise<Hash[]> {
    this.#check(options);
    for (const item of items) assertObjectSource(item);
    const all = await Promise.all(items.map((item) => collectBytes(item, options?.signal)));
    this.#check(options);
    const hashes = all.map((bytes) => hashOf(bytes, options?.algorithm));
    if (hashes.length === 0) return [];
    const pipeline = this.#client.pipeline();
    hashes.forEach((hash, i) => pipeline.set(this.#objectKey(hash), Buffer.from(all[i]!), 'NX'));
    const results = await this.#call('cannot store objects', options, () => pipeline.exec());
    for (const [error] of results ?? []) if (error) throw mapRedisError(error, 'cannot store objects', this.#server);
    return hashes;
  }

  async getMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<Uint8Array[]> {
    this.#check(options);
    const parsed = hashes.map(toHash);
    if (parsed.length === 0) return [];
    const found = await this.#call('cannot read objects', options, () => this.#client.mgetBuffer(parsed.map((h) => this.#objectKey(h))));
    return found.map((bytes, i) => {
      const hash = parsed[i]!;
      if (bytes === null) throw notFound(hash);
      verifyBytes(hash, bytes);
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
    });
  }

  async hasMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<boolean[]> {
    this.#check(options);
    const parsed = hashes.map(toHash);
    if (parsed.length === 0) return [];
    const pipeline = this.#client.pipeline();
    for (const hash of parsed) pipeline.exists(this.#objectKey(hash));
    const results = await this.#call('cannot check objects', options, () => pipeline.exec());
    return (results ?? []).map(([error, count]) => {
      if (error) throw mapRedisError(error, 'cannot check objects', this.#server);
      return count === 1;
    });
  }

  async getRef(name: string, options?: AbortOptions): Promise<RefValue | undefined> {
    this.#check(options);
    assertRefName(name);
    const raw = await this.#call('cannot read a ref', options, () => this.#client.hget(this.#refsKey, name), name);
    return raw === null ? undefined : parseValue(raw, name);
  }

  async setRef(name: string, hashLike: HashLike, options?: AbortOptions): Promise<RefValue> {
    this.#check(options);
    assertRefName(name);
    const hash = toHash(hashLike);
    const raw = await this.#call(
      'cannot set a ref',
      options,
      () => this.#eval(SET_REF, [this.#refsKey, this.#namesKey, this.#versionKey], [name, hash.toString(), this.#channel(name)]),
      name,
    );
    return parseValue(String(raw), name)!;
  }

  async deleteRef(name: string, options?: AbortOptions): Promise<void> {
    this.#check(options);
    assertRefName(name);
    await this.#call(
      'cannot delete a ref',
      options,
      () => this.#eval(DELETE_REF, [this.#refsKey, this.#namesKey, this.#versionKey], [name, this.#channel(name)]),
      name,
    );
  }

  async compareAndSwap(name: string, expected: HashLike | null, next: HashLike | null, options?: AbortOptions): Promise<CasResult> {
    this.#check(options);
    assertRefName(name);
    const expectedText = expected === null ? '' : toHash(expected).toString();
    const nextText = next === null ? '' : toHash(next).toString();
    const reply = await this.#call(
      'cannot swap a ref',
      options,
      () =>
        this.#eval(COMPARE_AND_SWAP, [this.#refsKey, this.#namesKey, this.#versionKey], [name, expectedText, nextText, this.#channel(name)]),
      name,
    );
    const [ok, raw] = reply as [number, string];
    return { ok: ok === 1, current: raw === '' ? undefined : parseValue(raw, name) };
  }

  async *listRefs(prefix = '', options?: AbortOptions): AsyncIterable<RefEntry> {
    this.#check(options);
    assertRefPrefix(prefix);
    // Lexical range of the names starting with prefix: [prefix, prefix + "\xff").
    let min = prefix === '' ? '-' : `[${prefix}`;
    const max = prefix === '' ? '+' : `(${prefix}\xff`;
    for (;;) {
      this.#check(options);
      const names = await this.#call('cannot list refs', options, () =>
        this.#client.zrangebylex(this.#namesKey, min, max, 'LIMIT', 0, LIST_PAGE),
      );
      if (names.length === 0) return;
      const values = await this.#call('cannot list refs', options, () => this.#client.hmget(this.#refsKey, ...names));
      for (let i = 0; i < names.length; i++) {
        const raw = values[i];
        // A ref deleted between the two calls is skipped, as a listing may.
        if (raw !== null && raw !== undefined) yield { name: names[i]!, ...parseValue(raw, names[i]!)! };
      }
      if (names.length < LIST_PAGE) return;
      min = `(${names[names.length - 1]!}`;
    }
  }

  async watchRef(name: string, listener: RefListener, options?: WatchOptions): Promise<void> {
    this.#check(options);
    assertRefName(name);
    const channel = this.#channel(name);
    const subscriber = this.#subscriberConnection();
    let watch = this.#watches.get(channel);
    if (watch === undefined) {
      watch = { listeners: new ListenerSet(), subscribed: subscriber.subscribe(channel) };
      this.#watches.set(channel, watch);
    }
    const remove = watch.listeners.add(listener);
    const current = watch;
    const stop = (): void => {
      remove();
      if (current.listeners.size === 0 && this.#watches.get(channel) === current) {
        this.#watches.delete(channel);
        if (!this.#closed) subscriber.unsubscribe(channel).catch(() => undefined);
      }
    };
    const signals = [this.#stopWatching.signal, ...(options?.signal ? [options.signal] : [])];
    const stopOn = AbortSignal.any(signals);
    if (stopOn.aborted) {
      stop();
      throwIfAborted(options?.signal);
    }
    stopOn.addEventListener('abort', stop, { once: true });
    try {
      await this.#call('cannot watch a ref', options, () => current.subscribed, name);
    } catch (error) {
      stop();
      throw error;
    }
  }

  /** The connection that relays ref changes, made on first watch. */
  #subscriberConnection(): Redis {
    if (this.#subscriber === undefined) {
      const subscriber = this.#client.duplicate({ lazyConnect: false });
      subscriber.on('error', () => undefined);
      subscriber.on('message', (channel: string, message: string) => {
        const watch = this.#watches.get(channel);
        if (watch === undefined) return;
        const name = channel.slice(`${this.#prefix}ref:`.length);
        // A listener's failure is its own: the set isolates it from the others and from the connection.
        watch.listeners.emit(message === '' ? undefined : parseValue(message, name));
      });
      this.#subscriber = subscriber;
    }
    return this.#subscriber;
  }

  async flush(options?: AbortOptions): Promise<void> {
    this.#check(options);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopWatching.abort();
    this.#watches.clear();
    await Promise.all([quit(this.#subscriber), quit(this.#client), this[nativeStreams].close()]);
  }
}

async function quit(client: Redis | undefined): Promise<void> {
  if (client === undefined) return;
  try {
    await client.quit();
  } catch {
    client.disconnect();
  }
}

function notFound(hash: Hash): NotFoundError {
  return new NotFoundError(`object ${hash.toString()} not found`, { key: hash.toString() });
}

/** Parses a stored `"<version> <hash>"` value. */
function parseValue(raw: string, name: string): RefValue | undefined {
  const space = raw.indexOf(' ');
  if (space <= 0) {
    throw new CorruptStoreError(`ref ${name} holds ${JSON.stringify(raw.slice(0, 80))}, not a Cairn ref value; is another application using this key prefix?`, {
      ref: name,
    });
  }
  return { version: raw.slice(0, space), hash: parseHash(raw.slice(space + 1)) };
}

/** Escapes Redis glob metacharacters so a key prefix matches only itself. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
