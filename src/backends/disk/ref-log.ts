/**
 * Refs: an append-only log of CRC-framed records (`refs/log`), written only
 * under a cross-process lock (`refs/lock`), replayed into an in-memory map.
 *
 * Why a log and not a file per ref: ref names never become paths, so no
 * name, whatever its bytes, can reach outside the store (or collide, as
 * `a` and `a/b` would as files); a compare-and-swap is "take the lock, read
 * what others appended, decide, append, fdatasync, unlock", atomic across
 * processes; and swaps queued in one process share one lock and one sync
 * (group commit). Every change is a record, so watchers see each one in
 * order; other processes' records are picked up on each read, on file
 * events, and by polling.
 *
 * Versions are the record's sequence number, which only grows (a rewrite of
 * the log keeps the highest one), so a version never repeats for a ref.
 *
 * Record body: `kind u8 | algorithm u8 | name length u16 | seq f64 | digest[32] | name`.
 * A base record (kind 3) starts a rewritten log and carries the sequence only.
 *
 * @module
 */
import {
  constants,
  watch,
  type FSWatcher,
} from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { openAsync, closeAsync, writeAsync, fdatasyncAsync, fstatAsync, ftruncateAsync } from './fd.js';
import { Hash, type HashAlgorithm } from '../../hash.js';
import { isValidRefName, MAX_REF_NAME_BYTES } from '../../ref-name.js';
import type { CasResult, RefEntry, RefListener, RefValue } from '../../store.js';
import { CorruptStoreError } from '../../errors.js';
import { GroupCommitQueue } from '../../internal/group-commit.js';
import { ListenerSet } from '../../internal/listeners.js';
import { errnoOf, mapFsError } from './fs-errors.js';
import { freshCoalescer, type FreshCoalesced } from './fresh-coalesce.js';
import { FRAME_HEADER, scanFrames, sealFrame } from './frame.js';
import { fsyncDir } from './layout.js';
import { acquireLock } from './lock.js';
import { noteDropped, type RecoveryReport } from './report.js';


/** 'CREF' little endian. */
const REF_MAGIC = 0x46455243;
const KIND_SET = 1;
const KIND_DELETE = 2;
const KIND_BASE = 3;
const BODY_FIXED = 44;
const MAX_BODY = BODY_FIXED + MAX_REF_NAME_BYTES;
const ALGO_CODE: Record<HashAlgorithm, number> = { sha256: 1, blake3: 2 };
const ALGO_NAME: readonly (HashAlgorithm | undefined)[] = [undefined, 'sha256', 'blake3'];
const LOG_FILE = 'log';

/** A write to apply under the lock. */
export type RefOp =
  | { readonly type: 'set'; readonly name: string; readonly hash: Hash }
  | { readonly type: 'delete'; readonly name: string }
  | { readonly type: 'cas'; readonly name: string; readonly expected: Hash | null; readonly next: Hash | null };

type OpResult = RefValue | undefined | CasResult;

/** Tuning of the ref log. */
export interface RefLogOptions {
  readonly staleLockMs: number;
  /** Rewrite the log once it is larger than this and mostly superseded records. */
  readonly rewriteAboveBytes: number;
}

/** The refs of one open store. */
export class RefLog {
  readonly #dir: string;
  readonly #path: string;
  readonly #options: RefLogOptions;
  readonly #report: RecoveryReport;
  readonly #state = new Map<string, RefValue>();
  readonly #listeners = new Map<string, ListenerSet<RefValue | undefined>>();
  /** Swaps queued in this process share one lock and one fdatasync. */
  readonly #commits = new GroupCommitQueue<RefOp, OpResult>({ commit: (ops) => this.#runBatch(ops) });
  #fd = -1;
  #readOffset = 0;
  #tailBytes = 0;
  #maxSeq = 0;
  #io: Promise<unknown> = Promise.resolve();
  #watcher: FSWatcher | undefined;
  #poller: NodeJS.Timeout | undefined;
  #pollMs = Infinity;

  private constructor(root: string, options: RefLogOptions, report: RecoveryReport) {
    this.#dir = join(root, 'refs');
    this.#path = join(this.#dir, LOG_FILE);
    this.#options = options;
    this.#report = report;
  }

