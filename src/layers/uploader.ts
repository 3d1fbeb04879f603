/**
 * The batch uploader: moves objects to a remote store in batches, with a
 * bounded number of batches in flight and a bound on the bytes it holds.
 *
 * Shape (after p-queue): `enqueue` is fast until `maxPendingBytes` of
 * objects are waiting, then it waits for room (backpressure), so memory
 * stays bounded however fast the caller writes. `flush()` is the barrier:
 * it resolves once everything enqueued before it is in the remote.
 *
 * Batches go through the remote's batch path (`putMany`, `hasMany`), formed
 * when a slot frees rather than on a timer: while the remote is slow, work
 * piles up and batches grow; while it is fast, objects leave one by one
 * with no added latency.
 *
 * A batch that fails transiently is retried after a jittered backoff
 * ({@link backoffDelay}); from its second failure on it is split in half, so
 * that one bad object or a flaky link cannot make a large batch fail
 * forever. A permanent failure is isolated by the same halving down to the
 * single object, which is then reported (`failed` event, `flush` rejects)
 * while every other object goes through.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import PQueue from 'p-queue';
import { abortError, backoffDelay, raceAbort, sleep, throwIfAborted, type AbortOptions } from '../abort.js';
import {
  AbortError,
  BackendError,
  CairnError,
  ClosedError,
  IntegrityError,
  InvalidArgumentError,
  isCairnError,
  NotFoundError,
} from '../errors.js';
import { Hash, hashBytes, type HashAlgorithm } from '../hash.js';
import type { Store } from '../store.js';
import { integerOption, storeOption } from './options.js';
import { checkRemoteCopies, checkRemoteCopy } from './remote-copy.js';
import { isTransient } from './transient.js';

/** One object to upload. Give `bytes`, or omit them to have the uploader read them from `source` when their turn comes. */
export interface UploadItem {
  /** The object's hash. With `bytes`, the remote's answer is checked against it. */
  readonly hash: Hash;
  /** The object's size in bytes (counts against `maxPendingBytes` and progress). */
  readonly size: number;
  /** The bytes, held until uploaded. Omitted: read from the uploader's `source` at upload time. */
  readonly bytes?: Uint8Array | undefined;
  /**
   * Ask the remote (`hasMany`) before uploading: for objects it may already have. A copy the remote
   * has is read back and hashed before the object counts as done; a damaged one fails the object
   * with an {@link IntegrityError} (a put cannot replace it: see `cairn verify --repair`).
   * @default false
   */
  readonly checkRemote?: boolean | undefined;
}

/** Upload progress, for progress bars. Totals grow as objects are enqueued. */
export interface UploadProgress {
  readonly objectsDone: number;
  readonly objectsTotal: number;
  readonly bytesDone: number;
  readonly bytesTotal: number;
  /** Objects that failed permanently (see {@link BatchUploader.failures}). */
  readonly objectsFailed: number;
  /** Objects the remote already had, or the source no longer had; counted as done. */
  readonly objectsSkipped: number;
  /** Bytes held now for objects not yet uploaded. */
  readonly pendingBytes: number;
}

/** A permanent upload failure. */
export interface UploadFailure {
  readonly hash: Hash;
  readonly error: CairnError;
}

