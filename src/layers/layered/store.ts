/**
 * The layered store itself (see `../layered.ts` for the design): object
 * calls and local refs, delegating write-back to `write-back.ts`, reads to
 * `read-through.ts`, and push, pull and status to `ref-sync.ts`.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import { throwIfAborted, type AbortOptions } from '../../abort.js';
import { ClosedError, type IntegrityError, InvalidArgumentError } from '../../errors.js';
import type { Hash } from '../../hash.js';
import { assertObjectSource, isBytes, toHash } from '../../object-io.js';
import { assertRefPrefix } from '../../ref-name.js';
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
} from '../../store.js';
import { integerOption, storeOption } from '../options.js';
import type { UploadProgress } from '../uploader.js';
import { assertUserRef, isReserved } from './names.js';
import { ReadThrough } from './read-through.js';
import { RefSync } from './ref-sync.js';
import type {
  LayeredCloseOptions,
  LayeredEvents,
  LayeredOptions,
  LayeredStatus,
  PullOptions,
  PullResult,
  PushOptions,
  PushResult,
  SyncResult,
} from './types.js';
import { WriteBack } from './write-back.js';

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

/** See {@link layered}. */
export class LayeredStore extends EventEmitter<LayeredEvents> implements Store {
  readonly capabilities: StoreCapabilities;
  readonly #upper: Store;
  readonly #lower: Store;
  readonly #writeBack: WriteBack;
  readonly #refSync: RefSync;
  readonly #reads: ReadThrough;
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
    const checkMin = integerOption('layered', 'checkRemoteMinBytes', checkRemoteMinBytes, 65_536, 0);
    const streamThreshold = integerOption('layered', 'streamThresholdBytes', uploaderOptions.streamThresholdBytes, 2 ** 20, 1);
    this.#writeBack = new WriteBack({
      upper,
      lower,
      uploadOnWrite: uploadOnWrite ?? true,
      checkRemoteMinBytes: checkMin,
      streamThreshold,
      uploader: uploaderOptions,
    });
    const uploader = this.#writeBack.uploader;
    uploader.on('progress', (progress) => this.emit('progress', progress));
    uploader.on('failed', (failure) => {
      if (this.listenerCount('failed') > 0) this.emit('failed', failure);
    });
    this.#reads = new ReadThrough(upper, lower);
    this.#refSync = new RefSync({
      upper,
      lower,
      layered: this,
      check: (o) => this.#check(o),
      uploadAll: (o) => this.#writeBack.uploadAll(o),
    });
    this.capabilities = {
      ...upper.capabilities,
      multipart: upper.capabilities.multipart && lower.capabilities.multipart,
    };
  }

  // ---- objects ------------------------------------------------------------

  async put(source: ObjectSource, options?: PutOptions): Promise<Hash> {
    this.#check(options);
    assertObjectSource(source);
    if (isBytes(source)) {
      const [hash] = await this.#writeBack.putBytes([source], options, () => this.#upper.put(source, options).then((h) => [h]));
      return hash!;
    }
    return this.#writeBack.putStream(source, options);
  }

  async putMany(items: readonly Uint8Array[], options?: PutOptions): Promise<Hash[]> {
    this.#check(options);
    if (!Array.isArray(items)) throw new InvalidArgumentError('putMany takes an array of Uint8Array');
    for (const item of items) assertObjectSource(item);
    if (items.some((item) => !isBytes(item))) throw new InvalidArgumentError('putMany takes an array of Uint8Array');
    if (items.length === 0) return [];
    return this.#writeBack.putBytes(items, options, () => this.#upper.putMany(items, options));
  }

  async get(hashLike: HashLike, options?: AbortOptions): Promise<Uint8Array> {
    this.#check(options);
    return this.#reads.get(hashLike, options);
  }

  async *getStream(hashLike: HashLike, options?: AbortOptions): AsyncIterable<Uint8Array> {
    this.#check(options);
    yield* this.#reads.getStream(hashLike, options);
  }

  /** Upper first, then lower. A range is not copied up: it cannot be verified on its own. */
  async getRange(hashLike: HashLike, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array> {
    this.#check(options);
    return this.#reads.getRange(hashLike, offset, length, options);
  }

  async has(hashLike: HashLike, options?: AbortOptions): Promise<boolean> {
    this.#check(options);
    return this.#reads.has(hashLike, options);
  }

  async hasMany(hashLikes: readonly HashLike[], options?: AbortOptions): Promise<boolean[]> {
    this.#check(options);
    return this.#reads.hasMany(hashLikes, options);
  }

  /** Reads from the upper store, then the lower one, keeping a verified copy of what came from below. */
  async getMany(hashLikes: readonly HashLike[], options?: AbortOptions): Promise<Uint8Array[]> {
    this.#check(options);
    return this.#reads.getMany(hashLikes, options);
  }

  /**
   * Deletes from both stores (for garbage collection). A pending upload of
   * the object is withdrawn first, so it cannot reappear in the lower store.
   */
  async delete(hashLike: HashLike, options?: AbortOptions): Promise<void> {
    this.#check(options);
    const hash = toHash(hashLike);
    await this.#upper.delete(hash, options);
    await this.#writeBack.uploader.cancel(hash);
    await this.#lower.delete(hash, options);
  }

  /**
   * Every object in either store once: the upper store's, then the lower
   * store's that the upper lacks (checked in batches, so memory stays flat).
   */
  async *listObjects(options?: AbortOptions): AsyncIterable<Hash> {
    this.#check(options);
    yield* this.#reads.listObjects(await this.#writeBack.journal.listObjects(options), options);
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
   * Push does not take the lower store's word that it has an object: where
   * an upload is skipped because the lower store answers "present" (objects
   * of `checkRemoteMinBytes` or more, and each changed ref's own object), the
   * copy is read back and hashed first. If it is damaged, push rejects with
   * an {@link IntegrityError} naming the object, before any ref is
   * published; the object stays pending. A put cannot replace the damaged
   * copy: delete it from the lower store (`cairn verify --repair` does, with
   * delete rights) and push again.
   *
   * @example
   * ```ts
   * const result = await store.push();
   * for (const c of result.conflicts) console.error(`${c.ref}: remote is ${c.remote}, local is ${c.local}`);
   * ```
   */
  push(options: PushOptions = {}): Promise<PushResult> {
    return this.#refSync.push(options);
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
    return this.#refSync.pull(options);
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
    const [pending, refs] = await Promise.all([this.#writeBack.pending(options), this.#refSync.refStates(prefix, options)]);
    return {
      pendingObjects: pending.objects,
      pendingBytes: pending.bytes,
      failures: this.#writeBack.uploader.failures(),
      refs,
    };
  }

  /** Upload counters (objects and bytes done and total) for this session. */
  progress(): UploadProgress {
    return this.#writeBack.uploader.progress();
  }

  // ---- lifecycle ----------------------------------------------------------------

  /**
   * Resolves once every object written so far is in the lower store. Refs
   * are not published by flush: that is {@link LayeredStore.push}'s job,
   * because publishing a ref needs a conflict check.
   */
  async flush(options?: AbortOptions): Promise<void> {
    this.#check(options);
    await this.#writeBack.uploadAll(options);
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
    if (options.upload ?? this.#writeBack.uploadOnWrite) {
      try {
        await this.#writeBack.uploadAll(undefined);
      } catch {
        // Still pending in the journal: nothing is lost, the next session resumes it.
      }
    }
    this.#closed = true;
    // Batches in flight finish (and retire their records); the rest stays journaled.
    await this.#writeBack.stop();
    await this.#refSync.idle();
    await this.#writeBack.settle();
    await Promise.all([this.#upper.close(), this.#lower.close()]);
  }

  #check(options: AbortOptions | undefined): void {
    if (this.#closed) throw new ClosedError('the layered store is closed');
    throwIfAborted(options?.signal);
  }
}
