/**
 * Cancellation helpers shared by every backend and layer.
 *
 * @module
 */
import { AbortError } from './errors.js';

/** Options every async call of a store accepts. */
export interface AbortOptions {
  /** Cancels the operation; it then rejects with {@link AbortError}. */
  signal?: AbortSignal | undefined;
}

/** Throws {@link AbortError} if the signal has already fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

/** The error an aborted operation rejects with. */
export function abortError(signal: AbortSignal | undefined): AbortError {
  return new AbortError('the operation was aborted', { cause: signal?.reason });
}

/**
 * Resolves after `ms` milliseconds, or rejects with {@link AbortError} as soon
 * as the signal fires.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError(signal));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortError(signal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Races a promise against a signal: rejects with {@link AbortError} when it fires first. */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** Delay for retry `attempt` (0-based): exponential with full jitter, capped. */
export function backoffDelay(attempt: number, baseMs = 25, capMs = 2_000): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** attempt);
  return Math.random() * ceiling;
}
