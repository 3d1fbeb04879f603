/**
 * Gathers many small puts into `putMany` calls. A snapshot writes one
 * object per small file and per chunk; one call per object would cost one
 * durable write each (an fsync on disk, a journal record in a layered
 * store), while a batch of a few hundred shares one.
 *
 * The caller computes each hash itself, so it never waits for a put to
 * build its trees; {@link PutBatcher.add} waits only for backpressure
 * (at most `maxInFlight` batches being written), which bounds memory.
 *
 * @module
 */
import type { Hash, HashAlgorithm } from '../hash.js';
import type { Store } from '../store.js';

/** Options of {@link PutBatcher}. */
export interface PutBatcherOptions {
  algorithm?: HashAlgorithm | undefined;
  signal?: AbortSignal | undefined;
  /** Objects it already holds are skipped (checked per batch with `hasMany`). */
  known?: Store | undefined;
  /** @default 256 */
  maxItems?: number | undefined;
  /** @default 8388608 (8 MiB) */
  maxBytes?: number | undefined;
  /** @default 2 */
  maxInFlight?: number | undefined;
}

/** See the module comment. Not safe to share between snapshots. */
export class PutBatcher {
  readonly #store: Store;
  readonly #options: PutBatcherOptions;
  readonly #seen = new Set<string>();
  readonly #inFlight = new Set<Promise<void>>();
  #items: Uint8Array[] = [];
  #hashes: Hash[] = [];
  #bytes = 0;
  #failure: { error: unknown } | undefined;
  /** Objects actually put (not already in `known`, not repeated). */
  written = 0;

  constructor(store: Store, options: PutBatcherOptions = {}) {
    this.#store = store;
    this.#options = options;
  }

  /** Queues `bytes` (whose hash is `hash`); resolves once there is room for more. */
  async add(bytes: Uint8Array, hash: Hash): Promise<void> {
    this.#throwIfFailed();
    const key = hash.toString();
    if (this.#seen.has(key)) return;
    this.#seen.add(key);
    this.#items.push(bytes);
    this.#hashes.push(hash);
    this.#bytes += bytes.length;
    if (this.#items.length >= (this.#options.maxItems ?? 256) || this.#bytes >= (this.#options.maxBytes ?? 8 * 2 ** 20)) {
      this.#start();
    }
    while (this.#inFlight.size >= (this.#options.maxInFlight ?? 2)) await Promise.race(this.#inFlight);
    this.#throwIfFailed();
  }

  /** Writes what is queued and waits for every batch; rejects with the first failure. */
  async flush(): Promise<void> {
    if (this.#items.length > 0) this.#start();
    await Promise.all(this.#inFlight);
    this.#throwIfFailed();
  }

  /** Waits for batches in flight, ignoring failures (for cleanup after an error). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.#inFlight);
  }

  #throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure.error;
  }

  #start(): void {
    const items = this.#items;
    const hashes = this.#hashes;
    this.#items = [];
    this.#hashes = [];
    this.#bytes = 0;
    const { algorithm, signal, known } = this.#options;
    const task = (async () => {
      let fresh = items;
      if (known !== undefined) {
        const present = await known.hasMany(hashes, { signal });
        fresh = items.filter((_, i) => present[i] !== true);
      }
      if (fresh.length > 0) await this.#store.putMany(fresh, { algorithm, signal });
      this.written += fresh.length;
    })().catch((error: unknown) => {
      this.#failure ??= { error };
    });
    const tracked = task.finally(() => this.#inFlight.delete(tracked));
    this.#inFlight.add(tracked);
  }
}
