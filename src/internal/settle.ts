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

/** How deep the wrappers around a store are followed to find a resolver. */
const MAX_WRAPPERS = 8;

/**
 * The store under `store`'s wrappers (or `store` itself) that offers
 * `resolveOutcome`, if any: layers such as packs or a cache keep the store
 * they wrap as `inner` (see `ForwardingStore`), and a resolver below them
 * settles a write that went through them.
 */
export function outcomeResolver(store: Store): Resolver | undefined {
  let candidate: unknown = store;
  for (let depth = 0; depth < MAX_WRAPPERS && typeof candidate === 'object' && candidate !== null; depth++) {
    if (typeof (candidate as Partial<Resolver>).resolveOutcome === 'function') return candidate as Resolver;
    candidate = (candidate as { inner?: unknown }).inner;
  }
  return undefined;
}

/** Options of {@link settledCompareAndSwap}. */
export interface SettleOptions extends AbortOptions {
  /**
   * Count a ref that already holds exactly `next` as this write having
   * landed (after a lost answer, or a retry of the whole call). Right where the value is the whole point (push
   * publishing a snapshot: whoever wrote that value, the ref is where this
   * writer wanted it); wrong where two writers may write equal values and
   * each must know whether its own write won (stream claims).
   * @default false
   */
  sameValueIsMine?: boolean | undefined;
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
  options: SettleOptions = {},
): Promise<CasResult> {
  const resolver = outcomeResolver(store);
  let attempt: RefWriteAttempt | undefined;
  for (let tries = 0; ; tries++) {
    try {
      const result =
        attempt !== undefined && resolver !== undefined
          ? await resolver.resolveOutcome(attempt, options)
          : await store.compareAndSwap(name, expected, next, options);
      if (!result.ok && options.sameValueIsMine === true && holds(result, next)) return { ok: true, current: result.current };
      return result;
    } catch (error) {
      if (!(error instanceof OutcomeUnknownError) || tries + 1 >= SETTLE_TRIES) throw error;
      // The same write (same id) from now on: resolving it can never land a second write.
      attempt ??= error.attempt;
      throwIfAborted(options.signal);
      await sleep(backoffDelay(tries), options.signal);
    }
  }
}

function holds(result: CasResult, next: HashLike | null): boolean {
  const current = result.current?.hash;
  if (next === null) return current === undefined;
  return current !== undefined && current.toString() === (typeof next === 'string' ? next : next.toString());
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