/** Options of {@link BatchUploader}. */
export interface BatchUploaderOptions {
  /**
   * Batches in flight at once.
   * @default 8
   */
  concurrency?: number | undefined;
  /**
   * Most objects in one `putMany` call.
   * @default 32
   */
  batchSize?: number | undefined;
  /**
   * Most bytes in one `putMany` call (a single larger object still goes, alone).
   * @default 8388608 (8 MiB)
   */
  maxBatchBytes?: number | undefined;
  /**
   * Bytes of objects held for upload before `enqueue` waits. An object
   * larger than the bound is admitted alone when nothing else is pending.
   * Memory held is at most this plus one batch being read from `source`.
   * @default 67108864 (64 MiB)
   */
  maxPendingBytes?: number | undefined;
  /**
   * Attempts per object before a transient failure becomes permanent.
   * @default 10
   */
  maxAttempts?: number | undefined;
  /**
   * First retry delay ceiling in ms (doubles per attempt, full jitter).
   * @default 25
   */
  retryBaseMs?: number | undefined;
  /**
   * Largest retry delay ceiling in ms.
   * @default 2000
   */
  retryCapMs?: number | undefined;
  /**
   * Objects at least this large are uploaded one at a time as a stream
   * (`remote.put(source.getStream(hash))`) when their bytes are not held,
   * and are checked with `hasMany` first.
   * @default 1048576 (1 MiB)
   */
  streamThresholdBytes?: number | undefined;
  /** Where items enqueued without `bytes` are read from. Required for such items. */
  source?: Store | undefined;
  /** Stops the uploader: waiting work is dropped and its callers see {@link AbortError}. */
  signal?: AbortSignal | undefined;
}

interface Entry {
  readonly key: string;
  readonly item: UploadItem;
  /** Bytes counted against maxPendingBytes until settled. */
  readonly reserved: number;
  attempts: number;
  lastError: unknown;
  /** Taken by a batch (uploading or waiting to retry) rather than waiting in line. */
  busy: boolean;
  /** Set on the first entry of a retried batch: the most entries to take with it next time. */
  batchLimit: number | undefined;
  readonly done: Promise<void>;
  resolve(): void;
  reject(error: unknown): void;
}

interface SpaceWaiter {
  readonly need: number;
  resolve(): void;
  reject(error: unknown): void;
}

/** Events of {@link BatchUploader}. */
export interface UploaderEvents {
  progress: [UploadProgress];
  /** An object needs no more work: uploaded, already in the remote, or gone from `source`. */
  done: [Hash];
  failed: [UploadFailure];
}

/**
 * Uploads objects to `remote` in batches with bounded concurrency, bounded
 * memory, retries and progress events.
 *
 * @example
 * ```ts
 * const uploader = new BatchUploader(s3, { concurrency: 16, maxPendingBytes: 16 * 2 ** 20 });
 * uploader.on('progress', (p) => bar.update(p.bytesDone / p.bytesTotal));
 * for (const bytes of files) await uploader.enqueue(bytes); // waits when 16 MiB are pending
 * await uploader.flush(); // every object above is in the bucket
 * ```
 */
export class BatchUploader extends EventEmitter<UploaderEvents> {
  readonly #remote: Store;
  readonly #source: Store | undefined;
  readonly #concurrency: number;
  readonly #batchSize: number;
  readonly #maxBatchBytes: number;
  readonly #maxPendingBytes: number;
  readonly #maxAttempts: number;
  readonly #retryBaseMs: number;
  readonly #retryCapMs: number;
  readonly #streamThreshold: number;
  readonly #signal: AbortSignal | undefined;
  readonly #queue: PQueue;

  /** Every unsettled entry, by hash text: the in-flight de-duplication. */
  readonly #entries = new Map<string, Entry>();
  /** Entries ready to go, oldest first. A retried batch goes back to the front. */
  #waiting: Array<Entry | undefined> = [];
  #waitingHead = 0;
  readonly #spaceWaiters: SpaceWaiter[] = [];
  readonly #failed = new Map<string, UploadFailure & { item: UploadItem }>();
  #pendingBytes = 0;
  #closed = false;

  #objectsDone = 0;
  #objectsTotal = 0;
  #bytesDone = 0;
  #bytesTotal = 0;
  #objectsSkipped = 0;

