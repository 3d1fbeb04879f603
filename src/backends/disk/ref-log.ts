/**
 * Refs: an append-only log of CRC-framed records (`refs/log`, format in
 * `ref-record.ts`), written only under a cross-process lock (`refs/lock`),
 * replayed into an in-memory map.
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
 * **Damage versus a torn write.** A writer appends whole records with one
 * write, fdatasyncs, and only then acknowledges; it holds the lock
 * throughout. So a crash mid-append can leave only a *proper prefix of one
 * record* after the last good one: right magic, a declared length (and a
 * name length agreeing with it) that runs past the end of the file. That
 * torn tail was never acknowledged: it is ignored, and the next writer,
 * holding the lock (so no live writer is mid-append), truncates it before
 * appending. Everything else that fails to parse is *damage* to bytes that
 * may have been acknowledged: a record whose full extent is present but
 * fails its CRC (bit rot), bytes after the last record that do not start
 * like one, or a bad stretch between good records. Damage is never
 * truncated or read past as if the older value were the truth: it is listed
 * in the recovery report (`corrupt`, `refLogDamaged`), and every ref whose
 * newest intact record comes before the damage may have a newer value in
 * it, so reading it (get, list, a swap) throws {@link CorruptStoreError}
 * until the ref is written again (a set or delete appends a record after
 * the damage) or the store is opened with `repair`, which rewrites the log
 * from its intact records, accepting their values on purpose.
 *
 * A store opened `readOnly` never creates, locks, truncates or rewrites
 * anything here; a store opened for writing changes the file only to append
 * and to truncate a torn tail under the lock, never on open.
 *
 * @module
 */
import { constants, read } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CorruptStoreError, ReadOnlyError } from '../../errors.js';
import type { Hash } from '../../hash.js';
import { GroupCommitQueue } from '../../internal/group-commit.js';
import { ListenerSet } from '../../internal/listeners.js';
import type { CasResult, RefEntry, RefListener, RefValue } from '../../store.js';
import { ChangeFeed } from './change-feed.js';
import { closeAsync, fdatasyncAsync, fstatAsync, ftruncateAsync, openAsync, writeAsync } from './fd.js';
import { freshCoalescer, type FreshCoalesced } from './fresh-coalesce.js';
import { FRAME_HEADER, scanFrames, type DroppedRegion } from './frame.js';
import { errnoOf, mapFsError } from './fs-errors.js';
import { fsyncDir } from './layout.js';
import { acquireLock } from './lock.js';
import { BODY_FIXED, decodeRecord, encodeRecord, isTornRecord, KIND_BASE, KIND_DELETE, KIND_SET, MAX_BODY, MIN_RECORD, REF_MAGIC, seqOf } from './ref-record.js';
import { noteDropped, type RecoveryReport } from './report.js';

