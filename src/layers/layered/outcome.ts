/**
 * Settling a remote ref write whose outcome is unknown: the lower store
 * threw {@link OutcomeUnknownError} because the write may or may not have
 * landed (a lost response). Push must end in exactly one of "published"
 * or "conflict", and must never report its own landed write as a conflict.
 *
 * A store that can settle an attempt offers `resolveOutcome(attempt)` (the
 * S3 store does). The lower store may be wrapped (packs, a cache), so the
 * method is looked for structurally, down the wrappers' `inner` stores.
 * Without one, the same swap is tried again: a store that recognises its
 * own write id (S3) answers `ok`, and any other answers `ok: false` with
 * the value it wrote, which is read as the write having landed.
 *
 * @module
 */
import { backoffDelay, sleep, type AbortOptions } from '../../abort.js';
import { OutcomeUnknownError, type RefWriteAttempt } from '../../errors.js';
import type { Hash } from '../../hash.js';
import type { CasResult, Store } from '../../store.js';
import { withRetry } from '../transient.js';
import { sameHash } from './names.js';

/** A store that can settle a write attempt it reported as unknown. */
interface OutcomeResolver {
  resolveOutcome(attempt: RefWriteAttempt, options?: AbortOptions): Promise<CasResult>;
}

/** How many times an unknown outcome is settled before push gives up (and reports it as unknown). */
const SETTLE_ATTEMPTS = 6;
/** How deep the wrappers around a store are followed. */
const MAX_WRAPPERS = 8;

/** The store under `store`'s wrappers (or `store` itself) that offers `resolveOutcome`, if any. */
export function outcomeResolver(store: Store): OutcomeResolver | undefined {
  let candidate: unknown = store;
  for (let depth = 0; depth < MAX_WRAPPERS && typeof candidate === 'object' && candidate !== null; depth++) {
    if (typeof (candidate as Partial<OutcomeResolver>).resolveOutcome === 'function') return candidate as OutcomeResolver;
    // ForwardingStore keeps the store it wraps as `inner`.
    candidate = (candidate as { inner?: unknown }).inner;
  }
  return undefined;
}

/**
 * `lower.compareAndSwap(ref, from, next)` with transient failures retried
 * and an unknown outcome settled: resolves `ok: true` when the write landed
 * (now or in an attempt whose answer was lost), `ok: false` with the
 * current value when another writer holds the ref, and throws
 * {@link OutcomeUnknownError} only if every settling attempt lost its
 * answer too.
 */
export async function settledSwap(lower: Store, ref: string, from: Hash | undefined, next: Hash | undefined, options: AbortOptions): Promise<CasResult> {
  const swap = (): Promise<CasResult> => lower.compareAndSwap(ref, from ?? null, next ?? null, options);
  let unknown: OutcomeUnknownError | undefined;
  for (let attempt = 0; ; attempt++) {
    try {
      if (unknown === undefined) return await withRetry(swap, options);
      const pending = unknown;
      const resolver = outcomeResolver(lower);
      const result = await withRetry(() => (resolver === undefined ? swap() : resolver.resolveOutcome(pending.attempt, options)), options);
      // After a lost answer, the ref holding exactly what this push wrote is this push's write.
      if (!result.ok && sameHash(result.current?.hash, next)) return { ok: true, current: result.current };
      return result;
    } catch (error) {
      if (!(error instanceof OutcomeUnknownError) || attempt + 1 >= SETTLE_ATTEMPTS) throw error;
      unknown = error;
      await sleep(backoffDelay(attempt), options.signal);
    }
  }
}
