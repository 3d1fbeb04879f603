/**
 * The records of a stream log (`stream-log.ts`) and how a log file is read.
 *
 * A record is a frame (`frame.ts`) around
 * `kind u8 | 7 reserved | a f64 | b f64 | payload`:
 * - **base** (first record of every file): `a` = the number just before the
 *   first event that follows, `b` = floor, payload = the stream key.
 * - **event**: `a` = its number, `b` = the floor when written (so a floor
 *   record lost to damage is learnt again from the next event), payload =
 *   the event's JSON bytes.
 * - **floor**: `a` = the new floor (truncation).
 *
 * Log files are preallocated with zeros ahead of the last record, so that
 * the fdatasync of an append does not change the file's size (and on ext4
 * does not wait for a journal commit, which other processes' writes can
 * make slow). A frame header of zeros is therefore the clean end of the
 * log; anything else that is not a frame is a torn tail or damage.
 *
 * @module
 */
import { readSync } from 'node:fs';
import { readAsync, readAt } from './fd.js';
import { FRAME_HEADER, parseFrame, scanFrames, sealFrame, type DroppedRegion } from './frame.js';

/** 'CSTR' little endian. */
export const STREAM_MAGIC = 0x52545343;
export const KIND_EVENT = 1;
export const KIND_FLOOR = 2;
export const KIND_BASE = 3;
/** Bytes of a record body before its payload. */
export const BODY_FIXED = 24;
/** The largest event payload a record holds. */
export const MAX_EVENT_BYTES = 16 * 1024 * 1024;
export const MAX_BODY = BODY_FIXED + MAX_EVENT_BYTES;
/** Bytes read per step while scanning. */
const SCAN_WINDOW = 256 * 1024;

/** One record to encode. */
export interface RecordSpec {
  readonly kind: number;
  readonly a: number;
  readonly b: number;
  readonly payload: Uint8Array;
}

/** Frames records into one buffer, ready for one write. */
export function encodeRecords(records: readonly RecordSpec[]): Buffer {
  let total = 0;
  for (const r of records) total += FRAME_HEADER + BODY_FIXED + r.payload.length;
  const buf = Buffer.allocUnsafe(total);
  let pos = 0;
  for (const r of records) {
    const body = pos + FRAME_HEADER;
    buf[body] = r.kind;
    buf.fill(0, body + 1, body + 8);
    buf.writeDoubleLE(r.a, body + 8);
    buf.writeDoubleLE(r.b, body + 16);
    buf.set(r.payload, body + BODY_FIXED);
    sealFrame(buf, pos, STREAM_MAGIC, BODY_FIXED + r.payload.length);
    pos = body + BODY_FIXED + r.payload.length;
  }
  return buf;
}

/** Calls `visit` with each frame of an encoded buffer written at file offset `at`. */
export function forEachFrame(frames: Buffer, at: number, visit: (offset: number, body: Buffer) => void): void {
  for (let pos = 0; pos < frames.length; ) {
    const length = frames.readUInt32LE(pos + 8);
    visit(at + pos, frames.subarray(pos + FRAME_HEADER, pos + FRAME_HEADER + length));
    pos += FRAME_HEADER + length;
  }
}

/** What {@link scanRecords} found. */
export interface RecordScan {
  /** Just past the last good record. */
  readonly end: number;
  /** Bytes at `end` that are neither a record nor preallocated zeros (a torn tail, or a write in progress). */
  readonly tailBytes: number;
  /** Damaged stretches skipped between good records. */
  readonly dropped: DroppedRegion[];
}

/**
 * Reads records from `from` up to `size`, calling `visit` for each, until
 * the zeros of the preallocated end. A stretch that is no record is handed
 * to {@link scanFrames}, which skips damage between good records and
 * reports what follows the last one as the tail.
 */
export async function scanRecords(
  fd: number,
  from: number,
  size: number,
  visit: (offset: number, body: Buffer) => void,
): Promise<RecordScan> {
  let window = Buffer.alloc(0);
  let windowStart = from;
  let pos = from;
  const load = async (minBytes: number): Promise<void> => {
    const length = Math.min(size - pos, Math.max(SCAN_WINDOW, minBytes));
    window = await readAt(fd, pos, length);
    windowStart = pos;
  };
  while (pos < size) {
    if (pos + FRAME_HEADER > windowStart + window.length) {
      await load(FRAME_HEADER);
      if (window.length < FRAME_HEADER) break;
    }
    const rel = pos - windowStart;
    if (isZero(window, rel, rel + FRAME_HEADER)) return { end: pos, tailBytes: 0, dropped: [] };
    const parsed = parseFrame(window, rel, STREAM_MAGIC, MAX_BODY);
    if (parsed.kind === 'ok') {
      visit(pos, window.subarray(rel + FRAME_HEADER, parsed.end));
      pos = windowStart + parsed.end;
      continue;
    }
    if (parsed.kind === 'short' && pos + parsed.need <= size && rel > 0) {
      await load(parsed.need);
      continue;
    }
    // Not a record: damage followed by good records, or the tail. The frame scanner tells which.
    const outcome = await scanFrames(fd, pos, size, STREAM_MAGIC, MAX_BODY, visit);
    return { end: outcome.end, tailBytes: outcome.tailBytes, dropped: outcome.dropped };
  }
  // Fewer bytes than a frame header are left: zeros are the clean end, anything else a tail.
  const rest = Buffer.allocUnsafe(size - pos);
  const got = rest.length === 0 ? 0 : readSync(fd, rest, 0, rest.length, pos);
  return { end: pos, tailBytes: isZero(rest, 0, got) ? 0 : size - pos, dropped: [] };
}

/** True if `buf[from, to)` holds only zero bytes. */
export function isZero(buf: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (buf[i] !== 0) return false;
  return true;
}

/** True if the file holds only zeros from `from` to `size` (read in steps, without holding it all). */
export async function zeroFrom(fd: number, from: number, size: number): Promise<boolean> {
  const step = Buffer.allocUnsafe(Math.min(SCAN_WINDOW, Math.max(0, size - from)));
  for (let pos = from; pos < size; ) {
    const { bytesRead } = await readAsync(fd, step, 0, Math.min(step.length, size - pos), pos);
    if (bytesRead === 0) return true;
    if (!isZero(step, 0, bytesRead)) return false;
    pos += bytesRead;
  }
  return true;
}
