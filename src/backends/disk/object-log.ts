/**
 * The object log: small objects as records in append-only segment files,
 * with an in-memory index, group commit and catch-up with other writers.
 *
 * Why a log and not one file per object: on the development machine an
 * fdatasync of an append cost 0.35 ms when idle (3.5 ms when busy), and
 * one-file-per-object pays two syncs (file, directory) plus a create and a
 * rename per object (0.56 ms idle, one writer). A log pays one sync per
 * *batch*: every put that arrives while a sync is running joins the next
 * batch (group commit, `internal/group-commit.ts`), so 16 concurrent
 * writers share one fdatasync, and a put's cost is a hash, a CRC and a
 * memcpy. `npm run bench -- disk` measures both designs side by side: about
 * 6x on puts and 4x on gets.
 *
 * Each open store is a *writer* with a random id and appends only to its own
 * segments (`<writer>-<seq>.seg`), so processes sharing a directory never
 * interleave bytes; they find each other's records by reading the segments
 * directory when a lookup misses. Records carry a hybrid clock time; the
 * latest record for a hash wins (a put or a tombstone), so deletes order
 * correctly across writers.
 *
 * Elsewhere: the record format (`record.ts`), appending a batch
 * (`segment-writer.ts`), reading a segment's new records (`segment-scan.ts`),
 * the checkpoint (`checkpoint.ts`), compaction (`compaction.ts`), writer
 * liveness (`writers.ts`).
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { readSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ClosedError, IntegrityError, ReadOnlyError } from '../../errors.js';
import { Hash } from '../../hash.js';
import { GroupCommitQueue } from '../../internal/group-commit.js';
import { loadCheckpoint, saveCheckpoint, snapshotCheckpoint } from './checkpoint.js';
import { compactSegments, type CompactionHost, type CompactionResult } from './compaction.js';
import { closeAsync, readAsync, fdatasyncAsync } from './fd.js';
import { sealFrame } from './frame.js';
import { mapFsError } from './fs-errors.js';
import { freshCoalescer } from './fresh-coalesce.js';
import {
  BODY_FIXED,
  decodeBodyHeader,
  KIND_PUT,
  KIND_TOMBSTONE,
  RECORD_HEADER,
  Segment,
  SEGMENT_MAGIC,
  SEGMENT_NAME,
  writeBodyHeader,
  type Entry,
} from './record.js';
import type { RecoveryReport } from './report.js';
import { scanSegmentTail } from './segment-scan.js';
import { SegmentWriter } from './segment-writer.js';
import { WriterRegistry } from './writers.js';

export type { CompactionResult } from './compaction.js';
export type { Entry } from './record.js';
export { RECORD_HEADER, RECORD_PAYLOAD_LIMIT, SEGMENT_MAGIC } from './record.js';

/** Reads up to this size are served with readSync: from the page cache that is ~10x the async path (measured). */
const SYNC_READ_MAX = 64 * 1024;
/** Upper bound of one group-commit batch, so memory stays bounded under load. */
const BATCH_MAX_BYTES = 8 * 1024 * 1024;

/** Tuning of the object log; see {@link DiskStoreOptions} for the public meaning. */
export interface ObjectLogOptions {
  readonly segmentMaxBytes: number;
  readonly checkpointEveryBytes: number;
  readonly staleLockMs: number;
  readonly fullScan: boolean;
  readonly autoCompact: boolean;
  /** Register no writer, write no checkpoint, sweep nothing; writes throw ReadOnlyError. */
  readonly readOnly: boolean;
}

/** A record waiting for its group-commit batch. */
interface Pending {
  readonly frame: Buffer;
  readonly key: string;
  readonly kind: number;
  readonly length: number;
  readonly time: number;
}