  /** Opens (creating if needed) and replays the ref log; repairs a torn tail left by a dead writer. */
  static async open(root: string, options: RefLogOptions, report: RecoveryReport): Promise<RefLog> {
    const log = new RefLog(root, options, report);
    await log.#openFile();
    try {
      await log.catchUp();
      if (log.#tailBytes > 0) {
        // Bytes after the last good record: a writer mid-append, or one that died. Only the lock can tell.
        const lock = await acquireLock(join(log.#dir, 'lock'), { staleMs: options.staleLockMs });
        try {
          await log.#repairTail();
        } finally {
          await lock.release();
        }
      }
    } catch (error) {
      await log.close();
      throw error;
    }
    return log;
  }

  async #openFile(): Promise<void> {
    try {
      this.#fd = await openAsync(this.#path, constants.O_CREAT | constants.O_RDWR | constants.O_NOFOLLOW, 0o644);
      await fsyncDir(this.#dir);
    } catch (error) {
      if (errnoOf(error) === 'ELOOP') {
        throw new CorruptStoreError('refs/log in the store is a symlink, which the store never follows; remove it and reopen', {
          cause: error,
        });
      }
      throw mapFsError(error, 'opening the ref log refs/log');
    }
    this.#readOffset = 0;
    this.#tailBytes = 0;
  }

  /** The ref's value as of now (after reading what other processes appended). */
  async get(name: string): Promise<RefValue | undefined> {
    await this.catchUp();
    return this.#state.get(name);
  }

  /** Refs starting with `prefix`, sorted by name. */
  async list(prefix: string): Promise<RefEntry[]> {
    await this.catchUp();
    const names = [...this.#state.keys()].filter((n) => n.startsWith(prefix)).sort();
    return names.map((name) => ({ name, ...this.#state.get(name)! }));
  }

  /** Applies a write; resolves once it is durable. */
  apply(op: RefOp): Promise<OpResult> {
    return this.#commits.enqueue(op);
  }

  async #runBatch(all: readonly RefOp[]): Promise<OpResult[]> {
    // A swap whose expected value is not the current one fails without the lock: the value we
    // read (after the call began) was the ref's value at that moment, a valid point to fail at.
    await this.catchUp();
    const early = all.map((op) => (op.type === 'cas' && !casMatches(op, this.#state.get(op.name)) ? this.#state.get(op.name) : null));
    const ops = all.filter((_, i) => early[i] === null);
    if (ops.length === 0) return early.map((current) => ({ ok: false, current: current ?? undefined }));
    const locked = await this.#runLocked(ops);
    let next = 0;
    return early.map((current) => (current === null ? locked[next++] : { ok: false, current }));
  }

  async #runLocked(ops: readonly RefOp[]): Promise<OpResult[]> {
    const lock = await acquireLock(join(this.#dir, 'lock'), { staleMs: this.#options.staleLockMs });
    try {
      await this.catchUp();
      // We hold the lock, so nobody is appending: unparsed bytes are a dead writer's torn tail.
      if (this.#tailBytes > 0) await this.#repairTail();
      const view = new Map<string, RefValue | undefined>();
      const current = (name: string): RefValue | undefined => (view.has(name) ? view.get(name) : this.#state.get(name));
      const frames: Buffer[] = [];
      const results: OpResult[] = [];
      let seq = this.#maxSeq;
      const write = (name: string, hash: Hash | null): RefValue | undefined => {
        seq++;
        frames.push(encodeRecord(hash === null ? KIND_DELETE : KIND_SET, name, seq, hash));
        const value = hash === null ? undefined : { hash, version: String(seq) };
        view.set(name, value);
        return value;
      };
      for (const op of ops) {
        const found = current(op.name);
        if (op.type === 'set') {
          results.push(write(op.name, op.hash));
        } else if (op.type === 'delete') {
          if (found !== undefined) write(op.name, null);
          results.push(undefined);
        } else {
          if (!casMatches(op, found)) results.push({ ok: false, current: found });
          else if (op.next === null && found === undefined) results.push({ ok: true, current: undefined });
          else results.push({ ok: true, current: write(op.name, op.next) });
        }
      }
      if (frames.length > 0) {
        const buf = frames.length === 1 ? frames[0]! : Buffer.concat(frames);
        // We hold the lock and have read to the end, so the end of what we read is the end of the file.
        const at = this.#readOffset;
        try {
          let done = 0;
          while (done < buf.length) done += (await writeAsync(this.#fd, buf, done, buf.length - done, at + done)).bytesWritten;
          await fdatasyncAsync(this.#fd);
        } catch (error) {
          // Take back what may have landed, so that a failed write is not later read as done.
          await ftruncateAsync(this.#fd, at).catch(() => {});
          await this.#exclusive(() => this.#reload()).catch(() => {});
          throw mapFsError(error, 'appending to the ref log refs/log');
        }
        // Read our own records back through the same path as everyone else's: one place updates state and watchers.
        await this.catchUp();
        if (this.#readOffset > this.#options.rewriteAboveBytes && this.#readOffset > 8 * this.#liveBytes()) {
          await this.#exclusive(() => this.#rewrite());
        }
      }
      return results;
    } finally {
      await lock.release();
    }
  }

  async #repairTail(): Promise<void> {
    await this.catchUp();
    await this.#exclusive(() => this.#truncateTail());
  }

  async #truncateTail(): Promise<void> {
    if (this.#tailBytes === 0) return;
    noteDropped(this.#report, { file: 'refs/log', offset: this.#readOffset, bytes: this.#tailBytes, reason: 'torn-tail' });
    try {
      await ftruncateAsync(this.#fd, this.#readOffset);
      await fdatasyncAsync(this.#fd);
    } catch (error) {
      throw mapFsError(error, 'truncating the torn tail of refs/log');
    }
    this.#tailBytes = 0;
  }

  #liveBytes(): number {
    let bytes = FRAME_HEADER + BODY_FIXED;
    for (const name of this.#state.keys()) bytes += FRAME_HEADER + BODY_FIXED + name.length;
    return bytes;
  }

  /** Replaces the log by one holding only current values (under the lock). Others notice by nlink = 0. */
  async #rewrite(): Promise<void> {
    const frames = [encodeRecord(KIND_BASE, '', this.#maxSeq, null)];
    for (const [name, value] of this.#state) frames.push(encodeRecord(KIND_SET, name, Number(value.version), value.hash));
    const buf = Buffer.concat(frames);
    const temp = join(this.#dir, `log.${process.pid}.tmp`);
    let fd: number | undefined;
    try {
      fd = await openAsync(temp, constants.O_CREAT | constants.O_TRUNC | constants.O_RDWR | constants.O_NOFOLLOW, 0o644);
      let done = 0;
      while (done < buf.length) done += (await writeAsync(fd, buf, done, buf.length - done, done)).bytesWritten;
      await fdatasyncAsync(fd);
      await rename(temp, this.#path);
      await fsyncDir(this.#dir);
    } catch (error) {
      if (fd !== undefined) await closeAsync(fd).catch(() => {});
      await unlink(temp).catch(() => {});
      throw mapFsError(error, 'rewriting the ref log');
    }
    await closeAsync(this.#fd).catch(() => {});
    this.#fd = fd;
    this.#readOffset = buf.length;
    this.#tailBytes = 0;
  }

  /**
   * Reads records appended since the last look. Concurrent callers share a
   * read, but never one that began before they called.
   */
  readonly catchUp: FreshCoalesced = freshCoalescer(() => this.#exclusive(() => this.#readFrom()));

  /** Runs `fn` alone among the operations that move the read position or swap the file. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#io.then(fn, fn);
    this.#io = run.catch(() => {});
    return run;
  }

  /** Forgets everything read and reads the log again from the start, telling watchers what changed. */
  async #reload(): Promise<void> {
    const before = new Map(this.#state);
    this.#state.clear();
    this.#readOffset = 0;
    this.#tailBytes = 0;
    await this.#readFrom();
    for (const name of this.#listeners.keys()) {
      const now = this.#state.get(name);
      if (before.get(name)?.version !== now?.version) this.#notify(name, now);
    }
  }

  async #readFrom(): Promise<void> {
    let info;
    try {
      info = await fstatAsync(this.#fd);
    } catch (error) {
      throw mapFsError(error, 'reading the ref log refs/log');
    }
    if (info.nlink === 0) {
      // Another process rewrote the log: start over on the new file.
      await closeAsync(this.#fd).catch(() => {});
      await this.#openFile();
      await this.#reload();
      return;
    }
    const end = info.size;
    if (end <= this.#readOffset) {
      this.#tailBytes = 0;
      return;
    }
    const outcome = await scanFrames(this.#fd, this.#readOffset, end, REF_MAGIC, MAX_BODY, (_offset, body) => this.#applyRecord(body));
    for (const region of outcome.dropped) noteDropped(this.#report, { file: 'refs/log', ...region, reason: 'corrupt' });
    this.#readOffset = outcome.end;
    this.#tailBytes = outcome.tailBytes;
  }

  #applyRecord(body: Buffer): void {
    if (body.length < BODY_FIXED) return;
    const kind = body[0]!;
    const nameLength = body.readUInt16LE(2);
    const seq = body.readDoubleLE(4);
    if (body.length !== BODY_FIXED + nameLength) return;
    if (seq > this.#maxSeq) this.#maxSeq = seq;
    this.#report.recordsReplayed++;
    if (kind === KIND_BASE) return;
    const name = body.toString('latin1', BODY_FIXED);
    if (!isValidRefName(name)) return;
    let value: RefValue | undefined;
    if (kind === KIND_SET) {
      const algorithm = ALGO_NAME[body[1]!];
      if (algorithm === undefined) return;
      value = { hash: Hash.fromDigest(algorithm, body.subarray(12, 44)), version: String(seq) };
      this.#state.set(name, value);
    } else if (kind === KIND_DELETE) {
      this.#state.delete(name);
    } else {
      return;
    }
    this.#notify(name, value);
  }

  #notify(name: string, value: RefValue | undefined): void {
    this.#listeners.get(name)?.emit(value);
  }

  /** Registers a listener until `signal` fires; starts file events and polling for other processes' writes. */
  async watch(name: string, listener: RefListener, intervalMs: number, signal: AbortSignal | undefined): Promise<void> {
    await this.catchUp();
    let set = this.#listeners.get(name);
    if (set === undefined) this.#listeners.set(name, (set = new ListenerSet()));
    const off = set.add(listener);
    this.#startWatching(intervalMs);
    signal?.addEventListener(
      'abort',
      () => {
        off();
        if (set.size === 0 && this.#listeners.get(name) === set) this.#listeners.delete(name);
        if (this.#listeners.size === 0) this.#stopWatching();
      },
      { once: true },
    );
  }

  #startWatching(intervalMs: number): void {
    const poll = (): void => void this.catchUp().catch(() => {});
    if (this.#watcher === undefined) {
      try {
        // Watch the directory: a rewrite replaces the file, which a watch on the file itself would miss.
        this.#watcher = watch(this.#dir, { persistent: true }, poll);
        this.#watcher.on('error', () => this.#watcher?.close());
      } catch {
        // No fs events here (some network file systems): polling alone covers it.
      }
    }
    if (intervalMs < this.#pollMs) {
      if (this.#poller !== undefined) clearInterval(this.#poller);
      this.#pollMs = intervalMs;
      this.#poller = setInterval(poll, Math.max(5, intervalMs));
    }
  }

  #stopWatching(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
    if (this.#poller !== undefined) clearInterval(this.#poller);
    this.#poller = undefined;
    this.#pollMs = Infinity;
  }

  /** Waits for queued writes. */
  flush(): Promise<void> {
    return this.#commits.flush();
  }

  /** Stops watchers and closes the file. */
  async close(): Promise<void> {
    await this.flush();
    this.#stopWatching();
    this.#listeners.clear();
    await this.catchUp.settled();
    if (this.#fd >= 0) await closeAsync(this.#fd).catch(() => {});
    this.#fd = -1;
  }
}

function casMatches(op: { readonly expected: Hash | null }, found: RefValue | undefined): boolean {
  return op.expected === null ? found === undefined : found !== undefined && found.hash.equals(op.expected);
}

function encodeRecord(kind: number, name: string, seq: number, hash: Hash | null): Buffer {
  const nameBytes = Buffer.from(name, 'latin1');
  const frame = Buffer.alloc(FRAME_HEADER + BODY_FIXED + nameBytes.length);
  const p = FRAME_HEADER;
  frame[p] = kind;
  frame[p + 1] = hash === null ? 0 : ALGO_CODE[hash.algorithm];
  frame.writeUInt16LE(nameBytes.length, p + 2);
  frame.writeDoubleLE(seq, p + 4);
  if (hash !== null) frame.write(hash.hex, p + 12, 32, 'hex');
  nameBytes.copy(frame, p + BODY_FIXED);
  sealFrame(frame, 0, REF_MAGIC, BODY_FIXED + nameBytes.length);
  return frame;
}
