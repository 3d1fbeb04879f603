/**
 * The S3 backend: content-addressed objects and compare-and-swap refs on any
 * S3-compatible bucket that enforces conditional writes (AWS S3, MinIO,
 * Ceph RGW, Cloudflare R2, moto...).
 *
 * - **Objects** live at `<prefix>objects/<alg>/<2 hex>/<rest>`. A put sends
 *   `If-None-Match: *` and takes "already exists" (412, or 304 from older
 *   servers) as success, so content is never overwritten. Reads verify the
 *   hash. Objects above `multipartThreshold` go up in parts in bounded memory
 *   (see `s3/upload.ts` for how the unknown key of a stream is handled).
 * - **Refs** live at `<prefix>refs/<name>`, written only by conditional PUT
 *   (`If-None-Match: *` to create, `If-Match: <etag>` to replace). A delete
 *   writes a tombstone the same way, because MinIO ignores `If-Match` on
 *   DELETE. Every write carries a unique id and the ids of the writes before
 *   it, so a writer whose response was lost can tell whether its write landed
 *   (see `s3/ref-body.ts`): no false conflict, no double apply.
 * - Before the first ref write the store **probes** that the server enforces
 *   conditional writes; if it does not, ref writes fail with
 *   {@link UnsupportedError} instead of losing updates. Objects still work.
 *
 * @module
 */
import type { Readable } from 'node:stream';
import { sleep, throwIfAborted, type AbortOptions } from '../abort.js';
import { SingleFlight } from '../internal/single-flight.js';
import { BackendError, InvalidArgumentError, NotFoundError, type RefWriteAttempt } from '../errors.js';
import { DEFAULT_ALGORITHM, hashBytes, type Hash, type HashAlgorithm } from '../hash.js';
import { assertObjectSource, assertRange, chunksOf, concatBytes, isBytes, mapConcurrent, toHash, verifiedStream, verifyBytes } from '../object-io.js';
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
import { resolveConfig, type S3Config, type S3StoreOptions } from './s3/config.js';
import { S3Context } from './s3/context.js';
import { BodyTooLargeError } from './s3/direct.js';
import { backoff, isConditionalConflict, isKeyNotFound, isPreconditionFailed, statusOf } from './s3/errors.js';
import { KeyLayout } from './s3/keys.js';
import { ForeignReporter } from './s3/foreign.js';
import { parseAttempt } from './s3/pending.js';
import { rangedChunks, readChunks, type FetchRange } from './s3/ranged-get.js';
import { MAX_REF_RETRIES, S3Refs, type RefWrite } from './s3/refs.js';
import { createTransport, DirectTransport, type ListedKey, type Transport } from './s3/transport.js';
import { uploadBuffer, uploadStream, type UploadContext } from './s3/upload.js';

export type { ForeignEntry, ForeignListener, S3StoreOptions } from './s3/config.js';

const MiB = 1024 * 1024;
/** Bytes per ranged GET of `getStream`, and ranges in flight: chosen by measurement (`bench/s3.ts`). */
const GET_RANGE_SIZE = 8 * MiB;
const GET_RANGES_IN_FLIGHT = 4;

/**
 * Opens a store on an S3 bucket. Nothing is sent until the first call.
 *
 * @example
 * ```ts
 * import { s3Store } from 'cairn/backends/s3';
 * const store = s3Store({ bucket: 'my-bucket', prefix: 'cairn/', region: 'eu-west-1' });
 * const hash = await store.put(new TextEncoder().encode('hello'));
 * await store.compareAndSwap('heads/main', null, hash);
 * await store.close();
 * ```
 *
 * @example
 * ```ts
 * // MinIO or another S3-compatible server
 * const store = s3Store({ bucket: 'data', endpoint: 'http://127.0.0.1:9000' });
 * ```
 */
export function s3Store(options: S3StoreOptions): S3Store {
  return new S3Store(options);
}

/** See {@link s3Store}. */
export class S3Store implements Store {
  readonly capabilities: StoreCapabilities = {
    writable: true,
    durable: true,
    atomicRefs: true,
    conditionalDelete: true,
    watch: 'poll',
    multipart: true,
  };

  /** The bucket this store writes to. */
  readonly bucket: string;
  /** The key prefix of this store. */
  readonly prefix: string;

  readonly #ctx: S3Context;
  readonly #transport: Transport;
  readonly #keys: KeyLayout;
  readonly #ownsClient: boolean;
  readonly #upload: UploadContext;
  readonly #refs: S3Refs;
  /** Concurrent puts of one object share one request; so do gets (each caller gets its own copy of the bytes). */
  readonly #puts = new SingleFlight<string, Hash>();
  readonly #gets = new SingleFlight<string, Uint8Array>();
  readonly #foreign: ForeignReporter;
  #bucketChecked = false;

