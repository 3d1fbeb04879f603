/**
 * Which failures are worth retrying. A store's own errors say so through
 * {@link BackendError.retryable}; raw network errors that slipped past a
 * backend's mapping are recognised by the one network-error classifier
 * (`internal/network-errors.ts`). Everything else
 * (not found, permission, integrity, bad input) is permanent: trying again
 * would fail the same way.
 *
 * @module
 */
import { backoffDelay, sleep } from '../abort.js';
import { AbortError, BackendError, CairnError } from '../errors.js';
import { isNetworkError } from '../internal/network-errors.js';

/** True when retrying the failed call may succeed. */
export function isTransient(error: unknown): boolean {
  if (error instanceof AbortError) return false;
  if (error instanceof BackendError) return error.retryable;
  if (error instanceof CairnError) return false;
  return isNetworkError(error);
}

/**
 * Runs `call`, retrying transient failures with jittered exponential
 * backoff, up to `attempts` tries in all. Only for idempotent calls (or
 * calls whose retry is safe, like a compare-and-swap whose outcome the
 * caller re-derives from the result).
 */
export async function withRetry<T>(
  call: () => Promise<T>,
  options: { attempts?: number; signal?: AbortSignal | undefined } = {},
): Promise<T> {
  const attempts = options.attempts ?? 8;
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (attempt + 1 >= attempts || !isTransient(error)) throw error;
      await sleep(backoffDelay(attempt), options.signal);
    }
  }
}
