/**
 * The on-bucket format of packs: the bytes of pack objects, index objects,
 * removal records and retirement records, and the reserved ref names that
 * publish them. docs/packs.md is the prose form of this file.
 *
 * Everything read back from a remote is untrusted: every decoder checks
 * lengths against what its header declares and against the caller's bounds
 * before it allocates, and throws {@link CorruptStoreError} naming the
 * record, never returns a partly read one.
 *
 * @module
 */
import { CorruptStoreError } from '../../errors.js';
import { Hash, type HashAlgorithm } from '../../hash.js';

/** Every ref a layer keeps for itself starts with this; user writes under it are refused. */
export const RESERVED_REF_PREFIX = '.cairn/';
/** Every ref of the packs' own records starts with this. */
export const PACKS_REF_PREFIX = '.cairn/packs/';
/** Ref of a published index: `<prefix><index sha256 hex>`, value = the index hash. */
export const INDEX_REF_PREFIX = '.cairn/packs/index/';
/** Ref of a published removal record: `<prefix><record sha256 hex>`, value = the record hash. */
export const REMOVED_REF_PREFIX = '.cairn/packs/removed/';
/** Ref of a retired pack: `<prefix><pack sha256 hex>`, value = the retirement record's hash. */
export const RETIRED_REF_PREFIX = '.cairn/packs/retired/';
/** Ref of a published large-object record (encrypted stores): `<prefix><record sha256 hex>`, value = the record hash. */
export const LARGE_REF_PREFIX = '.cairn/packs/large/';
/** Refs of the keys that wrap an encrypted remote's master key (see src/crypto/keys.ts). */
export const KEY_REF_PREFIX = '.cairn/keys/';

export const PACK_MAGIC = 'CAIRNPK1';
export const INDEX_MAGIC = 'CAIRNIX1';
export const REMOVAL_MAGIC = 'CAIRNRM1';
export const RETIRE_MAGIC = 'CAIRNRT1';
/** A large object's record (encrypted stores): where its segments are and the salt of their key. */
export const LARGE_MAGIC = 'CAIRNLG1';
/** A sealed (encrypted) record: any of the records above, in an authenticated box. */
export const SEALED_MAGIC = 'CAIRNSE1';
/** An encrypted ref body. */
export const REF_BODY_MAGIC = 'CAIRNRB1';
/** A large object's segments (src/crypto/segments.ts). */
export const SEGMENTS_MAGIC = 'CAIRNSG1';

/** Bytes before the first blob of a pack. */
export const PACK_HEADER_BYTES = 8;
const INDEX_HEADER_BYTES = 8 + 32 + 8 + 4;
export const INDEX_ENTRY_BYTES = 48;
const REMOVAL_ENTRY_BYTES = 65;
const RETIRE_BYTES = 8 + 8 + 32;
/** Offsets and lengths are 32-bit: a pack is at most 4 GiB - 1. */
export const MAX_PACK_BYTES = 0xffff_ffff;

/** How a blob's bytes are stored in its pack. */
export const Compression = { none: 0, zstd: 1 } as const;
export type CompressionCode = (typeof Compression)[keyof typeof Compression];

/** Whether a blob's stored bytes are encrypted (after compression): 1 = an AES-256-GCM box, 28 bytes longer. */
export const Cipher = { none: 0, aes256gcm: 1 } as const;
export type CipherCode = (typeof Cipher)[keyof typeof Cipher];
/** What a box adds: nonce (12) and tag (16). */
export const BOX_OVERHEAD = 28;

const ALG_CODE: Record<HashAlgorithm, number> = { sha256: 1, blake3: 2 };
const CODE_ALG: Record<number, HashAlgorithm> = { 1: 'sha256', 2: 'blake3' };

/** One blob of a pack, as its index describes it. */
export interface IndexEntry {
  /** The address of the blob: the hash of its uncompressed bytes. */
  readonly hash: Hash;
  readonly compression: CompressionCode;
  /** Whether the stored bytes are an encrypted box (every entry of an encrypted store, none of a plain one). */
  readonly cipher: CipherCode;
  /** Byte offset of the stored bytes in the pack. */
  readonly offset: number;
  /** Length of the stored (possibly compressed) bytes. */
  readonly storedLength: number;
  /** Length of the blob once decoded: what `get` returns. */
  readonly rawLength: number;
}

