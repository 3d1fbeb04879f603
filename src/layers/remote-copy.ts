/**
 * Checking a copy the remote says it already has.
 *
 * An upload skips an object when the remote answers "present" (`has`,
 * `hasMany`), and a put of a present object is a no-op on every backend (an
 * S3 put with `If-None-Match` cannot replace it). If those bytes are damaged
 * (bit rot, a bad earlier upload by another client), a backup that trusts
 * the answer names bytes nobody checked and can never be restored. So the
 * uploader, push's last check of each ref's object and the CLI's full check
 * read such a copy back and hash it before counting it as uploaded. Only
 * skipped objects pay this (one read each): objects this session uploaded
 * itself, and objects an earlier push confirmed (no longer journaled), are
 * not read again.
 *
 * The read is a stream hashed as it goes, so memory stays at one chunk
 * whatever the remote sends, and it stops as soon as the remote sends more
 * than the object's known size.
 *
 * @module
 */
import type { AbortOptions } from '../abort.js';
import { IntegrityError, NotFoundError } from '../errors.js';
import { createHasher, type Hash } from '../hash.js';
import type { Store } from '../store.js';

/** What reading back a remote copy found. */
export type RemoteCopyState = 'intact' | 'missing' | IntegrityError;

/** Errors made by {@link damagedRemoteCopy}: told apart from other integrity failures (say, bytes changed in transit). */
const damaged = new WeakSet<Error>();

/**
 * The error for a remote copy whose bytes do not match its hash: names the
 * object and what to do. Repair needs delete rights because a put cannot
 * overwrite an object the remote already holds.
 */
export function damagedRemoteCopy(hash: Hash, detail: string, cause?: unknown): IntegrityError {
  const error = new IntegrityError(
    `the remote holds damaged bytes for ${hash.toString()} (${detail}); run \`cairn verify --repair\` with delete rights to replace them. ` +
      'Nothing that depends on this object was published',
    { key: hash.toString(), cause },
  );
  damaged.add(error);
  return error;
}

/** Whether `error` reports a damaged remote copy (see {@link damagedRemoteCopy}). */
export function isDamagedRemoteCopy(error: unknown): error is IntegrityError {
  return error instanceof IntegrityError && damaged.has(error);
}

/**
 * Reads `hash` back from `remote` and checks its bytes: `intact`,
 * `missing` (gone since the remote said it had it: upload it), or the
 * {@link IntegrityError} to report. Other errors (network, permission) are
 * thrown for the caller's retry policy.
 *
 * @example
 * ```ts
 * const state = await checkRemoteCopy(remote, hash, size);
 * if (state instanceof IntegrityError) throw state;
 * ```
 */
export async function checkRemoteCopy(remote: Store, hash: Hash, size: number | undefined, options?: AbortOptions): Promise<RemoteCopyState> {
  const hasher = createHasher(hash.algorithm);
  let read = 0;
  try {
    for await (const chunk of remote.getStream(hash, options)) {
      read += chunk.length;
      if (size !== undefined && read > size) return damagedRemoteCopy(hash, `it sends more than the ${size} bytes the object has`);
      hasher.update(chunk);
    }
  } catch (error) {
    if (error instanceof NotFoundError) return 'missing';
    // A backend that verifies on read (disk, S3) reports the damage itself.
    if (error instanceof IntegrityError) return damagedRemoteCopy(hash, 'its bytes fail their hash check', error);
    throw error;
  }
  const actual = hasher.digest();
  if (!actual.equals(hash)) return damagedRemoteCopy(hash, `its bytes hash to ${actual.toString()}`);
  return 'intact';
}

/**
 * {@link checkRemoteCopy} for several objects, `concurrency` at a time;
 * results in input order.
 */
export async function checkRemoteCopies(
  remote: Store,
  objects: ReadonlyArray<{ readonly hash: Hash; readonly size?: number | undefined }>,
  options?: AbortOptions & { concurrency?: number },
): Promise<RemoteCopyState[]> {
  const results = new Array<RemoteCopyState>(objects.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < objects.length) {
      const at = next++;
      const { hash, size } = objects[at]!;
      results[at] = await checkRemoteCopy(remote, hash, size, options);
    }
  };
  const workers = Math.max(1, Math.min(options?.concurrency ?? 8, objects.length));
  await Promise.all(Array.from({ length: workers }, worker));
  return results;
}

/**
 * Of `hashes` (with `present` as the remote's `hasMany` answered), those the
 * remote still needs: the ones it lacks, and the ones it said it had but no
 * longer has on read. Every copy it has is read back and hashed first; a
 * damaged one is thrown (see {@link damagedRemoteCopy}).
 *
 * @example
 * ```ts
 * const present = await remote.hasMany(batch);
 * for (const hash of await stillNeeded(remote, batch, present)) await remote.put(local.getStream(hash));
 * ```
 */
export async function stillNeeded(
  remote: Store,
  hashes: readonly Hash[],
  present: readonly boolean[],
  options?: AbortOptions,
): Promise<Hash[]> {
  const found = hashes.filter((_, k) => present[k] === true);
  const states = await checkRemoteCopies(remote, found.map((hash) => ({ hash })), options);
  const damaged = states.find((state) => state instanceof IntegrityError);
  if (damaged !== undefined) throw damaged;
  const gone = new Set(found.filter((_, k) => states[k] === 'missing'));
  return hashes.filter((hash, k) => present[k] !== true || gone.has(hash));
}
