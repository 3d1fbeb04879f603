/**
 * A cross-process lock: a file created with O_EXCL that names its holder.
 *
 * Node has no flock(), and an O_EXCL create is atomic on every local file
 * system, so the lock is "whoever created the file". A holder that died
 * leaves its file behind; a waiter breaks it when the holder is provably
 * dead (same host and boot, no such pid) or when the file is older than
 * `staleMs` (a pid reused by another process, a holder on another host).
 * Breaking is itself serialised by a `.break` file, and only removes the
 * exact lock that was judged stale, so two waiters never remove a lock that
 * a live process has just taken.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { constants, readFileSync } from 'node:fs';
import { lstat, open, readFile, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { abortError } from '../../abort.js';
import { errnoOf, mapFsError } from './fs-errors.js';

const CREATE_FLAGS = constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW;

/** The kernel boot id, so that a lock left by a previous boot is known stale at once. */
const BOOT_ID: string = (() => {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
})();
const HOST = hostname();

/** Who holds a lock or a writer slot. */
export interface Holder {
  readonly pid: number;
  readonly host: string;
  readonly boot: string;
  readonly token: string;
}

/** The identity this process writes into lock and writer files. */
export function currentHolder(): Holder {
  return { pid: process.pid, host: HOST, boot: BOOT_ID, token: randomBytes(8).toString('hex') };
}

/** Parses holder JSON; undefined if it is not one (empty, torn, foreign). */
export function parseHolder(text: string): Holder | undefined {
  try {
    const value = JSON.parse(text) as Partial<Holder>;
    if (typeof value.pid === 'number' && typeof value.host === 'string' && typeof value.token === 'string') {
      return { pid: value.pid, host: value.host, boot: typeof value.boot === 'string' ? value.boot : '', token: value.token };
    }
  } catch {
    // Falls through: unparseable content is no holder.
  }
  return undefined;
}

/** 'dead' when provably gone; 'unknown' when we cannot tell (another host). */
export function holderState(holder: Holder): 'alive' | 'dead' | 'unknown' {
  if (holder.host !== HOST) return 'unknown';
  if (holder.boot !== '' && BOOT_ID !== '' && holder.boot !== BOOT_ID) return 'dead';
  try {
    process.kill(holder.pid, 0);
    return 'alive';
  } catch (error) {
    return errnoOf(error) === 'EPERM' ? 'alive' : 'dead';
  }
}

/** Options of {@link acquireLock}. */
export interface LockOptions {
  /** Age after which a lock is broken even if its holder seems alive. */
  readonly staleMs: number;
  readonly signal?: AbortSignal | undefined;
}

/** A held lock. */
export interface HeldLock {
  /** Removes the lock file if it is still ours. */
  release(): Promise<void>;
}

/** Takes the lock at `path`, waiting (with jittered backoff) while another holds it. */
export async function acquireLock(path: string, options: LockOptions): Promise<HeldLock> {
  const me = currentHolder();
  const content = JSON.stringify(me);
  for (let attempt = 0; ; attempt++) {
    if (options.signal?.aborted) throw abortError(options.signal);
    try {
      const handle = await open(path, CREATE_FLAGS, 0o644);
      try {
        await handle.writeFile(content);
      } finally {
        await handle.close();
      }
      return { release: () => releaseLock(path, me.token) };
    } catch (error) {
      if (errnoOf(error) !== 'EEXIST') throw mapFsError(error, `taking the lock ${path}`);
    }
    await breakIfStale(path, options.staleMs);
    // Holds last about one fsync, so start polling fast and back off to a few ms.
    const ceiling = Math.min(20, 0.5 * 2 ** Math.min(attempt, 6));
    await new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling));
  }
}

async function releaseLock(path: string, token: string): Promise<void> {
  try {
    const holder = parseHolder(await readFile(path, { encoding: 'utf8', flag: constants.O_RDONLY | constants.O_NOFOLLOW }));
    if (holder?.token === token) await unlink(path);
  } catch (error) {
    if (errnoOf(error) !== 'ENOENT') throw mapFsError(error, `releasing the lock ${path}`);
  }
}

/** How long a lock file may stay empty (its creator between create and write) before it counts as abandoned. */
const EMPTY_GRACE_MS = 2_000;
/** A `.break` file older than this was left by a breaker that died. */
const BREAKER_STALE_MS = 5_000;

async function breakIfStale(path: string, staleMs: number): Promise<void> {
  const seen = await inspect(path, staleMs);
  if (seen === undefined) return;
  const breaker = `${path}.break`;
  try {
    const handle = await open(breaker, CREATE_FLAGS, 0o644);
    await handle.close();
  } catch (error) {
    if (errnoOf(error) !== 'EEXIST') throw mapFsError(error, `breaking the stale lock ${path}`);
    const info = await lstat(breaker).catch(() => undefined);
    if (info !== undefined && Date.now() - info.mtimeMs > BREAKER_STALE_MS) await unlink(breaker).catch(() => {});
    return;
  }
  try {
    // Only remove the very lock we judged stale: someone may have broken it and taken it since.
    const again = await inspect(path, staleMs);
    if (again !== undefined && again === seen) await unlink(path).catch(() => {});
  } finally {
    await unlink(breaker).catch(() => {});
  }
}

/** The lock's raw content if it is stale, else undefined. */
async function inspect(path: string, staleMs: number): Promise<string | undefined> {
  let text: string;
  let ageMs: number;
  try {
    const info = await lstat(path);
    ageMs = Date.now() - info.mtimeMs;
    text = await readFile(path, { encoding: 'utf8', flag: constants.O_RDONLY | constants.O_NOFOLLOW });
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return undefined;
    // A symlink planted at the lock path (ELOOP) is not a lock we can judge; treat it as stale so it is replaced.
    if (errnoOf(error) === 'ELOOP') return '\u0000symlink';
    throw mapFsError(error, `reading the lock ${path}`);
  }
  const holder = parseHolder(text);
  if (holder === undefined) return ageMs > Math.min(EMPTY_GRACE_MS, staleMs) ? text : undefined;
  if (ageMs > staleMs) return text;
  return holderState(holder) === 'dead' ? text : undefined;
}
