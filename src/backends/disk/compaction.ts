/**
 * Compaction of the object log: the live records of every sealed segment
 * are copied into one new segment (written to a temp file, synced, renamed
 * into place), readers are switched over entry by entry, and the old files
 * are removed. One compaction runs at a time across all processes sharing
 * the directory (`locks/compact.lock`).
 *
 * Why it is safe against concurrent writers and readers:
 * - only *sealed* segments are inputs: ours except the active one, and
 *   another writer's lower-numbered ones (it appends only to its highest)
 *   or any of a writer that is dead;
 * - a copy carries its record's time and generation + 1, so while both
 *   copies exist the copy wins in any reading order;
 * - a record that fails its CRC is never copied (re-sealing it would bless
 *   bad bytes with a good CRC); it is reported instead;
 * - a tombstone is kept while older puts it hides may live in segments not
 *   compacted now.
 *
 * @module
 */
import { constants } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { closeAsync, fdatasyncAsync, openAsync, readAsync, writeAsync } from './fd.js';
import { FRAME_HEADER, parseFrame, sealFrame } from './frame.js';
import { mapFsError } from './fs-errors.js';
import { fsyncDir } from './layout.js';
import { acquireLock } from './lock.js';
import {
  BODY_FIXED,
  KIND_PUT,
  KIND_TOMBSTONE,
  MAX_RECORD_BODY,
  nextGen,
  RECORD_HEADER,
  Segment,
  segmentName,
  SEGMENT_MAGIC,
  type Entry,
} from './record.js';
import { noteDropped, type RecoveryReport } from './report.js';

/** What {@link ObjectLog.compact} did. */
export interface CompactionResult {
  /** Segment files merged (and removed). */
  readonly segmentsCompacted: number;
  /** Their total size. */
  readonly bytesBefore: number;
  /** Size of the segment that replaced them. */
  readonly bytesAfter: number;
  /** Records copied (live objects and still-needed tombstones). */
  readonly recordsKept: number;
}

/** Copy chunks are written once they reach this size, bounding memory. */
const COPY_CHUNK_BYTES = 8 * 1024 * 1024;

/** The parts of the object log a compaction works on. */
export interface CompactionHost {
  readonly root: string;
  readonly writerId: string;
  readonly staleLockMs: number;
  readonly report: RecoveryReport;
  readonly index: Map<string, Entry>;
  readonly segments: ReadonlyMap<string, Segment>;
  /** Our segment being appended to, if any. */
  active(): Segment | undefined;
  refresh(): Promise<void>;
  /** The next sequence number of this writer's segments. */
  allocSeq(): number;
  /** Seals our active segment, so new writes start another. */
  sealActive(): void;
  /** Settles once a batch already being written has landed (or failed). */
  batchSettled(): Promise<void>;
  isDead(writer: string): Promise<boolean>;
  fdOf(seg: Segment): number | undefined;
  register(seg: Segment): void;
  /** Drops segments whose records were copied elsewhere, and their index entries. */
  forget(gone: Set<Segment>): void;
  checkpoint(): Promise<void>;
}

