/**
 * Write-back of the layered store: puts land in the upper store after a
 * journal record names them, and reach the lower store through a
 * {@link BatchUploader}. A record leaves the journal only once every object
 * it names is in the lower store; records left by a crash, a failed put or
 * a deferred upload are adopted by the next flush or push.
 *
 * @module
 */
import { abortError, throwIfAborted, type AbortOptions } from '../../abort.js';
import { BackendError } from '../../errors.js';
import { createHasher, hashBytes, type Hash } from '../../hash.js';
import { chunksOf } from '../../object-io.js';
import type { ObjectSource, PutOptions, Store } from '../../store.js';
import { PendingJournal, type PendingObject } from '../journal.js';
import { isDamagedRemoteCopy } from '../remote-copy.js';
import { withRetry } from '../transient.js';
import { BatchUploader, type BatchUploaderOptions, type UploadFailure } from '../uploader.js';
import { errorMessage, verifyStored } from './names.js';

/** An object being put: its hash, size and (when small enough to hold) its bytes. */
interface PutObject {
  readonly hash: Hash;
  readonly size: number;
  readonly bytes: Uint8Array | undefined;
}

interface TrackedRecord {
  /** Hash texts not yet known to be in the lower store. */
  readonly remaining: Set<string>;
  /** Settles once every object is uploaded and the record is removed from the journal (rejects if it could not be removed). */
  readonly retired: Promise<void>;
  retire(removal: Promise<void>): void;
}

/** What {@link WriteBack} needs from the layered store's options. */
export interface WriteBackOptions {
  readonly upper: Store;
  readonly lower: Store;
  readonly uploadOnWrite: boolean;
  readonly checkRemoteMinBytes: number;
  readonly streamThreshold: number;
  readonly uploader: Omit<BatchUploaderOptions, 'source' | 'signal'>;
}

/** The journal and the uploader, kept in step. One per layered store. */
export class WriteBack {
  readonly uploader: BatchUploader;
  readonly journal: PendingJournal;
  readonly uploadOnWrite: boolean;
  readonly #upper: Store;
  readonly #checkRemoteMinBytes: number;
  readonly #streamThreshold: number;
  /** Journal records this session is uploading, by record name. */
  readonly #records = new Map<string, TrackedRecord>();
  /** For each pending hash text, the records waiting on it. */
  readonly #waiters = new Map<string, string[]>();
  /**
   * Journal removals under way. `flush`, `push` and `close` wait for them:
   * a record still in the journal when the process exits makes the next
   * session upload its objects again.
   */
  readonly #removals = new Set<Promise<void>>();
  #adopting: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(options: WriteBackOptions) {
    this.#upper = options.upper;
    this.uploadOnWrite = options.uploadOnWrite;
    this.#checkRemoteMinBytes = options.checkRemoteMinBytes;
    this.#streamThreshold = options.streamThreshold;
    this.uploader = new BatchUploader(options.lower, { ...options.uploader, source: options.upper });
    this.journal = new PendingJournal(options.upper);
    this.uploader.on('done', (hash) => this.#onUploaded(hash));
    // Resume what a previous session left pending; errors resurface at the next flush or push.
    if (this.uploadOnWrite) this.adopt().catch(() => {});
  }

  /** Puts objects given as bytes: journaled, then written to the upper store by `write`, then queued for upload. */
  async putBytes(items: readonly Uint8Array[], options: PutOptions | undefined, write: () => Promise<Hash[]>): Promise<Hash[]> {
    const objects = items.map((bytes) => ({ hash: hashBytes(bytes, options?.algorithm), size: bytes.length, bytes }));
    const record = await this.journal.append(objects);
    await this.#putUpper(record, objects, write);
    await this.#queue(record, objects, options);
    return objects.map((o) => o.hash);
  }