  constructor(options: S3StoreOptions) {
    const config = resolveConfig(options);
    this.bucket = config.bucket;
    this.prefix = config.prefix;
    this.#keys = new KeyLayout(config.prefix);
    this.#ownsClient = options.client === undefined;
    this.#transport = createTransport(config, options.client, options.credentials);
    this.#ctx = new S3Context(config, this.#transport, this.#keys);
    this.#foreign = new ForeignReporter(config.onForeign);
    this.#refs = new S3Refs(this.#ctx, this.#foreign);
    this.#upload = {
      api: this.#transport.multipart,
      partSize: config.partSize,
      queueSize: config.queueSize,
      exists: (key, signal) => this.#exists(key, signal, key),
    };
  }

  get #config(): S3Config {
    return this.#ctx.config;
  }

  // ---------------------------------------------------------------- objects

  async put(source: ObjectSource, options?: PutOptions): Promise<Hash> {
    const signal = options?.signal;
    this.#ctx.check(signal);
    assertObjectSource(source);
    const algorithm = options?.algorithm ?? DEFAULT_ALGORITHM;
    if (isBytes(source)) return this.#putBytes(source, algorithm, signal);
    const iterator = chunksOf(source, signal)[Symbol.asyncIterator]();
    const head: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const step = await iterator.next();
      if (step.done) return this.#putBytes(concatBytes(head), algorithm, signal);
      head.push(step.value);
      size += step.value.length;
      if (size > this.#config.multipartThreshold) break;
    }
    async function* rest(): AsyncIterable<Uint8Array> {
      while (head.length > 0) yield head.shift()!;
      for (;;) {
        const step = await iterator.next();
        if (step.done) return;
        yield step.value;
      }
    }
    try {
      return await uploadStream(this.#upload, rest(), algorithm, this.#keys.tmp(), (hash) => this.#keys.object(hash), signal);
    } catch (error) {
      throw this.#ctx.error(error, 'put object (multipart)', signal);
    }
  }

  async #putBytes(bytes: Uint8Array, algorithm: HashAlgorithm, signal: AbortSignal | undefined): Promise<Hash> {
    const hash = hashBytes(bytes, algorithm);
    const key = this.#keys.object(hash);
    if (bytes.length > this.#config.multipartThreshold) {
      try {
        await uploadBuffer(this.#upload, key, bytes, signal);
        return hash;
      } catch (error) {
        throw this.#ctx.error(error, 'put object', signal, hash.toString());
      }
    }
    // Concurrent puts of the same bytes (common when writers race on content) share one request.
    const shared = this.#ctx.closing;
    return this.#puts.share(key, () => this.#putSmall(key, hash, bytes, shared), signal);
  }

  async #putSmall(key: string, hash: Hash, bytes: Uint8Array, signal: AbortSignal): Promise<Hash> {
    // The signer would hash the body again for x-amz-content-sha256; we know it already.
    const sha256 = hash.algorithm === 'sha256' ? hash.hex : undefined;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          await this.#transport.put(key, bytes, { sha256, ifNoneMatch: '*', signal });
          return hash;
        } catch (error) {
          if (isPreconditionFailed(error)) return hash;
          if (!isConditionalConflict(error) || attempt >= MAX_REF_RETRIES) throw error;
          await sleep(backoff(attempt), signal);
        }
      }
    } catch (error) {
      throw this.#ctx.error(error, 'put object', signal, hash.toString());
    }
  }

  async get(hashLike: HashLike, options?: AbortOptions): Promise<Uint8Array> {
    this.#ctx.check(options?.signal);
    return this.#getBytes(toHash(hashLike), options?.signal);
  }

  /** Concurrent gets of one object share one request; each caller gets its own copy of the bytes. */
  #getBytes(hash: Hash, signal: AbortSignal | undefined): Promise<Uint8Array> {
    const shared = this.#ctx.closing;
    return this.#gets.share(
      hash.toString(),
      async () => {
        try {
          const { bytes } = await this.#transport.get(this.#keys.object(hash), { signal: shared });
          verifyBytes(hash, bytes);
          return bytes;
        } catch (error) {
          throw this.#ctx.error(error, 'get object', shared, hash.toString());
        }
      },
      // Buffer#slice shares memory; Uint8Array#slice copies.
      signal,
      (bytes) => Uint8Array.prototype.slice.call(bytes),
    );
  }

  async *getStream(hashLike: HashLike, options?: AbortOptions): AsyncIterable<Uint8Array> {
    const signal = options?.signal;
    this.#ctx.check(signal);
    const hash = toHash(hashLike);
    const key = this.#keys.object(hash);
    // Ranges in parallel on the direct client (on the SDK, its CPU per request would eat the gain).
    if (this.#transport instanceof DirectTransport) {
      const transport = this.#transport;
      const fetchRange: FetchRange = async (start, end, rangeSignal) => {
        const answer = await transport.stream(key, { signal: rangeSignal, range: `bytes=${start}-${end}` });
        return { chunks: await readChunks(answer.body, end - start + 1, rangeSignal), contentRange: answer.contentRange };
      };
      let first = true;
      try {
        for await (const chunk of verifiedStream(hash, rangedChunks(fetchRange, GET_RANGE_SIZE, GET_RANGES_IN_FLIGHT, signal))) {
          first = false;
          yield chunk;
        }
        return;
      } catch (error) {
        // Read whole below: an empty object (416, it has no range to give), or a server that ignored
        // the range and sent more than it asked for (refused after that many bytes).
        const readWhole = first && (statusOf(error) === 416 || error instanceof BodyTooLargeError);
        if (!readWhole) throw this.#ctx.error(error, 'get object', signal, hash.toString());
      }
    }
    let body: Readable;
    try {
      body = (await this.#transport.stream(key, { signal })).body;
    } catch (error) {
      throw this.#ctx.error(error, 'get object', signal, hash.toString());
    }
    try {
      for await (const chunk of verifiedStream(hash, body as AsyncIterable<Uint8Array>)) yield chunk;
    } catch (error) {
      throw this.#ctx.error(error, 'read object', signal, hash.toString());
    } finally {
      // An unread body holds its socket: release it however the consumer stopped.
      body.destroy();
    }
  }

  async getRange(hashLike: HashLike, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
    const signal = options?.signal;
    this.#ctx.check(signal);
    assertRange(offset, length);
    const hash = toHash(hashLike);
    if (length === 0) {
      if (!(await this.has(hash, options))) throw new NotFoundError(`object ${hash.toString()} not found`, { key: hash.toString() });
      return new Uint8Array(0);
    }
    try {
      return await this.#transport.range(this.#keys.object(hash), offset, length, signal);
    } catch (error) {
      throw this.#ctx.error(error, 'get object range', signal, hash.toString());
    }
  }

  async has(hashLike: HashLike, options?: AbortOptions): Promise<boolean> {
    this.#ctx.check(options?.signal);
    const hash = toHash(hashLike);
    return this.#exists(this.#keys.object(hash), options?.signal, hash.toString());
  }

  async #exists(key: string, signal: AbortSignal | undefined, subject: string): Promise<boolean> {
    try {
      await this.#transport.head(key, signal);
      return true;
    } catch (error) {
      if (statusOf(error) === 404) {
        // HEAD answers a bare 404 for a missing bucket too: tell them apart once.
        await this.#checkBucket(signal);
        return false;
      }
      throw this.#ctx.error(error, 'check object', signal, subject);
    }
  }

  async #checkBucket(signal: AbortSignal | undefined): Promise<void> {
    if (this.#bucketChecked) return;
    try {
      await this.#transport.headBucket(signal);
    } catch (error) {
      const status = statusOf(error);
      if (status === 404) {
        throw new BackendError(
          `bucket "${this.bucket}" does not exist at ${this.#config.endpointLabel}; create it or fix the bucket option`,
          { cause: error, retryable: false },
        );
      }
      // 403: credentials allowed to read objects may not be allowed HeadBucket. Not a verdict.
      if (status !== 403) throw this.#ctx.error(error, 'check bucket', signal);
    }
    this.#bucketChecked = true;
  }

  async delete(hashLike: HashLike, options?: AbortOptions): Promise<void> {
    const signal = options?.signal;
    this.#ctx.check(signal);
    const hash = toHash(hashLike);
    try {
      await this.#transport.delete(this.#keys.object(hash), signal);
    } catch (error) {
      if (!isKeyNotFound(error)) throw this.#ctx.error(error, 'delete object', signal, hash.toString());
    }
  }

  async *listObjects(options?: AbortOptions): AsyncIterable<Hash> {
    const signal = options?.signal;
    this.#ctx.check(signal);
    for await (const entries of this.#listKeys(this.#keys.objects, signal, 'list objects')) {
      for (const { key } of entries) {
        const hash = this.#keys.hashOf(key);
        if (hash !== undefined) yield hash;
        else this.#foreign.report({ kind: 'object', key, reason: 'it does not name a hash as <algorithm>/<2 hex>/<rest of the hex>' });
      }
    }
  }

  async *#listKeys(prefix: string, signal: AbortSignal | undefined, op: string): AsyncIterable<ListedKey[]> {
    let token: string | undefined;
    do {
      throwIfAborted(signal);
      this.#ctx.check(signal);
      let page;
      try {
        page = await this.#transport.list(prefix, token, signal);
      } catch (error) {
        throw this.#ctx.error(error, op, signal);
      }
      yield page.keys;
      token = page.next;
    } while (token !== undefined);
  }

  async putMany(items: readonly Uint8Array[], options?: PutOptions): Promise<Hash[]> {
    const signal = options?.signal;
    this.#ctx.check(signal);
    if (!Array.isArray(items)) throw new InvalidArgumentError('putMany takes an array of Uint8Array');
    items.forEach((item) => assertObjectSource(item));
    const algorithm = options?.algorithm ?? DEFAULT_ALGORITHM;
    return mapConcurrent(items, this.#config.concurrency, (item) =>
      isBytes(item) ? this.#putBytes(item, algorithm, signal) : this.put(item as ObjectSource, options),
    );
  }

  async getMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<Uint8Array[]> {
    this.#ctx.check(options?.signal);
    const parsed = hashes.map(toHash);
    return mapConcurrent(parsed, this.#config.concurrency, (hash) => this.#getBytes(hash, options?.signal));
  }

  async hasMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<boolean[]> {
    this.#ctx.check(options?.signal);
    const parsed = hashes.map(toHash);
    return mapConcurrent(parsed, this.#config.concurrency, (hash) => this.#exists(this.#keys.object(hash), options?.signal, hash.toString()));
  }

  // ------------------------------------------------------------------- refs

  async getRef(name: string, options?: AbortOptions): Promise<RefValue | undefined> {
    this.#ctx.check(options?.signal);
    assertRefName(name);
    return this.#refs.get(name, options?.signal);
  }

  async setRef(name: string, hashLike: HashLike, options?: AbortOptions): Promise<RefValue> {
    this.#ctx.check(options?.signal);
    assertRefName(name);
    const result = await this.#refs.swap({ name, expected: undefined, next: toHash(hashLike) }, options?.signal);
    return result.current!;
  }

  async deleteRef(name: string, options?: AbortOptions): Promise<void> {
    this.#ctx.check(options?.signal);
    assertRefName(name);
    await this.#refs.swap({ name, expected: undefined, next: null }, options?.signal);
  }

  /**
   * See {@link Store.compareAndSwap}. A ref whose body another tool wrote
   * counts as absent here (`expected` `null` replaces it), and a swap that
   * may have landed unseen throws {@link OutcomeUnknownError}: calling the
   * same swap again on this store, or {@link S3Store.resolveOutcome}, settles it.
   */
  async compareAndSwap(name: string, expected: HashLike | null, next: HashLike | null, options?: AbortOptions): Promise<CasResult> {
    this.#ctx.check(options?.signal);
    assertRefName(name);
    const write: RefWrite = { name, expected: expected === null ? null : toHash(expected), next: next === null ? null : toHash(next) };
    return this.#refs.swap(write, options?.signal);
  }

  /**
   * Settles a ref write that ended in {@link OutcomeUnknownError}, from this
   * store or any store on the same bucket and prefix (the attempt is plain
   * data). Resolves `{ ok: true }` if the write landed, or lands it now if
   * the ref still holds what the write expected (the same write, with the
   * same id: it can never land twice); otherwise `{ ok: false, current }`.
   * Throws {@link OutcomeUnknownError} again if answers are still lost.
   *
   * @example
   * ```ts
   * try {
   *   await store.compareAndSwap('heads/main', old, next);
   * } catch (error) {
   *   if (!(error instanceof OutcomeUnknownError)) throw error;
   *   const { ok, current } = await store.resolveOutcome(error.attempt);
   * }
   * ```
   */
  async resolveOutcome(attempt: RefWriteAttempt, options?: AbortOptions): Promise<CasResult> {
    this.#ctx.check(options?.signal);
    return this.#refs.resolve(parseAttempt(attempt), attempt, options?.signal);
  }

  async *listRefs(prefix = '', options?: AbortOptions): AsyncIterable<RefEntry> {
    const signal = options?.signal;
    this.#ctx.check(signal);
    assertRefPrefix(prefix);
    yield* this.#refs.list(prefix, options, (keyPrefix) => this.#listKeys(keyPrefix, signal, 'list refs'));
  }

  async watchRef(name: string, listener: RefListener, options?: WatchOptions): Promise<void> {
    this.#ctx.check(options?.signal);
    assertRefName(name);
    await this.#refs.watch(name, listener, options?.intervalMs, options?.signal);
  }

  // -------------------------------------------------------------- lifecycle

  async flush(options?: AbortOptions): Promise<void> {
    this.#ctx.check(options?.signal);
  }

  async close(): Promise<void> {
    if (this.#ctx.close() && this.#ownsClient) this.#transport.client.destroy();
  }
}
