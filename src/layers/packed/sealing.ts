/**
 * What the packed layer encrypts, and how: the one place that knows the
 * keys. A plain store's sealer changes nothing; an encrypted store's sealer
 * puts every blob and every record in an AES-256-GCM box (src/crypto/aead.ts)
 * whose associated data says what the box is, so that a box never opens as
 * something else:
 *
 * - a blob: `associatedData('cairn blob v1', algorithm, digest)`: a blob's
 *   stored bytes swapped for another blob's (from this pack or another)
 *   do not open;
 * - a record (index, removal, retirement, large object): stored as
 *   `"CAIRNSE1" || box`, with `associatedData('cairn record v1', magic)`:
 *   an index never opens as a removal record.
 *
 * A box that does not open is a damaged blob ({@link IntegrityError}) or a
 * damaged record ({@link CorruptStoreError}), named; no bytes come out.
 *
 * @module
 */
import { associatedData, open, seal, SEAL_OVERHEAD } from '../../crypto/aead.js';
import type { RepositoryKeys } from '../../crypto/master-key.js';
import { CorruptStoreError, IntegrityError } from '../../errors.js';
import type { Hash } from '../../hash.js';
import { Cipher, SEALED_MAGIC, type CipherCode } from './format.js';

/** Encrypts and opens blobs and records; see the module comment. */
export interface Sealer {
  readonly cipher: CipherCode;
  /** Bytes a sealed record adds. */
  readonly recordOverhead: number;
  sealBlob(bytes: Uint8Array, hash: Hash): Uint8Array;
  /** The bytes inside a stored blob; {@link IntegrityError} naming the blob when its box does not open. */
  openBlob(stored: Uint8Array, hash: Hash): Uint8Array;
  /** `magic` is the record's kind (its plaintext starts with it). */
  sealRecord(magic: string, record: Uint8Array): Uint8Array;
  /** The plaintext of a stored record; {@link CorruptStoreError} naming it when it does not open. */
  openRecord(magic: string, stored: Uint8Array, recordHash: Hash): Uint8Array;
}

/** The sealer of a plain store: bytes go as they are. */
export const plainSealer: Sealer = {
  cipher: Cipher.none,
  recordOverhead: 0,
  sealBlob: (bytes) => bytes,
  openBlob: (stored) => stored,
  sealRecord: (_magic, record) => record,
  openRecord: (_magic, stored) => stored,
};

const SEALED_HEADER = Buffer.from(SEALED_MAGIC, 'ascii');

function algorithmAndDigest(hash: Hash): Uint8Array {
  const out = new Uint8Array(1 + hash.digest.length);
  out[0] = hash.algorithm === 'sha256' ? 1 : 2;
  out.set(hash.digest, 1);
  return out;
}

/** The sealer of an encrypted store. */
export function encryptingSealer(keys: RepositoryKeys): Sealer {
  const blobAad = (hash: Hash): Uint8Array => associatedData('cairn blob v1', algorithmAndDigest(hash));
  const recordAad = (magic: string): Uint8Array => associatedData('cairn record v1', magic);
  return {
    cipher: Cipher.aes256gcm,
    recordOverhead: SEALED_HEADER.length + SEAL_OVERHEAD,
    sealBlob: (bytes, hash) => seal(keys.blob, bytes, blobAad(hash)),
    openBlob(stored, hash) {
      const bytes = open(keys.blob, stored, blobAad(hash));
      if (bytes === undefined) {
        throw new IntegrityError(`object ${hash.toString()} is corrupt in its pack: its encrypted bytes do not authenticate (tampered with, or another blob's bytes put in its place)`, {
          key: hash.toString(),
        });
      }
      return bytes;
    },
    sealRecord: (magic, record) => Buffer.concat([SEALED_HEADER, seal(keys.record, record, recordAad(magic))]),
    openRecord(magic, stored, recordHash) {
      const sealed = stored.length >= SEALED_HEADER.length && SEALED_HEADER.equals(stored.subarray(0, SEALED_HEADER.length));
      const plain = sealed ? open(keys.record, stored.subarray(SEALED_HEADER.length), recordAad(magic)) : undefined;
      if (plain === undefined) {
        const why = sealed ? 'it does not authenticate under this remote\'s key (tampered with, another kind of record, or from another repository)' : `it is not encrypted (no ${SEALED_MAGIC} header) in an encrypted store`;
        throw new CorruptStoreError(`pack record ${recordHash.toString()} is damaged: ${why}; it was not used`, { key: recordHash.toString() });
      }
      return plain;
    },
  };
}
