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
import { setMaxListeners } from 'node:events';
import type { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type PutObjectCommandInput,
  type S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { abortError, backoffDelay, raceAbort, sleep, throwIfAborted, type AbortOptions } from '../abort.js';
import {
  BackendError,
  ClosedError,
  InvalidArgumentError,
  NotFoundError,
  UnsupportedError,
  type CairnError,
} from '../errors.js';
import { DEFAULT_ALGORITHM, hashBytes, type Hash, type HashAlgorithm } from '../hash.js';
import { assertObjectSource, assertRange, chunksOf, concatBytes, isBytes, mapConcurrent, toHash, verifiedStream, verifyBytes } from '../object-io.js';
import { assertRefName, assertRefPrefix, isValidRefName } from '../ref-name.js';
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
import { createAgents, createS3Client, KNOWN_SHA256 } from './s3/client.js';
import { DirectClient } from './s3/direct.js';
import {
  attemptsOf,
  isAbort,
  isAmbiguous,
  isConditionalConflict,
  isKeyNotFound,
  isPreconditionFailed,
  statusOf,
  toCairnError,
} from './s3/errors.js';
import { KeyLayout } from './s3/keys.js';
import {
  ABSENT_STATE,
  currentId,
  decodeRefBody,
  encodeRefBody,
  judgeWrite,
  newWriteId,
  nextRefBody,
  visibleValue,
  type RefState,
} from './s3/ref-body.js';
import { directMultipart, sdkMultipart } from './s3/multipart.js';
import { rangedChunks, type FetchRange } from './s3/ranged-get.js';
import { uploadBuffer, uploadStream, type UploadContext } from './s3/upload.js';

const MiB = 1024 * 1024;
/** Bytes per ranged GET of `getStream`, and ranges in flight: chosen by measurement (`bench/s3.ts`). */
const GET_RANGE_SIZE = 8 * MiB;
const GET_RANGES_IN_FLIGHT = 4;

/** Options of {@link s3Store}. */
export interface S3StoreOptions {
  /** The bucket. It must exist. */
  bucket: string;
  /**
   * Prepended to every key, so that several stores can share a bucket.
   * Usually ends in `/`.
   * @default ''
   */
  prefix?: string | undefined;
  /**
   * The S3 endpoint URL, for S3-compatible servers (`http://127.0.0.1:9000`).
   * @default AWS S3 in `region`
   */
  endpoint?: string | undefined;
  /**
   * The bucket's region.
   * @default process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1'
   */
  region?: string | undefined;
  /**
   * Address buckets as `endpoint/bucket/key` rather than `bucket.endpoint/key`.
   * MinIO and most self-hosted servers need it.
   * @default true when `endpoint` is set, else false
   */
  forcePathStyle?: boolean | undefined;
  /**
   * Credentials, or a provider of them. They are never logged nor put in an
   * error message.
   * @default the standard AWS chain (environment, profile, SSO, instance role...)
   */
  credentials?: S3ClientConfig['credentials'] | undefined;
  /**
   * An S3 client to use instead of creating one; the store does not destroy
   * it on close. Configure it with `requestChecksumCalculation` and
   * `responseChecksumValidation` set to `'WHEN_REQUIRED'`. When it is given,
   * `endpoint`, `region`, `forcePathStyle`, `credentials`, `maxSockets` and
   * the timeouts are ignored.
   * @default a client tuned as described in `s3/client.ts`
   */
  client?: S3Client | undefined;
  /**
   * Requests in flight for one `putMany`/`getMany`/`hasMany`/`listRefs`.
   * @default 32
   */
  concurrency?: number | undefined;
  /**
   * Sockets per HTTP(S) agent, shared by every call of this store.
   * @default 2 * concurrency
   */
  maxSockets?: number | undefined;
  /**
   * Objects larger than this many bytes are uploaded in parts. A stream is
   * buffered up to this size to tell which path it takes.
   * @default 16 MiB
   */
  multipartThreshold?: number | undefined;
  /**
   * Bytes per part of a multipart upload (S3 minimum 5 MiB). A streamed put
   * holds `partSize * (queueSize + 1)` bytes in part buffers it reuses
   * (40 MiB with the defaults, chosen by measurement in `bench/s3.ts`).
   * @default 8 MiB
   */
  partSize?: number | undefined;
  /**
   * Parts of one upload in flight at once. More helps on high-latency links
   * and costs `partSize` bytes of memory each.
   * @default 4
   */
  queueSize?: number | undefined;
  /**
   * How often {@link S3Store.watchRef} polls when the call gives no `intervalMs`.
   * @default 1000
   */
  watchIntervalMs?: number | undefined;
  /**
   * A request fails when its connection sends and receives nothing for this
   * long (an idle timeout: large transfers may take longer while bytes flow).
   * @default 30000
   */
  requestTimeoutMs?: number | undefined;
  /**
   * Time allowed to open a connection.
   * @default 5000
   */
  connectTimeoutMs?: number | undefined;
  /**
   * HTTP attempts per request, retrying throttling (503 SlowDown), 5xx and
   * network errors with backoff and jitter.
   * @default 4
   */
  maxAttempts?: number | undefined;
  /**
   * Send single-object PUT/GET/HEAD and ref reads as lean signed HTTP
   * requests instead of through the SDK's middleware (about a third of the
   * client CPU per small request; see `s3/direct.ts`). Used only when the
   * store made its own client and the endpoint is known: `endpoint`,
   * `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`, or AWS S3 in a standard region
   * (not FIPS or dual-stack).
   * @default true
   */
  directRequests?: boolean | undefined;
}

/**
 * Opens a store on an S3 bucket. Nothing is sent until the first call.
 *
 * @example
 * ```ts
 * import { s3Store } from 'cairn';
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

/**
 * Ref states kept (about 1.5 KiB each) to skip the read before a swap and
 * the GET of a listed ref whose ETag has not changed.
 */
const REF_CACHE_SIZE = 4096;
/** Give up a ref write after this many lost races or retries. */
const MAX_REF_ATTEMPTS = 200;
/** Retries of a ref write after a 409 or an ambiguous failure. */
const MAX_REF_RETRIES = 8;

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

  readonly #client: S3Client;
  readonly #direct: DirectClient | undefined;
  readonly #ownsClient: boolean;
  readonly #endpoint: string;
  readonly #keys: KeyLayout;
  readonly #concurrency: number;
  readonly #threshold: number;
  readonly #watchIntervalMs: number;
  readonly #upload: UploadContext;
  readonly #closing = new AbortController();
  readonly #refCache = new Map<string, RefState>();
  readonly #inflight = new Map<string, { promise: Promise<unknown>; joiners: number }>();
  #closed = false;
  #bucketChecked = false;
  #conditionalWrites: Promise<void> | undefined;
  #conditionalWritesOk = false;

  constructor(options: S3StoreOptions) {
    if (options === null || typeof options !== 'object') {
      throw new InvalidArgumentError('s3Store takes an options object with at least { bucket }');
    }
    if (typeof options.bucket !== 'string' || options.bucket.length === 0) {
      throw new InvalidArgumentError(`the bucket option must be a non-empty string, got ${JSON.stringify(options.bucket)}`);
    }
    const prefix = options.prefix ?? '';
    if (typeof prefix !== 'string') throw new InvalidArgumentError(`the prefix option must be a string, got ${typeof prefix}`);
    this.bucket = options.bucket;
    this.prefix = prefix;
    // Every request in flight listens to the store's close signal: hundreds is normal, not a leak.
    setMaxListeners(0, this.#closing.signal);
    this.#keys = new KeyLayout(prefix);
    this.#concurrency = positiveInt('concurrency', options.concurrency, 32);
    const maxSockets = positiveInt('maxSockets', options.maxSockets, this.#concurrency * 2);
    this.#threshold = nonNegativeInt('multipartThreshold', options.multipartThreshold, 16 * MiB);
    const partSize = nonNegativeInt('partSize', options.partSize, 8 * MiB);
    if (partSize < 5 * MiB) throw new InvalidArgumentError(`the partSize option must be at least 5 MiB (S3's minimum), got ${partSize}`);
    const queueSize = positiveInt('queueSize', options.queueSize, 4);
    this.#watchIntervalMs = positiveInt('watchIntervalMs', options.watchIntervalMs, 1000);
    const region = options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
    if (options.client !== undefined) {
      this.#client = options.client;
      this.#ownsClient = false;
      this.#direct = undefined;
      this.#endpoint = options.endpoint ?? 'the configured S3 endpoint';
    } else {
      // The SDK would read these itself; reading them here gives the direct path the same endpoint.
      const endpoint = options.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
      const forcePathStyle = options.forcePathStyle ?? endpoint !== undefined;
      const connectTimeoutMs = positiveInt('connectTimeoutMs', options.connectTimeoutMs, 5000);
      const requestTimeoutMs = positiveInt('requestTimeoutMs', options.requestTimeoutMs, 30_000);
      const maxAttempts = positiveInt('maxAttempts', options.maxAttempts, 4);
      const agents = createAgents(maxSockets);
      this.#client = createS3Client({
        endpoint,
        region,
        forcePathStyle,
        credentials: options.credentials,
        agents,
        connectTimeoutMs,
        requestTimeoutMs,
        maxAttempts,
      });
      this.#ownsClient = true;
      this.#endpoint = endpoint ?? `AWS S3 (${region})`;
      const base = options.directRequests === false ? undefined : directEndpoint(endpoint, region, this.bucket, forcePathStyle);
      const credentials = (this.#client.config as { credentials?: unknown }).credentials;
      this.#direct =
        base === undefined || typeof credentials !== 'function'
          ? undefined
          : new DirectClient({
              endpoint: base.url,
              pathStyle: base.pathStyle,
              bucket: this.bucket,
              region,
              credentials: credentials as () => Promise<{ accessKeyId: string; secretAccessKey: string }>,
              agent: base.url.protocol === 'https:' ? agents.https : agents.http,
              connectTimeoutMs,
              requestTimeoutMs,
              maxAttempts,
            });
    }
    this.#upload = {
      api: this.#direct === undefined ? sdkMultipart(this.#client, this.bucket) : directMultipart(this.#direct, this.bucket),
      partSize,
      queueSize,
      exists: (key, signal) => this.#exists(key, signal, key),
    };
  }

  // ---------------------------------------------------------------- objects

  async put(source: ObjectSource, options?: PutOptions): Promise<Hash> {
    const signal = options?.signal;
    this.#check(signal);
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
      if (size > this.#threshold) break;
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
      throw this.#error(error, 'put object (multipart)', signal);
    }
  }

  async #putBytes(bytes: Uint8Array, algorithm: HashAlgorithm, signal: AbortSignal | undefined): Promise<Hash> {
    const hash = hashBytes(bytes, algorithm);
    const key = this.#keys.object(hash);
    if (bytes.length > this.#threshold) {
      try {
        await uploadBuffer(this.#upload, key, bytes, signal);
        return hash;
      } catch (error) {
        throw this.#error(error, 'put object', signal, hash.toString());
      }
    }
    // Concurrent puts of the same bytes (common when writers race on content) share one request.
    return this.#shared(`put:${key}`, signal, (shared) => this.#putSmall(key, hash, bytes, shared));
  }

  async #putSmall(key: string, hash: Hash, bytes: Uint8Array, signal: AbortSignal): Promise<Hash> {
    try {
      // The signer would hash the body again for x-amz-content-sha256; we know it already.
      const sha256 = hash.algorithm === 'sha256' ? hash.hex : undefined;
      for (let attempt = 0; ; attempt++) {
        try {
          if (this.#direct !== undefined) {
            await this.#direct.send('PUT', key, { body: bytes, sha256, headers: { 'if-none-match': '*' }, signal });
          } else {
            const input: PutObjectCommandInput = { Bucket: this.bucket, Key: key, Body: bytes, ContentLength: bytes.length, IfNoneMatch: '*' };
            if (sha256 !== undefined) (input as unknown as Record<symbol, unknown>)[KNOWN_SHA256] = sha256;
            await this.#client.send(new PutObjectCommand(input), { abortSignal: signal });
          }
          return hash;
        } catch (error) {
          if (isPreconditionFailed(error)) return hash;
          if (!isConditionalConflict(error) || attempt >= MAX_REF_RETRIES) throw error;
          await sleep(backoff(attempt), signal);
        }
      }
    } catch (error) {
      throw this.#error(error, 'put object', signal, hash.toString());
    }
  }

  async get(hashLike: HashLike, options?: AbortOptions): Promise<Uint8Array> {
    this.#check(options?.signal);
    return this.#getBytes(toHash(hashLike), options?.signal);
  }

  /** Concurrent gets of one object share one request; each caller gets its own copy of the bytes. */
  #getBytes(hash: Hash, signal: AbortSignal | undefined): Promise<Uint8Array> {
    return this.#shared(
      `get:${hash.toString()}`,
      signal,
      async (shared) => {
        try {
          const { bytes } = await this.#getKey(this.#keys.object(hash), shared);
          verifyBytes(hash, bytes);
          return bytes;
        } catch (error) {
          throw this.#error(error, 'get object', shared, hash.toString());
        }
      },
      // Buffer#slice shares memory; Uint8Array#slice copies.
      (bytes) => Uint8Array.prototype.slice.call(bytes),
    );
  }

  /**
   * Single-flight: runs `run` once for all callers of `key` while it is in
   * flight. It runs under the store's own signal, and each caller waits
   * under its own, so one caller's abort does not fail the others. `copy`
   * gives each caller its own value when several shared it.
   */
  async #shared<T>(key: string, signal: AbortSignal | undefined, run: (signal: AbortSignal) => Promise<T>, copy?: (value: T) => T): Promise<T> {
    let entry = this.#inflight.get(key) as { promise: Promise<T>; joiners: number } | undefined;
    if (entry === undefined) {
      const created: { promise: Promise<T>; joiners: number } = { promise: Promise.resolve() as Promise<T>, joiners: 0 };
      // Removed before any caller resumes, so nobody joins a settled request.
      created.promise = run(this.#closing.signal).finally(() => this.#inflight.delete(key));
      // Every caller may have stopped waiting (aborted): the failure must not go unhandled.
      created.promise.catch(() => undefined);
      this.#inflight.set(key, created);
      entry = created;
    } else {
      entry.joiners++;
    }
    const value = await raceAbort(entry.promise, signal);
    return copy !== undefined && entry.joiners > 0 ? copy(value) : value;
  }

  /** GETs a whole key (small objects, ref bodies). SDK-shaped errors, unmapped. */
  async #getKey(key: string, signal: AbortSignal | undefined, ifNoneMatch?: string): Promise<{ bytes: Uint8Array; etag: string | undefined }> {
    if (this.#direct !== undefined) {
      const response = await this.#direct.send('GET', key, { signal, ...(ifNoneMatch === undefined ? {} : { headers: { 'if-none-match': ifNoneMatch } }) });
      return { bytes: response.body, etag: response.headers.etag };
    }
    const out = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, IfNoneMatch: ifNoneMatch }), {
      abortSignal: signal,
    });
    return { bytes: await readBody(out.Body, signal), etag: out.ETag };
  }

  async *getStream(hashLike: HashLike, options?: AbortOptions): AsyncIterable<Uint8Array> {
    const signal = options?.signal;
    this.#check(signal);
    const hash = toHash(hashLike);
    const key = this.#keys.object(hash);
    if (this.#direct !== undefined) {
      const direct = this.#direct;
      const fetchRange: FetchRange = async (start, end, rangeSignal) => {
        const response = await direct.send('GET', key, {
          headers: { range: `bytes=${start}-${end}` },
          signal: rangeSignal,
          maxBytes: end - start + 1,
          keepChunks: true,
        });
        return { chunks: response.chunks ?? [response.body], contentRange: response.headers['content-range'] };
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
        // the range and sent more than it asked for (refused unread).
        const readWhole = first && (statusOf(error) === 416 || (error as { name?: unknown }).name === 'BodyTooLarge');
        if (!readWhole) throw this.#error(error, 'get object', signal, hash.toString());
      }
    }
    let body: Readable;
    try {
      const out = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), {
        abortSignal: signal,
      });
      body = out.Body as Readable;
    } catch (error) {
      throw this.#error(error, 'get object', signal, hash.toString());
    }
    try {
      for await (const chunk of verifiedStream(hash, body as AsyncIterable<Uint8Array>)) yield chunk;
    } catch (error) {
      throw this.#error(error, 'read object', signal, hash.toString());
    } finally {
      // An unread body holds its socket: release it however the consumer stopped.
      body.destroy();
    }
  }

  async getRange(hashLike: HashLike, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
    const signal = options?.signal;
    this.#check(signal);
    assertRange(offset, length);
    const hash = toHash(hashLike);
    if (length === 0) {
      if (!(await this.has(hash, options))) throw new NotFoundError(`object ${hash.toString()} not found`, { key: hash.toString() });
      return new Uint8Array(0);
    }
    let body: Readable;
    // Bytes of the body to drop before the range: a server that ignores Range answers 200 with the whole object.
    let skip = offset;
    try {
      const out = await this.#client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.#keys.object(hash), Range: `bytes=${offset}-${offset + length - 1}` }),
        { abortSignal: signal },
      );
      body = out.Body as Readable;
      if (out.ContentRange !== undefined) {
        const start = /^bytes (\d+)-/.exec(out.ContentRange)?.[1];
        if (start === undefined || Number(start) !== offset) {
          body.destroy();
          throw new BackendError(`get object range ${hash.toString()}: asked for bytes from ${offset}, the server answered "${out.ContentRange.slice(0, 80)}"`, {
            key: hash.toString(),
            retryable: false,
          });
        }
        skip = 0;
      }
    } catch (error) {
      if (error instanceof BackendError) throw error;
      // 416: the range starts at or past the object's end (a missing key is a 404).
      if (statusOf(error) === 416) return new Uint8Array(0);
      throw this.#error(error, 'get object range', signal, hash.toString());
    }
    // Bounded by what was asked, never by what the server sends: a server that
    // ignores Range and sends the whole object is cut off at `length` bytes.
    const out = Buffer.allocUnsafe(length);
    let filled = 0;
    try {
      for await (const whole of body as AsyncIterable<Uint8Array>) {
        const dropped = Math.min(skip, whole.length);
        skip -= dropped;
        const chunk = whole.subarray(dropped);
        const take = Math.min(chunk.length, length - filled);
        out.set(chunk.subarray(0, take), filled);
        filled += take;
        if (filled === length) break;
      }
    } catch (error) {
      throw this.#error(error, 'read object range', signal, hash.toString());
    } finally {
      body.destroy();
    }
    return new Uint8Array(out.buffer, out.byteOffset, filled);
  }

  async has(hashLike: HashLike, options?: AbortOptions): Promise<boolean> {
    this.#check(options?.signal);
    const hash = toHash(hashLike);
    return this.#exists(this.#keys.object(hash), options?.signal, hash.toString());
  }

  async #exists(key: string, signal: AbortSignal | undefined, subject: string): Promise<boolean> {
    try {
      if (this.#direct !== undefined) await this.#direct.send('HEAD', key, { signal });
      else await this.#client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
      return true;
    } catch (error) {
      if (statusOf(error) === 404) {
        // HEAD answers a bare 404 for a missing bucket too: tell them apart once.
        await this.#checkBucket(signal);
        return false;
      }
      throw this.#error(error, 'check object', signal, subject);
    }
  }

  async #checkBucket(signal: AbortSignal | undefined): Promise<void> {
    if (this.#bucketChecked) return;
    try {
      await this.#client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: signal });
    } catch (error) {
      const status = statusOf(error);
      if (status === 404) {
        throw new BackendError(
          `bucket "${this.bucket}" does not exist at ${this.#endpoint}; create it or fix the bucket option`,
          { cause: error, retryable: false },
        );
      }
      // 403: credentials allowed to read objects may not be allowed HeadBucket. Not a verdict.
      if (status !== 403) throw this.#error(error, 'check bucket', signal);
    }
    this.#bucketChecked = true;
  }

  async delete(hashLike: HashLike, options?: AbortOptions): Promise<void> {
    const signal = options?.signal;
    this.#check(signal);
    const hash = toHash(hashLike);
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.#keys.object(hash) }), { abortSignal: signal });
    } catch (error) {
      if (!isKeyNotFound(error)) throw this.#error(error, 'delete object', signal, hash.toString());
    }
  }

  async *listObjects(options?: AbortOptions): AsyncIterable<Hash> {
    const signal = options?.signal;
    this.#check(signal);
    for await (const entries of this.#listKeys(this.#keys.objects, signal, 'list objects')) {
      for (const { key } of entries) {
        const hash = this.#keys.hashOf(key);
        if (hash !== undefined) yield hash;
      }
    }
  }

  async *#listKeys(prefix: string, signal: AbortSignal | undefined, op: string): AsyncIterable<Array<{ key: string; etag: string | undefined }>> {
    let token: string | undefined;
    do {
      throwIfAborted(signal);
      this.#check(signal);
      let page;
      try {
        page = await this.#client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
          { abortSignal: signal },
        );
      } catch (error) {
        throw this.#error(error, op, signal);
      }
      yield (page.Contents ?? []).flatMap((entry) => (entry.Key === undefined ? [] : [{ key: entry.Key, etag: entry.ETag }]));
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  async putMany(items: readonly Uint8Array[], options?: PutOptions): Promise<Hash[]> {
    const signal = options?.signal;
    this.#check(signal);
    if (!Array.isArray(items)) throw new InvalidArgumentError('putMany takes an array of Uint8Array');
    items.forEach((item) => assertObjectSource(item));
    const algorithm = options?.algorithm ?? DEFAULT_ALGORITHM;
    return mapConcurrent(items, this.#concurrency, (item) =>
      isBytes(item) ? this.#putBytes(item, algorithm, signal) : this.put(item as ObjectSource, options),
    );
  }

  async getMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<Uint8Array[]> {
    this.#check(options?.signal);
    const parsed = hashes.map(toHash);
    return mapConcurrent(parsed, this.#concurrency, (hash) => this.#getBytes(hash, options?.signal));
  }

  async hasMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<boolean[]> {
    this.#check(options?.signal);
    const parsed = hashes.map(toHash);
    return mapConcurrent(parsed, this.#concurrency, (hash) =>
      this.#exists(this.#keys.object(hash), options?.signal, hash.toString()),
    );
  }

  // ------------------------------------------------------------------- refs

  async getRef(name: string, options?: AbortOptions): Promise<RefValue | undefined> {
    this.#check(options?.signal);
    assertRefName(name);
    return visibleValue(await this.#readRef(name, options?.signal));
  }

  async setRef(name: string, hashLike: HashLike, options?: AbortOptions): Promise<RefValue> {
    this.#check(options?.signal);
    assertRefName(name);
    const hash = toHash(hashLike);
    const result = await this.#swap(name, () => true, hash, options?.signal);
    return result.current!;
  }

  async deleteRef(name: string, options?: AbortOptions): Promise<void> {
    this.#check(options?.signal);
    assertRefName(name);
    await this.#swap(name, () => true, null, options?.signal);
  }

  async compareAndSwap(name: string, expected: HashLike | null, next: HashLike | null, options?: AbortOptions): Promise<CasResult> {
    this.#check(options?.signal);
    assertRefName(name);
    const expectedHash = expected === null ? null : toHash(expected);
    const nextHash = next === null ? null : toHash(next);
    const accepts = (value: RefValue | undefined): boolean =>
      expectedHash === null ? value === undefined : value !== undefined && value.hash.equals(expectedHash);
    return this.#swap(name, accepts, nextHash, options?.signal);
  }

  /**
   * The one ref write path: conditional PUTs until the write lands or the
   * ref no longer `accepts` what it holds. A conflict is only ever reported
   * from a fresh read, never from the cache.
   */
  async #swap(
    name: string,
    accepts: (value: RefValue | undefined) => boolean,
    next: Hash | null,
    signal: AbortSignal | undefined,
  ): Promise<CasResult> {
    await this.#ensureConditionalWrites(signal);
    const key = this.#keys.ref(name);
    const id = newWriteId();
    const written: CasResult = { ok: true, current: next === null ? undefined : { hash: next, version: id } };
    // States whose successor may be our write without our having seen it.
    const bases = new Set<string>();
    // Unknown refs are assumed absent: a create then costs one request, and a
    // wrong guess only costs a 412 and a read.
    let state = this.#refCache.get(name) ?? ABSENT_STATE;
    let fresh = false;
    if (!accepts(visibleValue(state))) {
      state = await this.#readRef(name, signal);
      fresh = true;
    }
    let retries = 0;
    for (let attempt = 0; ; attempt++) {
      if (bases.size > 0) {
        const verdict = judgeWrite(state, id, bases);
        if (verdict === 'applied') return written;
        if (verdict === 'unknown') {
          throw new BackendError(
            `the outcome of a write to ref ${name} is unknown: its response was lost and the ref changed many times since; read the ref to see its value`,
            { ref: name, retryable: false },
          );
        }
      }
      const current = visibleValue(state);
      const nothingToDelete = next === null && current === undefined;
      // A conflict or a no-op delete is only ever reported from a fresh read.
      if (!fresh && (!accepts(current) || nothingToDelete)) {
        state = await this.#readRef(name, signal);
        fresh = true;
        continue;
      }
      if (!accepts(current)) return { ok: false, current };
      if (nothingToDelete) return { ok: true, current: undefined };
      if (attempt >= MAX_REF_ATTEMPTS) {
        throw new BackendError(`gave up writing ref ${name} after ${attempt} attempts lost to other writers; try again`, {
          ref: name,
          retryable: true,
        });
      }
      const body = nextRefBody(id, next ?? undefined, state);
      const condition = state.etag === undefined ? { IfNoneMatch: '*' } : { IfMatch: state.etag };
      try {
        const out = await this.#client.send(
          new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: encodeRefBody(body), ContentType: 'application/json', ...condition }),
          { abortSignal: signal },
        );
        this.#remember(name, { etag: out.ETag, body });
        return written;
      } catch (error) {
        if (isAbort(error) || signal?.aborted) throw abortError(signal);
        // The SDK may have retried a request that had applied: its last answer then hides it.
        if (isAmbiguous(error) || attemptsOf(error) > 1) bases.add(currentId(state));
        if (isConditionalConflict(error) || isAmbiguous(error)) {
          if (++retries > MAX_REF_RETRIES) {
            const mapped = this.#error(error, 'write ref', signal, undefined, name);
            if (bases.size === 0) throw mapped;
            throw new BackendError(`${mapped.message}; the write may or may not have landed: read ref ${name} to see`, {
              ref: name,
              cause: error,
              retryable: true,
            });
          }
          await sleep(backoff(retries), signal);
        } else if (isPreconditionFailed(error) || isKeyNotFound(error)) {
          // Lost a race: someone wrote since our read. Back off only when it keeps happening.
          if (attempt >= 3) await sleep(backoff(attempt - 3), signal);
        } else {
          throw this.#error(error, 'write ref', signal, undefined, name);
        }
      }
      state = await this.#readRef(name, signal);
      fresh = true;
    }
  }

  async #readRef(name: string, signal: AbortSignal | undefined): Promise<RefState> {
    const key = this.#keys.ref(name);
    try {
      const { bytes, etag } = await this.#getKey(key, signal);
      const state = { etag: this.#etagOf(etag, key), body: decodeRefBody(Buffer.from(bytes).toString('utf8'), key) };
      this.#remember(name, state);
      return state;
    } catch (error) {
      if (isKeyNotFound(error)) {
        this.#remember(name, ABSENT_STATE);
        return ABSENT_STATE;
      }
      throw this.#error(error, 'read ref', signal, undefined, name);
    }
  }

  /** Reads a ref only if its ETag is no longer `etag`: `undefined` means unchanged (a cheap 304). */
  async #pollRef(name: string, etag: string | undefined, signal: AbortSignal): Promise<RefState | undefined> {
    if (etag === undefined) {
      const state = await this.#readRef(name, signal);
      return state.etag === undefined ? undefined : state;
    }
    const key = this.#keys.ref(name);
    try {
      const read = await this.#getKey(key, signal, etag);
      return { etag: this.#etagOf(read.etag, key), body: decodeRefBody(Buffer.from(read.bytes).toString('utf8'), key) };
    } catch (error) {
      if (statusOf(error) === 304) return undefined;
      if (isKeyNotFound(error)) return ABSENT_STATE;
      throw this.#error(error, 'watch ref', signal, undefined, name);
    }
  }

  #etagOf(etag: string | undefined, key: string): string {
    if (etag === undefined || etag === '') {
      throw new UnsupportedError(`${this.#endpoint} sent no ETag for ${key}; Cairn refs need ETags for conditional writes`, { key });
    }
    return etag;
  }

  #remember(name: string, state: RefState): void {
    this.#refCache.delete(name);
    this.#refCache.set(name, state);
    if (this.#refCache.size > REF_CACHE_SIZE) this.#refCache.delete(this.#refCache.keys().next().value!);
  }

  /** Checks once, before the first ref write, that the server enforces conditional PUTs. */
  async #ensureConditionalWrites(signal: AbortSignal | undefined): Promise<void> {
    if (this.#conditionalWritesOk) return;
    this.#conditionalWrites ??= this.#probeConditionalWrites().then(
      () => {
        this.#conditionalWritesOk = true;
      },
      (error: unknown) => {
        // A transient failure is retried by the next write; an unsupported server stays refused.
        if (!(error instanceof UnsupportedError)) this.#conditionalWrites = undefined;
        throw error;
      },
    );
    await raceAbort(this.#conditionalWrites, signal);
  }

  async #probeConditionalWrites(): Promise<void> {
    const key = this.#keys.probe;
    const put = (body: string, condition: { IfNoneMatch?: string; IfMatch?: string }): Promise<unknown> =>
      this.#client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ...condition }), {
        abortSignal: this.#closing.signal,
      });
    try {
      await put(newWriteId(), {});
    } catch (error) {
      throw this.#error(error, 'probe conditional writes', undefined, key);
    }
    const checks: Array<[string, { IfNoneMatch?: string; IfMatch?: string }]> = [
      ['If-None-Match: * on an existing key', { IfNoneMatch: '*' }],
      ['If-Match with a wrong ETag', { IfMatch: '"cairn-probe-0000000000000000"' }],
    ];
    for (const [what, condition] of checks) {
      let enforced = false;
      try {
        await put(newWriteId(), condition);
      } catch (error) {
        enforced = isPreconditionFailed(error);
        const status = statusOf(error);
        if (!enforced && status !== 501 && status !== 400) throw this.#error(error, 'probe conditional writes', undefined, key);
      }
      if (!enforced) {
        throw new UnsupportedError(
          `${this.#endpoint} does not enforce conditional writes (a PUT with ${what} was not refused), ` +
            `so refs in bucket "${this.bucket}" cannot be updated safely and ref writes are refused; objects still work. ` +
            'Use a server that enforces If-None-Match and If-Match on PUT (AWS S3, MinIO, Ceph RGW, R2)',
          { key },
        );
      }
    }
  }

  async *listRefs(prefix = '', options?: AbortOptions): AsyncIterable<RefEntry> {
    const signal = options?.signal;
    this.#check(signal);
    assertRefPrefix(prefix);
    const base = this.#keys.refs;
    for await (const entries of this.#listKeys(base + prefix, signal, 'list refs')) {
      // Keys come in byte order, which is name order for ASCII ref names.
      const listed = entries
        .map(({ key, etag }) => ({ name: key.slice(base.length), etag }))
        .filter(({ name }) => isValidRefName(name));
      const states = await mapConcurrent(listed, this.#concurrency, async ({ name, etag }) => {
        // Every ref body is unique (it carries a write id), so an unchanged ETag means an unchanged ref.
        const cached = this.#refCache.get(name);
        return cached !== undefined && etag !== undefined && cached.etag === etag ? cached : this.#readRef(name, signal);
      });
      for (let i = 0; i < listed.length; i++) {
        const value = visibleValue(states[i]!);
        if (value !== undefined) yield { name: listed[i]!.name, ...value };
      }
    }
  }

  async watchRef(name: string, listener: RefListener, options?: WatchOptions): Promise<void> {
    this.#check(options?.signal);
    assertRefName(name);
    const intervalMs = positiveInt('intervalMs', options?.intervalMs, this.#watchIntervalMs);
    const signal = options?.signal === undefined ? this.#closing.signal : AbortSignal.any([options.signal, this.#closing.signal]);
    let state = await this.#readRef(name, signal).catch((error: unknown) => {
      throw isAbort(error) || signal.aborted ? abortError(signal) : error;
    });
    let version = visibleValue(state)?.version;
    const poll = async (): Promise<void> => {
      let failures = 0;
      while (!signal.aborted) {
        try {
          await sleep(failures === 0 ? intervalMs : Math.min(30_000, intervalMs * 2 ** failures), signal);
          const changed = await this.#pollRef(name, state.etag, signal);
          failures = 0;
          if (changed === undefined) continue;
          state = changed;
          const value = visibleValue(changed);
          if (value?.version === version || signal.aborted) continue;
          version = value?.version;
          try {
            listener(value);
          } catch {
            // A throwing listener must not stop the watch.
          }
        } catch {
          // Transient failures back off and retry; abort ends the loop above.
          failures++;
        }
      }
    };
    void poll();
  }

  // -------------------------------------------------------------- lifecycle

  async flush(options?: AbortOptions): Promise<void> {
    this.#check(options?.signal);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort(new ClosedError('the S3 store was closed'));
    if (this.#ownsClient) this.#client.destroy();
  }

  #check(signal: AbortSignal | undefined): void {
    if (this.#closed) throw new ClosedError(`the S3 store on s3://${this.bucket}/${this.prefix} is closed; open a new one`);
    throwIfAborted(signal);
  }

  #error(error: unknown, op: string, signal: AbortSignal | undefined, key?: string, ref?: string): CairnError {
    if (this.#closed && !(error instanceof ClosedError) && isAbort(error)) {
      return new ClosedError(`the S3 store was closed during ${op}`, { cause: error });
    }
    if (signal?.aborted && isAbort(error)) return abortError(signal);
    return toCairnError(error, { endpoint: this.#endpoint, bucket: this.bucket, op, key, ref });
  }
}

/** Reads a whole response body (a Node stream) into one buffer, releasing the socket on failure. */
async function readBody(body: unknown, signal: AbortSignal | undefined): Promise<Uint8Array> {
  const stream = body as Readable & AsyncIterable<Buffer>;
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of stream) {
      chunks.push(chunk);
      total += chunk.length;
    }
  } catch (error) {
    stream.destroy();
    if (signal?.aborted) throw abortError(signal);
    throw error;
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
}

