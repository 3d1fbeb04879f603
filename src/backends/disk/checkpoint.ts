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
 * This module holds the codec and the file's save and load: saving is temp
 * file, fdatasync, rename, directory fsync, so a crash leaves the old
 * checkpoint or the new one, never a mix.
 *
 * @module
 */
import { constants } from 'node:fs';
import { readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { HashAlgorithm } from '../../hash.js';
import { closeAsync, fdatasyncAsync, fstatAsync, openAsync } from './fd.js';
import { FRAME_HEADER, parseFrame, sealFrame } from './frame.js';
import { errnoOf, mapFsError } from './fs-errors.js';
import { fsyncDir, READ_FLAGS } from './layout.js';
import { ALGO_CODE, ALGO_NAME, Segment, type Entry } from './record.js';
import { noteDropped, type RecoveryReport } from './report.js';

/** The checkpoint's file name in the store root. */
export const CHECKPOINT_FILE = 'index.ckpt';

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

/**
 * Serialises the index as of now. Synchronous on purpose: the index and
 * the segments' coverage must describe the same moment.
 */
export function snapshotCheckpoint(clock: number, segments: readonly Segment[], index: ReadonlyMap<string, Entry>): Buffer {
  const live = segments.filter((s) => !s.removed);
  const position = new Map(live.map((s, i) => [s, i]));
  const entries: CheckpointEntry[] = [];
  for (const [key, entry] of index) {
    const segment = position.get(entry.seg);
    if (segment === undefined) continue;
    const colon = key.indexOf(':');
    entries.push({
      kind: entry.kind,
      algo: ALGO_CODE[key.slice(0, colon) as HashAlgorithm],
      digest: key.slice(colon + 1),
      segment,
      offset: entry.offset,
      length: entry.length,
      time: entry.time,
      gen: entry.gen,
    });
  }
  return encodeCheckpoint(
    clock,
    live.map((s) => ({ name: s.name, covered: s.scannedTo })),
    entries.length,
    entries,
  );
}

/** Writes a checkpoint file atomically (temp file named after `writerId`, fdatasync, rename, directory fsync). */
export async function saveCheckpoint(root: string, writerId: string, buf: Buffer): Promise<void> {
  const final = join(root, CHECKPOINT_FILE);
  const temp = `${final}.${writerId}.tmp`;
  try {
    await writeFile(temp, buf, { flag: constants.O_CREAT | constants.O_TRUNC | constants.O_WRONLY | constants.O_NOFOLLOW });
    const fd = await openAsync(temp, READ_FLAGS);
    try {
      await fdatasyncAsync(fd);
    } finally {
      await closeAsync(fd);
    }
    await rename(temp, final);
    await fsyncDir(root);
  } catch (error) {
    await unlink(temp).catch(() => {});
    throw mapFsError(error, 'writing the index checkpoint');
  }
}

/** What {@link loadCheckpoint} needs from the object log. */
export interface CheckpointTarget {
  /** The segment's read fd, or undefined if its file is gone. */
  fdOf(seg: Segment): number | undefined;
  /** Makes the log know a segment (with `scannedTo` set to what the checkpoint covers, or 0 to rescan it). */
  register(seg: Segment): void;
  /** Adds an index entry (latest wins). */
  install(key: string, entry: Entry): void;
}

/**
 * Loads the checkpoint in `root` into `target`; resolves with its clock and
 * size, or undefined if there is none or it is unusable (said in `report`).
 */
export async function loadCheckpoint(
  root: string,
  report: RecoveryReport,
  target: CheckpointTarget,
): Promise<{ clock: number; bytes: number } | undefined> {
  let buf: Buffer;
  try {
    buf = await readFile(join(root, CHECKPOINT_FILE), { flag: READ_FLAGS });
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return undefined;
    if (errnoOf(error) === 'ELOOP') {
      report.checkpoint = 'discarded';
      report.checkpointProblem = `${CHECKPOINT_FILE} is a symlink, which the store does not follow`;
      return undefined;
    }
    throw mapFsError(error, 'reading the index checkpoint');
  }
  const decoded = decodeCheckpoint(buf);
  if (typeof decoded === 'string') {
    report.checkpoint = 'discarded';
    report.checkpointProblem = `${CHECKPOINT_FILE} was ignored: ${decoded}`;
    return { clock: 0, bytes: buf.length };
  }
  // Only segments that still exist and are at least as long as recorded are trusted.
  const usable: (Segment | undefined)[] = [];
  for (const { name, covered } of decoded.segments) {
    let seg = Segment.fromName(name);
    const fd = seg === undefined ? undefined : target.fdOf(seg);
    if (seg !== undefined && fd === undefined) {
      seg = undefined;
    } else if (seg !== undefined) {
      const size = (await fstatAsync(fd!)).size;
      if (size < covered) {
        noteDropped(report, { file: `segments/${name}`, offset: size, bytes: covered - size, reason: 'truncated' });
        // Rescan it from the start: the checkpoint's entries for it may point past its end.
        target.register(seg);
        seg = undefined;
      } else {
        seg.scannedTo = covered;
        target.register(seg);
      }
    }
    usable.push(seg);
  }
  decoded.forEachEntry((e) => {
    const seg = usable[e.segment];
    const algorithm = ALGO_NAME[e.algo];
    if (seg === undefined || algorithm === undefined) return;
    target.install(`${algorithm}:${Buffer.from(e.digest as Uint8Array).toString('hex')}`, {
      kind: e.kind,
      seg,
      offset: e.offset,
      length: e.length,
      time: e.time,
      gen: e.gen,
    });
  });
  report.checkpoint = 'loaded';
  return { clock: decoded.clock, bytes: buf.length };
}