/** Runs one compaction; see the module comment. */
export async function compactSegments(host: CompactionHost): Promise<CompactionResult> {
  const lock = await acquireLock(join(host.root, 'locks', 'compact.lock'), { staleMs: host.staleLockMs });
  try {
    await host.refresh();
    const outputSeq = host.allocSeq();
    // Seal our active segment so that it can be compacted too; new writes start a new one.
    host.sealActive();
    // A batch already writing to the sealed segment must land before its records are counted.
    await host.batchSettled();
    // Another writer appends only to its highest-numbered plain segment, and starts a new one only
    // once every write to the previous one is done: its lower-numbered ones are sealed.
    const lastSeq = new Map<string, number>();
    for (const seg of host.segments.values()) {
      if (!seg.compacted) lastSeq.set(seg.writer, Math.max(lastSeq.get(seg.writer) ?? 0, seg.seq));
    }
    const inputs = new Set<Segment>();
    const active = host.active();
    for (const seg of host.segments.values()) {
      const sealed =
        seg.writer === host.writerId
          ? seg !== active
          : seg.complete || seg.compacted || seg.seq < lastSeq.get(seg.writer)! || (await host.isDead(seg.writer));
      if (sealed && !seg.removed) inputs.add(seg);
    }
    const bytesBefore = [...inputs].reduce((sum, s) => sum + s.scannedTo, 0);
    if (inputs.size === 0) return { segmentsCompacted: 0, bytesBefore: 0, bytesAfter: 0, recordsKept: 0 };
    // A tombstone must outlive every older put it hides; those can only be in segments not compacted now.
    const keepTombstones = inputs.size < host.segments.size;
    const live: Array<[string, Entry]> = [];
    for (const [key, entry] of host.index) {
      if (!inputs.has(entry.seg)) continue;
      if (entry.kind === KIND_PUT || keepTombstones) live.push([key, entry]);
    }
    let liveBytes = 0;
    for (const [, e] of live) liveBytes += RECORD_HEADER + e.length;
    if (inputs.size === 1 && liveBytes === bytesBefore) {
      return { segmentsCompacted: 0, bytesBefore, bytesAfter: bytesBefore, recordsKept: live.length };
    }
    live.sort((a, b) => (a[1].seg === b[1].seg ? a[1].offset - b[1].offset : a[1].seg.name < b[1].seg.name ? -1 : 1));
    const output = live.length > 0 ? await writeCompacted(host, live, outputSeq) : undefined;
    // Switch readers over: only entries nobody changed meanwhile (a delete may have landed).
    let recordsKept = 0;
    for (const [key, entry] of output === undefined ? [] : live) {
      const moved = output!.offsets.get(key);
      if (moved !== undefined && host.index.get(key) === entry) {
        host.index.set(key, { ...entry, seg: output!.seg, offset: moved, gen: nextGen(entry.gen) });
        recordsKept++;
      }
    }
    for (const [key, entry] of host.index) {
      // A tombstone dropped above hides nothing any more: absence says the same.
      if (inputs.has(entry.seg) && entry.kind === KIND_TOMBSTONE) host.index.delete(key);
    }
    host.forget(inputs);
    const dir = join(host.root, 'segments');
    for (const seg of inputs) await unlink(join(dir, seg.name)).catch(() => {});
    await fsyncDir(dir);
    await host.checkpoint();
    return { segmentsCompacted: inputs.size, bytesBefore, bytesAfter: output?.seg.scannedTo ?? 0, recordsKept };
  } finally {
    await lock.release();
  }
}

async function writeCompacted(
  host: CompactionHost,
  live: Array<[string, Entry]>,
  seq: number,
): Promise<{ seg: Segment; offsets: Map<string, number> }> {
  const name = segmentName(host.writerId, seq, true);
  const dir = join(host.root, 'segments');
  const final = join(dir, name);
  const temp = join(dir, `.${name}.tmp`);
  const offsets = new Map<string, number>();
  let fd: number | undefined;
  try {
    fd = await openAsync(temp, constants.O_CREAT | constants.O_TRUNC | constants.O_RDWR | constants.O_NOFOLLOW, 0o644);
    let written = 0;
    let chunk: Buffer[] = [];
    let chunkBytes = 0;
    const flushChunk = async (): Promise<void> => {
      const buf = Buffer.concat(chunk, chunkBytes);
      let done = 0;
      while (done < buf.length) done += (await writeAsync(fd!, buf, done, buf.length - done, written + done)).bytesWritten;
      written += buf.length;
      chunk = [];
      chunkBytes = 0;
    };
    for (const [key, entry] of live) {
      const source = host.fdOf(entry.seg);
      if (source === undefined) continue;
      const size = RECORD_HEADER + entry.length;
      const record = Buffer.allocUnsafe(size);
      entry.seg.readers++;
      try {
        const { bytesRead } = await readAsync(source, record, 0, size, entry.offset);
        if (bytesRead !== size || parseFrame(record, 0, SEGMENT_MAGIC, MAX_RECORD_BODY).kind !== 'ok') {
          noteDropped(host.report, { file: `segments/${entry.seg.name}`, offset: entry.offset, bytes: size, reason: 'corrupt' });
          continue;
        }
      } finally {
        entry.seg.readers--;
      }
      record.writeUInt16LE(nextGen(entry.gen), FRAME_HEADER + 2);
      sealFrame(record, 0, SEGMENT_MAGIC, BODY_FIXED + entry.length);
      offsets.set(key, written + chunkBytes);
      chunk.push(record);
      chunkBytes += size;
      if (chunkBytes >= COPY_CHUNK_BYTES) await flushChunk();
    }
    await flushChunk();
    await fdatasyncAsync(fd);
    await rename(temp, final);
    await fsyncDir(dir);
    const seg = new Segment(name, host.writerId, seq, true);
    seg.fd = fd;
    seg.scannedTo = written;
    seg.syncedTo = written;
    seg.complete = true;
    host.register(seg);
    return { seg, offsets };
  } catch (error) {
    if (fd !== undefined) await closeAsync(fd).catch(() => {});
    await unlink(temp).catch(() => {});
    throw mapFsError(error, 'writing a compacted segment');
  }
}
