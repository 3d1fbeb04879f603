/**
 * One interface for every request the S3 store sends, with two
 * implementations:
 *
 * - {@link SdkTransport}: the AWS SDK client for everything. Used when the
 *   caller gave its own client, or the endpoint is one only the SDK knows
 *   how to address.
 * - {@link DirectTransport}: the lean signed `node:http` client of
 *   `direct.ts` for single-key requests (PUT, GET whole, ranged or
 *   streamed, HEAD), which are most of the traffic and most of the client's
 *   CPU, and multipart uploads; the SDK for listings and deletes.
 *
 * Both throw failures in the SDK's shape (`$metadata.httpStatusCode`,
 * `$metadata.attempts`, the S3 code as `name`), so `errors.ts` classifies
 * them alike, and both bound a body read by `maxBytes` before reading it.
 *
 * @module
 */
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
import { createAgents, createS3Client, KNOWN_SHA256 } from './client.js';
import type { S3Config } from './config.js';
import { BackendError } from '../../errors.js';
import { BodyTooLargeError, declaredLength, DirectClient, readBody } from './direct.js';
import { directMultipart, sdkMultipart, type MultipartApi } from './multipart.js';
import { statusOf } from './errors.js';

/** Conditions and metadata of a single PUT. */
export interface PutKeyOptions {
  /** The hex SHA-256 of the body, when the caller knows it (saves hashing it again to sign). */
  readonly sha256?: string | undefined;
  /** `'*'`: create only. */
  readonly ifNoneMatch?: '*' | undefined;
  /** Replace only the version with this ETag. */
  readonly ifMatch?: string | undefined;
  readonly contentType?: string | undefined;
  readonly signal: AbortSignal | undefined;
}

/** Options of a whole-body GET. */
export interface GetKeyOptions {
  readonly signal: AbortSignal | undefined;
  /** Answer 304 (thrown) if the ETag is still this one. */
  readonly ifNoneMatch?: string | undefined;
  /** Refuse a longer body with `BodyTooLargeError`, without reading it when its length is declared. */
  readonly maxBytes?: number | undefined;
}

/** A key's bytes and ETag. */
export interface KeyBytes {
  readonly bytes: Uint8Array;
  readonly etag: string | undefined;
}

/** A GET whose body is read by the caller, who must destroy it when done. */
export interface KeyStream {
  readonly body: Readable;
  /** The `Content-Range` answered to a ranged GET; `undefined` if the server sent the whole object. */
  readonly contentRange: string | undefined;
}

/** One key of a listing. */
export interface ListedKey {
  readonly key: string;
  readonly etag: string | undefined;
  readonly size: number | undefined;
}

/** Every request the store sends. Failures are thrown in the SDK's shape, unmapped. */
export interface Transport {
  /** The SDK client. */
  readonly client: S3Client;
  /** The requests of multipart uploads (`upload.ts`), on the direct client where there is one. */
  readonly multipart: MultipartApi;
  put(key: string, body: Uint8Array, options: PutKeyOptions): Promise<{ etag: string | undefined }>;
  get(key: string, options: GetKeyOptions): Promise<KeyBytes>;
  /** A streamed GET; `range` is an HTTP range (`bytes=0-99`). */
  stream(key: string, options: { signal: AbortSignal | undefined; range?: string | undefined }): Promise<KeyStream>;
  /**
   * `length` bytes (`length` > 0) at `offset` of a key, clipped at its end
   * (empty past it). Memory is bounded by `length`, whatever the server
   * sends: a server that ignores Range and sends the whole object is read
   * up to the end of the range and cut off there.
   */
  range(key: string, offset: number, length: number, signal: AbortSignal | undefined): Promise<Uint8Array>;
  /** Resolves if the key exists; a missing key throws a 404. */
  head(key: string, signal: AbortSignal | undefined): Promise<void>;
  delete(key: string, signal: AbortSignal | undefined): Promise<void>;
  /** One page of keys under `prefix`, and the token of the next page. */
  list(prefix: string, token: string | undefined, signal: AbortSignal | undefined): Promise<{ keys: ListedKey[]; next: string | undefined }>;
  headBucket(signal: AbortSignal | undefined): Promise<void>;
}