  constructor(remote: Store, options: BatchUploaderOptions = {}) {
    super();
    storeOption('BatchUploader', 'remote', remote);
    if (options.source !== undefined) storeOption('BatchUploader', 'source', options.source);
    this.#remote = remote;
    this.#source = options.source;
    this.#concurrency = integerOption('BatchUploader', 'concurrency', options.concurrency, 8, 1, 1024);
    this.#batchSize = integerOption('BatchUploader', 'batchSize', options.batchSize, 32, 1, 10_000);
    this.#maxBatchBytes = integerOption('BatchUploader', 'maxBatchBytes', options.maxBatchBytes, 8 * 2 ** 20, 1);
    this.#maxPendingBytes = integerOption('BatchUploader', 'maxPendingBytes', options.maxPendingBytes, 64 * 2 ** 20, 1);
    this.#maxAttempts = integerOption('BatchUploader', 'maxAttempts', options.maxAttempts, 10, 1, 1000);
    this.#retryBaseMs = integerOption('BatchUploader', 'retryBaseMs', options.retryBaseMs, 25, 0);
    this.#retryCapMs = integerOption('BatchUploader', 'retryCapMs', options.retryCapMs, 2000, 0);
    this.#streamThreshold = integerOption('BatchUploader', 'streamThresholdBytes', options.streamThresholdBytes, 2 ** 20, 1);
    this.#signal = options.signal;
    this.#queue = new PQueue({ concurrency: this.#concurrency });
    this.#signal?.addEventListener('abort', () => this.#stop(abortError(this.#signal)), { once: true });
  }

  /** Counts so far. */
  progress(): UploadProgress {
    return {
      objectsDone: this.#objectsDone,
      objectsTotal: this.#objectsTotal,
      bytesDone: this.#bytesDone,
      bytesTotal: this.#bytesTotal,
      objectsFailed: this.#failed.size,
      objectsSkipped: this.#objectsSkipped,
      pendingBytes: this.#pendingBytes,
    };
  }

  /** Objects not yet uploaded nor failed. */
  get pendingObjects(): number {
    return this.#entries.size;
  }