/** A decoded index: the pack it describes and its entries, sorted by offset. */
export interface PackIndex {
  readonly pack: Hash;
  readonly packLength: number;
  readonly entries: readonly IndexEntry[];
}

/** Bounds a reader applies to what a remote declares. */
export interface FormatLimits {
  /** Largest blob (decoded) an entry may declare. */
  readonly maxObjectBytes: number;
  /** Largest index (or removal record) accepted, in bytes. */
  readonly maxIndexBytes: number;
  /** The cipher every entry must have: an encrypted store reads no plain blob, a plain one no encrypted blob. */
  readonly cipher: CipherCode;
}

const ascii = (text: string): Uint8Array => new TextEncoder().encode(text);

function hasMagic(bytes: Uint8Array, magic: string): boolean {
  if (bytes.length < magic.length) return false;
  for (let i = 0; i < magic.length; i++) if (bytes[i] !== magic.charCodeAt(i)) return false;
  return true;
}

/** True when `bytes` start like one of this module's records (a pack, an index, a removal or retirement record). */
export function looksLikePackRecord(bytes: Uint8Array): boolean {
  return [PACK_MAGIC, INDEX_MAGIC, REMOVAL_MAGIC, RETIRE_MAGIC, LARGE_MAGIC, SEALED_MAGIC, REF_BODY_MAGIC, SEGMENTS_MAGIC].some((m) => hasMagic(bytes, m));
}

function corrupt(what: string, hash: Hash | undefined, problem: string): CorruptStoreError {
  const key = hash?.toString();
  return new CorruptStoreError(`${what}${key === undefined ? '' : ` ${key}`} is damaged: ${problem}; run repack or restore the bucket's ${what} from a copy`, { key });
}

function sha256Digest(hash: Hash, what: string): Uint8Array {
  if (hash.algorithm !== 'sha256') throw corrupt(what, hash, 'packs and indexes are addressed by sha256');
  return hash.digest;
}

/** The header every pack starts with. */
export function packHeader(): Uint8Array {
  return ascii(PACK_MAGIC);
}

/** Encodes an index. Entries must be sorted by offset and not overlap (the writer builds them so). */
export function encodeIndex(index: PackIndex): Uint8Array {
  const out = Buffer.alloc(INDEX_HEADER_BYTES + index.entries.length * INDEX_ENTRY_BYTES);
  out.set(ascii(INDEX_MAGIC), 0);
  out.set(sha256Digest(index.pack, 'pack'), 8);
  out.writeBigUInt64BE(BigInt(index.packLength), 40);
  out.writeUInt32BE(index.entries.length, 48);
  let at = INDEX_HEADER_BYTES;
  for (const entry of index.entries) {
    out[at] = ALG_CODE[entry.hash.algorithm];
    out[at + 1] = entry.compression;
    out[at + 2] = entry.cipher;
    out.set(entry.hash.digest, at + 4);
    out.writeUInt32BE(entry.offset, at + 36);
    out.writeUInt32BE(entry.storedLength, at + 40);
    out.writeUInt32BE(entry.rawLength, at + 44);
    at += INDEX_ENTRY_BYTES;
  }
  return out;
}

/**
 * Decodes and checks an index: magic, exact length, known algorithms and
 * compressions, every entry inside the pack after its header, entries
 * sorted and not overlapping, no hash twice, no blob over the size limit.
 */
