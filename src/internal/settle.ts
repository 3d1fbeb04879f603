/**
 * Ref writes that settle an unclear outcome: a backend whose answer was lost
 * (S3) throws {@link OutcomeUnknownError}, and a caller that moves on as if
 * the write failed may do its work twice (an event appended under a second
 * number). These helpers settle such an outcome before returning: with the
 * store's `resolveOutcome(attempt)` where it has one, else by calling the
 * same write again, which a backend that throws the error recognises as its
 * own (its result is then `ok: true`).
 *
 * Used by the generic event streams; meant for every caller whose next step
 * depends on whether its own swap landed (layered push too).
 *
 * @module
 */
import { backoffDelay, sleep, throwIfAborted, type AbortOptions } from '../abort.js';
import { OutcomeUnknownError, type RefWriteAttempt } from '../errors.js';
import type { CasResult, HashLike, Store } from '../store.js';

/** Tries at settling one write before the error is passed on (answers keep getting lost). */
export const SETTLE_TRIES = 8;

/** A store that can settle an unclear write by its attempt (S3's `resolveOutcome`). */
interface Resolver {
  resolveOutcome(attempt: RefWriteAttempt, options?: AbortOptions): Promise<CasResult>;
}

function resolverOf(store: Store): Resolver | undefined {
  const candidate = store as Partial<Resolver>;
  return typeof candidate.resolveOutcome === 'function' ? (candidate as Resolver) : undefined;
}

/**
 * `store.compareAndSwap(name, expected, next)` whose result is never
 * "unknown": `ok: true` if this write landed (also when its answer was lost),
 * `ok: false` with the ref's value if it did not. Throws the last
 * {@link OutcomeUnknownError} only after {@link SETTLE_TRIES} tries in a row
 * lost their answers, or sooner if `options.signal` aborts.
 *
 * @example
 * ```ts
 * const claim = await settledCompareAndSwap(store, 'streams/e/orders/1', null, eventHash);
 * if (claim.ok) {
 *   // number 1 is ours, whether or not the first answer came back
 * }
 * ```
 */
export async function settledCompareAndSwap(
  store: Store,
  name: string,
  expected: HashLike | null,
  next: HashLike | null,
  options: AbortOptions = {},
): Promise<CasResult> {
  const resolver = resolverOf(store);
  let attempt: RefWriteAttempt | undefined;
  for (let tries = 0; ; tries++) {
    try {
      return attempt !== undefined && resolver !== undefined
        ? await resolver.resolveOutcome(attempt, options)
        : await store.compareAndSwap(name, expected, next, options);
    } catch (error) {
      if (!(error instanceof OutcomeUnknownError) || tries + 1 >= SETTLE_TRIES) throw error;
      // The same write (same id) from now on: resolving it can never land a second write.
      attempt ??= error.attempt;
      throwIfAborted(options.signal);
      await sleep(backoffDelay(tries), options.signal);
    }
  }
}

/**
 * `store.deleteRef(name)` retried while its outcome is unknown: a delete
 * lands at most once in effect (deleting an absent ref changes nothing), so
 * calling it again settles it.
 */
export async function settledDeleteRef(store: Store, name: string, options: AbortOptions = {}): Promise<void> {
  for (let tries = 0; ; tries++) {
    try {
      await store.deleteRef(name, options);
      return;
    } catch (error) {
      if (!(error instanceof OutcomeUnknownError) || tries + 1 >= SETTLE_TRIES) throw error;
      throwIfAborted(options.signal);
      await sleep(backoffDelay(tries), options.signal);
    }
  }
}