  /** Puts a streamed object; the record is written once the stream is read, before the upper store can commit it. */
  async putStream(source: ObjectSource, options: PutOptions | undefined): Promise<Hash> {
    // The record is written after the last chunk is read and before the stream ends, so before the
    // upper store can commit the object (it cannot know the object is complete until then).
    const hasher = createHasher(options?.algorithm);
    const journal = this.journal;
    const written: { record?: string; object?: PutObject } = {};
    const journaled = (async function* (signal: AbortSignal | undefined) {
      let size = 0;
      for await (const chunk of chunksOf(source, signal)) {
        size += chunk.length;
        hasher.update(chunk);
        yield chunk;
      }
      written.object = { hash: hasher.digest(), size, bytes: undefined };
      written.record = await journal.append([written.object]);
    })(options?.signal);
    const stored = await this.#upper.put(journaled, options).catch((error: unknown) => {
      // A record written for an object the upper store then refused names nothing there: a later adopt drops it.
      if (written.record !== undefined) this.journal.owned.delete(written.record);
      throw error;
    });
    if (written.record === undefined || written.object === undefined) {
      throw new BackendError('the upper store acknowledged a streamed put without reading the stream to its end', {
        key: stored.toString(),
      });
    }
    verifyStored(written.object.hash, stored);
    await this.#queue(written.record, [written.object], options);
    return stored;
  }

  /**
   * Writes objects to the upper store after their record is durable.
   *
   * Journal first, so that no object is ever in the upper store, unuploaded and unnamed by a record:
   * a crash after the record and before the object leaves a record naming an object the upper store
   * lacks, which {@link WriteBack.adopt} drops (that put was never acknowledged). Written the
   * other way round, a crash between the two would leave an unjournaled object that a later writer
   * skipping "objects already stored locally" (the CLI's snapshot does) would never upload.
   */
  async #putUpper(record: string, objects: ReadonlyArray<{ hash: Hash }>, write: () => Promise<Hash[]>): Promise<void> {
    let stored: Hash[];
    try {
      stored = await write();
    } catch (error) {
      // Released for adopt, which drops whatever of it the upper store lacks.
      this.journal.owned.delete(record);
      throw error;
    }
    objects.forEach((o, i) => verifyStored(o.hash, stored[i]!));
  }

  /**
   * Hands journaled objects to the uploader.
   *
   * Every put is journaled, even of an object the upper store already has and no record names.
   * Skipping it would be wrong, not just risky: "in the upper store, not pending" does not mean
   * "in the lower store". Such an object may have been written before a remote was configured,
   * written to the upper store directly (the push test "a ref target that reached the upper store
   * behind the layer"), or uploaded to a different remote than the current one. Telling these apart
   * needs the lower store (a round trip per put, and no offline puts) or a durable "uploaded" mark
   * per object, which this layer does not keep. So a re-put costs one grouped journal write and an
   * upload: objects of `checkRemoteMinBytes` or more are checked with `hasMany` first and not sent
   * again; smaller ones are re-sent, and a put of bytes the lower store has is a no-op there.
   */
  async #queue(record: string, objects: readonly PutObject[], options: AbortOptions | undefined): Promise<void> {
    if (!this.uploadOnWrite || this.#stopped) {
      // Left for flush/push (or the next session) to adopt from the journal.
      this.journal.owned.delete(record);
      return;
    }
    this.#track(record, objects);
    for (const { hash, size, bytes } of objects) {
      const held = bytes !== undefined && size < this.#streamThreshold;
      await this.uploader.enqueue(
        {
          hash,
          size,
          // A copy: the caller may reuse its buffer once put resolves.
          bytes: held ? Uint8Array.prototype.slice.call(bytes) : undefined,
          checkRemote: size >= this.#checkRemoteMinBytes,
        },
        options,
      );
    }
  }

  #track(record: string, objects: readonly PendingObject[]): void {
    if (this.#records.has(record)) return;
    // Owned until removed, so that a concurrent scan does not adopt it a second time.
    this.journal.owned.add(record);
    const remaining = new Set(objects.map((o) => o.hash.toString()));
    let retire!: (removal: Promise<void>) => void;
    const retired = new Promise<void>((resolve) => {
      retire = resolve;
    });
    // A removal failure surfaces to whoever waits (flush, push); uploads in the background need no handler.
    retired.catch(() => {});
    this.#records.set(record, { remaining, retired, retire });
    for (const key of remaining) {
      const list = this.#waiters.get(key);
      if (list === undefined) this.#waiters.set(key, [record]);
      else list.push(record);
    }
    if (remaining.size === 0) this.#finish(record);
  }

  #onUploaded(hash: Hash): void {
    const key = hash.toString();
    const records = this.#waiters.get(key);
    if (records === undefined) return;
    this.#waiters.delete(key);
    for (const record of records) {
      const tracked = this.#records.get(record);
      if (tracked === undefined) continue;
      tracked.remaining.delete(key);
      if (tracked.remaining.size === 0) this.#finish(record);
    }
  }

  #finish(record: string): void {
    const tracked = this.#records.get(record);
    if (tracked === undefined) return;
    this.#records.delete(record);
    // A record that cannot be removed is harmless to data (a later push re-adopts it and re-checks its
    // objects), but flush and push must not claim to be done while it stays: they reject with the error.
    const removal = withRetry(() => this.journal.remove(record)).catch((error: unknown) => {
      throw new BackendError(
        `uploaded the objects of pending-upload record ${record} but could not remove it from the upper store: ${errorMessage(error)}; the next push uploads them again`,
        { key: record, cause: error, retryable: true },
      );
    });
    this.#removals.add(removal);
    const forget = (): void => {
      this.#removals.delete(removal);
    };
    removal.then(forget, forget);
    tracked.retire(removal);
  }

  /** Takes over journal records no one in this session is uploading: left by a crash, a failed put, or deferred. */
  adopt(options?: AbortOptions): Promise<void> {
    const run = async (): Promise<void> => {
      for await (const entry of this.journal.records(options)) {
        if (this.#stopped) return;
        if (this.journal.owned.has(entry.name) || this.#records.has(entry.name)) continue;
        const listed = await this.journal.read(entry, options);
        // Objects the upper store lacks were never acknowledged (a crash or failure between the record and
        // the object; see #putUpper) or were deleted since: there is nothing to upload for them.
        const present = listed === undefined || listed.length === 0 ? [] : await this.#upper.hasMany(listed.map((o) => o.hash), options);
        const objects = listed?.filter((_, i) => present[i]);
        if (objects === undefined || objects.length === 0) {
          await this.journal.remove(entry.name);
          continue;
        }
        this.#track(entry.name, objects);
        for (const { hash, size } of objects) {
          await this.uploader.enqueue({ hash, size, checkRemote: size >= this.#checkRemoteMinBytes }, options);
        }
      }
    };
    const next = this.#adopting.catch(() => {}).then(run);
    this.#adopting = next;
    return next;
  }

  /**
   * Uploads everything pending: adopts untracked journal records, retries
   * failed uploads, and waits until every record known now is uploaded.
   * Rejects (leaving the records in the journal) if an upload fails.
   * Resolves with the number of objects uploaded (or found in the lower store) meanwhile.
   */
  async uploadAll(options: AbortOptions | undefined): Promise<number> {
    // Counted from here: adopted objects may finish uploading before adopt returns.
    const before = this.uploader.progress().objectsDone;
    await this.uploader.retryFailed(options);
    await this.adopt(options);
    // Records still uploading, and those whose uploads are done but whose removal is still under way.
    const waiting = [...[...this.#records.values()].map((r) => r.retired), ...this.#removals];
    await new Promise<void>((resolve, reject) => {
      const onFailed = (failure: UploadFailure): void => {
        cleanup();
        reject(uploadFailed(failure));
      };
      const onAbort = (): void => {
        cleanup();
        reject(abortError(options?.signal));
      };
      const cleanup = (): void => {
        this.uploader.off('failed', onFailed);
        options?.signal?.removeEventListener('abort', onAbort);
      };
      this.uploader.on('failed', onFailed);
      options?.signal?.addEventListener('abort', onAbort, { once: true });
      const failures = this.uploader.failures();
      if (failures.length > 0) {
        onFailed(failures[0]!);
        return;
      }
      Promise.all(waiting).then(() => {
        cleanup();
        resolve();
      }, reject);
    });
    throwIfAborted(options?.signal);
    return this.uploader.progress().objectsDone - before;
  }

  /** Objects named by the journal (each once) and their total size, for status. */
  async pending(options: AbortOptions | undefined): Promise<{ objects: number; bytes: number }> {
    const sizes = new Map<string, number>();
    for await (const record of this.journal.records(options)) {
      for (const o of (await this.journal.read(record, options)) ?? []) sizes.set(o.hash.toString(), o.size);
    }
    return { objects: sizes.size, bytes: [...sizes.values()].reduce((a, b) => a + b, 0) };
  }

  /** Stops taking work: batches in flight finish (and retire their records); the rest stays journaled. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.uploader.close();
    await this.#adopting.catch(() => {});
  }

  /** Waits for journal removals, before the upper store closes under them; one that fails leaves a record the next push re-checks. */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.#removals]);
  }
}

/**
 * The error flush and push reject with when an object could not be uploaded: a damaged remote copy
 * as its own {@link IntegrityError} (retrying cannot help: it needs a repair), anything else as a
 * retryable {@link BackendError}.
 */
function uploadFailed(failure: UploadFailure): Error {
  if (isDamagedRemoteCopy(failure.error)) return failure.error;
  return new BackendError(
    `could not upload ${failure.hash.toString()} to the lower store: ${failure.error.message}; it stays pending, push again to retry`,
    { key: failure.hash.toString(), cause: failure.error, retryable: true },
  );
}
