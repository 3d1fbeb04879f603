/**
 * Reachability and garbage collection.
 *
 * An object is **reachable** when a ref names it, or a reachable tree or
 * chunk list names it. Ref targets are read to see whether they are trees
 * (a ref may also name a plain object from `cairn put`, a leaf). An object
 * that starts like a tree or chunk list but does not decode by the rules
 * restore uses is **invalid**: reported, never taken for a leaf, since what
 * it names is unknown. Each distinct object is read once, so a tree that
 * names one subtree a million times costs one read. Chunks are never read.
 *
 * **Grace period.** The Store contract has no object timestamps, so the
 * age of an object is measured from when gc first saw it unreachable: each
 * run records first sightings in a {@link GcState}, and only objects that
 * have stayed unreachable for at least `graceMs` are deleted. That protects
 * a snapshot that is being written (its objects exist before its ref does)
 * on any backend. Objects are listed *before* refs are read, so an object
 * whose ref appears during the run is either not listed or reachable.
 *
 * @module
 */
import { throwIfAborted, type AbortOptions } from '../abort.js';
import { CorruptStoreError, IntegrityError, NotFoundError } from '../errors.js';
import { parseHash, type Hash } from '../hash.js';
import type { Store } from '../store.js';
import { CHUNKS_TAG, decodeChunkList, decodeTree, looksLike, TREE_TAG } from './format.js';
import { forEachLimit, type ProgressListener } from './progress.js';

/** What {@link reachableFrom} found. */
export interface Reachability {
  /** Text forms of every reachable object that is present. */
  readonly reachable: Set<string>;
  /** Text forms of objects named by a ref or tree but absent from the store. */
  readonly missing: Set<string>;
  /** Trees or chunk lists that could not be read because their bytes are corrupt (their children are unknown). */
  readonly corrupt: Set<string>;
  /** Objects that look like trees or chunk lists but do not decode (duplicate names, `..`, bad modes), with why. */
  readonly invalid: Map<string, string>;
}

/** Options of {@link reachableFrom}. */
export interface ReachOptions extends AbortOptions {
  /**
   * Objects read at once.
   * @default 16
   */
  concurrency?: number | undefined;
  /**
   * Check leaves (chunks, small files) for presence with `hasMany`, so that
   * `missing` is complete. Off, leaves are assumed present.
   * @default false
   */
  checkLeaves?: boolean | undefined;
}

/**
 * Walks everything reachable from `roots` (ref targets).
 *
 * @example
 * ```ts
 * const roots = [];
 * for await (const ref of store.listRefs()) roots.push(ref.hash);
 * const { reachable } = await reachableFrom(store, roots);
 * ```
 */
export async function reachableFrom(store: Store, roots: readonly Hash[], options: ReachOptions = {}): Promise<Reachability> {
  const reachable = new Set<string>();
  const missing = new Set<string>();
  const corrupt = new Set<string>();
  const invalid = new Map<string, string>();
  const signal = options.signal;
  const leaves: Hash[] = [];
  // Each round reads one level of objects that may have children (trees, chunk lists, ref targets).
  let frontier: Hash[] = [];
  const seen = new Set<string>();
  const enqueue = (hash: Hash, container: boolean): void => {
    const key = hash.toString();
    if (seen.has(key)) return;
    seen.add(key);
    if (container) frontier.push(hash);
    else leaves.push(hash);
  };
  for (const root of roots) enqueue(root, true);
  while (frontier.length > 0) {
    const level = frontier;
    frontier = [];
    await forEachLimit(level, options.concurrency ?? 16, async (hash) => {
      throwIfAborted(signal);
      let bytes: Uint8Array;
      try {
        bytes = await store.get(hash, { signal });
      } catch (error) {
        if (error instanceof NotFoundError) {
          missing.add(hash.toString());
          return;
        }
        if (error instanceof IntegrityError) {
          corrupt.add(hash.toString());
          return;
        }
        throw error;
      }
      reachable.add(hash.toString());
      if (looksLike(bytes, TREE_TAG)) {
        let entries;
        try {
          entries = decodeTree(bytes, hash);
        } catch (error) {
          invalid.set(hash.toString(), (error as Error).message);
          return;
        }
        for (const e of entries) {
          if (e.type === 'dir') enqueue(e.hash, true);
          else if (e.type === 'file' && e.chunks !== undefined) enqueue(e.chunks, true);
          else if (e.type === 'file') enqueue(e.hash!, false);
        }
      } else if (looksLike(bytes, CHUNKS_TAG)) {
        try {
          for (const [chunk] of decodeChunkList(bytes, hash).chunks) enqueue(chunk, false);
        } catch (error) {
          invalid.set(hash.toString(), (error as Error).message);
        }
      }
    });
  }
  if (options.checkLeaves === true) {
    for (let i = 0; i < leaves.length; i += 1000) {
      throwIfAborted(signal);
      const batch = leaves.slice(i, i + 1000);
      const present = await store.hasMany(batch, { signal });
      batch.forEach((h, j) => (present[j] === true ? reachable : missing).add(h.toString()));
    }
  } else {
    for (const leaf of leaves) reachable.add(leaf.toString());
  }
  return { reachable, missing, corrupt, invalid };
}

/** When gc first saw each unreachable object, in ms since the epoch, by hash text. Persist it between runs. */
export type GcState = Record<string, number>;

