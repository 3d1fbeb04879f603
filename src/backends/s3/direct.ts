/**
 * A lean request path for single-key calls (PUT, GET, HEAD of one key,
 * whole, ranged or streamed): SigV4-signed `node:http(s)` requests on the
 * store's keep-alive agent, without the SDK's middleware stack.
 *
 * Why: on these machines the SDK spends about 1-1.2 ms of CPU per 4 KiB
 * PutObject (endpoint rules, middleware, retry bookkeeping), this path about
 * 0.45 ms (measured in `bench/s3.ts`'s setting), and on a small machine
 * shared with the server the client's CPU is the throughput. The SDK still
 * does everything else: multipart transfers, listings, deletes, credentials
 * (this path asks the SDK client's credential provider, so the standard
 * chain, refresh and session tokens behave the same). `transport.ts` puts
 * both behind one interface.
 *
 * Answers come back with their body unread; {@link readBody} reads one
 * whole, bounded by what the caller expects rather than by what the server
 * sends.
 *
 * Failures are thrown in the SDK's shape (`name` = S3 error code,
 * `$metadata.httpStatusCode`, `$metadata.attempts`), so `errors.ts` maps
 * both paths the same way. Throttling (429, 503 SlowDown), 5xx and network
 * errors are retried with full-jitter exponential backoff; these calls are
 * idempotent (a content-addressed PUT under `If-None-Match: *` included).
 *
 * @module
 */
