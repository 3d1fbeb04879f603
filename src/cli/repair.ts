/**
 * `cairn verify --repair`: replaces objects one store holds with damaged
 * bytes by a verified copy from the other store. A store keeps the first
 * bytes put under a hash ("already exists" is success), so the damaged
 * object is deleted first and then put again: the remote must grant delete
 * rights (on S3, `s3:DeleteObject`). The new copy is read back and checked.
 *
 * @module
 */
import type { AbortOptions } from '../abort.js';
import { IntegrityError, NotFoundError } from '../errors.js';
import { parseHash } from '../hash.js';
import type { Store } from '../store.js';

/** What a repair did, by hash text. */
export interface RepairResult {
  readonly repaired: string[];
  /** Hashes that could not be repaired, each with why. */
  readonly failed: Array<{ readonly hash: string; readonly reason: string }>;
}

async function drain(store: Store, hash: string, options: AbortOptions): Promise<void> {
  for await (const _ of store.getStream(hash, options)) {
    // read to the end: the store checks the hash as the last piece passes
  }
}

/**
 * Replaces each of `damaged` in `target` with the copy in `source`, which
 * must itself verify. Never deletes an object for which no good copy was found.
 *
 * @example
 * ```ts
 * const { repaired, failed } = await repairObjects(remote, local, result.corrupt);
 * ```
 */
export async function repairObjects(target: Store, source: Store, damaged: readonly string[], options: AbortOptions = {}): Promise<RepairResult> {
  const repaired: string[] = [];
  const failed: Array<{ hash: string; reason: string }> = [];
  for (const hash of damaged) {
    try {
      await drain(source, hash, options);
    } catch (error) {
      const reason =
        error instanceof NotFoundError ? 'no copy in the other store' : error instanceof IntegrityError ? 'the other copy is damaged too' : (error as Error).message;
      failed.push({ hash, reason });
      continue;
    }
    try {
      await target.delete(hash, options);
      // Streamed: a large object is copied in bounded memory, and the put checks the hash again.
      await target.put(source.getStream(hash, options), { algorithm: parseHash(hash).algorithm, signal: options.signal });
      await drain(target, hash, options);
      repaired.push(hash);
    } catch (error) {
      failed.push({ hash, reason: `${(error as Error).message} (repair needs rights to delete and write objects)` });
    }
  }
  return { repaired, failed };
}
