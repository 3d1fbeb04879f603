/**
 * Ref sync of the layered store: push, pull and status.
 *
 * Each ref has three values: local (upper store), remote (lower store) and
 * base, the remote value at the last sync (kept under `.cairn/remote/<ref>`
 * in the upper store, like git's remote-tracking refs). {@link classifyRef}
 * turns the three into one relation, and push, pull and status all act on
 * that relation: push publishes `local-ahead` refs by compare-and-swap from
 * the base, pull takes `remote-ahead` ones, and `diverged` is reported, never
 * overwritten.
 *
 * @module
 */
import { throwIfAborted, type AbortOptions } from '../../abort.js';
import type { Hash } from '../../hash.js';
import { toHash } from '../../object-io.js';
import { assertRefPrefix } from '../../ref-name.js';
import type { CasResult, Store } from '../../store.js';
import { stillNeeded } from '../remote-copy.js';
import { withRetry } from '../transient.js';
import { settledSwap } from './outcome.js';
import { COPY_BATCH, isReserved, PUSHING_PREFIX, sameHash, TRACKING_PREFIX, verifyStored } from './names.js';
import type { PullOptions, PullResult, PushOptions, PushResult, RefChange, RefConflict, RefStatus } from './types.js';

/**
 * How a ref's local and remote values relate, given the remote value at the last sync (`base`):
 * `equal` (nothing to do), `local-ahead` (only the local side moved: push's business),
 * `remote-ahead` (only the remote side moved: pull's business), `diverged` (both moved).
 */
export type RefRelation = 'equal' | 'local-ahead' | 'remote-ahead' | 'diverged';

/**
 * Classifies one ref. `undefined` means absent (never set, or deleted).
 *
 * @example
 * ```ts
 * classifyRef(mine, theirs, lastSynced); // 'local-ahead' when only `mine` changed since lastSynced
 * ```
 */
export function classifyRef(local: Hash | undefined, remote: Hash | undefined, base: Hash | undefined): RefRelation {
  if (sameHash(local, remote)) return 'equal';
  if (sameHash(remote, base)) return 'local-ahead';
  if (sameHash(local, base)) return 'remote-ahead';
  return 'diverged';
}

const STATE_OF: Record<RefRelation, RefStatus['state']> = {
  equal: 'up-to-date',
  'local-ahead': 'ahead',
  'remote-ahead': 'behind',
  diverged: 'diverged',
};

/** What ref sync needs from the layered store. */
export interface RefSyncParts {
  readonly upper: Store;
  readonly lower: Store;
  /** The layered store itself: `pull --objects` reads through it, which copies objects up. */
  readonly layered: Store;
  /** Throws if the layered store is closed or the signal aborted. */
  check(options: AbortOptions | undefined): void;
  /** Uploads every pending object; resolves with how many were uploaded. */
  uploadAll(options: AbortOptions): Promise<number>;
}

/** Push, pull and status, serialised: push and pull read-then-write tracking refs. */
export class RefSync {
  readonly #parts: RefSyncParts;
  #syncing: Promise<unknown> = Promise.resolve();

  constructor(parts: RefSyncParts) {
    this.#parts = parts;
  }

  push(options: PushOptions): Promise<PushResult> {
    return this.#exclusive(() => this.#push(options));
  }

  pull(options: PullOptions): Promise<PullResult> {
    return this.#exclusive(() => this.#pull(options));
  }

  /** Resolves once no push or pull is running. */
  async idle(): Promise<void> {
    await this.#syncing.catch(() => {});
  }

  async #push(options: PushOptions): Promise<PushResult> {
    const { upper, lower } = this.#parts;
    this.#parts.check(options);
    const prefix = options.prefix ?? '';
    assertRefPrefix(prefix);
    // Refs are read before objects are uploaded: every object written before these values is then uploaded below.
    const local = await refMap(upper, prefix, options);
    const base = await this.#trackingMap(prefix, options);
    const objects = await this.#parts.uploadAll(options);
    // Push does not list the remote: it assumes the remote still holds the base, and the swap checks it.
    const changed = [...local].filter(([ref, hash]) => classifyRef(hash, base.get(ref), base.get(ref)) !== 'equal');
    await this.#ensureInLower(changed.map(([, hash]) => hash), options);