export function decodeIndex(bytes: Uint8Array, indexHash: Hash | undefined, limits: FormatLimits): PackIndex {
  const fail = (problem: string): CorruptStoreError => corrupt('pack index', indexHash, problem);
  if (bytes.length > limits.maxIndexBytes) throw fail(`it has ${bytes.length} bytes, over the ${limits.maxIndexBytes}-byte limit`);
  if (bytes.length < INDEX_HEADER_BYTES || !hasMagic(bytes, INDEX_MAGIC)) throw fail(`it does not start with ${INDEX_MAGIC}`);
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const pack = Hash.fromDigest('sha256', view.subarray(8, 40));
  const packLength64 = view.readBigUInt64BE(40);
  if (packLength64 > BigInt(MAX_PACK_BYTES)) throw fail(`it declares a pack of ${packLength64} bytes`);
  const packLength = Number(packLength64);
  const count = view.readUInt32BE(48);
  if (bytes.length !== INDEX_HEADER_BYTES + count * INDEX_ENTRY_BYTES) {
    throw fail(`it declares ${count} entries but has ${bytes.length} bytes`);
  }
  const entries: IndexEntry[] = [];
  const seen = new Set<string>();
  let end = PACK_HEADER_BYTES;
  for (let i = 0, at = INDEX_HEADER_BYTES; i < count; i++, at += INDEX_ENTRY_BYTES) {
    const algorithm = CODE_ALG[view[at]!];
    const compression = view[at + 1]!;
    if (algorithm === undefined) throw fail(`entry ${i} has unknown hash algorithm ${view[at]}`);
    if (compression !== Compression.none && compression !== Compression.zstd) throw fail(`entry ${i} has unknown compression ${compression}`);
    const cipher = view[at + 2]!;
    if (cipher !== limits.cipher) {
      throw fail(`entry ${i} is ${cipher === Cipher.none ? 'not encrypted' : `encrypted (cipher ${cipher})`}, in a store that ${limits.cipher === Cipher.none ? 'is plain' : 'is encrypted'}`);
    }
    if (view[at + 3] !== 0) throw fail(`entry ${i} has non-zero reserved bits`);
    const hash = Hash.fromDigest(algorithm, view.subarray(at + 4, at + 36));
    const offset = view.readUInt32BE(at + 36);
    const storedLength = view.readUInt32BE(at + 40);
    const rawLength = view.readUInt32BE(at + 44);
    const name = `entry ${i} (${hash.toString()})`;
    if (rawLength > limits.maxObjectBytes) throw fail(`${name} declares ${rawLength} bytes, over the ${limits.maxObjectBytes}-byte object limit`);
    const box = cipher === Cipher.none ? 0 : BOX_OVERHEAD;
    if (compression === Compression.none ? storedLength !== rawLength + box : storedLength > rawLength + box || storedLength < box) {
      throw fail(`${name} stores ${storedLength} bytes for ${rawLength}`);
    }
    if (offset < end) throw fail(`${name} at offset ${offset} overlaps the bytes before it (which end at ${end})`);
    end = offset + storedLength;
    if (end > packLength) throw fail(`${name} ends at ${end}, past the pack's end at ${packLength}`);
    if (seen.has(hash.toString())) throw fail(`${name} appears twice`);
    seen.add(hash.toString());
    entries.push({ hash, compression: compression as CompressionCode, cipher: cipher as CipherCode, offset, storedLength, rawLength });
  }
  return { pack, packLength, entries };
}

/** One blob location a removal record withdraws: the blob's hash in one pack. */
export interface Removal {
  readonly pack: Hash;
  readonly hash: Hash;
}

/** Encodes a removal record (the blobs deleted by one batch of deletes). */
export function encodeRemovals(removals: readonly Removal[]): Uint8Array {
  const out = Buffer.alloc(12 + removals.length * REMOVAL_ENTRY_BYTES);
  out.set(ascii(REMOVAL_MAGIC), 0);
  out.writeUInt32BE(removals.length, 8);
  let at = 12;
  for (const removal of removals) {
    out.set(sha256Digest(removal.pack, 'pack'), at);
    out[at + 32] = ALG_CODE[removal.hash.algorithm];
    out.set(removal.hash.digest, at + 33);
    at += REMOVAL_ENTRY_BYTES;
  }
  return out;
}

/** Decodes and checks a removal record. */
export function decodeRemovals(bytes: Uint8Array, recordHash: Hash | undefined, limits: FormatLimits): Removal[] {
  const fail = (problem: string): CorruptStoreError => corrupt('removal record', recordHash, problem);
  if (bytes.length > limits.maxIndexBytes) throw fail(`it has ${bytes.length} bytes, over the ${limits.maxIndexBytes}-byte limit`);
  if (bytes.length < 12 || !hasMagic(bytes, REMOVAL_MAGIC)) throw fail(`it does not start with ${REMOVAL_MAGIC}`);
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const count = view.readUInt32BE(8);
  if (bytes.length !== 12 + count * REMOVAL_ENTRY_BYTES) throw fail(`it declares ${count} entries but has ${bytes.length} bytes`);
  const out: Removal[] = [];
  for (let i = 0, at = 12; i < count; i++, at += REMOVAL_ENTRY_BYTES) {
    const algorithm = CODE_ALG[view[at + 32]!];
    if (algorithm === undefined) throw fail(`entry ${i} has unknown hash algorithm ${view[at + 32]}`);
    out.push({ pack: Hash.fromDigest('sha256', view.subarray(at, at + 32)), hash: Hash.fromDigest(algorithm, view.subarray(at + 33, at + 65)) });
  }
  return out;
}

