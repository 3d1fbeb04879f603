/**
 * The layered store: a fast local store (upper) over a shared remote one
 * (lower), with write-back uploads and explicit, conflict-checked ref sync.
 *
 * - **Objects** are written to the upper store and uploaded to the lower
 *   one in the background by a {@link BatchUploader}. Which objects still
 *   need uploading is recorded in the upper store itself (see `journal.ts`)
 *   before a put resolves, so a crash loses nothing: reopening resumes the
 *   uploads. Reads try the upper store, then the lower one, and copy what
 *   they find below into the upper store.
 * - **Refs** are local: reads and writes go to the upper store only. They
 *   reach the lower store through {@link LayeredStore.push}, which first
 *   uploads every pending object, so a remote ref never names an object the
 *   remote lacks, then advances each remote ref by compare-and-swap from the
 *   value last seen there. That value is kept per ref under
 *   `.cairn/remote/<name>` in the upper store, like git's remote-tracking
 *   refs; a remote ref that moved since is reported as a conflict and left
 *   alone. {@link LayeredStore.pull} is the mirror image.
 *
 * Everything the layer keeps for itself lives under the reserved ref prefix
 * `.cairn/`, which the layered store hides from listings and refuses as a
 * ref name. One layered store should own an upper store at a time.
 *
 * Costs: a put is the upper store's put plus one journal ref write
 * (concurrent puts share one; written first, so the object's hash is
 * computed here too), and waits only when the uploader already
 * holds `maxPendingBytes` (backpressure). A put whose signal fires while it
 * waits for room rejects with {@link AbortError}, but its object is already
 * stored and journaled: it will be uploaded by the next flush or push.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import { abortError, throwIfAborted, type AbortOptions } from '../abort.js';
import { type AbortError, BackendError, ClosedError, InvalidArgumentError, InvalidRefNameError, NotFoundError } from '../errors.js';
import { createHasher, hashBytes, type Hash, type HashAlgorithm } from '../hash.js';
import { assertObjectSource, chunksOf, isBytes, toHash, verifiedStream, verifyBytes } from '../object-io.js';
import { assertRefName, assertRefPrefix } from '../ref-name.js';
import type {
  CasResult,
  HashLike,
  ObjectSource,
  PutOptions,
  RefEntry,
  RefListener,
  RefValue,
  Store,
  StoreCapabilities,
  WatchOptions,
} from '../store.js';
import { PendingJournal, RESERVED_PREFIX, type PendingObject } from './journal.js';
import { integerOption, storeOption } from './options.js';
import { withRetry } from './transient.js';
import { BatchUploader, type BatchUploaderOptions, type UploadFailure, type UploadProgress } from './uploader.js';

/** Ref prefix (in the upper store) of the remote value each ref had at the last sync: the base of push's compare-and-swap. */
export const TRACKING_PREFIX = '.cairn/remote/';
/** The value a push is about to publish, per ref: lets the next push recognise its own success if it crashed before recording it. */
const PUSHING_PREFIX = '.cairn/pushing/';
/** Objects per call when copying between the layers. */
const COPY_BATCH = 128;

/** Options of {@link layered}. The uploader options tune the write-back to the lower store. */
export interface LayeredOptions extends Omit<BatchUploaderOptions, 'source' | 'signal'> {
  /** The local store: reads are served and writes land here first. */
  upper: Store;
  /** The shared remote store that objects are uploaded to and refs pushed to. */
  lower: Store;
  /**
   * Start uploading each object as soon as it is written. When false,
   * objects are only journaled, and uploaded by `flush()` or `push()`
   * (for tools that snapshot first and push later).
   * @default true
   */
  uploadOnWrite?: boolean | undefined;
  /**
   * Objects at least this large are looked for in the lower store
   * (`hasMany`, one batched check) before being uploaded, so that bytes the
   * remote already has (a re-put, a resumed upload, content shared with
   * another writer) are not sent again. Smaller ones are simply uploaded:
   * for them a put costs about what the check costs, and a put of bytes
   * already present is a no-op.
   * @default 65536
   */
  checkRemoteMinBytes?: number | undefined;
}

/** A ref whose local and remote values could not be reconciled without losing one of them. */
export interface RefConflict {
  readonly ref: string;
  /** The local value (`undefined`: deleted locally). */
  readonly local: Hash | undefined;
  /** The remote value now (`undefined`: absent from the remote). */
  readonly remote: Hash | undefined;
  /** The remote value at the last sync (`undefined`: never synced). */
  readonly base: Hash | undefined;
}

