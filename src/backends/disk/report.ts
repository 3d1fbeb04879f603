/**
 * What opening (and later reading) a disk store found wrong with its files
 * and dropped: the evidence a caller or an operator needs after a crash or
 * a disk fault. Dropped bytes never become data; the report says where they
 * were.
 *
 * @module
 */

/** One stretch of a store file that was not used. */
export interface DroppedStretch {
  /** The file, relative to the store directory (for example `segments/ab12...-00000001.seg`). */
  readonly file: string;
  readonly offset: number;
  readonly bytes: number;
  /**
   * `corrupt`: a record whose checksum failed, followed by good records;
   * `torn-tail`: bytes after the last good record, left by a writer that died;
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
}

/** A fresh, empty report. */
export function emptyReport(): RecoveryReport {
  return { checkpoint: 'missing', checkpointProblem: undefined, recordsReplayed: 0, dropped: [], droppedBytes: 0 };
}

/** Adds one dropped stretch. */
export function noteDropped(report: RecoveryReport, stretch: DroppedStretch): void {
  if (stretch.bytes <= 0) return;
  report.dropped.push(stretch);
  report.droppedBytes += stretch.bytes;
}