/** Every request through the SDK client. */
export class SdkTransport implements Transport {
  #multipart: MultipartApi | undefined;

  constructor(
    readonly client: S3Client,
    protected readonly bucket: string,
  ) {}

  get multipart(): MultipartApi {
    return (this.#multipart ??= sdkMultipart(this.client, this.bucket));
  }

  async put(key: string, body: Uint8Array, options: PutKeyOptions): Promise<{ etag: string | undefined }> {
    const input: PutObjectCommandInput = {
      Bucket: this.bucket,
      Key: key,
      Body: body,
      ContentLength: body.length,
      ...(options.ifNoneMatch === undefined ? {} : { IfNoneMatch: options.ifNoneMatch }),
      ...(options.ifMatch === undefined ? {} : { IfMatch: options.ifMatch }),
      ...(options.contentType === undefined ? {} : { ContentType: options.contentType }),
    };
    if (options.sha256 !== undefined) (input as unknown as Record<symbol, unknown>)[KNOWN_SHA256] = options.sha256;
    const out = await this.client.send(new PutObjectCommand(input), { abortSignal: options.signal });
    return { etag: out.ETag };
  }

  async get(key: string, options: GetKeyOptions): Promise<KeyBytes> {
    const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, IfNoneMatch: options.ifNoneMatch }), {
      abortSignal: options.signal,
    });
    const bytes = await readBody(out.Body as Readable, out.ContentLength, options.maxBytes, options.signal).catch(withEtag(out.ETag));
    return { bytes, etag: out.ETag };
  }

  async stream(key: string, options: { signal: AbortSignal | undefined; range?: string | undefined }): Promise<KeyStream> {
    const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: options.range }), {
      abortSignal: options.signal,
    });
    return { body: out.Body as Readable, contentRange: out.ContentRange };
  }

  async range(key: string, offset: number, length: number, signal: AbortSignal | undefined): Promise<Uint8Array> {
    let answer: KeyStream;
    try {
      answer = await this.stream(key, { signal, range: `bytes=${offset}-${offset + length - 1}` });
    } catch (error) {
      // 416: the range starts at or past the object's end (a missing key is a 404).
      if (statusOf(error) === 416) return new Uint8Array(0);
      throw error;
    }
    return readRange(answer, key, offset, length);
  }

  async head(key: string, signal: AbortSignal | undefined): Promise<void> {
    await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
  }

  async delete(key: string, signal: AbortSignal | undefined): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
  }

  async list(prefix: string, token: string | undefined, signal: AbortSignal | undefined): Promise<{ keys: ListedKey[]; next: string | undefined }> {
    const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }), {
      abortSignal: signal,
    });
    const keys = (page.Contents ?? []).flatMap((entry) => (entry.Key === undefined ? [] : [{ key: entry.Key, etag: entry.ETag, size: entry.Size }]));
    return { keys, next: page.IsTruncated === true ? page.NextContinuationToken : undefined };
  }

  async headBucket(signal: AbortSignal | undefined): Promise<void> {
    await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: signal });
  }
}

/** Single-key requests through the direct client; the rest through the SDK. */
export class DirectTransport extends SdkTransport {
  readonly #direct: DirectClient;

  readonly #directMultipart: MultipartApi;

  constructor(client: S3Client, bucket: string, direct: DirectClient) {
    super(client, bucket);
    this.#direct = direct;
    this.#directMultipart = directMultipart(direct, bucket);
  }

  override get multipart(): MultipartApi {
    return this.#directMultipart;
  }

