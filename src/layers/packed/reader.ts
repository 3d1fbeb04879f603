/**
 * Reading packed blobs: one ranged read of exactly the bytes an index entry
 * declares, decoded by the codec and verified against the blob's hash. A
 * short read (a truncated pack), a frame that does not decode, or bytes of
 * another hash are an {@link IntegrityError} naming the blob; no bytes are
 * returned then. Memory is bounded by the entry, which the index decoder
 * bounded by `maxObjectBytes`.
 *
 * @module
 */
import { CorruptStoreError, IntegrityError, isCairnError, NotFoundError } from '../../errors.js';
import type { Hash } from '../../hash.js';
import { verifyBytes } from '../../object-io.js';
import type { Catalog, Location } from './catalog.js';
import type { BlobCodec } from './codec.js';
import type { SpanReads } from './span-reads.js';

/** Reads, decodes and verifies one copy of a blob (its bytes come through `spans`, which merges neighbouring reads). */
export async function readBlob(spans: SpanReads, codec: BlobCodec, location: Location, signal: AbortSignal | undefined): Promise<Uint8Array> {
  const stored = await spans.read(location, signal);
  if (stored.length !== location.storedLength) {
    throw new IntegrityError(
      `object ${location.hash.toString()} is corrupt: pack ${location.pack.toString()} ends before the ${location.storedLength} bytes its index places at offset ${location.offset} (got ${stored.length}); the pack is truncated`,
      { key: location.hash.toString() },
    );
  }
  const bytes = codec.decode(stored, location);
  verifyBytes(location.hash, bytes);
  return bytes;
}

/**
 * The verified bytes of a packed blob, or undefined when no live copy is
 * indexed. Tries each copy; when every copy's pack is gone (collected after
 * a repack this catalog has not seen), refreshes once and reads the new one.
 */
export async function readPacked(spans: SpanReads, catalog: Catalog, codec: BlobCodec, hash: Hash, signal: AbortSignal | undefined): Promise<Uint8Array | undefined> {
  const locations = catalog.locate(hash);
  if (locations.length === 0) return undefined;
  let firstError: unknown;
  for (const location of locations) {
    try {
      return await readBlob(spans, codec, location, signal);
    } catch (error) {
      if (!(isCairnError(error, 'ERR_INTEGRITY') || isCairnError(error, 'ERR_NOT_FOUND'))) throw error;
      firstError ??= error;
    }
  }
  if (isCairnError(firstError, 'ERR_NOT_FOUND')) {
    await catalog.refresh(signal);
    const fresh = catalog.locate(hash).filter((l) => !locations.some((o) => o.pack.equals(l.pack)));
    for (const location of fresh) return readBlob(spans, codec, location, signal);
  }
  throw firstError;
}

/** A NotFoundError, or a CorruptStoreError naming the object when a damaged record may have listed it. */
export function missingError(catalog: Catalog, hash: Hash, cause: unknown): Error {
  const damaged = catalog.damaged();
  if (damaged.length === 0) return cause instanceof NotFoundError ? cause : new NotFoundError(`object ${hash.toString()} not found`, { key: hash.toString(), cause });
  return new CorruptStoreError(
    `object ${hash.toString()} not found, and ${damaged.length} pack record(s) could not be read (first: ${damaged[0]!.message}); the object may have been in one`,
    { key: hash.toString(), cause: damaged[0] },
  );
}
