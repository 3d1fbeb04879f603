/**
 * One event stream kept natively by the disk store: an append-only file of
 * CRC-framed records (`streams/<hex>.log`, the hex derived from the stream
 * key, never the key itself), appended only while holding the stream's
 * cross-process lease (`stream-lease.ts`).
 *
 * Records and the preallocated end are described in `stream-records.ts`.
 *
 * Appends queue up; one drain writes every queued append as one batch with
 * one synchronous write and one fdatasync (group commit), and resolves each
 * with its number only after that sync. Numbers are `last + 1, last + 2...`
 * where `last` is the highest number in the file, read under the lease, so
 * no number is handed out twice, between processes either. After a crash
 * the bytes after the last whole record are a torn tail: the next lease
 * holder cuts them off (and reports them); those appends were never
 * acknowledged, and numbering goes on from the last whole record.
 * Truncation appends a floor record; once truncated records are most of the
 * file (and at least `compactAboveBytes`), it is rewritten (temp file,
 * fdatasync, rename), and other processes notice by `nlink = 0` and reload.
 *
 * In this process, readers see an append once it is durable. Another
 * process may read records written but not yet synced; only a power cut
 * (not a crash of a process) could then undo what it read.
 *
 * @module
 */
import { constants, fstatSync, readSync, writeSync, writevSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import { abortError } from '../../abort.js';
import { BackendError, ClosedError, CorruptStoreError } from '../../errors.js';
import type { NativeStreamEvent } from '../../data/streams/native.js';
import { closeAsync, fdatasyncAsync, fstatAsync, ftruncateAsync, openAsync, readAsync, writeAsync } from './fd.js';
import { FRAME_HEADER, parseFrame } from './frame.js';
import { errnoOf, mapFsError } from './fs-errors.js';
import { fsyncDir } from './layout.js';
import type { DroppedStretch } from './report.js';
import { EventIndex } from './stream-index.js';
import { StreamLease } from './stream-lease.js';
import {
  BODY_FIXED,
  encodeRecords,
  forEachFrame,
  isZero,
  KIND_BASE,
  KIND_EVENT,
  KIND_FLOOR,
  MAX_BODY,
  scanRecords,
  STREAM_MAGIC,
  zeroFrom,
  type RecordSpec,
} from './stream-records.js';

export { MAX_EVENT_BYTES } from './stream-records.js';
/** Events per read of the file, and bytes (at least one event). */
const READ_EVENTS = 64;
const READ_BYTES = 1024 * 1024;
/** Bytes per copy step while rewriting. */
const COPY_CHUNK = 1024 * 1024;
/** Zeros written ahead of the last record: the log's size so far, within these bounds. */
const PREALLOCATE_MIN = 16 * 1024;
const PREALLOCATE_MAX = 1024 * 1024;
const ZEROS = Buffer.alloc(PREALLOCATE_MAX);

/** Tuning and hooks of a stream log. */
export interface StreamLogOptions {
  readonly staleLockMs: number;
  /** Rewrite the file once truncated records take this many bytes, and more than the live ones. */
  readonly compactAboveBytes: number;
  /** Makes sure the streams directory exists (before the first lease). */
  readonly ready: () => Promise<void>;
  /** Told of every stretch of the file dropped: a torn tail cut off, a damaged record skipped. */
  readonly onDropped: (stretch: DroppedStretch) => void;
}

type Op =
  | { readonly kind: 'append'; readonly bytes: Uint8Array; readonly signal: AbortSignal | undefined; settle: Settle<number> }
  | { readonly kind: 'truncate'; readonly upTo: number; settle: Settle<number> };

interface Settle<T> {
  resolve(value: T): void;
  reject(error: unknown): void;
}

/** One stream's log file, shared by every appender and reader of this process. */
export class StreamLog {
  readonly #key: string;
  readonly #dir: string;
  readonly #name: string;
  readonly #path: string;
  readonly #options: StreamLogOptions;
  readonly #lease: StreamLease;
  readonly #index = new EventIndex();
  #fd = -1;
  /** Bytes of the file applied to the state below; a torn or unfinished tail starts here. */
  #end = 0;
  #tail = 0;
  #based = false;
  #seq = 0;
  #floor = 0;
  #queue: Op[] = [];
  #draining: Promise<void> | undefined;
  #io: Promise<unknown> = Promise.resolve();
  #closed = false;

  /** `hex` names the files; `key` is the stream key recorded in the base record. */
  constructor(dir: string, hex: string, key: string, options: StreamLogOptions) {
    this.#key = key;
    this.#dir = dir;
    this.#name = `${hex}.log`;
    this.#path = join(dir, this.#name);
    this.#options = options;
    this.#lease = new StreamLease(join(dir, `${hex}.lock`), join(dir, `${hex}.want`), options.staleLockMs);
  }

  /** Appends one event; resolves to its number once it is durable. */
  append(bytes: Uint8Array, signal?: AbortSignal): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const op: Op = { kind: 'append', bytes, signal, settle: { resolve, reject } };
      if (signal !== undefined) {
        // Still queued when the signal fires: it never happens. Once taken into a batch, it completes.
        const onAbort = (): void => {
          const at = this.#queue.indexOf(op);
          if (at >= 0) {
            this.#queue.splice(at, 1);
            reject(abortError(signal));
          }
        };
        signal.addEventListener('abort', onAbort, { once: true });
        op.settle = {
          resolve: (n) => (signal.removeEventListener('abort', onAbort), resolve(n)),
          reject: (e) => (signal.removeEventListener('abort', onAbort), reject(e)),
        };
      }
      this.#enqueue(op);
    });
  }

  /** Raises the floor to `min(upTo, last number)` if higher; resolves to the floor. */
  truncate(upTo: number): Promise<number> {
    return new Promise<number>((resolve, reject) => this.#enqueue({ kind: 'truncate', upTo, settle: { resolve, reject } }));
  }

  /** The highest number handed out, as of now (0 for a stream without a log yet). */
  async lastSeq(): Promise<number> {
    await this.#exclusive(() => this.#catchUp());
    return this.#seq;
  }

  /** The live events numbered `from` or more, at most `limit`, up to the last number as of the call. */
  async *read(from: number, limit: number): AsyncIterable<NativeStreamEvent> {
    await this.#exclusive(() => this.#catchUp());
    const last = this.#seq;
    let next = from;
    let left = limit;
    while (left > 0 && next <= last) {
      const batch = this.#readBatch(next, last, Math.min(READ_EVENTS, left));
      if (batch.length === 0) return;
      for (const event of batch) yield event;
      left -= batch.length;
      next = batch[batch.length - 1]!.seq + 1;
    }
  }

  /** Waits for queued operations, gives up the lease and closes the file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#draining !== undefined) await this.#draining;
    await this.#lease.release();
    await this.#exclusive(async () => {
      if (this.#fd >= 0) await closeAsync(this.#fd).catch(() => {});
      this.#fd = -1;
    });
  }

  #enqueue(op: Op): void {
    if (this.#closed) {
      op.settle.reject(new ClosedError('the disk store is closed; open it again with openDiskStore'));
      return;
    }
    this.#queue.push(op);
    if (this.#draining === undefined) this.#startDrain();
  }

  #startDrain(): void {
    this.#draining = this.#drain().finally(() => {
      // An op queued after the drain saw an empty queue, but before this ran, needs a new drain.
      if (this.#queue.length > 0) this.#startDrain();
      else {
        this.#draining = undefined;
        this.#lease.releaseSoon();
      }
    });
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      let batch: Op[] = [];
      try {
        await this.#options.ready();
        if (this.#lease.suspect) await this.#lease.release();
        const fresh = await this.#lease.take();
        await this.#exclusive(async () => {
          if (fresh || this.#fd < 0) await this.#prepare();
          const first = this.#queue[0];
          if (first === undefined) return;
          if (first.kind === 'truncate') {
            batch = this.#queue.splice(0, 1);
            first.settle.resolve(await this.#truncate(first.upTo));
            return;
          }
          let count = 0;
          while (count < this.#queue.length && this.#queue[count]!.kind === 'append') count++;
          batch = this.#queue.splice(0, count);
          await this.#appendBatch(batch as Array<Extract<Op, { kind: 'append' }>>);
        });
      } catch (error) {
        for (const op of batch) op.settle.reject(error);
        // The lease may be in doubt after a failure: let the next batch start afresh.
        await this.#lease.release().catch(() => {});
        if (batch.length === 0) for (const op of this.#queue.splice(0)) op.settle.reject(error);
      }
    }
  }

  /**
   * Under the lease: open (creating) the file, read what others appended,
   * cut a torn tail (and anything after the preallocated zeros: bytes of an
   * unsynced batch that a power cut left behind), write the base if new.
   */
  async #prepare(): Promise<void> {
    if (this.#fd < 0) {
      try {
        this.#fd = await openAsync(this.#path, constants.O_CREAT | constants.O_RDWR | constants.O_NOFOLLOW, 0o644);
      } catch (error) {
        throw mapFsError(error, `opening the stream log streams/${this.#name}`);
      }
    }
    const size = await this.#catchUp();
    if (this.#tail > 0 || !(await zeroFrom(this.#fd, this.#end, size))) {
      // We hold the lease and every holder syncs before letting go: these bytes are a dead writer's.
      this.#options.onDropped({ file: `streams/${this.#name}`, offset: this.#end, bytes: size - this.#end, reason: 'torn-tail' });
      try {
        await ftruncateAsync(this.#fd, this.#end);
        await fdatasyncAsync(this.#fd);
      } catch (error) {
        throw mapFsError(error, `cutting the torn tail of streams/${this.#name}`);
      }
      this.#tail = 0;
    }
    if (!this.#based) {
      await this.#write([{ kind: KIND_BASE, a: 0, b: 0, payload: Buffer.from(this.#key) }], 'creating');
      await fsyncDir(this.#dir).catch((error: unknown) => {
        throw mapFsError(error, 'syncing the streams directory');
      });
    }
  }

  async #appendBatch(batch: ReadonlyArray<Extract<Op, { kind: 'append' }>>): Promise<void> {
    const live = batch.filter((op) => {
      if (!op.signal?.aborted) return true;
      op.settle.reject(abortError(op.signal));
      return false;
    });
    if (live.length === 0) return;
    const first = this.#seq + 1;
    await this.#write(
      live.map((op, i) => ({ kind: KIND_EVENT, a: first + i, b: this.#floor, payload: op.bytes })),
      'appending to',
    );
    live.forEach((op, i) => op.settle.resolve(first + i));
  }

  async #truncate(upTo: number): Promise<number> {
    const target = Math.min(upTo, this.#seq);
    if (target <= this.#floor) return this.#floor;
    await this.#write([{ kind: KIND_FLOOR, a: target, b: 0, payload: Buffer.alloc(0) }], 'truncating');
    await this.#compactIfWorthIt();
    return this.#floor;
  }

  /**
   * Writes records at the end of the log (and zeros ahead of them when the
   * preallocated room runs out), syncs, then applies them to the state.
   * On failure it takes back what may have landed.
   */
  async #write(records: readonly RecordSpec[], doing: string): Promise<void> {
    const frames = encodeRecords(records);
    const at = this.#end;
    // Nobody else writes while we hold the lease; if someone did (a lease broken while we were
    // paused), nothing is written on a stale view: the batch fails and the next one reloads.
    const info = fstatSync(this.#fd);
    const header = Buffer.alloc(FRAME_HEADER);
    const seen = info.size > at ? readSync(this.#fd, header, 0, FRAME_HEADER, at) : 0;
    if (info.nlink === 0 || info.size < at || !isZero(header, 0, seen)) {
      throw new BackendError(`streams/${this.#name} changed while this process held its lease; nothing was written, retry`, {
        retryable: true,
      });
    }
    const room = info.size - at;
    const zeros = frames.length <= room ? 0 : Math.min(PREALLOCATE_MAX, Math.max(PREALLOCATE_MIN, at));
    try {
      const parts = zeros === 0 ? [frames] : [frames, ZEROS.subarray(0, zeros)];
      const total = frames.length + zeros;
      let done = writevSync(this.#fd, parts, at);
      if (done < total) {
        const all = Buffer.concat(parts);
        while (done < total) done += writeSync(this.#fd, all, done, total - done, at + done);
      }
      await fdatasyncAsync(this.#fd);
    } catch (error) {
      // Zeros back over what may have landed (keeping the preallocation), or cut it off.
      if (frames.length <= room) await writeAsync(this.#fd, ZEROS, 0, frames.length, at).catch(() => {});
      else await ftruncateAsync(this.#fd, at).catch(() => {});
      throw mapFsError(error, `${doing} the stream log streams/${this.#name}`);
    }
    forEachFrame(frames, at, (offset, body) => this.#apply(offset, body));
    this.#end = at + frames.length;
  }

  /**
   * Reads records appended since the last look (by anyone); reloads a file
   * rewritten by another process. Resolves to the file's size (0 if absent).
   */
  async #catchUp(): Promise<number> {
    if (this.#fd < 0) {
      try {
        this.#fd = await openAsync(this.#path, constants.O_RDWR | constants.O_NOFOLLOW);
      } catch (error) {
        if (errnoOf(error) === 'ENOENT') return 0;
        throw mapFsError(error, `opening the stream log streams/${this.#name}`);
      }
    }
    const info = await fstatAsync(this.#fd).catch((error: unknown) => {
      throw mapFsError(error, `reading the stream log streams/${this.#name}`);
    });
    if (info.nlink === 0 || info.size < this.#end) {
      // Rewritten by another process: start over on the file now at the path.
      await closeAsync(this.#fd).catch(() => {});
      this.#fd = -1;
      this.#reset();
      return this.#catchUp();
    }
    const outcome = await scanRecords(this.#fd, this.#end, info.size, (offset, body) => this.#apply(offset, body));
    for (const region of outcome.dropped) {
      this.#options.onDropped({ file: `streams/${this.#name}`, ...region, reason: 'corrupt' });
    }
    this.#end = outcome.end;
    this.#tail = outcome.tailBytes;
    return info.size;
  }

  #reset(): void {
    this.#end = 0;
    this.#tail = 0;
    this.#based = false;
    this.#seq = 0;
    this.#floor = 0;
    this.#index.clear();
  }

  #apply(offset: number, body: Buffer): void {
    const kind = body[0];
    const a = body.length >= BODY_FIXED ? body.readDoubleLE(8) : Number.NaN;
    const b = body.length >= BODY_FIXED ? body.readDoubleLE(16) : Number.NaN;
    if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || a < 0 || b < 0) throw this.#corrupt(offset, 'a record with bad numbers');
    if (!this.#based) {
      if (kind !== KIND_BASE || offset !== 0) throw this.#corrupt(offset, 'no base record at its start');
      const key = body.toString('utf8', BODY_FIXED);
      if (key !== this.#key) throw this.#corrupt(offset, `the base record of another stream (${JSON.stringify(key.slice(0, 200))})`);
      this.#based = true;
      this.#seq = a;
      this.#floor = Math.min(b, a);
      return;
    }
    if (kind === KIND_EVENT) {
      if (a <= this.#seq) throw this.#corrupt(offset, `event ${a} after event ${this.#seq}`);
      this.#seq = a;
      this.#raiseFloor(b);
      if (a > this.#floor) this.#index.push(a, offset, FRAME_HEADER + body.length);
    } else if (kind === KIND_FLOOR) {
      this.#raiseFloor(a);
    } else {
      throw this.#corrupt(offset, `a record of unknown kind ${String(kind)}`);
    }
  }

  #raiseFloor(floor: number): void {
    const capped = Math.min(floor, this.#seq);
    if (capped <= this.#floor) return;
    this.#floor = capped;
    this.#index.dropThrough(capped);
  }

  #corrupt(offset: number, what: string): CorruptStoreError {
    return new CorruptStoreError(
      `the stream log streams/${this.#name} of stream "${this.#key}" has ${what} at offset ${offset}; ` +
        'it was damaged or written by something else, so the stream is not read',
      { key: this.#key },
    );
  }

  /** Reads up to `count` live events numbered `from`..`last` with one read of the file. */
  #readBatch(from: number, last: number, count: number): NativeStreamEvent[] {
    const index = this.#index;
    const first = index.firstAtOrAbove(Math.max(from, this.#floor + 1));
    let stop = first;
    const start = first < index.end() ? index.offsetAt(first) : 0;
    while (stop < index.end() && stop - first < count && index.seqAt(stop) <= last) {
      const end = index.offsetAt(stop) + index.lengthAt(stop);
      if (stop > first && end - start > READ_BYTES) break;
      stop++;
    }
    if (stop === first) return [];
    const span = index.offsetAt(stop - 1) + index.lengthAt(stop - 1) - start;
    const buf = Buffer.allocUnsafe(span);
    let filled = 0;
    try {
      while (filled < span) {
        const n = readSync(this.#fd, buf, filled, span - filled, start + filled);
        if (n === 0) break;
        filled += n;
      }
    } catch (error) {
      throw mapFsError(error, `reading the stream log streams/${this.#name}`);
    }
    const events: NativeStreamEvent[] = [];
    for (let i = first; i < stop; i++) {
      const pos = index.offsetAt(i) - start;
      const parsed = parseFrame(buf.subarray(0, filled), pos, STREAM_MAGIC, MAX_BODY);
      const seq = index.seqAt(i);
      if (parsed.kind !== 'ok' || buf[pos + FRAME_HEADER] !== KIND_EVENT || buf.readDoubleLE(pos + FRAME_HEADER + 8) !== seq) {
        throw this.#corrupt(index.offsetAt(i), `a damaged record where event ${seq} was`);
      }
      events.push({ seq, bytes: new Uint8Array(buf.buffer, buf.byteOffset + pos + FRAME_HEADER + BODY_FIXED, parsed.end - pos - FRAME_HEADER - BODY_FIXED) });
    }
    return events;
  }

  /** Under the lease: rewrites the file without truncated records once they are most of it. */
  async #compactIfWorthIt(): Promise<void> {
    const live = this.#index.firstOffset() ?? this.#end;
    // The base holds the number just before the first record copied after it, as a scan expects.
    const firstSeq = this.#index.size > 0 ? this.#index.seqAt(this.#index.firstAtOrAbove(0)) : this.#seq + 1;
    const base = encodeRecords([{ kind: KIND_BASE, a: firstSeq - 1, b: this.#floor, payload: Buffer.from(this.#key) }]);
    const oldBase = FRAME_HEADER + BODY_FIXED + Buffer.byteLength(this.#key);
    const dead = live - oldBase;
    if (dead < this.#options.compactAboveBytes || dead <= this.#end - live) return;
    const temp = join(this.#dir, `${this.#name}.rewrite`);
    let fd: number | undefined;
    try {
      fd = await openAsync(temp, constants.O_CREAT | constants.O_TRUNC | constants.O_RDWR | constants.O_NOFOLLOW, 0o644);
      await writeAsync(fd, base, 0, base.length, 0);
      const chunk = Buffer.allocUnsafe(Math.min(COPY_CHUNK, Math.max(1, this.#end - live)));
      for (let from = live; from < this.#end; ) {
        const { bytesRead } = await readAsync(this.#fd, chunk, 0, Math.min(chunk.length, this.#end - from), from);
        if (bytesRead === 0) throw new Error('the stream log ended early while being rewritten');
        let done = 0;
        while (done < bytesRead) done += (await writeAsync(fd, chunk, done, bytesRead - done, base.length + from - live + done)).bytesWritten;
        from += bytesRead;
      }
      await fdatasyncAsync(fd);
      await rename(temp, this.#path);
      await fsyncDir(this.#dir);
    } catch (error) {
      if (fd !== undefined) await closeAsync(fd).catch(() => {});
      throw mapFsError(error, `rewriting the stream log streams/${this.#name}`);
    }
    const old = this.#fd;
    this.#fd = fd;
    this.#index.shift(live - base.length);
    this.#end = base.length + (this.#end - live);
    await closeAsync(old).catch(() => {});
  }

  /** Runs `fn` alone among the operations that read or move the state and the file. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#io.then(fn, fn);
    this.#io = run.catch(() => {});
    return run;
  }
}