  override async put(key: string, body: Uint8Array, options: PutKeyOptions): Promise<{ etag: string | undefined }> {
    const headers: Record<string, string> = {};
    if (options.ifNoneMatch !== undefined) headers['if-none-match'] = options.ifNoneMatch;
    if (options.ifMatch !== undefined) headers['if-match'] = options.ifMatch;
    if (options.contentType !== undefined) headers['content-type'] = options.contentType;
    const response = await this.#direct.send('PUT', key, { body, sha256: options.sha256, headers, signal: options.signal });
    response.body.resume();
    return { etag: response.headers.etag };
  }

  override async get(key: string, options: GetKeyOptions): Promise<KeyBytes> {
    const headers = options.ifNoneMatch === undefined ? undefined : { 'if-none-match': options.ifNoneMatch };
    const response = await this.#direct.send('GET', key, { signal: options.signal, ...(headers === undefined ? {} : { headers }) });
    const bytes = await readBody(response.body, declaredLength(response.headers), options.maxBytes, options.signal).catch(
      withEtag(response.headers.etag),
    );
    return { bytes, etag: response.headers.etag };
  }

  override async stream(key: string, options: { signal: AbortSignal | undefined; range?: string | undefined }): Promise<KeyStream> {
    const headers = options.range === undefined ? undefined : { range: options.range };
    const response = await this.#direct.send('GET', key, { signal: options.signal, ...(headers === undefined ? {} : { headers }) });
    return { body: response.body, contentRange: response.headers['content-range'] };
  }

  override async head(key: string, signal: AbortSignal | undefined): Promise<void> {
    await this.#direct.send('HEAD', key, { signal });
  }
}

/** Reads the range `offset`..`offset + length` out of a ranged GET's answer; see {@link Transport.range}. */
async function readRange(answer: KeyStream, key: string, offset: number, length: number): Promise<Uint8Array> {
  const body = answer.body;
  // Bytes of the body to drop before the range: a server that ignores Range answers 200 with the whole object.
  let skip = offset;
  if (answer.contentRange !== undefined) {
    const start = /^bytes (\d+)-/.exec(answer.contentRange)?.[1];
    if (start === undefined || Number(start) !== offset) {
      body.destroy();
      throw new BackendError(`asked for bytes of ${key} from ${offset}, the server answered "${answer.contentRange.slice(0, 80)}"`, {
        key,
        retryable: false,
      });
    }
    skip = 0;
  }
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
  } finally {
    body.destroy();
  }
  return new Uint8Array(out.buffer, out.byteOffset, filled);
}

/** Marks a refused body with its ETag, so that a store can still replace it under its condition. */
function withEtag(etag: string | undefined): (error: unknown) => never {
  return (error) => {
    if (error instanceof BodyTooLargeError) error.etag = etag;
    throw error;
  };
}

/** The SDK client (the caller's, or one tuned for S3-compatible servers) and the direct path where it can be used. */
export function createTransport(config: S3Config, given: S3Client | undefined, credentialOption: S3ClientConfig['credentials'] | undefined): Transport {
  if (given !== undefined) return new SdkTransport(given, config.bucket);
  const agents = createAgents(config.maxSockets);
  const client = createS3Client({ ...config, credentials: credentialOption, agents });
  const credentials = (client.config as { credentials?: unknown }).credentials;
  if (config.direct === undefined || typeof credentials !== 'function') return new SdkTransport(client, config.bucket);
  const direct = new DirectClient({
    endpoint: config.direct.url,
    pathStyle: config.direct.pathStyle,
    bucket: config.bucket,
    region: config.region,
    credentials: credentials as () => Promise<{ accessKeyId: string; secretAccessKey: string }>,
    agent: config.direct.url.protocol === 'https:' ? agents.https : agents.http,
    connectTimeoutMs: config.connectTimeoutMs,
    requestTimeoutMs: config.requestTimeoutMs,
    maxAttempts: config.maxAttempts,
  });
  return new DirectTransport(client, config.bucket, direct);
}