function backoff(attempt: number): number {
  return 10 + backoffDelay(attempt);
}

function positiveInt(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) {
    throw new InvalidArgumentError(`the ${name} option must be a positive integer, got ${String(value)}`);
  }
  return value;
}

function nonNegativeInt(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 0) {
    throw new InvalidArgumentError(`the ${name} option must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}

/** AWS regions whose S3 endpoint is `s3.<region>.amazonaws.com` (not China, GovCloud, ISO). */
const STANDARD_REGION = /^(us|eu|ap|ca|sa|me|af|il|mx)-[a-z]+-\d+$/;

/**
 * The base URL of the direct request path, or `undefined` where only the SDK
 * knows how to address the bucket (special partitions, FIPS, dual-stack,
 * bucket names with dots on virtual-hosted style).
 */
function directEndpoint(
  endpoint: string | undefined,
  region: string,
  bucket: string,
  pathStyle: boolean,
): { url: URL; pathStyle: boolean } | undefined {
  if (endpoint !== undefined) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      return undefined;
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.search !== '') return undefined;
    if (!pathStyle && bucket.includes('.')) return undefined;
    return { url, pathStyle };
  }
  if (!STANDARD_REGION.test(region) || process.env.AWS_USE_FIPS_ENDPOINT === 'true' || process.env.AWS_USE_DUALSTACK_ENDPOINT === 'true') {
    return undefined;
  }
  if (!pathStyle && !/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(bucket)) return undefined;
  return { url: new URL(`https://s3.${region}.amazonaws.com`), pathStyle };
}
