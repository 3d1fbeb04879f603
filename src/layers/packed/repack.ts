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
import { encodeRetirement, looksLikePackRecord, INDEX_REF_PREFIX, LARGE_REF_PREFIX, RETIRE_MAGIC, PACK_HEADER_BYTES, REMOVED_REF_PREFIX, RETIRED_REF_PREFIX } from './format.js';

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
  /**
   * Also move loose objects of at most `maxObjectBytes` (written before
   * packs, or by a loose writer) into packs: each is read (bounded,
   * verified), packed, and deleted loose only once its pack is published.
   * @default false
   */
  loose?: boolean | undefined;
}

/** What a repack did. */
export interface RepackReport {
  readonly packsRetired: number;
  readonly blobsCopied: number;
  readonly bytesCopied: number;
  readonly packsCollected: number;
  readonly recordsCollected: number;
  /** Loose objects moved into packs (with `loose`). */
  readonly looseMoved: number;
  /** Deleted large objects of an encrypted store whose segments and record were removed. */
  readonly largeCollected: number;
}

/** How repack reads and writes blobs: through the layer, so that reads are verified and writes published. */
export interface RepackIo {
  read(location: Location): Promise<Uint8Array>;
  write(blobs: { hash: Hash; bytes: Uint8Array }[]): Promise<void>;
  maxPackBytes: number;
  maxObjectBytes: number;
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
  // Deleted large objects (encrypted stores): no grace needed, nothing moved them; ref first, so no reader finds a record without its object.
  let largeCollected = 0;
  for (const [recordHex, record] of [...catalog.largeRecords()]) {
    throwIfAborted(signal);
    if (!catalog.isRemoved(record.object, record.hash)) continue;
    await inner.deleteRef(LARGE_REF_PREFIX + recordHex, { signal });
    await ignoreMissing(inner.delete(record.object, { signal }));
    await ignoreMissing(inner.delete(hashOfHex(recordHex), { signal }));
    catalog.dropLarge(recordHex);
    largeCollected++;
  }
  const indexedPacks = new Set([...catalog.indexes().values()].map((i) => i.pack.hex));
  for (const record of catalog.largeRecords().values()) indexedPacks.add(record.object.hex);
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
    const record = catalog.sealer.sealRecord(RETIRE_MAGIC, encodeRetirement({ pack: index.pack, retiredAtMs: now }));
    const recordHash = hashBytes(record);
    await inner.put(record, { signal });
    const result = await inner.compareAndSwap(RETIRED_REF_PREFIX + index.pack.hex, null, recordHash, { signal });
    if (result.ok) catalog.addRetirement(index.pack, recordHash, now);
  }
  const looseMoved = options.loose === true ? await packLoose(inner, catalog, io, signal) : 0;
  return { packsRetired: candidates.length, blobsCopied, bytesCopied, packsCollected, recordsCollected, looseMoved, largeCollected };
}

/** Moves small loose objects into packs; see {@link RepackOptions.loose}. */
async function packLoose(inner: Store, catalog: Catalog, io: RepackIo, signal: AbortSignal | undefined): Promise<number> {
  let batch: { hash: Hash; bytes: Uint8Array }[] = [];
  let batchBytes = 0;
  let moved = 0;
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    await io.write(batch);
    // Deleted loose only now that the packed copy is published and durable.
    for (const { hash } of batch) await ignoreMissing(inner.delete(hash, { signal }));
    moved += batch.length;
    batch = [];
    batchBytes = 0;
  };
  for await (const hash of inner.listObjects({ signal })) {
    if (catalog.owns(hash)) continue;
    let bytes: Uint8Array;
    try {
      bytes = await inner.getRange(hash, 0, io.maxObjectBytes + 1, { signal });
    } catch (error) {
      if ((error as { code?: string }).code === 'ERR_NOT_FOUND') continue;
      throw error;
    }
    // Too large for a pack, one of this layer's records (perhaps another writer's unpublished pack), or damaged: left as it is.
    if (bytes.length > io.maxObjectBytes || looksLikePackRecord(bytes) || !hashBytes(bytes, hash.algorithm).equals(hash)) continue;
    if (catalog.has(hash)) {
      await ignoreMissing(inner.delete(hash, { signal }));
      moved++;
      continue;
    }
    batch.push({ hash, bytes });
    batchBytes += bytes.length;
    if (batchBytes >= io.maxPackBytes) await flush();
  }
  await flush();
  return moved;
}

function hashOfHex(hex: string): Hash {
  return Hash.fromHex('sha256', hex);
}