/** The segment log of one open store. */
export class ObjectLog {
  readonly writerId = randomBytes(8).toString('hex');
  readonly #root: string;
  readonly #dir: string;
  readonly #options: ObjectLogOptions;
  readonly #report: RecoveryReport;
  readonly #writers: WriterRegistry;
  readonly #index = new Map<string, Entry>();
  readonly #segments = new Map<string, Segment>();
  readonly #inflight = new Map<string, Promise<void>>();
  readonly #commits = new GroupCommitQueue<Pending>({
    commit: (batch) => this.#writeBatch(batch),
    sizeOf: (pending) => pending.frame.length,
    maxBatchBytes: BATCH_MAX_BYTES,
    // One macrotask hop lets callers whose previous put just resolved join the next batch.
    gather: true,
  });
  readonly #appender: SegmentWriter;
  #clock = 0;
  #sinceCheckpoint = 0;
  /** Size of the last checkpoint written: the next waits for at least as many new bytes, bounding the rewrite cost. */
  #checkpointBytes = 0;
  #deletedBytes = 0;
  #checkpointing: Promise<void> | undefined;
  #compacting: Promise<CompactionResult> | undefined;
  #closed = false;

  private constructor(root: string, options: ObjectLogOptions, report: RecoveryReport) {
    this.#root = root;
    this.#dir = join(root, 'segments');
    this.#options = options;
    this.#report = report;
    this.#writers = new WriterRegistry(root, this.writerId);
    this.#appender = new SegmentWriter(this.#dir, this.writerId, options.segmentMaxBytes, (seg) => this.#segments.set(seg.name, seg));
  }

  /** Opens the log of the store at `root`: registers this writer, loads the checkpoint, replays tails. */
  static async open(root: string, options: ObjectLogOptions, report: RecoveryReport): Promise<ObjectLog> {
    const log = new ObjectLog(root, options, report);
    if (!options.readOnly) await log.#writers.register();
    try {
      if (options.fullScan) report.checkpoint = 'skipped';
      else await log.#loadCheckpoint();
      await log.refresh();
      if (options.readOnly) return log;
      if (log.#sinceCheckpoint >= options.checkpointEveryBytes) log.#checkpointSoon();
      void log.#writers.sweep().catch(() => {});
    } catch (error) {
      await log.close().catch(() => {});
      throw error;
    }
    return log;
  }

  /** The live put entry for `key` (a hash's text form), if this process knows one. */
  lookup(key: string): Entry | undefined {
    const entry = this.#index.get(key);
    return entry?.kind === KIND_PUT ? entry : undefined;
  }

  /** Hashes of every live object this process knows. */
  *hashes(): Iterable<Hash> {
    for (const [key, entry] of this.#index) {
      if (entry.kind !== KIND_PUT) continue;
      const colon = key.indexOf(':');
      yield Hash.fromHex(key.slice(0, colon), key.slice(colon + 1));
    }
  }

  /** Number of live objects known. */
  get size(): number {
    let n = 0;
    for (const entry of this.#index.values()) if (entry.kind === KIND_PUT) n++;
    return n;
  }

  /**
   * Stores `payload` as a record unless the hash is already live; resolves
   * once the record is on stable storage.
   */
  async put(hash: Hash, payload: Uint8Array): Promise<void> {
    this.#checkOpen();
    const key = hash.toString();
    const existing = this.lookup(key);
    if (existing !== undefined) return this.#ensureDurable(existing);
    const inflight = this.#inflight.get(key);
    if (inflight !== undefined) return inflight;
    const time = this.#tick();
    const frame = this.#appender.frameBuffer(RECORD_HEADER + payload.length);
    writeBodyHeader(frame, KIND_PUT, hash, time);
    frame.set(payload, RECORD_HEADER);
    sealFrame(frame, 0, SEGMENT_MAGIC, BODY_FIXED + payload.length);
    // Removed from #inflight by the batch that settles it (no extra promise per put).
    const promise = this.#commits.enqueue({ frame, key, kind: KIND_PUT, length: payload.length, time });
    this.#inflight.set(key, promise);
    return promise;
  }

  /** Records a tombstone if the object is live here; resolves once it is durable. */
  async delete(hash: Hash): Promise<void> {
    this.#checkOpen();
    const key = hash.toString();
    await this.#inflight.get(key)?.catch(() => {});
    if (this.lookup(key) === undefined) {
      await this.refresh();
      if (this.lookup(key) === undefined) return;
    }
    const time = this.#tick();
    const frame = Buffer.allocUnsafe(RECORD_HEADER);
    writeBodyHeader(frame, KIND_TOMBSTONE, hash, time);
    sealFrame(frame, 0, SEGMENT_MAGIC, BODY_FIXED);
    const freed = RECORD_HEADER + (this.lookup(key)?.length ?? 0);
    await this.#commits.enqueue({ frame, key, kind: KIND_TOMBSTONE, length: 0, time });
    this.#deletedBytes += freed;
    if (this.#deletedBytes >= this.#options.segmentMaxBytes / 4) {
      this.#deletedBytes = 0;
      this.#maybeCompact();
    }
  }
  /**
   * Reads an entry's payload (not yet verified against its hash): at once
   * for small records (the common case pays no promise), as a promise for
   * large ones. Undefined if the segment has gone (compacted by another
   * process): the caller refreshes and looks up again.
   */
  read(entry: Entry, key: string): Uint8Array | undefined | Promise<Uint8Array | undefined> {
    const seg = entry.seg;
    const fd = seg.readFd(this.#dir);
    if (fd === undefined) return undefined;
    if (entry.length > SYNC_READ_MAX) return this.#readAsync(entry, key, fd);
    const buf = Buffer.allocUnsafe(entry.length);
    let bytesRead: number;
    try {
      bytesRead = entry.length === 0 ? 0 : readSync(fd, buf, 0, entry.length, entry.offset + RECORD_HEADER);
    } catch (error) {
      throw mapFsError(error, `reading ${key} from segments/${seg.name}`, { key });
    }
    return this.#checkLength(entry, key, buf, bytesRead);
  }

  async #readAsync(entry: Entry, key: string, fd: number): Promise<Uint8Array> {
    const seg = entry.seg;
    const buf = Buffer.allocUnsafe(entry.length);
    const position = entry.offset + RECORD_HEADER;
    let bytesRead = 0;
    seg.readers++;
    try {
      while (bytesRead < entry.length) {
        const n = (await readAsync(fd, buf, bytesRead, entry.length - bytesRead, position + bytesRead)).bytesRead;
        if (n === 0) break;
        bytesRead += n;
      }
    } catch (error) {
      throw mapFsError(error, `reading ${key} from segments/${seg.name}`, { key });
    } finally {
      seg.readers--;
      if (seg.removed) seg.closeIfRetired();
    }
    return this.#checkLength(entry, key, buf, bytesRead);
  }

  #checkLength(entry: Entry, key: string, buf: Buffer, bytesRead: number): Buffer {
    if (bytesRead !== entry.length) {
      throw new IntegrityError(
        `object ${key} is damaged: segments/${entry.seg.name} ends before its record does (file truncated); delete the object and put it again`,
        { key },
      );
    }
    return buf;
  }

  /**
   * Brings in records other writers appended since the last look, and drops
   * segments that a compaction elsewhere removed. Concurrent callers share a
   * refresh, but a caller never joins one that started before it was called,
   * so it always sees what was written before the call.
   */
  readonly refresh: () => Promise<void> = freshCoalescer(() => this.#doRefresh());

  async #doRefresh(): Promise<void> {
    // Only segments known before the listing can be missing from it; one registered meanwhile
    // (a compaction's output, a new active segment) is simply newer than the listing.
    const known = [...this.#segments.values()];
    let dirents;
    try {
      dirents = await readdir(this.#dir, { withFileTypes: true });
    } catch (error) {
      throw mapFsError(error, 'listing the segments directory');
    }
    const present = new Set<string>();
    for (const dirent of dirents) {
      const match = SEGMENT_NAME.exec(dirent.name);
      // A symlink or directory with a segment's name is not ours to follow.
      if (match === null || !dirent.isFile()) continue;
      present.add(dirent.name);
      // Our own segments are registered only by the code that creates them: a placeholder made here
      // for a segment still being created could be taken for a sealed one and compacted away.
      if (match[1] === this.writerId) continue;
      if (!this.#segments.has(dirent.name)) this.#segments.set(dirent.name, Segment.fromName(dirent.name)!);
    }
    for (const seg of [...this.#segments.values()]) {
      if (seg.writer === this.writerId || seg.complete || !present.has(seg.name)) continue;
      await this.#scanTail(seg);
    }
    const gone = known.filter((s) => !present.has(s.name) && s !== this.#appender.active && !s.removed);
    if (gone.length > 0) this.#forget(new Set(gone));
  }

  /** Drops segments that no longer exist (their records were copied elsewhere by a compaction). */
  #forget(gone: Set<Segment>): void {
    for (const seg of gone) {
      this.#segments.delete(seg.name);
      seg.removed = true;
      seg.closeIfRetired();
    }
    for (const [key, entry] of this.#index) if (gone.has(entry.seg)) this.#index.delete(key);
  }

  async #scanTail(seg: Segment): Promise<void> {
    this.#sinceCheckpoint += await scanSegmentTail(seg, {
      dir: this.#dir,
      report: this.#report,
      isDead: (writer) => this.#writers.isDead(writer),
      visit: (segment, offset, body) => this.#applyScanned(segment, offset, body),
    });
  }

  #applyScanned(seg: Segment, offset: number, body: Buffer): void {
    const record = decodeBodyHeader(body);
    if (record === undefined) return;
    if (record.time > this.#clock) this.#clock = record.time;
    this.#report.recordsReplayed++;
    const { kind, length, time, gen } = record;
    this.#install(record.key, { kind, seg, offset, length, time, gen });
  }

  /** Latest record wins; on a tie (a compaction's copy of the same record) the one read last. */
  #install(key: string, entry: Entry): void {
    const current = this.#index.get(key);
    if (current === undefined || entry.time > current.time || (entry.time === current.time && entry.gen >= current.gen)) {
      this.#index.set(key, entry);
    }
  }

  /** Starts a compaction in the background when most of the segment bytes are garbage. */
  #maybeCompact(): void {
    if (!this.#options.autoCompact || this.#compacting !== undefined || this.#closed) return;
    const { segmentBytes, liveBytes } = this.spaceUsage();
    const garbage = segmentBytes - liveBytes;
    if (garbage >= this.#options.segmentMaxBytes && garbage >= segmentBytes / 2) {
      // Background work: a failed compaction leaves the old segments in place, nothing is lost.
      void this.compact().catch(() => {});
    }
  }

  /**
   * A record found in another writer's segment may still be only in the
   * page cache (that writer may not have synced yet). Before a put counts it
   * as stored, make it durable ourselves.
   */
  async #ensureDurable(entry: Entry): Promise<void> {
    const seg = entry.seg;
    if (entry.offset + RECORD_HEADER + entry.length <= seg.syncedTo) return;
    const fd = seg.readFd(this.#dir);
    if (fd === undefined) return;
    const target = seg.scannedTo;
    try {
      await fdatasyncAsync(fd);
    } catch (error) {
      throw mapFsError(error, `syncing segments/${seg.name}`);
    }
    seg.syncedTo = Math.max(seg.syncedTo, target);
  }

  #tick(): number {
    const now = Date.now() * 1000;
    this.#clock = now > this.#clock ? now : this.#clock + 1;
    return this.#clock;
  }

  /** Commits one group-commit batch: one write and one fdatasync, then the index learns of the records. */
  async #writeBatch(batch: readonly Pending[]): Promise<void> {
    try {
      await this.#appendBatch(batch);
    } catch (error) {
      for (const item of batch) if (item.kind === KIND_PUT) this.#inflight.delete(item.key);
      throw error;
    }
  }

  async #appendBatch(batch: readonly Pending[]): Promise<void> {
    let bytes = 0;
    for (const item of batch) bytes += item.frame.length;
    const { seg, start } = await this.#appender.append(
      batch.map((p) => p.frame),
      bytes,
      () => this.#maybeCompact(),
    );
    this.#sinceCheckpoint += bytes;
    let offset = start;
    for (const item of batch) {
      this.#install(item.key, { kind: item.kind, seg, offset, length: item.length, time: item.time, gen: 0 });
      if (item.kind === KIND_PUT) this.#inflight.delete(item.key);
      offset += item.frame.length;
    }
    if (this.#sinceCheckpoint >= Math.max(this.#options.checkpointEveryBytes, this.#checkpointBytes)) this.#checkpointSoon();
  }

  /** Resolves when every write queued so far has been synced (or failed). */
  flush(): Promise<void> {
    return this.#commits.flush();
  }

  #checkpointSoon(): void {
    if (this.#checkpointing !== undefined || this.#closed) return;
    // Background work: a failed checkpoint costs only a longer replay at the next open.
    void this.checkpoint().catch(() => {});
  }

  /** Writes the index checkpoint (temp file, fsync, rename, directory fsync). */
  checkpoint(): Promise<void> {
    if (this.#checkpointing !== undefined) return this.#checkpointing;
    const running = this.#writeCheckpoint().finally(() => {
      this.#checkpointing = undefined;
    });
    this.#checkpointing = running;
    return running;
  }

  async #writeCheckpoint(): Promise<void> {
    this.#sinceCheckpoint = 0;
    const buf = snapshotCheckpoint(this.#clock, [...this.#segments.values()], this.#index);
    this.#checkpointBytes = buf.length;
    await saveCheckpoint(this.#root, this.writerId, buf);
  }

  async #loadCheckpoint(): Promise<void> {
    const loaded = await loadCheckpoint(this.#root, this.#report, {
      fdOf: (seg) => seg.readFd(this.#dir),
      register: (seg) => this.#segments.set(seg.name, seg),
      install: (key, entry) => this.#install(key, entry),
    });
    if (loaded === undefined) return;
    this.#checkpointBytes = loaded.bytes;
    if (loaded.clock > this.#clock) this.#clock = loaded.clock;
  }

  /**
   * Rewrites the live records of every sealed segment into one new segment
   * and removes the old ones, reclaiming the space of deleted objects (see
   * `compaction.ts`). Only one compaction runs at a time across all
   * processes sharing the directory.
   */
  compact(): Promise<CompactionResult> {
    this.#checkOpen();
    this.#compacting ??= compactSegments(this.#compactionHost()).finally(() => {
      this.#compacting = undefined;
    });
    return this.#compacting;
  }

  #compactionHost(): CompactionHost {
    return {
      root: this.#root,
      writerId: this.writerId,
      staleLockMs: this.#options.staleLockMs,
      report: this.#report,
      index: this.#index,
      segments: this.#segments,
      active: () => this.#appender.active,
      refresh: () => this.refresh(),
      allocSeq: () => this.#appender.allocSeq(),
      sealActive: () => {
        if (this.#appender.active !== undefined) this.#appender.seal(this.#appender.active);
      },
      batchSettled: () => this.#commits.batchSettled(),
      isDead: (writer) => this.#writers.isDead(writer),
      fdOf: (seg) => seg.readFd(this.#dir),
      register: (seg) => this.#segments.set(seg.name, seg),
      forget: (gone) => this.#forget(gone),
      checkpoint: () => this.checkpoint(),
    };
  }

  /** Bytes in segment files and bytes of their live records, for deciding when to compact. */
  spaceUsage(): { segmentBytes: number; liveBytes: number; segments: number } {
    let segmentBytes = 0;
    for (const seg of this.#segments.values()) segmentBytes += seg.scannedTo;
    let liveBytes = 0;
    for (const entry of this.#index.values()) if (entry.kind === KIND_PUT) liveBytes += RECORD_HEADER + entry.length;
    return { segmentBytes, liveBytes, segments: this.#segments.size };
  }

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError('the disk store is closed');
    if (this.#options.readOnly) throw new ReadOnlyError('the disk store was opened read-only; open it without readOnly to write');
  }

  /** Waits for queued writes and a running compaction, checkpoints, and releases files. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.flush();
    await this.#compacting?.catch(() => {});
    await this.#checkpointing?.catch(() => {});
    let checkpointError: unknown;
    if (this.#sinceCheckpoint > 0 && !this.#options.readOnly) await this.#writeCheckpoint().catch((error: unknown) => (checkpointError = error));
    for (const seg of this.#segments.values()) {
      if (seg.fd !== undefined) await closeAsync(seg.fd).catch(() => {});
      seg.fd = undefined;
    }
    await this.#appender.discardEmpty();
    if (!this.#options.readOnly) await this.#writers.unregister();
    if (checkpointError !== undefined) throw checkpointError;
  }
}
