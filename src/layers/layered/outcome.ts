/**
 * Push's remote ref write: a compare-and-swap whose lost answer is settled
 * (see `internal/settle.ts`) and whose transient failures are retried. Push
 * must end in exactly one of "published" or "conflict", and must never
 * report its own landed write as a conflict; the ref holding exactly the
 * snapshot this push publishes counts as published.
 *
 * @module
 */
import type { AbortOptions } from '../../abort.js';
import type { Hash } from '../../hash.js';
import { settledCompareAndSwap } from '../../internal/settle.js';
import type { CasResult, Store } from '../../store.js';
import { withRetry } from '../transient.js';

/**
 * `lower.compareAndSwap(ref, from, next)`, settled: `ok: true` when the write
 * landed (now or in an attempt whose answer was lost), `ok: false` with the
 * current value when another writer holds the ref; throws
 * `OutcomeUnknownError` only if every settling attempt lost its answer too.
 */
export function settledSwap(lower: Store, ref: string, from: Hash | undefined, next: Hash | undefined, options: AbortOptions): Promise<CasResult> {
  return withRetry(() => settledCompareAndSwap(lower, ref, from ?? null, next ?? null, { ...options, sameValueIsMine: true }), options);
}
