/**
 * Classifies AWS SDK failures and maps them onto Cairn's error set, at the
 * boundary of the S3 backend. Messages name the endpoint, bucket and key and
 * say what to do; they never include credentials (the SDK's errors carry
 * none, and we add none). The SDK error is kept as `cause`.
 *
 * @module
 */
import { backoffDelay } from '../../abort.js';
import {
  AbortError,
  BackendError,
  CairnError,
  NotFoundError,
  PermissionError,
  UnsupportedError,
  type ErrorSubject,
} from '../../errors.js';
import { isNetworkError as isSharedNetworkError } from '../../internal/network-errors.js';

/** Where a failure happened, for messages. */
export interface S3ErrorContext {
  readonly endpoint: string;
  readonly bucket: string;
  /** The operation, in words: "get object", "write ref". */
  readonly op: string;
  /** The object hash text (for `key`) or the S3 key. */
  readonly key?: string | undefined;
  readonly ref?: string | undefined;
}

interface SdkErrorShape {
  name?: unknown;
  code?: unknown;
  Code?: unknown;
  $metadata?: { httpStatusCode?: number; attempts?: number };
  $fault?: unknown;
}

const CREDENTIAL_CODES = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'InvalidToken',
  'ExpiredToken',
  'TokenRefreshRequired',
  'InvalidSecurity',
]);

/** The HTTP status of an SDK error, if it got a response. */
export function statusOf(error: unknown): number | undefined {
  return (error as SdkErrorShape | null)?.$metadata?.httpStatusCode;
}

/** The S3 error code (`NoSuchKey`, `PreconditionFailed`...) or Node error code. */
export function codeOf(error: unknown): string | undefined {
  const e = error as SdkErrorShape | null;
  if (e == null || typeof e !== 'object') return undefined;
  for (const value of [e.Code, e.code, e.name]) if (typeof value === 'string') return value;
  return undefined;
}

/** How many HTTP attempts the SDK made (more than 1 means it retried). */
export function attemptsOf(error: unknown): number {
  return (error as SdkErrorShape | null)?.$metadata?.attempts ?? 1;
}

/** 412, or the 304 older servers send for a failed `If-None-Match` on PUT. */
export function isPreconditionFailed(error: unknown): boolean {
  const status = statusOf(error);
  return status === 412 || status === 304;
}

/** 409 ConditionalRequestConflict: a concurrent conditional write; retry. */
export function isConditionalConflict(error: unknown): boolean {
  return statusOf(error) === 409 && codeOf(error) !== 'BucketAlreadyExists';
}

/** 404 with a key-level code (not NoSuchBucket). */
export function isKeyNotFound(error: unknown): boolean {
  return statusOf(error) === 404 && codeOf(error) !== 'NoSuchBucket';
}

/** True for an abort caused by a signal (ours or the SDK's). */
export function isAbort(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  return name === 'AbortError' || error instanceof AbortError;
}

/**
 * A failure with no HTTP response: the connection failed, dropped or timed
 * out ({@link isSharedNetworkError}), or the SDK gave up waiting on a socket
 * (`RequestTimeout`) or reports an aborted connection only in its message.
 * An answer with a status is never one: the status decides.
 */
export function isNetworkError(error: unknown): boolean {
  if (statusOf(error) !== undefined) return false;
  if (isSharedNetworkError(error)) return true;
  const e = error as { name?: unknown; message?: unknown } | null;
  if (e == null) return false;
  return e.name === 'RequestTimeout' || (typeof e.message === 'string' && /ECONNRESET|aborted/i.test(e.message));
}

/**
 * For writes: true when the server may have applied the request although we
 * saw a failure (no response, or a 5xx). A 4xx answer is definite.
 */
export function isAmbiguous(error: unknown): boolean {
  if (isAbort(error)) return false;
  const status = statusOf(error);
  return status === undefined ? isNetworkError(error) || !(error instanceof CairnError) : status >= 500;
}

