/**
 * The public types of the layered store: its options, and what push, pull
 * and status report.
 *
 * @module
 */
import type { AbortOptions } from '../../abort.js';
import type { Hash } from '../../hash.js';
import type { HashLike, Store } from '../../store.js';
import type { BatchUploaderOptions, UploadFailure, UploadProgress } from '../uploader.js';

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
   * another writer) are not sent again. A copy the lower store says it has
   * is read back and hashed before it counts as uploaded: damaged bytes fail
   * `flush` and `push` with an `IntegrityError` naming the object (a put
   * cannot replace them; delete the copy, as `cairn verify --repair` does,
   * and push again). Smaller objects are simply uploaded: for them a put
   * costs about what the check costs, and a put of bytes already present is
   * a no-op, so their remote copies are not checked; give `0` to check every
   * object (one `hasMany` per batch more).
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