const readAsync = promisify(read);
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
  /** Never create, lock, truncate or rewrite the file; writes throw ReadOnlyError. */
  readonly readOnly: boolean;
  /** On open, drop damaged records for good by rewriting the log from its intact ones (under the lock). */
  readonly repair: boolean;
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
  readonly #commits = new GroupCommitQueue<RefOp, OpResult | CorruptStoreError>({ commit: (ops) => this.#runBatch(ops) });
  #fd = -1;
  #readOffset = 0;
  /** Bytes of a torn tail after `#readOffset` (never damage: that is skipped and remembered). */
  #tailBytes = 0;
  #maxSeq = 0;
  /** The last damaged stretch read, if any: refs not written since may hide a newer value in it. */
  #damage: DroppedRegion | undefined;
  /** Refs with an intact record after `#damage`. */
  readonly #clean = new Set<string>();
  #io: Promise<unknown> = Promise.resolve();
  readonly #feed: ChangeFeed;

  private constructor(root: string, options: RefLogOptions, report: RecoveryReport) {
    this.#dir = join(root, 'refs');
    this.#path = join(this.#dir, LOG_FILE);
    this.#options = options;
    this.#report = report;
    this.#feed = new ChangeFeed(this.#dir, () => void this.catchUp().catch(() => {}));
  }

  /** Opens (creating it if writable) and replays the ref log; changes nothing unless `repair` asks. */
  static async open(root: string, options: RefLogOptions, report: RecoveryReport): Promise<RefLog> {
    const log = new RefLog(root, options, report);
    await log.#openFile();
    try {
      // A torn tail is left alone here: it may be a live writer's append in progress (only the lock
      // can tell), and a reader must not change the file. The next writer truncates it.
      await log.catchUp();
      if (options.repair && !options.readOnly && log.#damage !== undefined) await log.#repair();
    } catch (error) {
      await log.close();
      throw error;
    }
    return log;
  }

  async #openFile(): Promise<void> {
    const flags = this.#options.readOnly ? constants.O_RDONLY | constants.O_NOFOLLOW : constants.O_CREAT | constants.O_RDWR | constants.O_NOFOLLOW;
    this.#readOffset = 0;
    this.#tailBytes = 0;
    try {
      this.#fd = await openAsync(this.#path, flags, 0o644);
      if (!this.#options.readOnly) await fsyncDir(this.#dir);
    } catch (error) {
      if (errnoOf(error) === 'ELOOP') {
        throw new CorruptStoreError('refs/log in the store is a symlink, which the store never follows; remove it and reopen', {
          cause: error,
        });
      }
      // Read-only, and no ref was ever written: no refs (until a writer creates the file).
      if (this.#options.readOnly && errnoOf(error) === 'ENOENT') return;
      throw mapFsError(error, 'opening the ref log refs/log');
    }
  }

  /** The ref's value as of now (after reading what other processes appended). */
  async get(name: string): Promise<RefValue | undefined> {
    await this.catchUp();
    if (this.#suspect(name)) throw this.#damageError(name);
    return this.#state.get(name);
  }

  /** Refs starting with `prefix`, sorted by name. */
  async list(prefix: string): Promise<RefEntry[]> {
    await this.catchUp();
    // A damaged record may hold any name: a listing cannot say which refs it hides or changes.
    if (this.#damage !== undefined) throw this.#damageError(undefined);
    const names = [...this.#state.keys()].filter((n) => n.startsWith(prefix)).sort();
    return names.map((name) => ({ name, ...this.#state.get(name)! }));
  }

  /** Applies a write; resolves once it is durable. */
  async apply(op: RefOp): Promise<OpResult> {
    if (this.#options.readOnly) throw new ReadOnlyError(`the disk store was opened read-only; ${op.type} of ref ${op.name} refused`);
    const result = await this.#commits.enqueue(op);
    if (result instanceof CorruptStoreError) throw result;
    return result;
  }

  #suspect(name: string): boolean {
    return this.#damage !== undefined && !this.#clean.has(name);
  }

  #damageError(name: string | undefined): CorruptStoreError {
    const d = this.#damage!;
    const where = `refs/log has a damaged record (${d.bytes} bytes at offset ${d.offset}) that may hold`;
    const what = name === undefined ? `${where} any ref's newest value, so refs cannot be listed` : `${where} the newest value of ref ${name}, so no older value is given as current`;
    return new CorruptStoreError(
      `${what}. Set the refs again if you know their values, or open the store with repair to accept the last intact values`,
      name === undefined ? {} : { ref: name },
    );
  }

  async #runBatch(all: readonly RefOp[]): Promise<(OpResult | CorruptStoreError)[]> {
    // A swap whose expected value is not the current one fails without the lock: the value we
    // read (after the call began) was the ref's value at that moment, a valid point to fail at.
    await this.catchUp();
    const fails = (op: RefOp): boolean => op.type === 'cas' && !this.#suspect(op.name) && !casMatches(op, this.#state.get(op.name));
    const ops = all.filter((op) => !fails(op));
    const failed = all.map((op) => (fails(op) ? { ok: false, current: this.#state.get(op.name) } : undefined));
    const locked = ops.length === 0 ? [] : await this.#runLocked(ops);
    let next = 0;
    return failed.map((result) => result ?? locked[next++]);
  }

  async #runLocked(ops: readonly RefOp[]): Promise<(OpResult | CorruptStoreError)[]> {
    const lock = await acquireLock(join(this.#dir, 'lock'), { staleMs: this.#options.staleLockMs });
    try {
      await this.catchUp();
      // We hold the lock, so nobody is appending: a torn tail is a dead writer's, never acknowledged.
      if (this.#tailBytes > 0) await this.#exclusive(() => this.#truncateTail());
      const view = new Map<string, RefValue | undefined>();
      const current = (name: string): RefValue | undefined => (view.has(name) ? view.get(name) : this.#state.get(name));
      const frames: Buffer[] = [];
      const results: (OpResult | CorruptStoreError)[] = [];
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
        const suspect = !view.has(op.name) && this.#suspect(op.name);
        if (op.type === 'set') {
          results.push(write(op.name, op.hash));
        } else if (op.type === 'delete') {
          // A damaged record may have set it: record the delete either way.
          if (found !== undefined || suspect) write(op.name, null);
          results.push(undefined);
        } else if (suspect) {
          results.push(this.#damageError(op.name));
        } else {
          if (!casMatches(op, found)) results.push({ ok: false, current: found });
          else if (op.next === null && found === undefined) results.push({ ok: true, current: undefined });
          else results.push({ ok: true, current: write(op.name, op.next) });
        }
      }
      if (frames.length > 0) await this.#append(frames);
      return results;
    } finally {
      await lock.release();
    }
  }

  /** Appends records (under the lock) and reads them back. */
  async #append(frames: readonly Buffer[]): Promise<void> {
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
    // Never while damaged: a rewrite would make the older values the truth for good.
    if (this.#damage === undefined && this.#readOffset > this.#options.rewriteAboveBytes && this.#readOffset > 8 * this.#liveBytes()) {
      await this.#exclusive(() => this.#rewrite());
    }
  }

  /** `repair`: under the lock, rewrites the log from its intact records, dropping the damage for good. */
  async #repair(): Promise<void> {
    const lock = await acquireLock(join(this.#dir, 'lock'), { staleMs: this.#options.staleLockMs });
    try {
      await this.catchUp();
      await this.#exclusive(() => this.#rewrite());
      this.#damage = undefined;
      this.#clean.clear();
      this.#report.refLogDamaged = false;
      this.#report.refLogRepaired = true;
    } finally {
      await lock.release();
    }
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
    this.#damage = undefined;
    this.#clean.clear();
    this.#readOffset = 0;
    this.#tailBytes = 0;
    await this.#readFrom();
    for (const name of this.#listeners.keys()) {
      const now = this.#state.get(name);
      if (before.get(name)?.version !== now?.version) this.#notify(name, now);
    }
  }

  async #readFrom(): Promise<void> {
    if (this.#fd < 0) {
      // Read-only and no log yet: perhaps a writer has created it since.
      await this.#openFile();
      if (this.#fd < 0) return;
    }
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
    const outcome = await scanFrames(
      this.#fd,
      this.#readOffset,
      end,
      REF_MAGIC,
      MAX_BODY,
      (_offset, body) => this.#applyRecord(body),
      (region) => this.#noteDamage(region),
    );
    this.#readOffset = outcome.end;
    this.#tailBytes = outcome.tailBytes;
    if (outcome.tailBytes > 0 && !(await this.#tailIsTorn(outcome.end, outcome.tailBytes))) {
      // Damage at the end: remembered, and read past, so that records appended after it are read.
      this.#noteDamage({ offset: outcome.end, bytes: outcome.tailBytes });
      this.#readOffset = end;
      this.#tailBytes = 0;
    }
  }

  async #tailIsTorn(at: number, bytes: number): Promise<boolean> {
    // A torn tail is shorter than one record; anything longer is damage without reading it.
    if (bytes >= FRAME_HEADER + MAX_BODY) return false;
    const buf = Buffer.alloc(bytes);
    let filled = 0;
    while (filled < bytes) {
      const { bytesRead } = await readAsync(this.#fd, buf, filled, bytes - filled, at + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return isTornRecord(buf.subarray(0, filled));
  }

  #noteDamage(region: DroppedRegion): void {
    noteDropped(this.#report, { file: 'refs/log', ...region, reason: 'corrupt' });
    this.#damage = region;
    this.#clean.clear();
    this.#report.refLogDamaged = true;
    // The stretch may hold records; each took one sequence number, so none of theirs is handed out again.
    this.#maxSeq += Math.floor(region.bytes / MIN_RECORD) + 1;
  }

  #applyRecord(body: Buffer): void {
    const seq = seqOf(body);
    if (seq === undefined) return;
    if (seq > this.#maxSeq) this.#maxSeq = seq;
    this.#report.recordsReplayed++;
    const record = decodeRecord(body);
    if (record === undefined || record.kind === KIND_BASE) return;
    let value: RefValue | undefined;
    if (record.kind === KIND_SET) {
      value = { hash: record.hash, version: String(seq) };
      this.#state.set(record.name, value);
    } else {
      this.#state.delete(record.name);
    }
    if (this.#damage !== undefined) this.#clean.add(record.name);
    this.#notify(record.name, value);
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
    this.#feed.start(intervalMs);
    signal?.addEventListener(
      'abort',
      () => {
        off();
        if (set.size === 0 && this.#listeners.get(name) === set) this.#listeners.delete(name);
        if (this.#listeners.size === 0) this.#feed.stop();
      },
      { once: true },
    );
  }

  /** Waits for queued writes. */
  flush(): Promise<void> {
    return this.#commits.flush();
  }

  /** Stops watchers and closes the file. */
  async close(): Promise<void> {
    await this.flush();
    this.#feed.stop();
    this.#listeners.clear();
    await this.catchUp.settled();
    if (this.#fd >= 0) await closeAsync(this.#fd).catch(() => {});
    this.#fd = -1;
  }
}

function casMatches(op: { readonly expected: Hash | null }, found: RefValue | undefined): boolean {
  return op.expected === null ? found === undefined : found !== undefined && found.hash.equals(op.expected);
}
