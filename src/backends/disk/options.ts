/**
 * The disk store's options: their meaning, defaults and validation.
 *
 * @module
 */
import { InvalidArgumentError, type ReadOnlyError } from '../../errors.js';

/** Options of {@link openDiskStore}. */
export interface DiskStoreOptions {
  /**
   * Objects up to this many bytes are stored as records in segment files;
   * larger ones (and streams that grow past it) get a file of their own.
   * Also the most a streaming put buffers in memory. At most 64 MiB.
   * @default 1048576 (1 MiB)
   */
  smallObjectMaxBytes?: number | undefined;
  /**
   * A segment file is sealed and a new one started once it would grow past
   * this size. Only sealed segments are compacted.
   * @default 67108864 (64 MiB)
   */
  segmentMaxBytes?: number | undefined;
  /**
   * Write an index checkpoint after this many bytes of new records (or the
   * size of the last checkpoint, if larger, so that rewriting the checkpoint
   * never costs more than the data it covers), so that opening the store
   * replays at most about this much.
   * @default 67108864 (64 MiB)
   */
  checkpointEveryBytes?: number | undefined;
  /**
   * A lock file older than this is broken even if its holder's pid seems
   * alive (a pid reused after a crash, a holder on another host). Holders
   * keep a lock for about one fsync, so this only matters after a crash.
   * @default 30000
   */
  staleLockMs?: number | undefined;
  /**
   * Ignore the index checkpoint and rebuild the index from every segment,
   * checking every record's CRC; what fails is dropped and reported.
   * @default false
   */
  fullScan?: boolean | undefined;
  /**
   * Compact in the background once at least a segment's worth of segment
   * bytes, and half of them, belong to deleted or superseded records.
   * {@link DiskStore.compact} works either way.
   * @default true
   */
  autoCompact?: boolean | undefined;
  /**
   * The ref log is rewritten with only the current values once it grows
   * past this size and is mostly superseded records.
   * @default 8388608 (8 MiB)
   */
  refLogMaxBytes?: number | undefined;
  /**
   * Open without changing anything in the directory: no store is created
   * (the directory must already be one), no writer is registered, no lock
   * taken, no checkpoint written, no torn tail truncated, no temp file
   * swept. Every write throws {@link ReadOnlyError}. Use it for read-side
   * work on a store others share, such as a `file://` remote.
   * @default false
   */
  readOnly?: boolean | undefined;
  /**
   * Repair on purpose what opening finds damaged, instead of only reporting
   * it: a ref log with damaged records is rewritten from its intact records,
   * so refs the damage hid take their last intact value
   * (`recovery.refLogRepaired` says it happened). For the store's owner
   * after reading the recovery report; ignored with `readOnly`.
   * @default false
   */
  repair?: boolean | undefined;
}

export const DEFAULTS = {
  smallObjectMaxBytes: 1024 * 1024,
  refLogMaxBytes: 8 * 1024 * 1024,
  segmentMaxBytes: 64 * 1024 * 1024,
  checkpointEveryBytes: 64 * 1024 * 1024,
  staleLockMs: 30_000,
};

/** The option `name` (or its default), checked to be an integer from 1 to `max`. */
export function positiveInteger(options: DiskStoreOptions, name: keyof typeof DEFAULTS, max: number): number {
  const value = options[name] ?? DEFAULTS[name];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new InvalidArgumentError(`option ${name} must be an integer from 1 to ${max}, got ${String(value)}`);
  }
  return value;
}

/** A boolean option (or false), checked. */
export function flag(options: DiskStoreOptions, name: 'readOnly' | 'repair' | 'fullScan' | 'autoCompact', fallback: boolean): boolean {
  const value = options[name] ?? fallback;
  if (typeof value !== 'boolean') throw new InvalidArgumentError(`option ${name} must be true or false, got ${String(value)}`);
  return value;
}
