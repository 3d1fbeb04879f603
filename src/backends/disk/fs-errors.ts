/**
 * Maps Node file-system errors onto the Cairn error set, at the boundary of
 * the disk backend, keeping the original as `cause`.
 *
 * @module
 */
import { BackendError, CairnError, PermissionError } from '../../errors.js';

/** The errno code of a Node system error, if it is one. */
export function errnoOf(error: unknown): string | undefined {
  if (error !== null && typeof error === 'object' && 'code' in error && typeof error.code === 'string') return error.code;
  return undefined;
}

/** Errors that may go away on retry (resource exhaustion, contention). */
const RETRYABLE = new Set(['EMFILE', 'ENFILE', 'EAGAIN', 'EBUSY', 'EINTR', 'ETIMEDOUT']);

/**
 * Turns any error thrown by `node:fs` into a {@link CairnError}. Permission
 * problems become {@link PermissionError}; everything else (ENOSPC, EIO,
 * EROFS...) is a {@link BackendError}, never "not found": callers that mean
 * to treat ENOENT as absence check {@link errnoOf} before calling this.
 */
export function mapFsError(error: unknown, doing: string, subject: { key?: string; ref?: string } = {}): CairnError {
  if (error instanceof CairnError) return error;
  const code = errnoOf(error);
  const detail = error instanceof Error ? error.message : String(error);
  if (code === 'EACCES' || code === 'EPERM') {
    return new PermissionError(`permission denied while ${doing}: ${detail}; check the store directory's owner and mode`, {
      ...subject,
      cause: error,
    });
  }
  const hint =
    code === 'ENOSPC' || code === 'EDQUOT'
      ? '; free disk space, then retry'
      : code === 'EROFS'
        ? '; the file system is read-only'
        : code === 'EMFILE' || code === 'ENFILE'
          ? '; too many open files, raise the limit or close stores'
          : '';
  return new BackendError(`disk store failed while ${doing}: ${detail}${hint}`, {
    ...subject,
    cause: error,
    retryable: code !== undefined && RETRYABLE.has(code),
  });
}
