/**
 * The disk store's native streams (layout `disk-log`): one {@link StreamLog}
 * per stream under `<root>/streams/`, behind the {@link NativeStreams}
 * capability that {@link EventStreams} looks for.
 *
 * Every {@link DiskStore} of one directory in this process shares the same
 * logs (a registry keyed by the resolved directory, counted by users), so
 * their appends share batches and fdatasyncs instead of taking turns at a
 * lock file as separate processes must. Processes still coordinate through
 * each log's cross-process lease.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { lstat, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { AbortOptions } from '../../abort.js';
import { throwIfAborted } from '../../abort.js';
import { CorruptStoreError, InvalidArgumentError } from '../../errors.js';
import type { NativeStreamEvent, NativeStreams } from '../../data/streams/native.js';
import { errnoOf, mapFsError } from './fs-errors.js';
import { fsyncDir } from './layout.js';
import { noteDropped, type RecoveryReport } from './report.js';
import { MAX_EVENT_BYTES, StreamLog } from './stream-log.js';

/** The layout name recorded in the marker of each disk-native stream. */
export const DISK_STREAM_LAYOUT = 'disk-log';
const SUBDIR = 'streams';
/** A log is rewritten once truncated records take this much, and more than live ones. */
const COMPACT_ABOVE_BYTES = 4 * 1024 * 1024;

/** Options of {@link DiskStreams.open}. */
export interface DiskStreamsOptions {
  readonly staleLockMs: number;
  /** The opening store's recovery report, told of dropped stretches of stream logs. */
  readonly report: RecoveryReport;
  /** @default 4 MiB; tests lower it to see rewrites. */
  readonly compactAboveBytes?: number | undefined;
}

/** The logs of one directory, shared by this process's stores of it. */
class SharedLogs {
  readonly #root: string;
  readonly #dir: string;
  readonly #options: Omit<DiskStreamsOptions, 'report'>;
  readonly #logs = new Map<string, StreamLog>();
  readonly reports = new Set<RecoveryReport>();
  users = 0;
  #ready: Promise<void> | undefined;

  constructor(root: string, options: Omit<DiskStreamsOptions, 'report'>) {
    this.#root = root;
    this.#dir = join(root, SUBDIR);
    this.#options = options;
  }

  log(key: string): StreamLog {
    let log = this.#logs.get(key);
    if (log === undefined) {
      const hex = createHash('sha256').update(key).digest('hex').slice(0, 32);
      log = new StreamLog(this.#dir, hex, key, {
        staleLockMs: this.#options.staleLockMs,
        compactAboveBytes: this.#options.compactAboveBytes ?? COMPACT_ABOVE_BYTES,
        ready: () => (this.#ready ??= this.#makeDir().catch((error: unknown) => {
          this.#ready = undefined;
          throw error;
        })),
        onDropped: (stretch) => {
          for (const report of this.reports) noteDropped(report, stretch);
        },
      });
      this.#logs.set(key, log);
    }
    return log;
  }

  async #makeDir(): Promise<void> {
    try {
      await mkdir(this.#dir);
      await fsyncDir(this.#root);
    } catch (error) {
      if (errnoOf(error) !== 'EEXIST') throw mapFsError(error, `creating ${this.#dir}`);
    }
    const info = await lstat(this.#dir);
    if (!info.isDirectory()) {
      throw new CorruptStoreError(
        `${this.#dir} should be a directory of the store but is ${info.isSymbolicLink() ? 'a symlink' : 'a file'}; ` +
          'the store refuses to follow it. Remove it (and check who planted it), then reopen',
      );
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.#logs.values()].map((log) => log.close()));
  }
}

const registry = new Map<string, SharedLogs>();

/** The native streams of one open {@link DiskStore}. */
export class DiskStreams implements NativeStreams {
  readonly layout = DISK_STREAM_LAYOUT;
  readonly writable = true;
  readonly #root: string;
  readonly #shared: SharedLogs;
  readonly #report: RecoveryReport;
  readonly #check: (options: AbortOptions | undefined) => void;
  #closed = false;

  private constructor(root: string, shared: SharedLogs, report: RecoveryReport, check: (options: AbortOptions | undefined) => void) {
    this.#root = root;
    this.#shared = shared;
    this.#report = report;
    this.#check = check;
  }

  /**
   * The native streams of the store in `root` (resolved), sharing logs with
   * this process's other stores of it; `check` throws if the store is
   * closed or the signal fired.
   */
  static open(root: string, options: DiskStreamsOptions, check: (options: AbortOptions | undefined) => void): DiskStreams {
    let shared = registry.get(root);
    if (shared === undefined) {
      shared = new SharedLogs(root, options);
      registry.set(root, shared);
    }
    shared.users++;
    shared.reports.add(options.report);
    return new DiskStreams(root, shared, options.report, check);
  }

  append(stream: string, event: Uint8Array, options?: AbortOptions): Promise<number> {
    this.#check(options);
    if (event.length > MAX_EVENT_BYTES) {
      return Promise.reject(
        new InvalidArgumentError(
          `event of ${event.length} bytes is larger than the ${MAX_EVENT_BYTES} bytes a disk stream event may have; store it as an object and append its hash`,
        ),
      );
    }
    return this.#shared.log(stream).append(event, options?.signal);
  }

  async lastSeq(stream: string, options?: AbortOptions): Promise<number> {
    this.#check(options);
    return this.#shared.log(stream).lastSeq();
  }

  async *read(stream: string, from: number, limit: number, options?: AbortOptions): AsyncIterable<NativeStreamEvent> {
    this.#check(options);
    for await (const event of this.#shared.log(stream).read(from, limit)) {
      throwIfAborted(options?.signal);
      yield event;
    }
  }

  async truncate(stream: string, upTo: number, options?: AbortOptions): Promise<number> {
    this.#check(options);
    return this.#shared.log(stream).truncate(upTo);
  }

  /** Lets go of the shared logs; the last store of the directory in this process closes them. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#shared.reports.delete(this.#report);
    if (--this.#shared.users > 0) return;
    if (registry.get(this.#root) === this.#shared) registry.delete(this.#root);
    await this.#shared.close();
  }
}
