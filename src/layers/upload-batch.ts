/**
 * How one batch of the uploader reaches the remote: objects that may be
 * there already are looked up first (and a copy found there is read back and
 * hashed, see `remote-copy.ts`), the rest go through the remote's batch path
 * (`putMany`, one call per hash algorithm), and a large object whose bytes
 * are not held goes alone, as a stream from the source.
 *
 * @module
 */
import { IntegrityError, NotFoundError } from '../errors.js';
import type { Hash, HashAlgorithm } from '../hash.js';
import type { Store } from '../store.js';
import { checkRemoteCopies, checkRemoteCopy } from './remote-copy.js';
import type { UploadItem } from './uploader-types.js';

/** What the batch functions need of an uploader entry. */
export interface UploadEntry {
  readonly item: UploadItem;
}

/** What the batch functions need of the uploader. */
export interface UploadHost<E extends UploadEntry> {
  readonly remote: Store;
  /** Where objects without held bytes are read from. */
  readonly source: Store | undefined;
  readonly signal: AbortSignal | undefined;
  /** Records an entry as done (`error` undefined: uploaded, or skipped with `how`) or failed. */
  settle(entry: E, error?: unknown, how?: 'uploaded' | 'skipped'): void;
}

/** Uploads one large object as a stream from the source, unless the remote has an intact copy. Throws for the uploader's retry policy. */
export async function uploadStreamed<E extends UploadEntry>(host: UploadHost<E>, entry: E): Promise<void> {
  const signal = host.signal;
  const { hash } = entry.item;
  if (await host.remote.has(hash, { signal })) {
    // Present is not enough: the remote's bytes are read back before this upload counts as done.
    const state = await checkRemoteCopy(host.remote, hash, entry.item.size, { signal });
    if (state === 'intact') {
      host.settle(entry, undefined, 'skipped');
      return;
    }
    if (state !== 'missing') {
      host.settle(entry, state);
      return;
    }
  }
  const stored = await host.remote.put(host.source!.getStream(hash, { signal }), { algorithm: hash.algorithm, signal });
  if (!stored.equals(hash)) throw mismatch(hash, stored);
  host.settle(entry);
}

/** Uploads a batch with one `putMany` per hash algorithm, after looking up (and checking) the objects marked `checkRemote`. Throws for the uploader's retry policy. */
export async function uploadBatch<E extends UploadEntry>(host: UploadHost<E>, batch: E[]): Promise<void> {
  const signal = host.signal;
  let todo = batch;
  const toCheck = todo.filter((e) => e.item.checkRemote === true);
  if (toCheck.length > 0) {
    const present = await host.remote.hasMany(
      toCheck.map((e) => e.item.hash),
      { signal },
    );
    // Present is not enough: each copy the remote has is read back and hashed (see remote-copy.ts).
    // An intact one is skipped, a damaged one fails alone (a put cannot replace it), one gone since is uploaded.
    const found = toCheck.filter((_, i) => present[i]);
    const states = await checkRemoteCopies(host.remote, found.map((e) => e.item), { signal });
    const settled = new Set<E>();
    found.forEach((entry, i) => {
      const state = states[i]!;
      if (state === 'missing') return;
      settled.add(entry);
      host.settle(entry, state === 'intact' ? undefined : state, 'skipped');
    });
    todo = todo.filter((e) => !settled.has(e));
  }
  const bytes = await bytesOf(host, todo);
  // putMany takes one algorithm per call.
  const byAlgorithm = new Map<HashAlgorithm, number[]>();
  todo.forEach((entry, i) => {
    if (bytes[i] === undefined) return;
    const list = byAlgorithm.get(entry.item.hash.algorithm) ?? [];
    list.push(i);
    byAlgorithm.set(entry.item.hash.algorithm, list);
  });
  for (const [algorithm, indexes] of byAlgorithm) {
    const stored = await host.remote.putMany(
      indexes.map((i) => bytes[i]!),
      { algorithm, signal },
    );
    indexes.forEach((i, position) => {
      const expected = todo[i]!.item.hash;
      if (!stored[position]?.equals(expected)) throw mismatch(expected, stored[position]);
    });
  }
  todo.forEach((entry, i) => {
    if (bytes[i] !== undefined) host.settle(entry);
  });
}

/** The bytes of each entry; `undefined` (and the entry settled as skipped) when the source no longer has it. */
async function bytesOf<E extends UploadEntry>(host: UploadHost<E>, entries: readonly E[]): Promise<Array<Uint8Array | undefined>> {
  const lazy = entries.filter((e) => e.item.bytes === undefined);
  if (lazy.length === 0) return entries.map((e) => e.item.bytes);
  const loaded = new Map<E, Uint8Array | undefined>();
  const source = host.source!;
  try {
    const all = await source.getMany(
      lazy.map((e) => e.item.hash),
      { signal: host.signal },
    );
    lazy.forEach((e, i) => loaded.set(e, all[i]));
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error;
    // Deleted from the source since it was queued: nothing left to upload for it.
    for (const entry of lazy) {
      try {
        loaded.set(entry, await source.get(entry.item.hash, { signal: host.signal }));
      } catch (inner) {
        if (!(inner instanceof NotFoundError)) throw inner;
        loaded.set(entry, undefined);
        host.settle(entry, undefined, 'skipped');
      }
    }
  }
  return entries.map((e) => e.item.bytes ?? loaded.get(e));
}

function mismatch(expected: Hash, stored: Hash | undefined): IntegrityError {
  return new IntegrityError(
    `the remote stored ${stored?.toString() ?? 'nothing'} where ${expected.toString()} was uploaded; the bytes changed on the way`,
    { key: expected.toString() },
  );
}
