/**
 * The right to append to one stream log, between processes: the lock file
 * of `lock.ts`, held across batches for as long as appends keep coming.
 *
 * Taking and releasing that lock costs several file operations (about as
 * much as the fdatasync of a batch), so a lease is kept while the appender
 * is busy and released a moment after it goes idle ({@link LINGER_MS}).
 * Two things bound how long it is kept:
 *
 * - **Other processes waiting.** A waiter keeps a `.want` file's mtime
 *   fresh while it waits; a holder that has had the lease for
 *   {@link YIELD_AFTER_MS} and sees a fresh `.want` releases it and stays
 *   away until the waiter has taken it (or {@link HANDOFF_MS} passed), so
 *   a busy process never starves another.
 * - **Staleness.** `lock.ts` breaks a lock older than `staleMs` even if its
 *   holder lives, so a lease is renewed (released and taken again) well
 *   before that, and a holder that finds it has been paused for longer
 *   than half of it gives the lease up instead of writing on a lease that
 *   may have been broken.
 *
 * @module
 */
import { constants, statSync } from 'node:fs';
import { lstat, lutimes, open } from 'node:fs/promises';
import { acquireLock, type HeldLock } from './lock.js';

/** How long an idle holder keeps the lease, in case the next append is on its way. */
export const LINGER_MS = 4;
/** A holder yields to a waiting process after holding this long. */
export const YIELD_AFTER_MS = 20;
/** How long a yielding holder stays away while a waiter takes the lease. */
export const HANDOFF_MS = 30;
/** A waiter refreshes its `.want` file this often. */
const WANT_REFRESH_MS = 5;
/** A `.want` file touched within this long means a process is waiting. */
const WANT_FRESH_MS = 4 * WANT_REFRESH_MS;
/** Renew a lease held this long, at most. */
const RENEW_MAX_MS = 2_000;

/** One stream log's lease, shared by every appender in this process. */
export class StreamLease {
  readonly #lockPath: string;
  readonly #wantPath: string;
  readonly #staleMs: number;
  #held: HeldLock | undefined;
  /** When the lease was taken: monotonic, and wall-clock (to compare with `.want` mtimes). */
  #since = 0;
  #sinceWall = 0;
  #linger: NodeJS.Timeout | undefined;
  #releasing: Promise<void> = Promise.resolve();

  constructor(lockPath: string, wantPath: string, staleMs: number) {
    this.#lockPath = lockPath;
    this.#wantPath = wantPath;
    this.#staleMs = staleMs;
  }

  /** True while this process holds the lease. */
  get held(): boolean {
    return this.#held !== undefined;
  }

  /**
   * Makes sure the lease is held, taking it (after yielding or renewing, see
   * the module comment) if needed. Resolves true when it was taken now, so
   * the caller must first read what other processes appended meanwhile.
   */
  async take(): Promise<boolean> {
    this.#cancelLinger();
    if (this.#held !== undefined) {
      const age = performance.now() - this.#since;
      if (age < YIELD_AFTER_MS) return false;
      const waiting = this.#someoneWaits();
      if (!waiting && age < this.#renewMs()) return false;
      await this.#release();
      if (waiting) await this.#awaitHandoff();
    }
    await this.#releasing;
    if (this.#held !== undefined) return false;
    const refresher = this.#wantWhileWaiting();
    try {
      this.#held = await acquireLock(this.#lockPath, { staleMs: this.#staleMs });
    } finally {
      refresher.stop();
    }
    this.#since = performance.now();
    this.#sinceWall = Date.now();
    return true;
  }

  /**
   * True if the lease may have been broken by another process because this
   * one was paused (a stopped process, a long GC) for half the stale time:
   * the caller must not write on it, but release it and take it again.
   */
  get suspect(): boolean {
    return this.#held !== undefined && performance.now() - this.#since > this.#staleMs / 2;
  }

  /** Releases the lease after {@link LINGER_MS} unless {@link take} is called first. */
  releaseSoon(): void {
    if (this.#held === undefined || this.#linger !== undefined) return;
    this.#linger = setTimeout(() => {
      this.#linger = undefined;
      void this.#release().catch(() => {});
    }, LINGER_MS);
    this.#linger.unref();
  }

  /** Releases the lease now (if held). */
  async release(): Promise<void> {
    this.#cancelLinger();
    await this.#release();
  }

  #release(): Promise<void> {
    const held = this.#held;
    if (held === undefined) return this.#releasing;
    this.#held = undefined;
    this.#releasing = this.#releasing.then(() => held.release()).catch(() => {});
    return this.#releasing;
  }

  #cancelLinger(): void {
    if (this.#linger !== undefined) clearTimeout(this.#linger);
    this.#linger = undefined;
  }

  #renewMs(): number {
    return Math.min(RENEW_MAX_MS, this.#staleMs / 4);
  }

  /** A `.want` touched after we took the lease, recently: another process is waiting. */
  #someoneWaits(): boolean {
    const info = statSync(this.#wantPath, { throwIfNoEntry: false });
    return info !== undefined && info.mtimeMs > this.#sinceWall && info.mtimeMs > Date.now() - WANT_FRESH_MS;
  }

  /** Waits (a bounded time) until someone else holds the lock, so that they get their turn. */
  async #awaitHandoff(): Promise<void> {
    const until = performance.now() + HANDOFF_MS;
    while (performance.now() < until) {
      if (await lstat(this.#lockPath).then(() => true, () => false)) return;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }

  /** Keeps `.want` fresh until stopped. */
  #wantWhileWaiting(): { stop(): void } {
    let stopped = false;
    const touch = async (): Promise<void> => {
      const now = new Date();
      try {
        await lutimes(this.#wantPath, now, now);
      } catch {
        try {
          const handle = await open(this.#wantPath, constants.O_CREAT | constants.O_WRONLY | constants.O_NOFOLLOW, 0o644);
          await handle.close();
        } catch {
          // Only a hint to the holder: without it the holder still renews and gives others a chance.
        }
      }
    };
    // The first touch only after a first refresh period: a lease free at once needs no announcement.
    const timer = setInterval(() => {
      if (!stopped) void touch();
    }, WANT_REFRESH_MS);
    timer.unref();
    return {
      stop: () => {
        stopped = true;
        clearInterval(timer);
      },
    };
  }
}