  /** Objects that failed permanently and were not retried since. */
  failures(): UploadFailure[] {
    return [...this.#failed.values()].map(({ hash, error }) => ({ hash, error }));
  }

  /**
   * Queues an object for upload and resolves with its hash once it is
   * queued (not yet uploaded: see {@link BatchUploader.flush}). Waits while
   * `maxPendingBytes` are pending. A hash already queued or in flight is not
   * queued again. Bytes given as a `Uint8Array` are copied and addressed by
   * SHA-256.
   *
   * @example
   * ```ts
   * const hash = await uploader.enqueue(bytes);
   * await uploader.enqueue({ hash, size, checkRemote: true }); // read from `source` later
   * ```
   */
  async enqueue(object: Uint8Array | UploadItem, options?: AbortOptions): Promise<Hash> {
    this.#checkOpen();
    throwIfAborted(options?.signal);
    const item: UploadItem =
      object instanceof Uint8Array
        ? { hash: hashBytes(object), size: object.length, bytes: Uint8Array.prototype.slice.call(object) }
        : checkedItem(object);
    if (item.bytes === undefined && this.#source === undefined) {
      throw new InvalidArgumentError(
        `object ${item.hash.toString()} was enqueued without bytes, but the uploader has no "source" option to read it from`,
      );
    }
    const key = item.hash.toString();
    if (this.#entries.has(key)) return item.hash;
    const reserved = this.#reservationOf(item);
    await this.#reserve(reserved, options?.signal);
    if (this.#closed) {
      this.#release(reserved);
      this.#checkOpen();
    }
    // Another caller may have queued the same object while this one waited for room.
    if (this.#entries.has(key)) {
      this.#release(reserved);
      return item.hash;
    }
    this.#failed.delete(key);
    let resolve!: () => void;
    let reject!: (error: unknown) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Observed through flush(); never an unhandled rejection.
    done.catch(() => {});
    const entry: Entry = { key, item, reserved, attempts: 0, lastError: undefined, busy: false, batchLimit: undefined, done, resolve, reject };
    this.#entries.set(key, entry);
    this.#waiting.push(entry);
    this.#objectsTotal++;
    this.#bytesTotal += item.size;
    this.#emitProgress();
    this.#pump();
    return item.hash;
  }

  /** Same as {@link BatchUploader.enqueue}. */
  put(object: Uint8Array | UploadItem, options?: AbortOptions): Promise<Hash> {
    return this.enqueue(object, options);
  }

  /** Queues again every object that failed permanently. */
  async retryFailed(options?: AbortOptions): Promise<void> {
    const failed = [...this.#failed.values()];
    for (const { item } of failed) await this.enqueue(item, options);
  }

  /**
   * Withdraws an object (for example because it was deleted): if it is
   * still waiting it is dropped and counted as skipped; if a batch has it in
   * flight, resolves once that batch has settled. Afterwards no upload of it
   * is under way.
   */
  async cancel(hash: Hash): Promise<void> {
    const entry = this.#entries.get(hash.toString());
    if (entry === undefined) return;
    if (!entry.busy) {
      const at = this.#waiting.indexOf(entry, this.#waitingHead);
      if (at >= 0) this.#waiting.splice(at, 1);
      this.#settle(entry, undefined, 'skipped');
      return;
    }
    await entry.done.catch(() => {});
  }

  /**
   * Resolves once every object enqueued before the call is in the remote.
   * Rejects with a {@link BackendError} (the failures as `cause`) if any
   * object has failed permanently and not been retried since.
   *
   * @example
   * ```ts
   * await uploader.flush();
   * ```
   */
  async flush(options?: AbortOptions): Promise<void> {
    throwIfAborted(options?.signal);
    throwIfAborted(this.#signal);
    const pending = [...this.#entries.values()].map((e) => e.done);
    // An uploader stopped by its signal does not wait for calls in flight that ignore it.
    await raceAbort(raceAbort(Promise.allSettled(pending), options?.signal), this.#signal);
    if (this.#failed.size > 0) {
      const failures = this.failures();
      const first = failures[0]!;
      throw new BackendError(
        `${failures.length} object(s) could not be uploaded; the first, ${first.hash.toString()}, failed with: ${first.error.message}`,
        {
          key: first.hash.toString(),
          cause: new AggregateError(failures.map((f) => f.error), 'upload failures'),
          retryable: failures.every((f) => isTransient(f.error)),
        },
      );
    }
    if (this.#signal?.aborted) throw abortError(this.#signal);
  }

  /**
   * Stops taking work, lets batches in flight finish, and drops what has not
   * started (its `flush` rejects with {@link ClosedError}). Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#stop(new ClosedError('the uploader was closed before this object was uploaded'));
    await this.#queue.onIdle();
  }

  #checkOpen(): void {
    if (this.#signal?.aborted) throw abortError(this.#signal);
    if (this.#closed) throw new ClosedError('the uploader is closed');
  }

  #stop(reason: CairnError): void {
    this.#closed = true;
    for (const waiter of this.#spaceWaiters.splice(0)) waiter.reject(reason);
    const dropped = this.#waiting.slice(this.#waitingHead) as Entry[];
    this.#waiting = [];
    this.#waitingHead = 0;
    for (const entry of dropped) this.#settle(entry, reason);
  }

  #reservationOf(item: UploadItem): number {
    if (item.bytes === undefined && item.size >= this.#streamThreshold) {
      // Streamed: what is held is one chunk at a time, not the object.
      return Math.min(item.size, 2 ** 20);
    }
    return item.size;
  }

  #reserve(bytes: number, signal: AbortSignal | undefined): Promise<void> {
    const fits = this.#pendingBytes === 0 || this.#pendingBytes + bytes <= this.#maxPendingBytes;
    if (fits && this.#spaceWaiters.length === 0) {
      this.#pendingBytes += bytes;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: SpaceWaiter = {
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
        const at = this.#spaceWaiters.indexOf(waiter);
        if (at >= 0) this.#spaceWaiters.splice(at, 1);
        reject(abortError(signal));
        this.#admit();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#spaceWaiters.push(waiter);
    });
  }

  #release(bytes: number): void {
    this.#pendingBytes -= bytes;
    this.#admit();
  }

  /** Lets waiting callers in, oldest first, while they fit. */
  #admit(): void {
    while (!this.#closed && this.#spaceWaiters.length > 0) {
      const next = this.#spaceWaiters[0]!;
      if (this.#pendingBytes !== 0 && this.#pendingBytes + next.need > this.#maxPendingBytes) return;
      this.#spaceWaiters.shift();
      this.#pendingBytes += next.need;
      next.resolve();
    }
  }

  get #waitingCount(): number {
    return this.#waiting.length - this.#waitingHead;
  }

  /**
   * Starts drains while work waits and fewer than `concurrency` run. The queue's own counts are the
   * bound: `add` starts a drain synchronously when a slot is free (`pending`), and one added while
   * none is free waits in the queue (`size`), so no drain is added beyond `concurrency`. A drain
   * ends when nothing waits; the pump after it picks up work enqueued while it was finishing.
   */
  #pump(): void {
    while (!this.#closed && this.#waitingCount > 0 && this.#queue.pending + this.#queue.size < this.#concurrency) {
      void this.#queue
        .add(() => this.#drain())
        .catch(() => {})
        .finally(() => this.#pump());
    }
  }

  async #drain(): Promise<void> {
    for (;;) {
      if (this.#closed) return;
      const batch = this.#takeBatch();
      if (batch.length === 0) return;
      await this.#upload(batch);
    }
  }

  #takeBatch(): Entry[] {
    const batch: Entry[] = [];
    let bytes = 0;
    const first = this.#waitingCount > 0 ? this.#waiting[this.#waitingHead]! : undefined;
    const most = first?.batchLimit ?? this.#batchSize;
    if (first !== undefined) first.batchLimit = undefined;
    while (this.#waitingCount > 0 && batch.length < most) {
      const next = this.#waiting[this.#waitingHead]!;
      const streamed = this.#isStreamed(next);
      if (batch.length > 0 && (streamed || bytes + next.item.size > this.#maxBatchBytes)) break;
      // Cleared so that the array does not keep uploaded bytes alive until the next compaction.
      this.#waiting[this.#waitingHead++] = undefined;
      next.busy = true;
      batch.push(next);
      bytes += next.item.size;
      if (streamed) break;
    }
    // Compact now and then so the array does not grow without bound.
    if (this.#waitingHead > 1024 && this.#waitingHead * 2 > this.#waiting.length) {
      this.#waiting = this.#waiting.slice(this.#waitingHead);
      this.#waitingHead = 0;
    }
    return batch;
  }

  #isStreamed(entry: Entry): boolean {
    return entry.item.bytes === undefined && entry.item.size >= this.#streamThreshold;
  }

  #requeueFront(entries: readonly Entry[]): void {
    if (this.#closed) {
      for (const entry of entries) this.#settle(entry, new ClosedError('the uploader was closed before this object was uploaded'));
      return;
    }
    for (const entry of entries) entry.busy = false;
    const rest = this.#waiting.slice(this.#waitingHead);
    this.#waiting = [...entries, ...rest];
    this.#waitingHead = 0;
    this.#pump();
  }

  async #upload(batch: Entry[]): Promise<void> {
    try {
      if (batch.length === 1 && this.#isStreamed(batch[0]!)) await this.#uploadStreamed(batch[0]!);
      else await this.#uploadBatch(batch);
    } catch (error) {
      await this.#onBatchError(batch, error);
    }
  }

  async #uploadStreamed(entry: Entry): Promise<void> {
    const signal = this.#signal;
    const { hash } = entry.item;
    if (await this.#remote.has(hash, { signal })) {
      // Present is not enough: the remote's bytes are read back before this upload counts as done.
      const state = await checkRemoteCopy(this.#remote, hash, entry.item.size, { signal });
      if (state === 'intact') {
        this.#settle(entry, undefined, 'skipped');
        return;
      }
      if (state !== 'missing') {
        this.#settle(entry, state);
        return;
      }
    }
    const stored = await this.#remote.put(this.#source!.getStream(hash, { signal }), { algorithm: hash.algorithm, signal });
    if (!stored.equals(hash)) throw mismatch(hash, stored);
    this.#settle(entry);
  }

  async #uploadBatch(batch: Entry[]): Promise<void> {
    const signal = this.#signal;
    let todo = batch;
    const toCheck = todo.filter((e) => e.item.checkRemote === true);
    if (toCheck.length > 0) {
      const present = await this.#remote.hasMany(
        toCheck.map((e) => e.item.hash),
        { signal },
      );
      // Present is not enough: each copy the remote has is read back and hashed (see remote-copy.ts).
      // An intact one is skipped, a damaged one fails alone (a put cannot replace it), one gone since is uploaded.
      const found = toCheck.filter((_, i) => present[i]);
      const states = await checkRemoteCopies(this.#remote, found.map((e) => e.item), { signal });
      const settled = new Set<Entry>();
      found.forEach((entry, i) => {
        const state = states[i]!;
        if (state === 'missing') return;
        settled.add(entry);
        this.#settle(entry, state === 'intact' ? undefined : state, 'skipped');
      });
      todo = todo.filter((e) => !settled.has(e));
    }
    const bytes = await this.#bytesOf(todo);
    // putMany takes one algorithm per call.
    const byAlgorithm = new Map<HashAlgorithm, number[]>();
    todo.forEach((entry, i) => {
      if (bytes[i] === undefined) return;
      const list = byAlgorithm.get(entry.item.hash.algorithm) ?? [];
      list.push(i);
      byAlgorithm.set(entry.item.hash.algorithm, list);
    });
    for (const [algorithm, indexes] of byAlgorithm) {
      const stored = await this.#remote.putMany(
        indexes.map((i) => bytes[i]!),
        { algorithm, signal },
      );
      indexes.forEach((i, position) => {
        const expected = todo[i]!.item.hash;
        if (!stored[position]?.equals(expected)) throw mismatch(expected, stored[position]);
      });
    }
    todo.forEach((entry, i) => {
      if (bytes[i] !== undefined) this.#settle(entry);
    });
  }

  /** The bytes of each entry; `undefined` (and the entry settled as skipped) when the source no longer has it. */
  async #bytesOf(entries: readonly Entry[]): Promise<Array<Uint8Array | undefined>> {
    const lazy = entries.filter((e) => e.item.bytes === undefined);
    if (lazy.length === 0) return entries.map((e) => e.item.bytes);
    const loaded = new Map<Entry, Uint8Array | undefined>();
    const source = this.#source!;
    try {
      const all = await source.getMany(
        lazy.map((e) => e.item.hash),
        { signal: this.#signal },
      );
      lazy.forEach((e, i) => loaded.set(e, all[i]));
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
      // Deleted from the source since it was queued: nothing left to upload for it.
      for (const entry of lazy) {
        try {
          loaded.set(entry, await source.get(entry.item.hash, { signal: this.#signal }));
        } catch (inner) {
          if (!(inner instanceof NotFoundError)) throw inner;
          loaded.set(entry, undefined);
          this.#settle(entry, undefined, 'skipped');
        }
      }
    }
    return entries.map((e) => e.item.bytes ?? loaded.get(e));
  }

  async #onBatchError(batch: Entry[], error: unknown): Promise<void> {
    const live = batch.filter((e) => this.#entries.get(e.key) === e);
    if (live.length === 0) return;
    if (error instanceof AbortError || this.#signal?.aborted) {
      for (const entry of live) this.#settle(entry, error instanceof CairnError ? error : abortError(this.#signal));
      return;
    }
    for (const entry of live) entry.lastError = error;
    if (!isTransient(error)) {
      // Isolate the object at fault: halve until it is alone, then report it.
      if (live.length === 1) this.#settle(live[0]!, asCairnError(error));
      else this.#requeueFront(split(live));
      return;
    }
    let attempt = 0;
    const retry: Entry[] = [];
    for (const entry of live) {
      entry.attempts++;
      attempt = Math.max(attempt, entry.attempts);
      if (entry.attempts >= this.#maxAttempts) this.#settle(entry, asCairnError(error));
      else retry.push(entry);
    }
    if (retry.length === 0) return;
    try {
      await sleep(backoffDelay(attempt - 1, this.#retryBaseMs, this.#retryCapMs), this.#signal);
    } catch (abort) {
      for (const entry of retry) this.#settle(entry, asCairnError(abort));
      return;
    }
    // The same batch once more, then halves: a flaky link should not make a large batch fail forever.
    this.#requeueFront(attempt >= 2 ? split(retry) : limit(retry, retry.length));
  }

  #settle(entry: Entry, error?: unknown, how: 'uploaded' | 'skipped' = 'uploaded'): void {
    if (this.#entries.get(entry.key) !== entry) return;
    this.#entries.delete(entry.key);
    this.#release(entry.reserved);
    if (error === undefined) {
      this.#objectsDone++;
      this.#bytesDone += entry.item.size;
      if (how === 'skipped') this.#objectsSkipped++;
      entry.resolve();
      this.emit('done', entry.item.hash);
    } else {
      const failure = { hash: entry.item.hash, error: asCairnError(error), item: entry.item };
      if (!(failure.error instanceof AbortError) && !(failure.error instanceof ClosedError)) {
        this.#failed.set(entry.key, failure);
        this.emit('failed', { hash: failure.hash, error: failure.error });
      }
      entry.reject(failure.error);
    }
    this.#emitProgress();
  }

  #emitProgress(): void {
    if (this.listenerCount('progress') > 0) this.emit('progress', this.progress());
  }
}

function checkedItem(item: unknown): UploadItem {
  const candidate = item as Partial<UploadItem> | null;
  if (candidate == null || typeof candidate !== 'object' || !(candidate.hash instanceof Hash)) {
    throw new InvalidArgumentError('enqueue takes a Uint8Array or an item { hash: Hash, size: number, bytes? }');
  }
  if (typeof candidate.size !== 'number' || !Number.isSafeInteger(candidate.size) || candidate.size < 0) {
    throw new InvalidArgumentError(`enqueue item "size" must be an integer >= 0, got ${String(candidate.size)}`);
  }
  if (candidate.bytes !== undefined && !(candidate.bytes instanceof Uint8Array)) {
    throw new InvalidArgumentError(`enqueue item "bytes" must be a Uint8Array, got ${typeof candidate.bytes}`);
  }
  return candidate as UploadItem;
}

/** Marks a batch to be retried as two halves. */
function split(entries: Entry[]): Entry[] {
  const half = Math.ceil(entries.length / 2);
  entries[0]!.batchLimit = half;
  if (entries.length > half) entries[half]!.batchLimit = entries.length - half;
  return entries;
}

/** Marks a batch to be retried whole, not merged with newer work. */
function limit(entries: Entry[], size: number): Entry[] {
  entries[0]!.batchLimit = size;
  return entries;
}

function mismatch(expected: Hash, stored: Hash | undefined): IntegrityError {
  return new IntegrityError(
    `the remote stored ${stored?.toString() ?? 'nothing'} where ${expected.toString()} was uploaded; the bytes changed on the way`,
    { key: expected.toString() },
  );
}

function asCairnError(error: unknown): CairnError {
  if (isCairnError(error)) return error;
  return new BackendError(`upload failed: ${error instanceof Error ? error.message : String(error)}`, {
    cause: error,
    retryable: isTransient(error),
  });
}