    const result: { pushed: RefChange[]; upToDate: string[]; conflicts: RefConflict[]; objects: number } = {
      pushed: [],
      upToDate: [],
      conflicts: [],
      objects,
    };
    const intents = await refMap(upper, PUSHING_PREFIX + prefix, options, PUSHING_PREFIX);
    const names = [...new Set([...local.keys(), ...base.keys()])].sort();
    for (const ref of names) {
      throwIfAborted(options.signal);
      const mine = local.get(ref);
      const seen = base.get(ref);
      if (classifyRef(mine, seen, seen) === 'equal') {
        result.upToDate.push(ref);
        continue;
      }
      const { swap, from } = await this.#publish(ref, seen, mine, intents.get(ref), options);
      const remote = swap.current?.hash;
      if (swap.ok || classifyRef(mine, remote, from) === 'equal') {
        await this.#setTracking(ref, mine, options);
        if (mine !== undefined) await upper.deleteRef(PUSHING_PREFIX + ref, options);
        if (swap.ok) result.pushed.push({ ref, from, to: mine });
        else result.upToDate.push(ref);
      } else {
        result.conflicts.push({ ref, local: mine, remote, base: from });
      }
    }
    return result;
  }

  /**
   * One remote compare-and-swap to `mine`, from the remote value last seen.
   * The value is noted locally first (`.cairn/pushing/<ref>`): if this
   * process dies after the swap but before the tracking ref is updated,
   * the next push finds the remote at the noted value, knows it was its own
   * write rather than a conflict, and records it before noting a new one.
   */
  async #publish(
    ref: string,
    seen: Hash | undefined,
    mine: Hash | undefined,
    intent: Hash | undefined,
    options: AbortOptions,
  ): Promise<{ swap: CasResult; from: Hash | undefined }> {
    const { upper, lower } = this.#parts;
    let from = seen;
    if (intent !== undefined && !sameHash(intent, seen)) {
      const current = await withRetry(() => lower.getRef(ref, options), options);
      if (sameHash(current?.hash, intent)) {
        await this.#setTracking(ref, intent, options);
        from = intent;
      }
    }
    if (mine !== undefined) await upper.setRef(PUSHING_PREFIX + ref, mine, options);
    // Retrying a swap is safe: if a lost response hid a success, the retry fails with current === mine, read as done.
    // An OutcomeUnknownError is settled (resolveOutcome, or the same swap again) before anything is reported.
    const swap = await settledSwap(lower, ref, from, mine, options);
    return { swap, from };
  }

  /**
   * The safety net under the journal: a ref's own object must be in the lower store, intact, before
   * the ref is published. A copy the lower store has is read back and hashed (one read per changed
   * ref): a damaged one stops the push with an {@link IntegrityError} before any ref is published.
   */
  async #ensureInLower(hashes: Hash[], options: AbortOptions): Promise<void> {
    const { upper, lower } = this.#parts;
    const unique = [...new Map(hashes.map((h) => [h.toString(), h])).values()];
    for (let i = 0; i < unique.length; i += COPY_BATCH) {
      const slice = unique.slice(i, i + COPY_BATCH);
      const present = await withRetry(() => lower.hasMany(slice, options), options);
      const missing = await withRetry(() => stillNeeded(lower, slice, present, options), options);
      const copyable = missing.length === 0 ? [] : await upper.hasMany(missing, options);
      for (const [k, hash] of missing.entries()) {
        if (!copyable[k]) continue;
        const stored = await withRetry(
          () => lower.put(upper.getStream(hash, options), { algorithm: hash.algorithm, signal: options.signal }),
          options,
        );
        verifyStored(hash, stored);
      }
    }
  }

  async #pull(options: PullOptions): Promise<PullResult> {
    const { upper, lower } = this.#parts;
    this.#parts.check(options);
    const prefix = options.prefix ?? '';
    assertRefPrefix(prefix);
    const remote = await refMap(lower, prefix, options);
    const base = await this.#trackingMap(prefix, options);
    const local = await refMap(upper, prefix, options);
    const result: { updated: RefChange[]; upToDate: string[]; diverged: RefConflict[]; objects: number } = {
      updated: [],
      upToDate: [],
      diverged: [],
      objects: 0,
    };
    const names = [...new Set([...remote.keys(), ...base.keys()])].sort();
    for (const ref of names) {
      throwIfAborted(options.signal);
      const theirs = remote.get(ref);
      const seen = base.get(ref);
      const mine = local.get(ref);
      const relation = classifyRef(mine, theirs, seen);
      if (relation === 'equal') {
        if (!sameHash(seen, theirs)) await this.#setTracking(ref, theirs, options);
        result.upToDate.push(ref);
        continue;
      }
      if (relation === 'local-ahead') {
        // Only the local side moved: push's business, nothing to take.
        result.upToDate.push(ref);
        continue;
      }
      if (relation === 'diverged') {
        result.diverged.push({ ref, local: mine, remote: theirs, base: seen });
        continue;
      }
      if (theirs !== undefined && options.objects) result.objects += await this.#fetchObjects(theirs, options);
      const swap = await upper.compareAndSwap(ref, mine ?? null, theirs ?? null, options);
      if (!swap.ok) {
        result.diverged.push({ ref, local: swap.current?.hash, remote: theirs, base: seen });
        continue;
      }
      await this.#setTracking(ref, theirs, options);
      result.updated.push({ ref, from: mine, to: theirs });
    }
    return result;
  }

  /** Copies `root` and what the walker finds reachable from it into the upper store; returns how many were copied. */
  async #fetchObjects(root: Hash, options: PullOptions): Promise<number> {
    const { upper, layered } = this.#parts;
    let copied = 0;
    let batch: Hash[] = [];
    const copy = async (): Promise<void> => {
      const present = await upper.hasMany(batch, options);
      const missing = batch.filter((_, i) => !present[i]);
      batch = [];
      if (missing.length === 0) return;
      // The layered store's getMany copies what it reads from the lower store into the upper one.
      await withRetry(() => layered.getMany(missing, options), options);
      copied += missing.length;
    };
    batch.push(root);
    if (typeof options.objects === 'function') {
      for await (const hashLike of options.objects(root, layered)) {
        batch.push(toHash(hashLike));
        if (batch.length >= COPY_BATCH) await copy();
      }
    }
    if (batch.length > 0) await copy();
    return copied;
  }

  /** Every ref under `prefix` on either side, with its relation. Reads the remote's refs (one listing). */
  async refStates(prefix: string, options: AbortOptions): Promise<RefStatus[]> {
    const { upper, lower } = this.#parts;
    const [local, remote, base] = await Promise.all([
      refMap(upper, prefix, options),
      refMap(lower, prefix, options),
      this.#trackingMap(prefix, options),
    ]);
    return [...new Set([...local.keys(), ...remote.keys(), ...base.keys()])].sort().map((ref) => {
      const l = local.get(ref);
      const r = remote.get(ref);
      const b = base.get(ref);
      return { ref, local: l, remote: r, base: b, state: STATE_OF[classifyRef(l, r, b)] };
    });
  }

  #trackingMap(prefix: string, options: AbortOptions): Promise<Map<string, Hash>> {
    return refMap(this.#parts.upper, TRACKING_PREFIX + prefix, options, TRACKING_PREFIX);
  }

  async #setTracking(ref: string, value: Hash | undefined, options: AbortOptions): Promise<void> {
    const { upper } = this.#parts;
    if (value === undefined) await upper.deleteRef(TRACKING_PREFIX + ref, options);
    else await upper.setRef(TRACKING_PREFIX + ref, value, options);
  }

  #exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#syncing.catch(() => {}).then(task);
    this.#syncing = run;
    return run;
  }
}

/** Refs under `prefix`, by name: user refs, or with `reserved`, the layer's own refs under it (names stripped of it). */
function refMap(store: Store, prefix: string, options: AbortOptions, reserved?: string): Promise<Map<string, Hash>> {
  return withRetry(async () => {
    const map = new Map<string, Hash>();
    for await (const ref of store.listRefs(prefix, options)) {
      if (reserved !== undefined) map.set(ref.name.slice(reserved.length), ref.hash);
      else if (!isReserved(ref.name)) map.set(ref.name, ref.hash);
    }
    return map;
  }, options);
}
