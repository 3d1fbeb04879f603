/**
 * Writing packs and removal records to the inner store, crash-safely.
 *
 * A pack is published in three requests: the pack object and its index
 * object are put in parallel (each is an ordinary content-addressed object
 * of the inner store, durable when its put resolves), then a create-only
 * ref names the index. Only the ref makes the pack visible, so a crash at
 * any point leaves either nothing visible or a complete, durable pack: an
 * index never names a pack that is not fully stored. Refs are create-only
 * and named by the index's own hash, so writers never contend.
 *
 * @module
 */
import { CorruptStoreError } from '../../errors.js';
import { hashBytes, type Hash } from '../../hash.js';
import type { Store } from '../../store.js';
import type { Catalog } from './catalog.js';
import type { EncodedBlob } from './codec.js';
import {
  encodeIndex,
  encodeRemovals,
  INDEX_MAGIC,
  INDEX_REF_PREFIX,
  MAX_PACK_BYTES,
  REMOVAL_MAGIC,
  packHeader,
  PACK_HEADER_BYTES,
  REMOVED_REF_PREFIX,
  type IndexEntry,
  type PackIndex,
  type Removal,
} from './format.js';

/** A blob ready to be packed. */
export interface PendingBlob {
  readonly hash: Hash;
  readonly rawLength: number;
  readonly encoded: EncodedBlob;
}

/** Lays blobs out in one pack; returns the pack bytes and its index. */
export function buildPack(blobs: readonly PendingBlob[]): { bytes: Uint8Array; index: PackIndex } {
  const parts: Uint8Array[] = [packHeader()];
  const entries: IndexEntry[] = [];
  const seen = new Set<string>();
  let offset = PACK_HEADER_BYTES;
  for (const blob of blobs) {
    // The same bytes put twice in one window go in once: an index names each hash at most once.
    if (seen.has(blob.hash.toString())) continue;
    seen.add(blob.hash.toString());
    entries.push({ hash: blob.hash, compression: blob.encoded.compression, cipher: blob.encoded.cipher, offset, storedLength: blob.encoded.bytes.length, rawLength: blob.rawLength });
    parts.push(blob.encoded.bytes);
    offset += blob.encoded.bytes.length;
  }
  if (offset > MAX_PACK_BYTES) throw new RangeError(`a pack of ${offset} bytes is over the format's 4 GiB limit`);
  const bytes = Buffer.concat(parts, offset);
  return { bytes, index: { pack: hashBytes(bytes), packLength: offset, entries } };
}

/** Puts `bytes` into `inner` and checks the address it answers. */
export async function putExact(inner: Store, bytes: Uint8Array, expected: Hash): Promise<void> {
  const got = await inner.put(bytes);
  if (!got.equals(expected)) {
    throw new CorruptStoreError(`the inner store addressed a pack record as ${got.toString()}, expected ${expected.toString()}; it must address objects by sha256`, {
      key: expected.toString(),
    });
  }
}

/** Creates a reserved ref naming `hash`; an existing ref naming the same hash is success (a retried publish). */
export async function publish(inner: Store, name: string, hash: Hash): Promise<void> {
  const result = await inner.compareAndSwap(name, null, hash);
  if (!result.ok && !result.current?.hash.equals(hash)) {
    throw new CorruptStoreError(`ref ${name} already names ${result.current?.hash.toString() ?? 'nothing'}, not ${hash.toString()}; delete that ref`, { ref: name });
  }
}

/** Stores a pack and its index and publishes the index; adds it to the catalog. Resolves once all are durable. */
export async function commitPack(inner: Store, catalog: Catalog, blobs: readonly PendingBlob[]): Promise<PackIndex> {
  const { bytes, index } = buildPack(blobs);
  const indexBytes = catalog.sealer.sealRecord(INDEX_MAGIC, encodeIndex(index));
  const indexHash = hashBytes(indexBytes);
  await Promise.all([putExact(inner, bytes, index.pack), putExact(inner, indexBytes, indexHash)]);
  await publish(inner, INDEX_REF_PREFIX + indexHash.hex, indexHash);
  catalog.addIndex(indexHash, index);
  await catalog.remember(indexBytes);
  return index;
}

/** Stores and publishes one removal record; adds it to the catalog. */
export async function commitRemovals(inner: Store, catalog: Catalog, removals: readonly Removal[]): Promise<void> {
  if (removals.length === 0) return;
  const bytes = catalog.sealer.sealRecord(REMOVAL_MAGIC, encodeRemovals(removals));
  const hash = hashBytes(bytes);
  await putExact(inner, bytes, hash);
  await publish(inner, REMOVED_REF_PREFIX + hash.hex, hash);
  catalog.addRemovals(hash, removals);
  await catalog.remember(bytes);
}
