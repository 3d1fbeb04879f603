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
 * This file keeps the line, the retries and the counts. Drains run on a
 * p-queue whose own `pending` and `size` bound them (no second counter);
 * the byte bound is {@link ByteBudget} (`byte-budget.ts`); how one batch
 * reaches the remote is `upload-batch.ts`; the public types are in
 * `uploader-types.ts`.
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
  InvalidArgumentError,
  isCairnError,
} from '../errors.js';
import { Hash, hashBytes } from '../hash.js';
import type { Store } from '../store.js';
import type { BatchUploaderOptions, UploaderEvents, UploadFailure, UploadItem, UploadProgress } from './uploader-types.js';
import { ByteBudget } from './byte-budget.js';
import { integerOption, storeOption } from './options.js';
import { isTransient } from './transient.js';
import { uploadBatch, uploadStreamed, type UploadEntry, type UploadHost } from './upload-batch.js';

export type { BatchUploaderOptions, UploaderEvents, UploadFailure, UploadItem, UploadProgress } from './uploader-types.js';

interface Entry extends UploadEntry {
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
  readonly #source: Store | undefined;
  readonly #concurrency: number;
  readonly #batchSize: number;
  readonly #maxBatchBytes: number;
  readonly #budget: ByteBudget;
  readonly #maxAttempts: number;
  readonly #retryBaseMs: number;
  readonly #retryCapMs: number;
  readonly #streamThreshold: number;
  readonly #signal: AbortSignal | undefined;
  /** What the batch functions in `upload-batch.ts` use. */
  readonly #host: UploadHost<Entry>;
  readonly #queue: PQueue;

  /** Every unsettled entry, by hash text: the in-flight de-duplication. */
  readonly #entries = new Map<string, Entry>();
  /** Entries ready to go, oldest first. A retried batch goes back to the front. */
  #waiting: Array<Entry | undefined> = [];
  #waitingHead = 0;
  readonly #failed = new Map<string, UploadFailure & { item: UploadItem }>();
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
    this.#source = options.source;
    this.#concurrency = integerOption('BatchUploader', 'concurrency', options.concurrency, 8, 1, 1024);
    this.#batchSize = integerOption('BatchUploader', 'batchSize', options.batchSize, 32, 1, 10_000);
    this.#maxBatchBytes = integerOption('BatchUploader', 'maxBatchBytes', options.maxBatchBytes, 8 * 2 ** 20, 1);
    this.#budget = new ByteBudget(integerOption('BatchUploader', 'maxPendingBytes', options.maxPendingBytes, 64 * 2 ** 20, 1));
    this.#maxAttempts = integerOption('BatchUploader', 'maxAttempts', options.maxAttempts, 10, 1, 1000);
    this.#retryBaseMs = integerOption('BatchUploader', 'retryBaseMs', options.retryBaseMs, 25, 0);
    this.#retryCapMs = integerOption('BatchUploader', 'retryCapMs', options.retryCapMs, 2000, 0);
    this.#streamThreshold = integerOption('BatchUploader', 'streamThresholdBytes', options.streamThresholdBytes, 2 ** 20, 1);
    this.#signal = options.signal;
    this.#host = { remote, source: options.source, signal: options.signal, settle: (entry, error, how) => this.#settle(entry, error, how) };
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
      pendingBytes: this.#budget.held,
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
    await this.#budget.reserve(reserved, options?.signal);
    if (this.#closed) {
      this.#budget.release(reserved);
      this.#checkOpen();
    }
    // Another caller may have queued the same object while this one waited for room.
    if (this.#entries.has(key)) {
      this.#budget.release(reserved);
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
    this.#budget.close(reason);
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
      if (batch.length === 1 && this.#isStreamed(batch[0]!)) await uploadStreamed(this.#host, batch[0]!);
      else await uploadBatch(this.#host, batch);
    } catch (error) {
      await this.#onBatchError(batch, error);
    }
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
    this.#budget.release(entry.reserved);
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

function asCairnError(error: unknown): CairnError {
  if (isCairnError(error)) return error;
  return new BackendError(`upload failed: ${error instanceof Error ? error.message : String(error)}`, {
    cause: error,
    retryable: isTransient(error),
  });
}
