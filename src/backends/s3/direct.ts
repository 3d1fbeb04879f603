/**
 * A lean request path for the hot small-object calls (PUT, GET, HEAD of one
 * key): SigV4-signed `node:http(s)` requests on the store's keep-alive agent,
 * without the SDK's middleware stack.
 *
 * Why: on these machines the SDK spends about 1-1.2 ms of CPU per 4 KiB
 * PutObject (endpoint rules, middleware, retry bookkeeping), this path about
 * 0.45 ms (measured in `bench/s3.ts`'s setting), and on a small machine
 * shared with the server the client's CPU is the throughput. The SDK still
 * does everything else: large transfers, listings, ref writes, credentials
 * (this path asks the SDK client's credential provider, so the standard
 * chain, refresh and session tokens behave the same).
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
import { sleep } from '../../abort.js';
import { canonicalQuery, EMPTY_SHA256, SigV4Signer, UNSIGNED_PAYLOAD, encodeRfc3986 } from './sigv4.js';

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

/** A response with its body read. */
export interface DirectResponse {
  readonly status: number;
  readonly headers: IncomingMessage['headers'];
  readonly body: Buffer;
  /** With `keepChunks`: the body as it arrived, not joined (`body` is then empty). */
  readonly chunks?: Buffer[] | undefined;
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
    this.#signer = new SigV4Signer(settings.region);
  }

  /**
   * Sends one request, retrying throttling, 5xx and network failures. Resolves
   * with any 2xx answer; rejects with an {@link S3ResponseError} for others
   * and with the network error (carrying `$metadata.attempts`) if all failed.
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
      /** Refuse a 2xx body that declares more bytes, without reading it. */
      maxBytes?: number | undefined;
      /**
       * Answer the body as the chunks that arrived instead of one buffer:
       * no large allocation per answer, which the allocator would map and
       * unmap for each (RSS grows until the garbage collector runs).
       */
      keepChunks?: boolean | undefined;
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
        outcome = await this.#once(method, path, query, body, sha256, options.headers, options.signal, options.maxBytes, options.keepChunks === true);
      } catch (error) {
        outcome = error as Error;
      }
      if (outcome instanceof Error) {
        // Only connection failures are worth another try; a credentials error or an abort is not.
        const transient = outcome.name === 'TimeoutError' || /^(E[A-Z]+|UND_ERR_SOCKET)$/.test(String((outcome as { code?: unknown }).code));
        const aborted = options.signal?.aborted === true || outcome.name === 'AbortError';
        if (!transient || aborted || attempt >= maxAttempts) throw Object.assign(outcome, { $metadata: { attempts: attempt } });
      } else if (outcome.status < 300) {
        return outcome;
      } else {
        const error = this.#errorOf(outcome, attempt);
        const throttled = outcome.status >= 500 || outcome.status === 429 || error.Code === 'SlowDown';
        if (!throttled || attempt >= maxAttempts) throw error;
      }
      await sleep(Math.random() * Math.min(20_000, 100 * 2 ** attempt), options.signal);
    }
  }

  #errorOf(response: DirectResponse, attempts: number): S3ResponseError {
    return errorOf(response.status, response.body.toString('utf8'), attempts);
  }

  async #once(
    method: string,
    path: string,
    query: string,
    body: Uint8Array | undefined,
    sha256: string,
    extra: Record<string, string> | undefined,
    signal: AbortSignal | undefined,
    maxBytes?: number,
    keepChunks = false,
  ): Promise<DirectResponse> {
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
          const chunks: Buffer[] = [];
          let received = 0;
          // A large body is copied into one buffer as it arrives, not held twice by a final concat.
          const ok = res.statusCode !== undefined && res.statusCode < 300;
          const length = method === 'GET' && ok ? Number(res.headers['content-length']) : Number.NaN;
          if (ok && maxBytes !== undefined && !(length <= maxBytes)) {
            res.destroy();
            reject(Object.assign(new Error(`the answer declares ${res.headers['content-length'] ?? 'no'} bytes, more than the ${maxBytes} asked for`), { name: 'BodyTooLarge' }));
            return;
          }
          const whole = !keepChunks && Number.isSafeInteger(length) && length > 1 << 20 ? Buffer.allocUnsafe(length) : undefined;
          res.on('data', (chunk: Buffer) => {
            if (whole === undefined) chunks.push(chunk);
            else if (received + chunk.length <= whole.length) chunk.copy(whole, received);
            received += chunk.length;
          });
          res.on('end', () => {
            if (whole !== undefined && received !== whole.length) {
              reject(Object.assign(new Error(`the response body had ${received} of ${whole.length} bytes`), { code: 'ECONNRESET' }));
              return;
            }
            if (keepChunks && ok) {
              if (Number.isSafeInteger(length) && received !== length) {
                reject(Object.assign(new Error(`the response body had ${received} of ${length} bytes`), { code: 'ECONNRESET' }));
                return;
              }
              resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.alloc(0), chunks });
              return;
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: whole ?? (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)) });
          });
          res.on('error', reject);
          res.on('aborted', () => reject(Object.assign(new Error('the response was cut off'), { code: 'ECONNRESET' })));
        },
      );
      req.on('error', reject);
      // A stalled connection or server fails the request instead of hanging it.
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

/** An S3 error answer's code and message, from its XML body. */
export function errorOf(status: number, text: string, attempts: number): S3ResponseError {
  const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? STATUS_CODES[status] ?? 'Unknown';
  const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? '';
  return new S3ResponseError(status, code, message, attempts);
}
