/**
 * The uploader's memory bound: a budget of bytes that callers reserve
 * before they hand over an object and release once it is settled.
 *
 * Why not p-queue's `onSizeLessThan`: that bounds how many tasks wait, and
 * the bound that matters here is bytes held (64 objects of 1 MiB are not
 * 64 objects of 1 KiB). Waiters are let in oldest first, so a large object
 * is not starved by a stream of small ones, and one larger than the whole
 * budget is admitted alone when nothing else is held.
 *
 * @module
 */
import { abortError } from '../abort.js';

interface Waiter {
  readonly need: number;
  resolve(): void;
  reject(error: unknown): void;
}

/** Bytes held, at most `max` (or one oversized reservation alone). */
export class ByteBudget {
  readonly #max: number;
  readonly #waiters: Waiter[] = [];
  #held = 0;
  #closed = false;

  constructor(max: number) {
    this.#max = max;
  }

  /** Bytes reserved and not yet released. */
  get held(): number {
    return this.#held;
  }

  /** Resolves once `bytes` are reserved; waits while they do not fit. Rejects with {@link AbortError} if `signal` fires first. */
  reserve(bytes: number, signal: AbortSignal | undefined): Promise<void> {
    if (this.#fits(bytes) && this.#waiters.length === 0) {
      this.#held += bytes;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        need: bytes,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      const onAbort = (): void => {
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
        reject(abortError(signal));
        this.#admit();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Gives back what a settled reservation held, and lets waiters in. */
  release(bytes: number): void {
    this.#held -= bytes;
    this.#admit();
  }

  /** Rejects every waiter with `reason`; later reservations still count but nobody waits any more. */
  close(reason: unknown): void {
    this.#closed = true;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(reason);
  }

  #fits(bytes: number): boolean {
    return this.#held === 0 || this.#held + bytes <= this.#max;
  }

  /** Lets waiting callers in, oldest first, while they fit. */
  #admit(): void {
    while (!this.#closed && this.#waiters.length > 0) {
      const next = this.#waiters[0]!;
      if (!this.#fits(next.need)) return;
      this.#waiters.shift();
      this.#held += next.need;
      next.resolve();
    }
  }
}
