/**
 * CRC-framed records: the unit of every append-only file in the disk store
 * (object segments, the ref log, the index checkpoint).
 *
 * A frame is `magic u32 | crc32 u32 | length u32 | body[length]`, little
 * endian, the CRC covering the length field and the body. A reader that
 * meets a frame whose CRC fails looks for the next magic number whose frame
 * checks out (resync), so one flipped byte costs one record, not the rest of
 * the file; bytes after the last good frame are a torn tail.
 *
 * @module
 */
import { crc32 } from 'node:zlib';
import { readAt } from './fd.js';

/** Bytes before a frame's body. */
export const FRAME_HEADER = 12;

/** Writes the frame header for a body already placed at `offset + FRAME_HEADER`. */
export function sealFrame(buf: Buffer, offset: number, magic: number, bodyLength: number): void {
  buf.writeUInt32LE(magic, offset);
  buf.writeUInt32LE(bodyLength, offset + 8);
  buf.writeUInt32LE(crc32(buf.subarray(offset + 8, offset + FRAME_HEADER + bodyLength)), offset + 4);
}

/** A buffer holding one frame around `body`. */
export function frameOf(magic: number, body: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(FRAME_HEADER + body.length);
  buf.set(body, FRAME_HEADER);
  sealFrame(buf, 0, magic, body.length);
  return buf;
}

type Parsed = { kind: 'ok'; end: number } | { kind: 'short'; need: number } | { kind: 'bad' };

/** Parses the frame at `pos` of `buf` (which holds file bytes from some window start). */
export function parseFrame(buf: Buffer, pos: number, magic: number, maxBody: number): Parsed {
  if (buf.length - pos < FRAME_HEADER) return { kind: 'short', need: FRAME_HEADER };
  if (buf.readUInt32LE(pos) !== magic) return { kind: 'bad' };
  const length = buf.readUInt32LE(pos + 8);
  if (length > maxBody) return { kind: 'bad' };
  const end = pos + FRAME_HEADER + length;
  if (end > buf.length) return { kind: 'short', need: FRAME_HEADER + length };
  if (crc32(buf.subarray(pos + 8, end)) !== buf.readUInt32LE(pos + 4)) return { kind: 'bad' };
  return { kind: 'ok', end };
}

/** A stretch of a file that held no valid frame. */
export interface DroppedRegion {
  readonly offset: number;
  readonly bytes: number;
}

/** What {@link scanFrames} found. */
export interface ScanOutcome {
  /** File offset just past the last valid frame (where a torn tail starts). */
  readonly end: number;
  /** Bad stretches between valid frames, skipped by resync. */
  readonly dropped: DroppedRegion[];
  /** Bytes after `end` up to the scanned limit that hold no valid frame (torn, or still being written). */
  readonly tailBytes: number;
}

/**
 * True if a tail of `tailLength` bytes (after the last valid frame, to the
 * end of the file), whose first bytes are `head` (at least a frame header's
 * worth, or the whole tail if shorter), can be what a writer that stopped mid-append left: a proper prefix
 * of one frame. Its magic (as far as present) is right, its declared length
 * is one a writer could have written (`minBody` to `maxBody`), and the file
 * ends before that length does. A tail that holds a frame's full extent but
 * fails the CRC, or does not start like a frame, is damage, not a torn
 * write: appends are acknowledged only after they are whole and synced, so
 * a crash leaves a shorter file, never a complete but wrong record.
 */
export function isTornPrefix(head: Buffer, tailLength: number, magic: number, minBody: number, maxBody: number): boolean {
  const magicBytes = Buffer.alloc(4);
  magicBytes.writeUInt32LE(magic);
  if (tailLength === 0) return false;
  if (head.length < 4) return head.equals(magicBytes.subarray(0, head.length));
  if (!head.subarray(0, 4).equals(magicBytes)) return false;
  if (head.length < FRAME_HEADER) return true;
  const length = head.readUInt32LE(8);
  return length >= minBody && length <= maxBody && tailLength < FRAME_HEADER + length;
}

/** Default read window: large enough for any object record, small enough to bound memory. */
const WINDOW = 4 * 1024 * 1024;

/**
 * Reads frames from `fd` between `from` and `to`, calling `visit` with each
 * valid frame's file offset and body (a view valid only during the call),
 * and `onDropped` with each bad stretch between valid frames, both in file
 * order. Memory is bounded by the window plus one frame.
 */
export async function scanFrames(
  fd: number,
  from: number,
  to: number,
  magic: number,
  maxBody: number,
  visit: (offset: number, body: Buffer) => void,
  onDropped?: (region: DroppedRegion) => void,
): Promise<ScanOutcome> {
  const windowSize = WINDOW;
  let buf = Buffer.alloc(0);
  let winStart = from;
  const dropped: DroppedRegion[] = [];

  const load = async (start: number, minBytes: number): Promise<void> => {
    const length = Math.min(to - start, Math.max(windowSize, minBytes));
    buf = await readAt(fd, start, length);
    winStart = start;
  };

  const parseAt = async (pos: number): Promise<Parsed> => {
    for (;;) {
      if (pos < winStart || pos + FRAME_HEADER > winStart + buf.length) {
        if (pos + FRAME_HEADER > to) return { kind: 'short', need: FRAME_HEADER };
        await load(pos, FRAME_HEADER);
        // The file ended early (truncated while we scanned): what is there is a tail.
        if (buf.length < FRAME_HEADER) return { kind: 'short', need: FRAME_HEADER };
      }
      const parsed = parseFrame(buf, pos - winStart, magic, maxBody);
      if (parsed.kind !== 'short') return parsed.kind === 'ok' ? { kind: 'ok', end: parsed.end + winStart } : parsed;
      if (pos + parsed.need > to) return parsed;
      if (winStart === pos && buf.length >= parsed.need) return parsed;
      await load(pos, parsed.need);
      if (buf.length < parsed.need) return parsed;
    }
  };

  let pos = from;
  while (pos < to) {
    const parsed = await parseAt(pos);
    if (parsed.kind === 'ok') {
      visit(pos, buf.subarray(pos - winStart + FRAME_HEADER, parsed.end - winStart));
      pos = parsed.end;
      continue;
    }
    // A frame that runs past the end is a torn tail, unless a valid frame follows: then its length was damaged.
    const found = await resync(pos);
    if (found === undefined) break;
    const region = { offset: pos, bytes: found - pos };
    dropped.push(region);
    onDropped?.(region);
    pos = found;
  }
  return { end: pos, dropped, tailBytes: to - pos };

  // Looks past a bad frame for the next offset where a valid frame starts.
  async function resync(bad: number): Promise<number | undefined> {
    const magicBytes = Buffer.alloc(4);
    magicBytes.writeUInt32LE(magic);
    let from = bad + 1;
    while (from + FRAME_HEADER <= to) {
      if (from < winStart || from >= winStart + buf.length) await load(from, FRAME_HEADER);
      const hit = buf.indexOf(magicBytes, from - winStart);
      if (hit < 0) {
        // Keep 3 bytes of overlap so a magic number split across windows is still found.
        const nextFrom = winStart + buf.length - 3;
        if (winStart + buf.length >= to || nextFrom <= from) return undefined;
        from = nextFrom;
        await load(from, FRAME_HEADER);
        continue;
      }
      const candidate = winStart + hit;
      const parsed = await parseAt(candidate);
      if (parsed.kind === 'ok') return candidate;
      from = candidate + 1;
    }
    return undefined;
  }
}
