/**
 * Verifying a store: every object is read back and re-hashed (the store's
 * own read path checks the hash; an object whose bytes do not match is
 * reported, never returned), and everything the refs reach is checked to be
 * present.
 *
 * @module
 */
import { throwIfAborted, type AbortOptions } from '../abort.js';
import { IntegrityError, NotFoundError } from '../errors.js';
import type { Hash } from '../hash.js';
import type { Store } from '../store.js';
import { reachableFrom } from './gc.js';
import { forEachLimit, type ProgressListener } from './progress.js';

/** Options of {@link verifyStore}. */
export interface VerifyOptions extends AbortOptions {
  /**
   * Objects read at once.
   * @default 8
   */
  concurrency?: number | undefined;
  /**
   * Also check that every object the refs reach is present.
   * @default true
   */
  checkRefs?: boolean | undefined;
  /**
   * Which refs to follow for the missing-object check.
   * @default every ref
   */
  refFilter?: ((name: string) => boolean) | undefined;
  onProgress?: ProgressListener | undefined;
}

/** What {@link verifyStore} found. */
export interface VerifyResult {
  /** Objects read and re-hashed. */
  readonly checked: number;
  readonly bytes: number;
  /** Objects whose bytes do not match their hash, sorted. */
  readonly corrupt: readonly string[];
  /** Objects reachable from a ref but absent, sorted. */
  readonly missing: readonly string[];
  /**
   * Reachable trees and chunk lists that do not decode by the rules restore
   * uses (duplicate or unsorted names, `..`, bad modes, sizes that do not
   * add up), sorted by hash, each with why. Restore would refuse them.
   */
  readonly invalid: ReadonlyArray<{ readonly hash: string; readonly problem: string }>;
  /** True when nothing is corrupt, missing or invalid. */
  readonly ok: boolean;
}

/**
 * Re-hashes every object of `store` (streaming, so large objects take
 * bounded memory) and lists the corrupt and missing ones.
 *
 * @example
 * ```ts
 * const { ok, corrupt } = await verifyStore(store);
 * if (!ok) console.error('corrupt:', corrupt);
 * ```
 */
export async function verifyStore(store: Store, options: VerifyOptions = {}): Promise<VerifyResult> {
  const signal = options.signal;
  const objects: Hash[] = [];
  for await (const hash of store.listObjects({ signal })) objects.push(hash);
  const corrupt: string[] = [];
  let checked = 0;
  let bytes = 0;
  const report = (): void => options.onProgress?.({ phase: 'verify', done: checked, total: objects.length, bytes });
  await forEachLimit(objects, options.concurrency ?? 8, async (hash) => {
    throwIfAborted(signal);
    try {
      for await (const piece of store.getStream(hash, { signal })) bytes += piece.length;
    } catch (error) {
      if (error instanceof IntegrityError) corrupt.push(hash.toString());
      // Deleted since the listing (a concurrent gc): nothing to verify.
      else if (!(error instanceof NotFoundError)) throw error;
    }
    checked++;
    report();
  });
  let missing: string[] = [];
  let invalid: Array<{ hash: string; problem: string }> = [];
  if (options.checkRefs !== false) {
    const roots: Hash[] = [];
    for await (const ref of store.listRefs('', { signal })) {
      if (options.refFilter === undefined || options.refFilter(ref.name)) roots.push(ref.hash);
    }
    // Corrupt trees were reported above; what they name cannot be checked.
    const reach = await reachableFrom(store, roots, { signal, checkLeaves: true });
    missing = [...reach.missing];
    invalid = [...reach.invalid].sort(([a], [b]) => (a < b ? -1 : 1)).map(([hash, problem]) => ({ hash, problem }));
  }
  corrupt.sort();
  missing.sort();
  return { checked, bytes, corrupt, missing, invalid, ok: corrupt.length === 0 && missing.length === 0 && invalid.length === 0 };
}
