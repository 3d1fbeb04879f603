/**
 * The appending side of the object log: this writer's active segment, the
 * slab that records are built in, and the write of one group-commit batch
 * (one write, one fdatasync). A segment is sealed once it would grow past
 * its size limit, or when a write to it failed: bytes past the last
 * acknowledged record may be half-written, so nothing more is appended
 * after them (readers never see them and recovery drops them as a torn
 * tail).
 *
 * @module
 */
import { constants, writeSync, writevSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fdatasyncAsync, openAsync, writeAsync } from './fd.js';
import { mapFsError } from './fs-errors.js';
import { fsyncDir } from './layout.js';
import { Segment, segmentName } from './record.js';

/** Slab that small records are built in (see {@link SegmentWriter.frameBuffer}). */
const FRAME_SLAB_BYTES = 256 * 1024;
/** Up to this size a batch is written with one synchronous writev: cheaper than a thread-pool round trip and a concat. */
const SYNC_WRITE_MAX = 1024 * 1024;

/** Where a batch landed. */
export interface Appended {
  readonly seg: Segment;
  /** Offset of the batch's first frame. */
  readonly start: number;
}

/** Appends batches of frames to this writer's segments. */
export class SegmentWriter {
  readonly #dir: string;
  readonly #writerId: string;
  readonly #segmentMaxBytes: number;
  /** Makes the log know a segment this writer created. */
  readonly #register: (seg: Segment) => void;
  #active: Segment | undefined;
  #nextSeq = 1;
  #slab: Buffer = Buffer.alloc(0);
  #slabUsed = 0;

  constructor(dir: string, writerId: string, segmentMaxBytes: number, register: (seg: Segment) => void) {
    this.#dir = dir;
    this.#writerId = writerId;
    this.#segmentMaxBytes = segmentMaxBytes;
    this.#register = register;
  }

  /** The segment being appended to, if any. */
  get active(): Segment | undefined {
    return this.#active;
  }

  /** A sequence number for a new segment of this writer (a compaction's output takes one too). */
  allocSeq(): number {
    return this.#nextSeq++;
  }

  /**
   * A buffer for one small record, carved from a shared slab: a 4 KiB put
   * would otherwise allocate its own ArrayBuffer (above Node's pool limit),
   * and those allocations and their GC were a measurable share of a put's CPU.
   * Slab space is never reused; a slab is freed once its records are written.
   */
  frameBuffer(size: number): Buffer {
    if (size > FRAME_SLAB_BYTES / 8) return Buffer.allocUnsafe(size);
    if (this.#slabUsed + size > this.#slab.length) {
      this.#slab = Buffer.allocUnsafeSlow(FRAME_SLAB_BYTES);
      this.#slabUsed = 0;
    }
    const frame = this.#slab.subarray(this.#slabUsed, this.#slabUsed + size);
    // 8-byte aligned, so the next frame's header writes stay aligned.
    this.#slabUsed += (size + 7) & ~7;
    return frame;
  }

  /**
   * Writes `frames` (`bytes` in all) back to back and syncs them; resolves
   * once they are on stable storage. `onSealed` hears of a segment sealed
   * for size, a moment to consider compacting.
   */
  async append(frames: readonly Buffer[], bytes: number, onSealed: () => void): Promise<Appended> {
    let seg = this.#active;
    if (seg !== undefined && seg.scannedTo > 0 && seg.scannedTo + bytes > this.#segmentMaxBytes) {
      this.seal(seg);
      seg = undefined;
      onSealed();
    }
    seg ??= await this.#createSegment();
    const start = seg.scannedTo;
    try {
      await writeFrames(seg.fd!, frames, bytes, start);
      await fdatasyncAsync(seg.fd!);
    } catch (error) {
      this.seal(seg);
      throw mapFsError(error, `appending to segments/${seg.name}`);
    }
    seg.scannedTo = start + bytes;
    seg.syncedTo = seg.scannedTo;
    return { seg, start };
  }

  /** Stops appending to `seg`. */
  seal(seg: Segment): void {
    seg.complete = true;
    if (this.#active === seg) this.#active = undefined;
  }

  /** Removes the active segment's file if nothing was ever written to it (at close). */
  async discardEmpty(): Promise<void> {
    const active = this.#active;
    if (active !== undefined && active.scannedTo === 0) await unlink(join(this.#dir, active.name)).catch(() => {});
  }

  async #createSegment(): Promise<Segment> {
    const seq = this.allocSeq();
    const seg = new Segment(segmentName(this.#writerId, seq, false), this.#writerId, seq, false);
    try {
      const flags = constants.O_CREAT | constants.O_EXCL | constants.O_RDWR | constants.O_NOFOLLOW;
      seg.fd = await openAsync(join(this.#dir, seg.name), flags, 0o644);
      // The new file's name must be durable before any record in it is acknowledged.
      await fsyncDir(this.#dir);
    } catch (error) {
      throw mapFsError(error, `creating segments/${seg.name}`);
    }
    this.#register(seg);
    this.#active = seg;
    return seg;
  }
}

/** Writes frames back to back at `position`: one syscall in the common case, no copy into one buffer. */
async function writeFrames(fd: number, frames: readonly Buffer[], bytes: number, position: number): Promise<void> {
  let done = 0;
  if (bytes <= SYNC_WRITE_MAX) {
    done = frames.length === 1 ? writeSync(fd, frames[0]!, 0, bytes, position) : writevSync(fd, frames as Buffer[], position);
    if (done === bytes) return;
  }
  // Large batches (or a short write): one buffer, written asynchronously so the event loop keeps serving reads.
  const buf = frames.length === 1 ? frames[0]! : Buffer.concat(frames as Buffer[], bytes);
  while (done < bytes) done += (await writeAsync(fd, buf, done, bytes - done, position + done)).bytesWritten;
}
