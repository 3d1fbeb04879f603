/**
 * Maps ioredis failures onto the Cairn error set at the boundary. Server
 * replies carry a leading code word (`NOAUTH`, `OOM`, `READONLY`...);
 * connection failures carry an errno or ioredis's own error names. The
 * original error is kept as `cause`. Messages name the server by host and
 * port only, never by a URL that could hold a password.
 *
 * @module
 */
import { BackendError, CairnError, PermissionError, ReadOnlyError } from '../../errors.js';
import { networkErrorCode } from '../../internal/network-errors.js';

/** Reply codes after which a retry may succeed. */
const RETRYABLE_REPLIES = new Set(['LOADING', 'BUSY', 'TRYAGAIN', 'CLUSTERDOWN', 'MASTERDOWN']);

/** Converts any error from an ioredis call into a {@link CairnError} (passed through if it already is one). */
export function mapRedisError(cause: unknown, what: string, server: string, key?: string): CairnError {
  if (cause instanceof CairnError) return cause;
  const error = cause as { name?: unknown; message?: unknown; code?: unknown } | undefined;
  const message = typeof error?.message === 'string' ? error.message : String(cause);
  const subject = { key, cause };
  if (error?.name === 'ReplyError') {
    const word = message.split(' ', 1)[0] ?? '';
    if (word === 'NOAUTH' || word === 'WRONGPASS' || word === 'NOPERM') {
      return new PermissionError(`${what}: Redis at ${server} refused access (${word}); check the username, password and ACL`, subject);
    }
    if (word === 'READONLY') {
      return new ReadOnlyError(`${what}: Redis at ${server} is a read-only replica; point Cairn at the primary`, subject);
    }
    if (word === 'OOM') {
      return new BackendError(`${what}: Redis at ${server} is out of memory (maxmemory reached); free memory or raise maxmemory`, subject);
    }
    return new BackendError(`${what}: Redis at ${server} replied ${message.slice(0, 200)}`, {
      ...subject,
      retryable: RETRYABLE_REPLIES.has(word),
    });
  }
  const network = networkErrorCode(cause);
  if (network !== undefined) {
    return new BackendError(`${what}: cannot reach Redis at ${server} (${network}); is the server running?`, {
      ...subject,
      retryable: true,
    });
  }
  return new BackendError(`${what}: ${message.slice(0, 200)}`, subject);
}