/** Retryable from the caller's point of view (throttling, 5xx, network). */
function isRetryable(error: unknown): boolean {
  const status = statusOf(error);
  if (status === undefined) return isNetworkError(error);
  return status >= 500 || status === 429 || codeOf(error) === 'SlowDown';
}

/**
 * Maps any failure of an S3 call to a {@link CairnError}. Cairn errors pass
 * through unchanged.
 */
export function toCairnError(error: unknown, context: S3ErrorContext): CairnError {
  if (error instanceof CairnError) return error;
  const subject: ErrorSubject = { key: context.key, ref: context.ref, cause: error };
  const where = `s3://${context.bucket}${context.key === undefined ? '' : ` (${context.key})`} at ${context.endpoint}`;
  if (isAbort(error)) return new AbortError(`${context.op} was aborted`, subject);
  const status = statusOf(error);
  const code = codeOf(error) ?? 'unknown';
  if (status === undefined) {
    if ((error as { name?: unknown }).name === 'CredentialsProviderError') {
      return new PermissionError(
        `${context.op} on s3://${context.bucket} failed: no AWS credentials were found; set AWS_ACCESS_KEY_ID and ` +
          'AWS_SECRET_ACCESS_KEY, a profile (AWS_PROFILE), or pass the credentials option',
        subject,
      );
    }
    if (isNetworkError(error)) {
      const timedOut = (error as { name?: unknown }).name === 'TimeoutError' || code === 'ETIMEDOUT';
      return new BackendError(
        `${context.op} on s3://${context.bucket} failed: ${timedOut ? 'timed out talking to' : 'cannot reach'} ${context.endpoint} (${code}); ` +
          'check the endpoint option and that the server is running and reachable',
        { ...subject, retryable: true },
      );
    }
    return new BackendError(`${context.op} on ${where} failed: ${describe(error)}`, { ...subject, retryable: false });
  }
  if (code === 'NoSuchBucket') {
    return new BackendError(
      `${context.op} failed: bucket "${context.bucket}" does not exist at ${context.endpoint}; create it or fix the bucket option`,
      { ...subject, retryable: false },
    );
  }
  if (status === 404) {
    const what = context.ref === undefined ? `object ${context.key ?? ''}` : `ref ${context.ref}`;
    return new NotFoundError(`${what} not found in s3://${context.bucket} at ${context.endpoint}`, subject);
  }
  if (status === 403 || status === 401) {
    if (CREDENTIAL_CODES.has(code)) {
      return new PermissionError(
        `${context.op} failed: ${context.endpoint} rejected the credentials (${code}) for bucket "${context.bucket}"; ` +
          'check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the profile and session token) and the region',
        subject,
      );
    }
    return new PermissionError(
      `${context.op} failed: access denied to ${where}` +
        (code === 'AccessDenied' ? '' : ` (${code === 'Unknown' || code === 'Forbidden' ? 'HTTP 403, no details: a HEAD request' : code})`) +
        '; check the credentials and that their policy allows this action on the bucket and prefix',
      subject,
    );
  }
  if (status === 301 || code === 'PermanentRedirect' || code === 'AuthorizationHeaderMalformed' || code === 'IllegalLocationConstraintException') {
    return new BackendError(
      `${context.op} failed: bucket "${context.bucket}" is not in the configured region (${code}); set the region option to the bucket's region`,
      { ...subject, retryable: false },
    );
  }
  if (status === 501 || code === 'NotImplemented') {
    return new UnsupportedError(`${context.op} is not supported by ${context.endpoint} (${code})`, subject);
  }
  return new BackendError(`${context.op} on ${where} failed: HTTP ${status} ${code}`, {
    ...subject,
    retryable: isRetryable(error),
  });
}

function describe(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`.slice(0, 300);
  return String(error).slice(0, 300);
}

/** Backoff before retry `attempt` of a request that lost a race or its answer. */
export function backoff(attempt: number): number {
  return 10 + backoffDelay(attempt);
}
