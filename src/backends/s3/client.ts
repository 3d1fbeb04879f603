/**
 * The S3 client configuration that works on S3-compatible servers and is
 * fast for many small requests (see `S3-NOTES.md`):
 *
 * - `requestChecksumCalculation`/`responseChecksumValidation` at
 *   `WHEN_REQUIRED`: since SDK 3.729 PUTs otherwise carry CRC32 trailers in
 *   `aws-chunked` encoding, which several servers reject, and cost CPU that
 *   buys nothing here (Cairn verifies every object by its own hash).
 * - Keep-alive agents (http and https are separate pools) with `maxSockets`
 *   sized to the store's concurrency; a connect timeout and an idle-socket
 *   timeout so an unreachable or stalled endpoint fails in bounded time.
 * - `cacheMiddleware`, and a middleware that puts a SHA-256 the store already
 *   knows into `x-amz-content-sha256`, so the signer does not hash the body
 *   again (the server still checks it: MinIO answers 400 on a mismatch).
 *
 * @module
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';

/** Put on a command input: the hex SHA-256 of its body, sent as `x-amz-content-sha256`. */
export const KNOWN_SHA256 = Symbol('cairn.knownSha256');

/** What {@link createS3Client} needs. */
export interface ClientSettings {
  /** Shared with the direct request path, so one socket pool serves both. */
  readonly agents: { http: HttpAgent; https: HttpsAgent };
  readonly endpoint: string | undefined;
  readonly region: string;
  readonly forcePathStyle: boolean;
  readonly credentials: S3ClientConfig['credentials'];
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly maxAttempts: number;
}

/** Keep-alive agents with room for `maxSockets` connections each. */
export function createAgents(maxSockets: number): { http: HttpAgent; https: HttpsAgent } {
  const options = { keepAlive: true, maxSockets, maxFreeSockets: maxSockets };
  return { http: new HttpAgent(options), https: new HttpsAgent(options) };
}

/** Builds the tuned client; the caller owns it and must `destroy()` it. */
export function createS3Client(settings: ClientSettings): S3Client {
  const client = new S3Client({
    ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
    region: settings.region,
    forcePathStyle: settings.forcePathStyle,
    ...(settings.credentials === undefined ? {} : { credentials: settings.credentials }),
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: settings.maxAttempts,
    retryMode: 'standard',
    cacheMiddleware: true,
    requestHandler: {
      httpAgent: settings.agents.http,
      httpsAgent: settings.agents.https,
      connectionTimeout: settings.connectTimeoutMs,
      // An idle timeout, not a total one: a 1 GiB transfer may take minutes
      // while bytes flow, but a stalled connection fails instead of hanging.
      socketTimeout: settings.requestTimeoutMs,
    },
  });
  addKnownSha256(client);
  return client;
}

/** Adds the `x-amz-content-sha256` shortcut to a client Cairn created. */
function addKnownSha256(client: S3Client): void {
  client.middlewareStack.add(
    (next) => async (args) => {
      const sha = (args.input as Record<symbol, unknown>)[KNOWN_SHA256];
      const request = args.request as { headers?: Record<string, string> } | undefined;
      if (typeof sha === 'string' && request?.headers !== undefined) request.headers['x-amz-content-sha256'] = sha;
      return next(args);
    },
    { step: 'build', name: 'cairnKnownSha256', override: true },
  );
}
