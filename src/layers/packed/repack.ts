/**
 * Repacking and collection of packs.
 *
 * A pack whose live share (bytes of blobs not withdrawn by a removal
 * record, over the pack's blob bytes) is under the threshold is rewritten:
 * its live blobs are copied into new packs (published like any pack), and
 * only then is the old pack marked retired by a retirement record, with the
 * time. Nothing is deleted then: a reader holding the old index keeps
 * reading the old pack. A later run deletes, once the grace period since
 * retirement has passed, the old index's ref first (so no new reader finds
 * it), then the pack and index objects, the removal records that name only
 * collected packs, and the retirement record last (so a crash part-way is
 * finished by the next run). A pack without a published index (a writer's
 * pack in flight) is never touched: only indexed packs are ever retired.
 *
 * @module
 */
import type { AbortOptions } from '../../abort.js';
import { throwIfAborted } from '../../abort.js';
import { Hash, hashBytes } from '../../hash.js';
import type { Store } from '../../store.js';
import type { Catalog, Location } from './catalog.js';
import { encodeRetirement, INDEX_REF_PREFIX, PACK_HEADER_BYTES, REMOVED_REF_PREFIX, RETIRED_REF_PREFIX } from './format.js';

/** Options of {@link PackedStore.repack}. */
export interface RepackOptions extends AbortOptions {
  /**
   * Packs whose live share is below this (0..1) are rewritten.
   * @default 0.5
   */
  threshold?: number | undefined;
  /**
   * How long a retired pack stays readable before it is deleted, in ms.
   * Readers that have not refreshed for longer than this may miss objects
   * moved by a repack until they refresh (a read that finds a pack gone refreshes by itself).
   * @default 3600000 (1 hour)
   */
  graceMs?: number | undefined;
  /** The current time, for tests. @default Date.now() */
  nowMs?: number | undefined;
}

/** What a repack did. */
export interface RepackReport {
  readonly packsRetired: number;
  readonly blobsCopied: number;
  readonly bytesCopied: number;
  readonly packsCollected: number;
  readonly recordsCollected: number;
}

/** How repack reads and writes blobs: through the layer, so that reads are verified and writes published. */
export interface RepackIo {
  read(location: Location): Promise<Uint8Array>;
  write(blobs: { hash: Hash; bytes: Uint8Array }[]): Promise<void>;
  maxPackBytes: number;
}

async function ignoreMissing(work: Promise<unknown>): Promise<void> {
  try {
    await work;
  } catch (error) {
    if ((error as { code?: string }).code !== 'ERR_NOT_FOUND') throw error;
  }
}

/** See the module comment. */
export async function repack(inner: Store, catalog: Catalog, io: RepackIo, options: RepackOptions = {}): Promise<RepackReport> {
  const threshold = options.threshold ?? 0.5;
  const graceMs = options.graceMs ?? 3_600_000;
  const now = options.nowMs ?? Date.now();
  const signal = options.signal;
  await catalog.refresh(signal);
  let packsCollected = 0;
  let recordsCollected = 0;

  // 1. Collect packs retired more than graceMs ago.
  for (const [packHex, retired] of [...catalog.retired()]) {
    throwIfAborted(signal);
    if (retired.retiredAtMs + graceMs > now) continue;
    const indexes = [...catalog.indexes()].filter(([, index]) => index.pack.hex === packHex);
    for (const [indexHex] of indexes) await inner.deleteRef(INDEX_REF_PREFIX + indexHex, { signal });
    const pack = indexes[0]?.[1].pack;
    if (pack !== undefined) await ignoreMissing(inner.delete(pack, { signal }));
    for (const [indexHex] of indexes) {
      await ignoreMissing(inner.delete(hashOfHex(indexHex), { signal }));
      catalog.dropIndex(indexHex);
    }
    await inner.deleteRef(RETIRED_REF_PREFIX + packHex, { signal });
    await ignoreMissing(inner.delete(retired.record, { signal }));
    packsCollected++;
  }
  const indexedPacks = new Set([...catalog.indexes().values()].map((i) => i.pack.hex));
  for (const [recordHex, removals] of [...catalog.removalRecords()]) {
    if (removals.some((r) => indexedPacks.has(r.pack.hex))) continue;
    await inner.deleteRef(REMOVED_REF_PREFIX + recordHex, { signal });
    await ignoreMissing(inner.delete(hashOfHex(recordHex), { signal }));
    catalog.dropRemovals(recordHex);
    recordsCollected++;
  }

  // 2. Rewrite packs under the threshold, then retire them.
  const candidates = [...catalog.indexes().values()].filter((index) => {
    if (catalog.retired().has(index.pack.hex)) return false;
    const total = index.packLength - PACK_HEADER_BYTES;
    const live = index.entries.filter((e) => !catalog.isRemoved(index.pack, e.hash)).reduce((sum, e) => sum + e.storedLength, 0);
    return total <= 0 ? false : live / total < threshold;
  });
  const leaving = new Set(candidates.map((c) => c.pack.hex));
  let batch: { hash: Hash; bytes: Uint8Array }[] = [];
  let batchBytes = 0;
  let blobsCopied = 0;
  let bytesCopied = 0;
  const copied = new Set<string>();
  for (const index of candidates) {
    for (const entry of index.entries) {
      throwIfAborted(signal);
      if (catalog.isRemoved(index.pack, entry.hash) || copied.has(entry.hash.toString())) continue;
      const locations = catalog.locate(entry.hash);
      // Already live in a pack that stays: nothing to copy.
      if (locations.some((l) => !leaving.has(l.pack.hex) && !catalog.retired().has(l.pack.hex))) continue;
      const location = locations.find((l) => l.pack.equals(index.pack))!;
      const bytes = await io.read(location);
      copied.add(entry.hash.toString());
      batch.push({ hash: entry.hash, bytes });
      batchBytes += bytes.length;
      blobsCopied++;
      bytesCopied += bytes.length;
      if (batchBytes >= io.maxPackBytes) {
        await io.write(batch);
        batch = [];
        batchBytes = 0;
      }
    }
  }
  await io.write(batch);
  for (const index of candidates) {
    const record = encodeRetirement({ pack: index.pack, retiredAtMs: now });
    const recordHash = hashBytes(record);
    await inner.put(record, { signal });
    const result = await inner.compareAndSwap(RETIRED_REF_PREFIX + index.pack.hex, null, recordHash, { signal });
    if (result.ok) catalog.addRetirement(index.pack, recordHash, now);
  }
  return { packsRetired: candidates.length, blobsCopied, bytesCopied, packsCollected, recordsCollected };
}

function hashOfHex(hex: string): Hash {
  return Hash.fromHex('sha256', hex);
}