/** One ref changed by a push or a pull. */
export interface RefChange {
  readonly ref: string;
  readonly from: Hash | undefined;
  /** `undefined`: the ref was deleted. */
  readonly to: Hash | undefined;
}

/** What {@link LayeredStore.push} did. */
export interface PushResult {
  /** Remote refs advanced (or deleted) by this push. */
  readonly pushed: RefChange[];
  /** Refs already equal on both sides. */
  readonly upToDate: string[];
  /** Refs the remote changed since the last sync: nothing was overwritten. */
  readonly conflicts: RefConflict[];
  /** Objects uploaded (or found already uploaded) by this push. */
  readonly objects: number;
}

/** What {@link LayeredStore.pull} did. */
export interface PullResult {
  /** Local refs created, advanced or deleted to match the remote. */
  readonly updated: RefChange[];
  /** Refs already equal on both sides. */
  readonly upToDate: string[];
  /** Refs changed on both sides since the last sync: the local value was kept. */
  readonly diverged: RefConflict[];
  /** Objects copied from the lower store into the upper one. */
  readonly objects: number;
}

/** What {@link LayeredStore.sync} did: the push, then the pull. */
export interface SyncResult {
  readonly push: PushResult;
  readonly pull: PullResult;
}

/**
 * Yields the hashes of every object reachable from `root` (snapshot
 * manifests and their content), reading through `store`. Supplied by
 * callers that know the object graph, such as the CLI.
 */
export type ReachableObjects = (root: Hash, store: Store) => AsyncIterable<HashLike> | Iterable<HashLike>;

/** Options of {@link LayeredStore.push}. */
export interface PushOptions extends AbortOptions {
  /**
   * Push only refs whose name starts with this.
   * @default ''
   */
  prefix?: string | undefined;
}

/** Options of {@link LayeredStore.pull}. */
export interface PullOptions extends AbortOptions {
  /**
   * Pull only refs whose name starts with this.
   * @default ''
   */
  prefix?: string | undefined;
  /**
   * Also copy objects into the upper store before updating a local ref:
   * `true` copies the object each ref names; a function also copies
   * everything it yields as reachable from that object. Without it, objects
   * are fetched lazily on first read.
   * @default false
   */
  objects?: boolean | ReachableObjects | undefined;
}

/** Where a ref stands between the two layers, as {@link LayeredStore.status} reports it. */
export interface RefStatus {
  readonly ref: string;
  readonly local: Hash | undefined;
  readonly remote: Hash | undefined;
  readonly base: Hash | undefined;
  /** `ahead`: push would publish it; `behind`: pull would take it; `diverged`: both changed. */
  readonly state: 'up-to-date' | 'ahead' | 'behind' | 'diverged';
}

/** What {@link LayeredStore.status} reports. */
export interface LayeredStatus {
  /** Objects written to the upper store and not yet known to be in the lower one. */
  readonly pendingObjects: number;
  readonly pendingBytes: number;
  /** Objects whose upload failed permanently; `push` and `flush` retry them. */
  readonly failures: UploadFailure[];
  readonly refs: RefStatus[];
}

/** Events of {@link LayeredStore}. */
export interface LayeredEvents {
  /** Upload progress, for progress bars. */
  progress: [UploadProgress];
  /** An object's upload failed permanently (it stays pending). */
  failed: [UploadFailure];
}

/**
 * Layers `upper` over `lower`: reads from upper then lower, writes to upper
 * and uploads to lower in the background, refs synced by `push`/`pull`.
 * The layered store owns both stores: closing it closes them.
 *
 * @example
 * ```ts
 * const store = layered({ upper: await openDiskStore('.cairn'), lower: s3Store({ bucket: 'team' }) });
 * const hash = await store.put(bytes);           // durable locally now, uploading in the background
 * await store.setRef('heads/main', hash);        // local
 * const { conflicts } = await store.push();      // objects first, then refs by compare-and-swap
 * if (conflicts.length > 0) await store.pull();  // see what others published
 * ```
 */
export function layered(options: LayeredOptions): LayeredStore {
  return new LayeredStore(options);
}

interface TrackedRecord {
  /** Hash texts not yet known to be in the lower store. */
  readonly remaining: Set<string>;
  /** Settles once every object is uploaded and the record is removed from the journal (rejects if it could not be removed). */
  readonly retired: Promise<void>;
  retire(removal: Promise<void>): void;
}

/** Options of {@link LayeredStore.close}. */
export interface LayeredCloseOptions {
  /**
   * Upload everything pending before closing. With `false`, batches already
   * in flight finish but nothing else is sent: what is left stays in the
   * journal (durably, in the upper store) for the next `push` or `flush`,
   * which is what a short-lived command that only reads (say `cairn ref ls`)
   * wants.
   * @default the store's `uploadOnWrite`
   */
  upload?: boolean | undefined;
}