/** A retirement record: this pack's live blobs were copied elsewhere at `retiredAtMs`. */
export interface Retirement {
  readonly pack: Hash;
  readonly retiredAtMs: number;
}

export function encodeRetirement(retirement: Retirement): Uint8Array {
  const out = Buffer.alloc(RETIRE_BYTES);
  out.set(ascii(RETIRE_MAGIC), 0);
  out.writeBigUInt64BE(BigInt(retirement.retiredAtMs), 8);
  out.set(sha256Digest(retirement.pack, 'pack'), 16);
  return out;
}

export function decodeRetirement(bytes: Uint8Array, recordHash: Hash | undefined): Retirement {
  const fail = (problem: string): CorruptStoreError => corrupt('retirement record', recordHash, problem);
  if (bytes.length !== RETIRE_BYTES || !hasMagic(bytes, RETIRE_MAGIC)) throw fail(`it is not a ${RETIRE_BYTES}-byte ${RETIRE_MAGIC} record`);
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const at = view.readBigUInt64BE(8);
  if (at > BigInt(Number.MAX_SAFE_INTEGER)) throw fail('its time is out of range');
  return { pack: Hash.fromDigest('sha256', view.subarray(16, 48)), retiredAtMs: Number(at) };
}

/**
 * A large object of an encrypted store: stored as one object of
 * independently authenticated segments (src/crypto/segments.ts) under the
 * hash of those bytes; this record (sealed, so its contents are secret)
 * ties the object's address to it, with the salt of its key.
 */
export interface LargeRecord {
  /** The object's address (the hash of its plaintext). */
  readonly hash: Hash;
  /** The inner object holding its segments (sha256 of the stored bytes). */
  readonly object: Hash;
  readonly plainLength: number;
  readonly segmentBytes: number;
  readonly salt: Uint8Array;
}

const LARGE_BYTES = 8 + 1 + 32 + 32 + 8 + 4 + 32;
/** Largest segment a reader accepts: bounds what one segment read holds. */
export const MAX_SEGMENT_BYTES = 16 * 2 ** 20;

export function encodeLarge(record: LargeRecord): Uint8Array {
  const out = Buffer.alloc(LARGE_BYTES);
  out.set(ascii(LARGE_MAGIC), 0);
  out[8] = ALG_CODE[record.hash.algorithm];
  out.set(record.hash.digest, 9);
  out.set(sha256Digest(record.object, 'large object'), 41);
  out.writeBigUInt64BE(BigInt(record.plainLength), 73);
  out.writeUInt32BE(record.segmentBytes, 81);
  out.set(record.salt, 85);
  return out;
}

export function decodeLarge(bytes: Uint8Array, recordHash: Hash | undefined): LargeRecord {
  const fail = (problem: string): CorruptStoreError => corrupt('large-object record', recordHash, problem);
  if (bytes.length !== LARGE_BYTES || !hasMagic(bytes, LARGE_MAGIC)) throw fail(`it is not a ${LARGE_BYTES}-byte ${LARGE_MAGIC} record`);
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const algorithm = CODE_ALG[view[8]!];
  if (algorithm === undefined) throw fail(`it has unknown hash algorithm ${view[8]}`);
  const length = view.readBigUInt64BE(73);
  if (length > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(`it declares ${length} bytes`);
  const segmentBytes = view.readUInt32BE(81);
  if (segmentBytes < 1 || segmentBytes > MAX_SEGMENT_BYTES) throw fail(`it declares segments of ${segmentBytes} bytes (1 to ${MAX_SEGMENT_BYTES})`);
  return {
    hash: Hash.fromDigest(algorithm, view.subarray(9, 41)),
    object: Hash.fromDigest('sha256', view.subarray(41, 73)),
    plainLength: Number(length),
    segmentBytes,
    salt: Uint8Array.prototype.slice.call(view.subarray(85, 117)),
  };
}

/** The sha256 hash a reserved ref name ends with, or undefined if the name is not one of `prefix`. */
export function hashOfRefName(name: string, prefix: string): Hash | undefined {
  if (!name.startsWith(prefix)) return undefined;
  const hex = name.slice(prefix.length);
  if (!/^[0-9a-f]{64}$/.test(hex)) return undefined;
  return Hash.fromHex('sha256', hex);
}
