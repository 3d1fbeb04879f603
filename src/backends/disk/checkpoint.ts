/**
 * The index checkpoint: a snapshot of the object index and of how far each
 * segment had been read when it was taken, so that opening a store reads
 * the checkpoint and only the segment tails written after it, instead of
 * every record.
 *
 * One CRC frame holds everything; a checkpoint that fails its CRC or does
 * not parse is ignored (and reported), and the store rebuilds the index by
 * scanning every segment, which is always correct, only slower.
 *
 * @module
 */
import { FRAME_HEADER, parseFrame, sealFrame } from './frame.js';

/** 'CKPT' little endian. */
export const CHECKPOINT_MAGIC = 0x54504b43;
const FORMAT = 2;
/** kind, algorithm, digest, segment index, offset, length, time, generation. */
const ENTRY_BYTES = 1 + 1 + 32 + 4 + 8 + 4 + 8 + 2;

/** A segment named in a checkpoint, read up to `covered` bytes. */
export interface CheckpointSegment {
  readonly name: string;
  readonly covered: number;
}

/** One index entry as the checkpoint stores it. */
export interface CheckpointEntry {
  readonly kind: number;
  readonly algo: number;
  /** The digest: raw bytes when decoded, hex text when encoding (saves a buffer per entry). */
  readonly digest: Uint8Array | string;
  /** Index into the checkpoint's segment list. */
  readonly segment: number;
  readonly offset: number;
  readonly length: number;
  readonly time: number;
  readonly gen: number;
}

/** Serialises a checkpoint into one frame. */
export function encodeCheckpoint(
  clock: number,
  segments: readonly CheckpointSegment[],
  entryCount: number,
  entries: Iterable<CheckpointEntry>,
): Buffer {
  const names = segments.map((s) => Buffer.from(s.name, 'utf8'));
  const segmentBytes = names.reduce((sum, n) => sum + 2 + n.length + 8, 0);
  const bodyLength = 4 + 8 + 4 + segmentBytes + 4 + entryCount * ENTRY_BYTES;
  const buf = Buffer.allocUnsafe(FRAME_HEADER + bodyLength);
  let p = FRAME_HEADER;
  p = buf.writeUInt32LE(FORMAT, p);
  p = buf.writeDoubleLE(clock, p);
  p = buf.writeUInt32LE(segments.length, p);
  segments.forEach((segment, i) => {
    const name = names[i]!;
    p = buf.writeUInt16LE(name.length, p);
    p += name.copy(buf, p);
    p = buf.writeDoubleLE(segment.covered, p);
  });
  p = buf.writeUInt32LE(entryCount, p);
  let written = 0;
  for (const e of entries) {
    if (written === entryCount) break;
    p = buf.writeUInt8(e.kind, p);
    p = buf.writeUInt8(e.algo, p);
    if (typeof e.digest === 'string') buf.write(e.digest, p, 32, 'hex');
    else buf.set(e.digest, p);
    p += 32;
    p = buf.writeUInt32LE(e.segment, p);
    p = buf.writeDoubleLE(e.offset, p);
    p = buf.writeUInt32LE(e.length, p);
    p = buf.writeDoubleLE(e.time, p);
    p = buf.writeUInt16LE(e.gen, p);
    written++;
  }
  if (written !== entryCount) throw new Error(`checkpoint expected ${entryCount} entries, got ${written}`);
  sealFrame(buf, 0, CHECKPOINT_MAGIC, bodyLength);
  return buf;
}

/** A decoded checkpoint. */
export interface DecodedCheckpoint {
  readonly clock: number;
  readonly segments: CheckpointSegment[];
  /** Calls `visit` for each entry; the digest view is valid only during the call. */
  forEachEntry(visit: (entry: CheckpointEntry) => void): void;
}

/** Parses a checkpoint file's bytes; a string says why it is unusable. */
export function decodeCheckpoint(buf: Buffer): DecodedCheckpoint | string {
  const parsed = parseFrame(buf, 0, CHECKPOINT_MAGIC, Math.max(0, buf.length - FRAME_HEADER));
  if (parsed.kind !== 'ok' || parsed.end !== buf.length) return 'its checksum does not match (torn or damaged)';
  try {
    let p = FRAME_HEADER;
    const format = buf.readUInt32LE(p);
    p += 4;
    if (format !== FORMAT) return `it has unknown format ${format}`;
    const clock = buf.readDoubleLE(p);
    p += 8;
    const segmentCount = buf.readUInt32LE(p);
    p += 4;
    const segments: CheckpointSegment[] = [];
    for (let i = 0; i < segmentCount; i++) {
      const length = buf.readUInt16LE(p);
      p += 2;
      const name = buf.toString('utf8', p, p + length);
      p += length;
      segments.push({ name, covered: buf.readDoubleLE(p) });
      p += 8;
    }
    const entryCount = buf.readUInt32LE(p);
    p += 4;
    if (p + entryCount * ENTRY_BYTES !== buf.length) return 'its entry count does not match its length';
    for (const e of iterateEntries(buf, p, entryCount)) {
      if (e.segment >= segments.length) return 'an entry names a segment it does not list';
    }
    const start = p;
    return {
      clock,
      segments,
      forEachEntry(visit) {
        for (const entry of iterateEntries(buf, start, entryCount)) visit(entry);
      },
    };
  } catch (error) {
    return `it does not parse (${error instanceof Error ? error.message : String(error)})`;
  }
}

function* iterateEntries(buf: Buffer, start: number, count: number): Iterable<CheckpointEntry> {
  let p = start;
  for (let i = 0; i < count; i++) {
    yield {
      kind: buf[p]!,
      algo: buf[p + 1]!,
      digest: buf.subarray(p + 2, p + 34),
      segment: buf.readUInt32LE(p + 34),
      offset: buf.readDoubleLE(p + 38),
      length: buf.readUInt32LE(p + 46),
      time: buf.readDoubleLE(p + 50),
      gen: buf.readUInt16LE(p + 58),
    };
    p += ENTRY_BYTES;
  }
}
