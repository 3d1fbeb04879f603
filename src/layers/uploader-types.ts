/**
 * The public types of the batch uploader: what it takes, reports and emits.
 *
 * @module
 */
import type { CairnError } from '../errors.js';
import type { Hash } from '../hash.js';
import type { Store } from '../store.js';

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

/** Events of {@link BatchUploader}. */
export interface UploaderEvents {
  progress: [UploadProgress];
  /** An object needs no more work: uploaded, already in the remote, or gone from `source`. */
  done: [Hash];
  failed: [UploadFailure];
}