import { createHash, createHmac } from 'node:crypto';
import { request as httpRequest, type Agent as HttpAgent, type IncomingMessage } from 'node:http';
import { request as httpsRequest, type Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import { sleep } from '../../abort.js';
import { canonicalQuery, EMPTY_SHA256, encodeRfc3986, SigV4Signer, UNSIGNED_PAYLOAD } from './sigv4.js';

/** Where and how the direct path sends requests. */
export interface DirectSettings {
  /** Scheme, host and port of the endpoint (`https://s3.eu-west-1.amazonaws.com`). */
  readonly endpoint: URL;
  /** `endpoint/bucket/key` (true) or `bucket.endpoint/key` (false). */
  readonly pathStyle: boolean;
  readonly bucket: string;
  readonly region: string;
  /** The SDK client's credential provider (standard chain, cached and refreshed by the SDK). */
  readonly credentials: () => Promise<{ accessKeyId: string; secretAccessKey: string; sessionToken?: string | undefined }>;
  readonly agent: HttpAgent | HttpsAgent;
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly maxAttempts: number;
}

/** A 2xx answer whose body is not read yet: the caller reads or destroys it. */
export interface DirectResponse {
  readonly status: number;
  readonly headers: IncomingMessage['headers'];
  readonly body: IncomingMessage;
}

/** An S3 error answer, shaped like the SDK's service exceptions. */
export class S3ResponseError extends Error {
  readonly Code: string;
  readonly $metadata: { httpStatusCode: number; attempts: number };
  readonly $fault: 'client' | 'server';

  constructor(status: number, code: string, message: string, attempts: number) {
    super(message || `${code} (HTTP ${status})`);
    this.name = code;
    this.Code = code;
    this.$metadata = { httpStatusCode: status, attempts };
    this.$fault = status >= 500 ? 'server' : 'client';
  }
}

/** The SHA-256 / HMAC-SHA-256 shape the SigV4 signer asks for, on node:crypto. */
export class NodeSha256 {
  readonly #key: Buffer | undefined;
  #chunks: Buffer[] = [];
  constructor(secret?: unknown) {
    this.#key = secret === undefined ? undefined : Buffer.from(secret as Uint8Array);
  }
  update(data: Uint8Array | string): void {
    this.#chunks.push(typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data));
  }
  async digest(): Promise<Uint8Array> {
    const data = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    return this.#key === undefined ? createHash('sha256').update(data).digest() : createHmac('sha256', this.#key).update(data).digest();
  }
  reset(): void {
    this.#chunks = [];
  }
}

/** Error answers are read this far for their code and message; the rest is dropped. */
const MAX_ERROR_BODY = 64 * 1024;
const STATUS_CODES: Record<number, string> = { 304: 'NotModified', 403: 'Forbidden', 404: 'NotFound', 412: 'PreconditionFailed' };

/** Keys are mostly hex and `/`: only those with other characters need the encoder. */
const PLAIN_KEY = /^[A-Za-z0-9\-._~/]*$/;

/** The encoded path of a key under `base`, as sent and as signed. */
function keyPath(base: string, key: string): string {
  return base + (PLAIN_KEY.test(key) ? key : key.split('/').map(encodeRfc3986).join('/'));
}

/** Sends signed single-key requests. */
export class DirectClient {
  readonly #settings: DirectSettings;
  readonly #signer: SigV4Signer;
  readonly #https: boolean;
  readonly #host: string;
  readonly #hostname: string;
  readonly #port: number | undefined;
  readonly #pathBase: string;
  readonly #request: typeof httpRequest;

  constructor(settings: DirectSettings) {
    this.#settings = settings;
    const { endpoint, bucket, pathStyle } = settings;
    this.#hostname = pathStyle ? endpoint.hostname : `${bucket}.${endpoint.hostname}`;
    this.#host = endpoint.port === '' ? this.#hostname : `${this.#hostname}:${endpoint.port}`;
    this.#port = endpoint.port === '' ? undefined : Number(endpoint.port);
    const basePath = endpoint.pathname.replace(/\/+$/, '');
    this.#pathBase = pathStyle ? `${basePath}/${encodeRfc3986(bucket)}/` : `${basePath}/`;
    this.#https = endpoint.protocol === 'https:';
    this.#request = endpoint.protocol === 'https:' ? (httpsRequest as typeof httpRequest) : httpRequest;
    // A lean signer (see `sigv4.ts`): a third of the client CPU of a small request went to the SDK's.
    this.#signer = new SigV4Signer(settings.region);
  }

  /**
   * Sends one request, retrying throttling, 5xx and network failures that
   * happen before an answer arrives. Resolves with any 2xx answer, its body
   * unread; rejects with an {@link S3ResponseError} for others (their body
   * read up to {@link MAX_ERROR_BODY} bytes) and with the network error
   * (carrying `$metadata.attempts`) if every attempt failed.
   *
   * `query` names a sub-resource (`{ uploads: '' }`, `{ partNumber: '1',
   * uploadId }`). The body is signed by its SHA-256 (`sha256` when the
   * caller knows it); over HTTPS a body whose hash is not given goes as
   * `UNSIGNED-PAYLOAD`, as the SDK sends it, since TLS protects it.
   */
  async send(
    method: 'GET' | 'PUT' | 'HEAD' | 'POST' | 'DELETE',
    key: string,
    options: {
      body?: Uint8Array | undefined;
      sha256?: string | undefined;
      query?: Record<string, string> | undefined;
      headers?: Record<string, string>;
      signal?: AbortSignal | undefined;
    },
  ): Promise<DirectResponse> {
    const path = keyPath(this.#pathBase, key);
    const query = canonicalQuery(options.query);
    const body = options.body;
    const sha256 =
      body === undefined || body.length === 0
        ? EMPTY_SHA256
        : (options.sha256 ?? (this.#https ? UNSIGNED_PAYLOAD : createHash('sha256').update(body).digest('hex')));
    const maxAttempts = this.#settings.maxAttempts;
    for (let attempt = 1; ; attempt++) {
      let outcome: DirectResponse | Error;
      try {
        outcome = await this.#once(method, path, query, body, sha256, options.headers, options.signal);
        if (outcome.status >= 300) outcome = await this.#errorOf(outcome, method === 'HEAD', attempt);
      } catch (error) {
        outcome = error as Error;
      }
      if (!(outcome instanceof Error)) return outcome;
      if (outcome instanceof S3ResponseError) {
        const status = outcome.$metadata.httpStatusCode;
        const throttled = status >= 500 || status === 429 || outcome.Code === 'SlowDown';
        if (!throttled || attempt >= maxAttempts) throw outcome;
      } else {
        // Only connection failures are worth another try; a credentials error or an abort is not.
        const transient = outcome.name === 'TimeoutError' || /^(E[A-Z]+|UND_ERR_SOCKET)$/.test(String((outcome as { code?: unknown }).code));
        const aborted = options.signal?.aborted === true || outcome.name === 'AbortError';
        if (!transient || aborted || attempt >= maxAttempts) throw Object.assign(outcome, { $metadata: { attempts: attempt } });
      }
      await sleep(Math.random() * Math.min(20_000, 100 * 2 ** attempt), options.signal);
    }
  }

  /** Reads an error answer's code and message from at most {@link MAX_ERROR_BODY} bytes of it. */
  async #errorOf(response: DirectResponse, bodiless: boolean, attempts: number): Promise<S3ResponseError> {
    let text = '';
    // A HEAD answer has no body, whatever its content-length says (it was drained on arrival).
    if (!bodiless) {
      try {
        text = (await readBody(response.body, declaredLength(response.headers), MAX_ERROR_BODY, undefined)).toString('utf8');
      } catch {
        // The status says enough; a body cut off or too long adds nothing we trust.
      }
    }
    const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? STATUS_CODES[response.status] ?? 'Unknown';
    const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? '';
    return new S3ResponseError(response.status, code, message.slice(0, 300), attempts);
  }

  async #once(
    method: string,
    path: string,
    query: string,
    body: Uint8Array | undefined,
    sha256: string,
    extra: Record<string, string> | undefined,
    signal: AbortSignal | undefined,
  ): Promise<DirectResponse> {
    // A flat list: node writes it as given, without a per-header setHeader pass.
    const headers = ['host', this.#host];
    if (extra !== undefined) for (const name in extra) headers.push(name, extra[name]!);
    if (body !== undefined) headers.push('content-length', String(body.length));
    this.#signer.sign(method, path, query, headers, sha256, await this.#settings.credentials());
    const target = query === '' ? path : `${path}?${query}`;
    return new Promise<DirectResponse>((resolve, reject) => {
      const req = this.#request(
        {
          agent: this.#settings.agent as HttpAgent,
          hostname: this.#settings.endpoint.hostname,
          ...(this.#port === undefined ? {} : { port: this.#port }),
          method,
          path: target,
          headers,
          signal,
          ...(this.#settings.pathStyle ? {} : { servername: this.#hostname }),
        },
        (res) => {
          // A body-less answer is drained here so its socket goes back to the pool.
          if (method === 'HEAD') res.resume();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res });
        },
      );
      req.on('error', reject);
      // A stalled connection or server fails the request instead of hanging it (an idle timeout: it
      // also covers a body being read, and ends a stream whose reader stalls that long).
      req.setTimeout(this.#settings.requestTimeoutMs, () =>
        req.destroy(Object.assign(new Error(`no data for ${this.#settings.requestTimeoutMs} ms`), { name: 'TimeoutError', code: 'ETIMEDOUT' })),
      );
      req.on('socket', (socket) => {
        if (!socket.connecting) return;
        const timer = setTimeout(
          () => req.destroy(Object.assign(new Error(`connect timed out after ${this.#settings.connectTimeoutMs} ms`), { name: 'TimeoutError', code: 'ETIMEDOUT' })),
          this.#settings.connectTimeoutMs,
        );
        socket.once('connect', () => clearTimeout(timer));
        socket.once('close', () => clearTimeout(timer));
      });
      req.end(body === undefined ? undefined : Buffer.from(body.buffer, body.byteOffset, body.length));
    });
  }
}

/** The `content-length` of an answer, if it declared a usable one. */
export function declaredLength(headers: IncomingMessage['headers']): number | undefined {
  const text = headers['content-length'];
  const value = Number(text);
  return text !== undefined && text !== '' && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

/**
 * Reads a whole body (of a direct answer or an SDK one). With `maxBytes`, a
 * body that declares or sends more is refused with {@link BodyTooLargeError}
 * as soon as that is known (before reading any of it when its length is
 * declared), and the stream destroyed so its socket is not reused. A body
 * shorter than it declared is a network error (`ECONNRESET`).
 */
export function readBody(
  stream: Readable,
  declared: number | undefined,
  maxBytes: number | undefined,
  signal: AbortSignal | undefined,
): Promise<Buffer> {
  if (maxBytes !== undefined && declared !== undefined && declared > maxBytes) {
    stream.destroy();
    return Promise.reject(new BodyTooLargeError(maxBytes, declared));
  }
  if (stream.readableEnded) return Promise.resolve(Buffer.alloc(0));
  if (stream.destroyed) return Promise.reject(Object.assign(new Error('the response was cut off'), { code: 'ECONNRESET' }));
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    // A large body is copied into one buffer as it arrives, not held twice by a final concat.
    const whole = declared !== undefined && declared > 1 << 20 ? Buffer.allocUnsafe(declared) : undefined;
    const onAbort = (): void => done(Object.assign(new Error('aborted'), { name: 'AbortError' }));
    signal?.addEventListener('abort', onAbort, { once: true });
    let settled = false;
    function done(error: Error | undefined, value?: Buffer): void {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (error === undefined) {
        resolve(value!);
        return;
      }
      stream.destroy();
      reject(error);
    }
    stream.on('data', (chunk: Buffer) => {
      if (settled) return;
      if ((maxBytes !== undefined && received + chunk.length > maxBytes) || (whole !== undefined && received + chunk.length > whole.length)) {
        done(maxBytes !== undefined && received + chunk.length > maxBytes
          ? new BodyTooLargeError(maxBytes, undefined)
          : Object.assign(new Error(`the response body is longer than the ${declared} bytes it declared`), { code: 'ECONNRESET' }));
        return;
      }
      if (whole === undefined) chunks.push(chunk);
      else chunk.copy(whole, received);
      received += chunk.length;
    });
    stream.on('end', () => {
      if (declared !== undefined && received !== declared) {
        done(Object.assign(new Error(`the response body had ${received} of ${declared} bytes`), { code: 'ECONNRESET' }));
        return;
      }
      done(undefined, whole ?? (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received)));
    });
    stream.on('error', (error) => done(error));
    stream.on('aborted', () => done(Object.assign(new Error('the response was cut off'), { code: 'ECONNRESET' })));
    stream.on('close', () => done(Object.assign(new Error('the response was cut off'), { code: 'ECONNRESET' })));
  });
}

/** A body longer than the reader allows: thrown without reading the rest. */
export class BodyTooLargeError extends Error {
  override readonly name = 'BodyTooLargeError';
  /** The ETag of the refused body, when the transport knows it. */
  etag: string | undefined;
  constructor(
    readonly limit: number,
    /** The length the answer declared, if it did. */
    readonly declared: number | undefined,
  ) {
    super(declared === undefined ? `the body is longer than ${limit} bytes` : `the body is ${declared} bytes, more than ${limit}`);
  }
}