/** See {@link layered}. */
export class LayeredStore extends EventEmitter<LayeredEvents> implements Store {
  readonly capabilities: StoreCapabilities;
  readonly #upper: Store;
  readonly #lower: Store;
  readonly #uploader: BatchUploader;
  readonly #journal: PendingJournal;
  readonly #uploadOnWrite: boolean;
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
  /** Serialises push and pull, which read-then-write tracking refs. */
  #syncing: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(options: LayeredOptions) {
    super();
    if (options == null || typeof options !== 'object') {
      throw new InvalidArgumentError('layered takes an options object: layered({ upper, lower })');
    }
    storeOption('layered', 'upper', options.upper);
    storeOption('layered', 'lower', options.lower);
    if (options.upper === options.lower) {
      throw new InvalidArgumentError('layered options "upper" and "lower" are the same store; give two different stores');
    }
    const { upper, lower, uploadOnWrite, checkRemoteMinBytes, ...uploaderOptions } = options;
    this.#upper = upper;
    this.#lower = lower;
    if (uploadOnWrite !== undefined && typeof uploadOnWrite !== 'boolean') {
      throw new InvalidArgumentError(`layered option "uploadOnWrite" must be true or false, got ${typeof uploadOnWrite}`);
    }
    this.#uploadOnWrite = uploadOnWrite ?? true;
    this.#checkRemoteMinBytes = integerOption('layered', 'checkRemoteMinBytes', checkRemoteMinBytes, 65_536, 0);
    this.#streamThreshold = integerOption(
      'layered',
      'streamThresholdBytes',
      uploaderOptions.streamThresholdBytes,
      2 ** 20,
      1,
    );
    this.#uploader = new BatchUploader(lower, { ...uploaderOptions, source: upper });
    this.#journal = new PendingJournal(upper);
    this.#uploader.on('done', (hash) => this.#onUploaded(hash));
    this.#uploader.on('progress', (progress) => this.emit('progress', progress));
    this.#uploader.on('failed', (failure) => {
      if (this.listenerCount('failed') > 0) this.emit('failed', failure);
    });
    this.capabilities = {
      ...upper.capabilities,
      multipart: upper.capabilities.multipart && lower.capabilities.multipart,
    };
    // Resume what a previous session left pending; errors resurface at the next flush or push.
    if (this.#uploadOnWrite) this.#adopt().catch(() => {});
  }

  // ---- objects ------------------------------------------------------------

  async put(source: ObjectSource, options?: PutOptions): Promise<Hash> {
    this.#check(options);
    assertObjectSource(source);
    if (isBytes(source)) {
      const objects = [{ hash: hashBytes(source, options?.algorithm), size: source.length, bytes: source }];
      const record = await this.#journal.append(objects);
      await this.#putUpper(record, objects, () => this.#upper.put(source, options).then((h) => [h]));
      await this.#queue(record, objects, options);
      return objects[0]!.hash;
    }
    // The record is written after the last chunk is read and before the stream ends, so before the
    // upper store can commit the object (it cannot know the object is complete until then).
    const hasher = createHasher(options?.algorithm);
    const journal = this.#journal;
    const written: { record?: string; object?: { hash: Hash; size: number; bytes: undefined } } = {};
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
      if (written.record !== undefined) this.#journal.owned.delete(written.record);
      throw error;
    });
    if (written.record === undefined || written.object === undefined) {
      throw new BackendError('the upper store acknowledged a streamed put without reading the stream to its end', {
        key: stored.toString(),
      });
    }
    const objects = [written.object];
    verifyStored(written.object.hash, stored);
    await this.#queue(written.record, objects, options);
    return stored;
  }

  async putMany(items: readonly Uint8Array[], options?: PutOptions): Promise<Hash[]> {
    this.#check(options);
    if (!Array.isArray(items)) throw new InvalidArgumentError('putMany takes an array of Uint8Array');
    for (const item of items) assertObjectSource(item);
    if (items.some((item) => !isBytes(item))) throw new InvalidArgumentError('putMany takes an array of Uint8Array');
    if (items.length === 0) return [];
    const objects = items.map((bytes) => ({ hash: hashBytes(bytes, options?.algorithm), size: bytes.length, bytes }));
    const record = await this.#journal.append(objects);
    await this.#putUpper(record, objects, () => this.#upper.putMany(items, options));
    await this.#queue(record, objects, options);
    return objects.map((o) => o.hash);
  }

  /**
   * Writes objects to the upper store after their record is durable.
   *
   * Journal first, so that no object is ever in the upper store, unuploaded and unnamed by a record:
   * a crash after the record and before the object leaves a record naming an object the upper store
   * lacks, which {@link LayeredStore.#adopt} drops (that put was never acknowledged). Written the
   * other way round, a crash between the two would leave an unjournaled object that a later writer
   * skipping "objects already stored locally" (the CLI's snapshot does) would never upload.
   */
  async #putUpper(
    record: string,
    objects: ReadonlyArray<{ hash: Hash }>,
    write: () => Promise<Hash[]>,
  ): Promise<void> {
    let stored: Hash[];
    try {
      stored = await write();
    } catch (error) {
      // Released for adopt, which drops whatever of it the upper store lacks.
      this.#journal.owned.delete(record);
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
  async #queue(
    record: string,
    objects: ReadonlyArray<{ hash: Hash; size: number; bytes: Uint8Array | undefined }>,
    options: AbortOptions | undefined,
  ): Promise<void> {
    if (!this.#uploadOnWrite || this.#closed) {
      // Left for flush/push (or the next session) to adopt from the journal.
      this.#journal.owned.delete(record);
      return;
    }
    this.#track(record, objects);
    for (const { hash, size, bytes } of objects) {
      const held = bytes !== undefined && size < this.#streamThreshold;
      await this.#uploader.enqueue(
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
    this.#journal.owned.add(record);
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
    const removal = withRetry(() => this.#journal.remove(record)).catch((error: unknown) => {
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
  #adopt(options?: AbortOptions): Promise<void> {
    const run = async (): Promise<void> => {
      for await (const entry of this.#journal.records(options)) {
        if (this.#closed) return;
        if (this.#journal.owned.has(entry.name) || this.#records.has(entry.name)) continue;
        const listed = await this.#journal.read(entry, options);
        // Objects the upper store lacks were never acknowledged (a crash or failure between the record and
        // the object; see #putUpper) or were deleted since: there is nothing to upload for them.
        const present = listed === undefined || listed.length === 0 ? [] : await this.#upper.hasMany(listed.map((o) => o.hash), options);
        const objects = listed?.filter((_, i) => present[i]);
        if (objects === undefined || objects.length === 0) {
          await this.#journal.remove(entry.name);
          continue;
        }
        this.#track(entry.name, objects);
        for (const { hash, size } of objects) {
          await this.#uploader.enqueue({ hash, size, checkRemote: size >= this.#checkRemoteMinBytes }, options);
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
   */
  async #uploadAll(options: AbortOptions | undefined): Promise<number> {
    // Counted from here: adopted objects may finish uploading before adopt returns.
    const before = this.#uploader.progress().objectsDone;
    await this.#uploader.retryFailed(options);
    await this.#adopt(options);
    // Records still uploading, and those whose uploads are done but whose removal is still under way.
    const waiting = [...[...this.#records.values()].map((r) => r.retired), ...this.#removals];
    await new Promise<void>((resolve, reject) => {
      const onFailed = (failure: UploadFailure): void => {
        cleanup();
        reject(
          new BackendError(
            `could not upload ${failure.hash.toString()} to the lower store: ${failure.error.message}; it stays pending, push again to retry`,
            { key: failure.hash.toString(), cause: failure.error, retryable: true },
          ),
        );
      };
      const onAbort = (): void => {
        cleanup();
        reject(abortError(options?.signal));
      };
      const cleanup = (): void => {
        this.#uploader.off('failed', onFailed);
        options?.signal?.removeEventListener('abort', onAbort);
      };
      this.#uploader.on('failed', onFailed);
      options?.signal?.addEventListener('abort', onAbort, { once: true });
      const failures = this.#uploader.failures();
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
    return this.#uploader.progress().objectsDone - before;
  }

  async get(hashLike: HashLike, options?: AbortOptions): Promise<Uint8Array> {
    this.#check(options);
    const hash = toHash(hashLike);
    try {
      return await this.#upper.get(hash, options);
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
    }
    const bytes = await this.#lower.get(hash, options);
    verifyBytes(hash, bytes);
    await this.#copyUp([bytes], hash.algorithm);
    return bytes;
  }

  /** Keeps a verified copy from the lower store; a failure to keep it does not fail the read. */
  async #copyUp(items: Uint8Array[], algorithm: HashAlgorithm): Promise<void> {
    try {
      await this.#upper.putMany(items, { algorithm });
    } catch {
      // The bytes were verified and are returned; the next read simply fetches them again.
    }
  }

  async *getStream(hashLike: HashLike, options?: AbortOptions): AsyncIterable<Uint8Array> {
    this.#check(options);
    const hash = toHash(hashLike);
    if (!(await this.#upper.has(hash, options))) {
      // Copied up as a stream (bounded memory), then served from the upper store.
      const stored = await this.#upper.put(verifiedStream(hash, this.#lower.getStream(hash, options)), {
        algorithm: hash.algorithm,
        signal: options?.signal,
      });
      verifyStored(hash, stored);
    }
    yield* this.#upper.getStream(hash, options);
  }

  /** Upper first, then lower. A range is not copied up: it cannot be verified on its own. */
  async getRange(hashLike: HashLike, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
    this.#check(options);
    const hash = toHash(hashLike);
    try {
      return await this.#upper.getRange(hash, offset, length, options);
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
    }
    return this.#lower.getRange(hash, offset, length, options);
  }

  async has(hashLike: HashLike, options?: AbortOptions): Promise<boolean> {
    this.#check(options);
    const hash = toHash(hashLike);
    return (await this.#upper.has(hash, options)) || this.#lower.has(hash, options);
  }

  async hasMany(hashLikes: readonly HashLike[], options?: AbortOptions): Promise<boolean[]> {
    this.#check(options);
    const hashes = hashLikes.map(toHash);
    const upper = await this.#upper.hasMany(hashes, options);
    const missing = hashes.filter((_, i) => !upper[i]);
    if (missing.length === 0) return upper;
    const lower = await this.#lower.hasMany(missing, options);
    let next = 0;
    return upper.map((found) => found || lower[next++]!);
  }

  async getMany(hashLikes: readonly HashLike[], options?: AbortOptions): Promise<Uint8Array[]> {
    this.#check(options);
    const hashes = hashLikes.map(toHash);
    const inUpper = await this.#upper.hasMany(hashes, options);
    const upperIndexes = hashes.map((_, i) => i).filter((i) => inUpper[i]);
    const lowerIndexes = hashes.map((_, i) => i).filter((i) => !inUpper[i]);
    const [fromUpper, fromLower] = await Promise.all([
      upperIndexes.length > 0 ? this.#upper.getMany(upperIndexes.map((i) => hashes[i]!), options) : [],
      lowerIndexes.length > 0 ? this.#lower.getMany(lowerIndexes.map((i) => hashes[i]!), options) : [],
    ]);
    const results = new Array<Uint8Array>(hashes.length);
    upperIndexes.forEach((index, position) => {
      results[index] = fromUpper[position]!;
    });
    const byAlgorithm = new Map<HashAlgorithm, Uint8Array[]>();
    lowerIndexes.forEach((index, position) => {
      const bytes = fromLower[position]!;
      verifyBytes(hashes[index]!, bytes);
      results[index] = bytes;
      const algorithm = hashes[index]!.algorithm;
      byAlgorithm.set(algorithm, [...(byAlgorithm.get(algorithm) ?? []), bytes]);
    });
    for (const [algorithm, items] of byAlgorithm) await this.#copyUp(items, algorithm);
    return results;
  }

  /**
   * Deletes from both stores (for garbage collection). A pending upload of
   * the object is withdrawn first, so it cannot reappear in the lower store.
   */
  async delete(hashLike: HashLike, options?: AbortOptions): Promise<void> {
    this.#check(options);
    const hash = toHash(hashLike);
    await this.#upper.delete(hash, options);
    await this.#uploader.cancel(hash);
    await this.#lower.delete(hash, options);
  }

  /**
   * Every object in either store once: the upper store's, then the lower
   * store's that the upper lacks (checked in batches, so memory stays flat).
   */
  async *listObjects(options?: AbortOptions): AsyncIterable<Hash> {
    this.#check(options);
    const journalData = await this.#journal.listObjects(options);
    for await (const hash of this.#upper.listObjects(options)) {
      if (!journalData.has(hash.toString())) yield hash;
    }
    const upper = this.#upper;
    const onlyBelow = async (batch: Hash[]): Promise<Hash[]> => {
      const present = await upper.hasMany(batch, options);
      return batch.filter((_, i) => !present[i]);
    };
    let batch: Hash[] = [];
    for await (const hash of this.#lower.listObjects(options)) {
      batch.push(hash);
      if (batch.length >= COPY_BATCH) {
        yield* await onlyBelow(batch);
        batch = [];
      }
    }
    if (batch.length > 0) yield* await onlyBelow(batch);
  }

  // ---- refs (local) ---------------------------------------------------------

  async getRef(name: string, options?: AbortOptions): Promise<RefValue | undefined> {
    this.#check(options);
    assertUserRef(name);
    return this.#upper.getRef(name, options);
  }

  async setRef(name: string, hash: HashLike, options?: AbortOptions): Promise<RefValue> {
    this.#check(options);
    assertUserRef(name);
    return this.#upper.setRef(name, hash, options);
  }

  async deleteRef(name: string, options?: AbortOptions): Promise<void> {
    this.#check(options);
    assertUserRef(name);
    return this.#upper.deleteRef(name, options);
  }

  async compareAndSwap(name: string, expected: HashLike | null, next: HashLike | null, options?: AbortOptions): Promise<CasResult> {
    this.#check(options);
    assertUserRef(name);
    return this.#upper.compareAndSwap(name, expected, next, options);
  }

  async *listRefs(prefix = '', options?: AbortOptions): AsyncIterable<RefEntry> {
    this.#check(options);
    assertRefPrefix(prefix);
    for await (const ref of this.#upper.listRefs(prefix, options)) {
      if (!isReserved(ref.name)) yield ref;
    }
  }

  async watchRef(name: string, listener: RefListener, options?: WatchOptions): Promise<void> {
    this.#check(options);
    assertUserRef(name);
    return this.#upper.watchRef(name, listener, options);
  }

  // ---- sync -------------------------------------------------------------------

  /**
   * Publishes local refs to the lower store. First every pending object is
   * uploaded (so a published ref never names an object the lower store
   * lacks); then each local ref that changed since the last sync is
   * advanced by compare-and-swap from the remote value last seen. A remote
   * ref that moved meanwhile is reported in `conflicts` with both values
   * and is not overwritten: pull, reconcile, push again. A ref deleted
   * locally is deleted remotely the same way.
   *
   * @example
   * ```ts
   * const result = await store.push();
   * for (const c of result.conflicts) console.error(`${c.ref}: remote is ${c.remote}, local is ${c.local}`);
   * ```
   */
  push(options: PushOptions = {}): Promise<PushResult> {
    return this.#exclusive(() => this.#push(options));
  }

  async #push(options: PushOptions): Promise<PushResult> {
    this.#check(options);
    const prefix = options.prefix ?? '';
    assertRefPrefix(prefix);
    // Refs are read before objects are uploaded: every object written before these values is then uploaded below.
    const local = await this.#refMap(this.#upper, prefix, options);
    const base = await this.#trackingMap(prefix, options);
    const objects = await this.#uploadAll(options);
    const changed = [...local].filter(([ref, hash]) => !sameHash(hash, base.get(ref))).map(([, hash]) => hash);
    await this.#ensureInLower(changed, options);

    const result: { pushed: RefChange[]; upToDate: string[]; conflicts: RefConflict[]; objects: number } = {
      pushed: [],
      upToDate: [],
      conflicts: [],
      objects,
    };
    const intents = await this.#refMap(this.#upper, PUSHING_PREFIX + prefix, options, PUSHING_PREFIX);
    const names = [...new Set([...local.keys(), ...base.keys()])].sort();
    for (const ref of names) {
      throwIfAborted(options.signal);
      const mine = local.get(ref);
      const seen = base.get(ref);
      if (sameHash(mine, seen)) {
        result.upToDate.push(ref);
        continue;
      }
      const { swap, from } = await this.#publish(ref, seen, mine, intents.get(ref), options);
      const remote = swap.current?.hash;
      if (swap.ok || sameHash(remote, mine)) {
        await this.#setTracking(ref, mine, options);
        if (mine !== undefined) await this.#upper.deleteRef(PUSHING_PREFIX + ref, options);
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
    let from = seen;
    if (intent !== undefined && !sameHash(intent, seen)) {
      const current = await withRetry(() => this.#lower.getRef(ref, options), options);
      if (sameHash(current?.hash, intent)) {
        await this.#setTracking(ref, intent, options);
        from = intent;
      }
    }
    if (mine !== undefined) await this.#upper.setRef(PUSHING_PREFIX + ref, mine, options);
    // Retrying a swap is safe: if a lost response hid a success, the retry fails with current === mine, read as done.
    const swap = await withRetry(() => this.#lower.compareAndSwap(ref, from ?? null, mine ?? null, options), options);
    return { swap, from };
  }

  /** The safety net under the journal: a ref's own object must be in the lower store before it is published. */
  async #ensureInLower(hashes: Hash[], options: AbortOptions): Promise<void> {
    const unique = [...new Map(hashes.map((h) => [h.toString(), h])).values()];
    for (let i = 0; i < unique.length; i += COPY_BATCH) {
      const slice = unique.slice(i, i + COPY_BATCH);
      const present = await withRetry(() => this.#lower.hasMany(slice, options), options);
      const missing = slice.filter((_, k) => !present[k]);
      const copyable = missing.length === 0 ? [] : await this.#upper.hasMany(missing, options);
      for (const [k, hash] of missing.entries()) {
        if (!copyable[k]) continue;
        const stored = await withRetry(
          () => this.#lower.put(this.#upper.getStream(hash, options), { algorithm: hash.algorithm, signal: options.signal }),
          options,
        );
        verifyStored(hash, stored);
      }
    }
  }

  /**
   * Brings remote refs into the upper store. A ref is taken when the local
   * one is absent or unchanged since the last sync; a ref changed on both
   * sides is reported in `diverged` and the local value kept. With
   * `objects`, the objects a taken ref names (and, given a walker,
   * everything reachable from them) are copied into the upper store before
   * the ref is updated.
   *
   * @example
   * ```ts
   * const { updated, diverged } = await store.pull({ objects: true });
   * ```
   */
  pull(options: PullOptions = {}): Promise<PullResult> {
    return this.#exclusive(() => this.#pull(options));
  }

  async #pull(options: PullOptions): Promise<PullResult> {
    this.#check(options);
    const prefix = options.prefix ?? '';
    assertRefPrefix(prefix);
    const remote = await this.#refMap(this.#lower, prefix, options);
    const base = await this.#trackingMap(prefix, options);
    const local = await this.#refMap(this.#upper, prefix, options);
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
      if (sameHash(theirs, mine)) {
        if (!sameHash(seen, theirs)) await this.#setTracking(ref, theirs, options);
        result.upToDate.push(ref);
        continue;
      }
      if (sameHash(theirs, seen)) {
        // Only the local side moved: push's business, nothing to take.
        result.upToDate.push(ref);
        continue;
      }
      if (!sameHash(mine, seen)) {
        result.diverged.push({ ref, local: mine, remote: theirs, base: seen });
        continue;
      }
      if (theirs !== undefined && options.objects) result.objects += await this.#fetchObjects(theirs, options);
      const swap = await this.#upper.compareAndSwap(ref, mine ?? null, theirs ?? null, options);
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
    let copied = 0;
    let batch: Hash[] = [];
    const copy = async (): Promise<void> => {
      const present = await this.#upper.hasMany(batch, options);
      const missing = batch.filter((_, i) => !present[i]);
      batch = [];
      if (missing.length === 0) return;
      // getMany copies what it reads from the lower store into the upper one.
      await withRetry(() => this.getMany(missing, options), options);
      copied += missing.length;
    };
    batch.push(root);
    if (typeof options.objects === 'function') {
      for await (const hashLike of options.objects(root, this)) {
        batch.push(toHash(hashLike));
        if (batch.length >= COPY_BATCH) await copy();
      }
    }
    if (batch.length > 0) await copy();
    return copied;
  }

  /**
   * Push, then pull: local work is published (or its conflicts reported)
   * before remote changes come down. A ref that conflicted on push shows as
   * diverged in the pull and keeps its local value.
   *
   * @example
   * ```ts
   * const { push, pull } = await store.sync();
   * ```
   */
  async sync(options: PullOptions = {}): Promise<SyncResult> {
    const push = await this.push(options);
    const pull = await this.pull(options);
    return { push, pull };
  }

  /**
   * Pending uploads and, for every ref on either side, how it stands.
   * Reads the remote's refs (one listing).
   *
   * @example
   * ```ts
   * const { pendingObjects, refs } = await store.status();
   * ```
   */
  async status(options: PushOptions = {}): Promise<LayeredStatus> {
    this.#check(options);
    const prefix = options.prefix ?? '';
    assertRefPrefix(prefix);
    const [local, remote, base] = await Promise.all([
      this.#refMap(this.#upper, prefix, options),
      this.#refMap(this.#lower, prefix, options),
      this.#trackingMap(prefix, options),
    ]);
    const pending = new Map<string, number>();
    for await (const record of this.#journal.records(options)) {
      for (const o of (await this.#journal.read(record, options)) ?? []) pending.set(o.hash.toString(), o.size);
    }
    const refs: RefStatus[] = [...new Set([...local.keys(), ...remote.keys(), ...base.keys()])].sort().map((ref) => {
      const l = local.get(ref);
      const r = remote.get(ref);
      const b = base.get(ref);
      const state = sameHash(l, r) ? 'up-to-date' : sameHash(r, b) ? 'ahead' : sameHash(l, b) ? 'behind' : 'diverged';
      return { ref, local: l, remote: r, base: b, state };
    });
    return {
      pendingObjects: pending.size,
      pendingBytes: [...pending.values()].reduce((a, b) => a + b, 0),
      failures: this.#uploader.failures(),
      refs,
    };
  }

  /** Upload counters (objects and bytes done and total) for this session. */
  progress(): UploadProgress {
    return this.#uploader.progress();
  }

  /** Refs under `prefix`, by name: user refs, or with `reserved`, the layer's own refs under it (names stripped of it). */
  async #refMap(store: Store, prefix: string, options: AbortOptions, reserved?: string): Promise<Map<string, Hash>> {
    return withRetry(async () => {
      const map = new Map<string, Hash>();
      for await (const ref of store.listRefs(prefix, options)) {
        if (reserved !== undefined) map.set(ref.name.slice(reserved.length), ref.hash);
        else if (!isReserved(ref.name)) map.set(ref.name, ref.hash);
      }
      return map;
    }, options);
  }

  #trackingMap(prefix: string, options: AbortOptions): Promise<Map<string, Hash>> {
    return this.#refMap(this.#upper, TRACKING_PREFIX + prefix, options, TRACKING_PREFIX);
  }

  async #setTracking(ref: string, value: Hash | undefined, options: AbortOptions): Promise<void> {
    if (value === undefined) await this.#upper.deleteRef(TRACKING_PREFIX + ref, options);
    else await this.#upper.setRef(TRACKING_PREFIX + ref, value, options);
  }

  #exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#syncing.catch(() => {}).then(task);
    this.#syncing = run;
    return run;
  }

  // ---- lifecycle ----------------------------------------------------------------

  /**
   * Resolves once every object written so far is in the lower store. Refs
   * are not published by flush: that is {@link LayeredStore.push}'s job,
   * because publishing a ref needs a conflict check.
   */
  async flush(options?: AbortOptions): Promise<void> {
    this.#check(options);
    await this.#uploadAll(options);
  }

  /**
   * Uploads what it can (failures stay pending in the journal for the next
   * session), waits until the journal records of what was uploaded are
   * removed, then closes both stores. Idempotent.
   *
   * Whether pending objects are uploaded first follows `uploadOnWrite`
   * unless `options.upload` says otherwise: `close({ upload: false })`
   * closes without sending anything new, leaving pending objects in the
   * journal for the next `push`. (An optional parameter keeps the method
   * assignable to {@link Store.close}.)
   *
   * @example
   * ```ts
   * const store = layered({ upper, lower });
   * for await (const ref of store.listRefs()) console.log(ref.name);
   * await store.close({ upload: false }); // a read-only command: pending uploads wait for the next push
   * ```
   */
  async close(options: LayeredCloseOptions = {}): Promise<void> {
    if (this.#closed) return;
    if (options == null || typeof options !== 'object') {
      throw new InvalidArgumentError('LayeredStore.close takes an options object: close({ upload: false })');
    }
    if (options.upload !== undefined && typeof options.upload !== 'boolean') {
      throw new InvalidArgumentError(`LayeredStore.close option "upload" must be true or false, got ${typeof options.upload}`);
    }
    if (options.upload ?? this.#uploadOnWrite) {
      try {
        await this.#uploadAll(undefined);
      } catch {
        // Still pending in the journal: nothing is lost, the next session resumes it.
      }
    }
    this.#closed = true;
    // Batches in flight finish (and retire their records); the rest stays journaled.
    await this.#uploader.close();
    await this.#adopting.catch(() => {});
    await this.#syncing.catch(() => {});
    // Removals before the upper store closes under them; one that fails leaves a record the next push re-checks.
    await Promise.allSettled([...this.#removals]);
    await Promise.all([this.#upper.close(), this.#lower.close()]);
  }

  #check(options: AbortOptions | undefined): void {
    if (this.#closed) throw new ClosedError('the layered store is closed');
    throwIfAborted(options?.signal);
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isReserved(name: string): boolean {
  return name.startsWith(RESERVED_PREFIX);
}

function assertUserRef(name: string): void {
  assertRefName(name);
  if (isReserved(name)) {
    throw new InvalidRefNameError(
      `ref name ${JSON.stringify(name)} is reserved: names under "${RESERVED_PREFIX}" hold the layered store's own state`,
      { ref: name },
    );
  }
}

function sameHash(a: Hash | undefined, b: Hash | undefined): boolean {
  return a === undefined ? b === undefined : a.equals(b);
}

function verifyStored(expected: Hash, stored: Hash): void {
  if (!stored.equals(expected)) {
    throw new BackendError(`copying ${expected.toString()} between layers stored ${stored.toString()} instead`, {
      key: expected.toString(),
    });
  }
}
