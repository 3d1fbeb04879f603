/**
 * What opening (and later reading) a disk store found wrong with its files
 * and dropped: the evidence a caller or an operator needs after a crash or
 * a disk fault. Dropped bytes never become data; the report says where they
 * were.
 *
 * @module
 */
import type { CorruptStoreError } from '../../errors.js';

/** One stretch of a store file that was not used. */
export interface DroppedStretch {
  /** The file, relative to the store directory (for example `segments/ab12...-00000001.seg`). */
  readonly file: string;
  readonly offset: number;
  readonly bytes: number;
  /**
   * `corrupt`: damage to bytes that may have been acknowledged: a record
   * whose full extent is present but fails its checksum, or bytes that do
   * not start like a record, wherever they are (between good records or at
   * the end);
   * `torn-tail`: a proper prefix of one record after the last good one, left
   * by a writer that died mid-append (never acknowledged), removed by the
   * next writer;
   * `truncated`: a file shorter than the checkpoint recorded.
   */
  readonly reason: 'corrupt' | 'torn-tail' | 'truncated';
}

/** The recovery report of a {@link DiskStore}, see `store.recovery`. */
export interface RecoveryReport {
  /** How the index checkpoint was used on open. */
  checkpoint: 'loaded' | 'missing' | 'discarded' | 'skipped';
  /** Why the checkpoint was discarded, when it was. */
  checkpointProblem: string | undefined;
  /** Object and ref-log records read from files (beyond the checkpoint). */
  recordsReplayed: number;
  /** Every stretch dropped, in the order found. */
  readonly dropped: DroppedStretch[];
  /** Sum of `dropped[].bytes`. */
  droppedBytes: number;
  /**
   * True while a damaged record in `refs/log` may hide the newest value of
   * some refs: reading those refs (or listing refs) throws
   * {@link CorruptStoreError} until they are written again or the store is
   * opened with `repair`. A CLI should warn whenever this is true.
   */
  refLogDamaged: boolean;
  /** True if this open's `repair` rewrote a damaged ref log from its intact records (older values accepted). */
  refLogRepaired: boolean;
}

/** A fresh, empty report. */
export function emptyReport(): RecoveryReport {
  return {
    checkpoint: 'missing',
    checkpointProblem: undefined,
    recordsReplayed: 0,
    dropped: [],
    droppedBytes: 0,
    refLogDamaged: false,
    refLogRepaired: false,
  };
}

/** Adds one dropped stretch. */
export function noteDropped(report: RecoveryReport, stretch: DroppedStretch): void {
  if (stretch.bytes <= 0) return;
  report.dropped.push(stretch);
  report.droppedBytes += stretch.bytes;
}
