/**
 * Catching up with one segment file: reads the records appended since the
 * last look and decides what its unparsed tail is. A tail is dropped only
 * once its writer is dead (while it lives, the tail may be an append in
 * progress). It is reported as `torn-tail` when it is a proper prefix of
 * one record, what a writer killed mid-append leaves, and as `corrupt`
 * otherwise (see `isTornPrefix` in `frame.ts`). Nothing here writes to the
 * file: a segment is only ever appended to by its own writer.
 *
 * @module
 */
import { fstatAsync, readAsync } from './fd.js';
import { FRAME_HEADER, isTornPrefix, scanFrames } from './frame.js';
import { mapFsError } from './fs-errors.js';
import { BODY_FIXED, MAX_RECORD_BODY, SEGMENT_MAGIC, type Segment } from './record.js';
import { noteDropped, type RecoveryReport } from './report.js';

/** What a tail scan needs from the object log. */
export interface TailScanContext {
  readonly dir: string;
  readonly report: RecoveryReport;
  isDead(writer: string): Promise<boolean>;
  /** Called with each valid record, in file order. */
  visit(seg: Segment, offset: number, body: Buffer): void;
}

/** Scans `seg` from `seg.scannedTo` to its end; resolves with the bytes of records taken in. */
export async function scanSegmentTail(seg: Segment, context: TailScanContext): Promise<number> {
  const fd = seg.readFd(context.dir);
  if (fd === undefined) return 0;
  // Held as a reader for the whole scan: a compaction that retires this segment meanwhile must
  // not close the fd under the awaits below (seen as EBADF in the compaction race test).
  seg.readers++;
  try {
    return await scanWith(seg, fd, context);
  } finally {
    seg.readers--;
    if (seg.removed) seg.closeIfRetired();
  }
}

async function scanWith(seg: Segment, fd: number, context: TailScanContext): Promise<number> {
  let size: number;
  try {
    size = (await fstatAsync(fd)).size;
  } catch (error) {
    throw mapFsError(error, `reading segments/${seg.name}`);
  }
  const file = `segments/${seg.name}`;
  let scanned = 0;
  if (size > seg.scannedTo) {
    const before = seg.scannedTo;
    const outcome = await scanFrames(fd, seg.scannedTo, size, SEGMENT_MAGIC, MAX_RECORD_BODY, (offset, body) =>
      context.visit(seg, offset, body),
    );
    for (const region of outcome.dropped) noteDropped(context.report, { file, ...region, reason: 'corrupt' });
    seg.scannedTo = outcome.end;
    scanned = outcome.end - before;
    if (outcome.tailBytes > 0 && (await context.isDead(seg.writer))) {
      const head = Buffer.alloc(Math.min(outcome.tailBytes, FRAME_HEADER));
      const { bytesRead } = await readAsync(fd, head, 0, head.length, outcome.end);
      const torn = isTornPrefix(head.subarray(0, bytesRead), outcome.tailBytes, SEGMENT_MAGIC, BODY_FIXED, MAX_RECORD_BODY);
      noteDropped(context.report, { file, offset: outcome.end, bytes: outcome.tailBytes, reason: torn ? 'torn-tail' : 'corrupt' });
      seg.scannedTo = size;
      seg.complete = true;
    }
  }
  if (!seg.complete && seg.scannedTo >= size && (await context.isDead(seg.writer))) seg.complete = true;
  return scanned;
}
