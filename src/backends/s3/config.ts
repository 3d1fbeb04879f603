/**
 * The options of the S3 store, the environment it reads, and their
 * validation: everything the store decides before it sends a request.
 *
 * @module
 */
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { InvalidArgumentError } from '../../errors.js';
import { integerOption, invalidOption, stringOption } from '../../internal/options.js';

const MiB = 1024 * 1024;

/**
 * Something in the bucket that is not Cairn's: a ref whose body another tool
 * wrote, a key under `refs/` that is not a valid ref name, a key under
 * `objects/` that names no hash. Listings skip it and report it here.
 */
export interface ForeignEntry {
  /** Which listing met it. */
  readonly kind: 'ref' | 'object';
  /** The whole S3 key, as listed (it may hold control characters: escape it before printing). */
  readonly key: string;
  /** Why it was skipped, in words. */
  readonly reason: string;
}

/** Called with each {@link ForeignEntry} a listing skips. */
export type ForeignListener = (entry: ForeignEntry) => void;

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
   * It must not hold credentials (`http://KEY:SECRET@host` is refused: use
   * `credentials` or the standard AWS variables).
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
   * the timeouts are ignored, and every request goes through it.
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
   * Send single-key requests (object PUT/GET/HEAD, ranged and streamed GETs,
   * ref reads and writes) as lean signed HTTP requests instead of through the
   * SDK's middleware (about a third of the client CPU per small request; see
   * `s3/direct.ts`). Used only when the store made its own client and the
   * endpoint is known: `endpoint`, `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`,
   * or AWS S3 in a standard region (not FIPS or dual-stack).
   * @default true
   */
  directRequests?: boolean | undefined;
  /**
   * Told about each foreign key a listing skips (see {@link ForeignEntry}):
   * `listRefs` and `listObjects` yield everything else.
   * @default a process warning (`CAIRN_FOREIGN_KEY`), once per key and store
   */
  onForeign?: ForeignListener | undefined;
}

/** The options, checked and with their defaults. */
export interface S3Config {
  readonly bucket: string;
  readonly prefix: string;
  readonly region: string;
  /** `undefined`: AWS S3 in `region`. */
  readonly endpoint: string | undefined;
  /** The endpoint in words for messages. */
  readonly endpointLabel: string;
  readonly forcePathStyle: boolean;
  readonly concurrency: number;
  readonly maxSockets: number;
  readonly multipartThreshold: number;
  readonly partSize: number;
  readonly queueSize: number;
  readonly watchIntervalMs: number;
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly maxAttempts: number;
  /** Where the direct client sends, or `undefined` to send everything through the SDK. */
  readonly direct: { url: URL; pathStyle: boolean } | undefined;
  readonly onForeign: ForeignListener | undefined;
}

/** Checks `options` (throwing {@link InvalidArgumentError} naming the option) and fills in defaults. */
export function resolveConfig(options: S3StoreOptions): S3Config {
  if (options === null || typeof options !== 'object') {
    throw new InvalidArgumentError('s3Store takes an options object with at least { bucket }');
  }
  if (typeof options.bucket !== 'string' || options.bucket.length === 0) throw invalidOption(OWNER, 'bucket', 'a non-empty string', options.bucket);
  const prefix = stringOption(OWNER, 'prefix', options.prefix, '');
  if (options.onForeign !== undefined && typeof options.onForeign !== 'function') {
    throw invalidOption(OWNER, 'onForeign', 'a function', options.onForeign);
  }
  const concurrency = positiveInt('concurrency', options.concurrency, 32);
  const partSize = integerOption(OWNER, 'partSize', options.partSize, 8 * MiB, 0);
  if (partSize < 5 * MiB) throw invalidOption(OWNER, 'partSize', "at least 5 MiB (S3's minimum part size)", partSize);
  const region = options.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
  const ownClient = options.client === undefined;
  // The SDK would read these itself; reading them here gives the direct path the same endpoint.
  const endpoint = ownClient ? (options.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL) : options.endpoint;
  if (endpoint !== undefined) assertEndpoint(endpoint, options.endpoint === endpoint ? `${OWNER} option "endpoint"` : 'AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL');
  const forcePathStyle = options.forcePathStyle ?? endpoint !== undefined;
  return {
    bucket: options.bucket,
    prefix,
    region,
    endpoint,
    endpointLabel: endpoint ?? (ownClient ? `AWS S3 (${region})` : 'the configured S3 endpoint'),
    forcePathStyle,
    concurrency,
    maxSockets: positiveInt('maxSockets', options.maxSockets, concurrency * 2),
    multipartThreshold: integerOption(OWNER, 'multipartThreshold', options.multipartThreshold, 16 * MiB, 0),
    partSize,
    queueSize: positiveInt('queueSize', options.queueSize, 4),
    watchIntervalMs: positiveInt('watchIntervalMs', options.watchIntervalMs, 1000),
    connectTimeoutMs: positiveInt('connectTimeoutMs', options.connectTimeoutMs, 5000),
    requestTimeoutMs: positiveInt('requestTimeoutMs', options.requestTimeoutMs, 30_000),
    maxAttempts: positiveInt('maxAttempts', options.maxAttempts, 4),
    direct: ownClient && options.directRequests !== false ? directEndpoint(endpoint, region, options.bucket, forcePathStyle) : undefined,
    onForeign: options.onForeign,
  };
}

/**
 * Refuses an endpoint URL that carries credentials (`http://KEY:SECRET@host`):
 * they would travel into messages, saved state and stack traces. The message
 * shows the URL with the userinfo cut out, never the secret.
 */
function assertEndpoint(endpoint: unknown, what: string): void {
  if (typeof endpoint !== 'string' || endpoint === '') {
    throw new InvalidArgumentError(`${what} must be a non-empty URL string, got ${typeof endpoint}`);
  }
  let url: URL | undefined;
  try {
    url = new URL(endpoint);
  } catch {
    url = undefined;
  }
  // Checked on the text too: a URL that does not parse may still hold "user:secret@".
  const userinfo = url === undefined ? /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(endpoint) : url.username !== '' || url.password !== '';
  if (userinfo) {
    const shown = url === undefined ? '(not shown)' : `${url.protocol}//***@${url.host}${url.pathname === '/' ? '' : url.pathname}`;
    throw new InvalidArgumentError(
      `${what} must not hold credentials (user:password@ in ${shown}); pass them with the credentials option ` +
        'or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, and give the endpoint as scheme://host:port',
    );
  }
  if (url === undefined) {
    throw new InvalidArgumentError(`${what} is not a URL (${JSON.stringify(endpoint.slice(0, 80))}); give it as http(s)://host:port`);
  }
}

/** The owner named in option errors. */
const OWNER = 's3Store';

/** An option that must be an integer >= 1, in the house message style. */
export function positiveInt(name: string, value: number | undefined, fallback: number): number {
  return integerOption(OWNER, name, value, fallback, 1);
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