/** Options of {@link collectGarbage}. */
export interface GcOptions extends AbortOptions {
  /** Ref targets to keep, besides the store's own refs (say, another store's refs). */
  extraRoots?: readonly Hash[] | undefined;
  /**
   * Only objects unreachable for at least this long (by `state`) are deleted.
   * 0 deletes every unreachable object now: unsafe while another process writes a snapshot.
   * @default 3600000 (one hour)
   */
  graceMs?: number | undefined;
  /** First sightings from the previous run; see {@link GcState}. @default {} */
  state?: GcState | undefined;
  /**
   * List, delete nothing.
   * @default true
   */
  dryRun?: boolean | undefined;
  /**
   * Objects kept as they are, without following what they name (say, a
   * layer's pending-upload lists).
   * @default []
   */
  keep?: readonly Hash[] | undefined;
  /**
   * Which of the store's refs are roots (say, to leave out a layer's own bookkeeping refs).
   * @default every ref
   */
  refFilter?: ((name: string) => boolean) | undefined;
  /**
   * Collect even when an object a ref reaches is missing (what it names is
   * unknown, so its surviving children would be listed as garbage). Or a
   * function that says which missing objects are fine (say, present in the
   * remote a layered store reads through).
   * @default false
   */
  allowMissing?: boolean | ((missing: readonly Hash[], options: AbortOptions) => Promise<boolean[]>) | undefined;
  /** The clock, for tests. @default Date.now */
  now?: (() => number) | undefined;
  onProgress?: ProgressListener | undefined;
}

/** What {@link collectGarbage} found and did. */
export interface GcResult {
  /** Objects in the store. */
  readonly total: number;
  readonly reachable: number;
  /** Every unreachable object, sorted. */
  readonly unreachable: readonly string[];
  /** Unreachable objects past the grace period: deleted, or to be deleted when not a dry run. */
  readonly eligible: readonly string[];
  /** Objects actually deleted (empty in a dry run). */
  readonly deleted: readonly string[];
  /** The state to save for the next run. */
  readonly state: GcState;
}

/**
 * Finds objects no ref reaches and, unless `dryRun`, deletes those past the
 * grace period.
 *
 * @example
 * ```ts
 * const plan = await collectGarbage(store, { state, graceMs: 0 });           // dry run
 * const done = await collectGarbage(store, { state: plan.state, graceMs: 0, dryRun: false });
 * ```
 */
export async function collectGarbage(store: Store, options: GcOptions = {}): Promise<GcResult> {
  const signal = options.signal;
  const now = (options.now ?? Date.now)();
  const graceMs = options.graceMs ?? 3_600_000;
  const objects: Hash[] = [];
  for await (const hash of store.listObjects({ signal })) {
    objects.push(hash);
    if (objects.length % 1000 === 0) options.onProgress?.({ phase: 'gc: list', done: objects.length, bytes: 0 });
  }
  const roots: Hash[] = [...(options.extraRoots ?? [])];
  for await (const ref of store.listRefs('', { signal })) {
    if (options.refFilter === undefined || options.refFilter(ref.name)) roots.push(ref.hash);
  }
  const { reachable, corrupt, invalid, missing } = await reachableFrom(store, roots, { signal });
  for (const hash of options.keep ?? []) reachable.add(hash.toString());
  if (invalid.size > 0) {
    const [first, why] = [...invalid][0]!;
    throw new CorruptStoreError(
      `gc stopped: ${invalid.size} reachable tree(s) or chunk list(s) do not decode (first ${first}: ${why}); run "cairn verify" and repair before collecting garbage`,
      { key: first },
    );
  }
  await assertNothingMissing(missing, options);
  if (corrupt.size > 0) {
    // What a corrupt tree names is unknown, so nothing can be proven unreachable.
    throw new IntegrityError(
      `gc stopped: ${corrupt.size} reachable object(s) are corrupt (first ${[...corrupt][0]}); run verify and repair before collecting garbage`,
    );
  }
  const previous = options.state ?? {};
  const state: GcState = {};
  const unreachable: string[] = [];
  const eligible: Hash[] = [];
  for (const hash of objects) {
    const key = hash.toString();
    if (reachable.has(key)) continue;
    unreachable.push(key);
    const first = previous[key] ?? now;
    state[key] = first;
    if (now - first >= graceMs) eligible.push(hash);
  }
  unreachable.sort();
  eligible.sort((x, y) => (x.toString() < y.toString() ? -1 : 1));
  const deleted: string[] = [];
  if (options.dryRun === false) {
    let done = 0;
    await forEachLimit(eligible, 16, async (hash) => {
      throwIfAborted(signal);
      await store.delete(hash, { signal });
      deleted.push(hash.toString());
      delete state[hash.toString()];
      options.onProgress?.({ phase: 'gc: delete', done: ++done, total: eligible.length, bytes: 0 });
    });
    deleted.sort();
  }
  return {
    total: objects.length,
    reachable: objects.length - unreachable.length,
    unreachable,
    eligible: eligible.map((h) => h.toString()),
    deleted,
    state,
  };
}

async function assertNothingMissing(missing: Set<string>, options: GcOptions): Promise<void> {
  if (missing.size === 0 || options.allowMissing === true) return;
  let still = [...missing].sort();
  if (typeof options.allowMissing === 'function') {
    const ok = await options.allowMissing(still.map((h) => parseHash(h)), { signal: options.signal });
    still = still.filter((_, i) => ok[i] !== true);
  }
  if (still.length === 0) return;
  throw new NotFoundError(
    `gc stopped: ${still.length} object(s) a ref reaches are missing (first ${still[0]}), so what they name is unknown and ` +
      'their surviving parts would look like garbage; restore them (push or pull again), delete the refs that need them, ' +
      'or pass --allow-missing to collect anyway',
    { key: still[0] },
  );
}
