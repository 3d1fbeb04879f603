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
/** Ref of a published index: `<prefix><index sha256 hex>`, value = the index hash. */
export const INDEX_REF_PREFIX = '.cairn/packs/index/';
/** Ref of a published removal record: `<prefix><record sha256 hex>`, value = the record hash. */
export const REMOVED_REF_PREFIX = '.cairn/packs/removed/';
/** Ref of a retired pack: `<prefix><pack sha256 hex>`, value = the retirement record's hash. */
export const RETIRED_REF_PREFIX = '.cairn/packs/retired/';

export const PACK_MAGIC = 'CAIRNPK1';
export const INDEX_MAGIC = 'CAIRNIX1';
export const REMOVAL_MAGIC = 'CAIRNRM1';
export const RETIRE_MAGIC = 'CAIRNRT1';

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

const ALG_CODE: Record<HashAlgorithm, number> = { sha256: 1, blake3: 2 };
const CODE_ALG: Record<number, HashAlgorithm> = { 1: 'sha256', 2: 'blake3' };

/** One blob of a pack, as its index describes it. */
export interface IndexEntry {
  /** The address of the blob: the hash of its uncompressed bytes. */
  readonly hash: Hash;
  readonly compression: CompressionCode;
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
}

const ascii = (text: string): Uint8Array => new TextEncoder().encode(text);

function hasMagic(bytes: Uint8Array, magic: string): boolean {
  if (bytes.length < magic.length) return false;
  for (let i = 0; i < magic.length; i++) if (bytes[i] !== magic.charCodeAt(i)) return false;
  return true;
}

/** True when `bytes` start like one of this module's records (a pack, an index, a removal or retirement record). */
export function looksLikePackRecord(bytes: Uint8Array): boolean {
  return [PACK_MAGIC, INDEX_MAGIC, REMOVAL_MAGIC, RETIRE_MAGIC].some((m) => hasMagic(bytes, m));
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
    if (view.readUInt16BE(at + 2) !== 0) throw fail(`entry ${i} has non-zero reserved bits`);
    const hash = Hash.fromDigest(algorithm, view.subarray(at + 4, at + 36));
    const offset = view.readUInt32BE(at + 36);
    const storedLength = view.readUInt32BE(at + 40);
    const rawLength = view.readUInt32BE(at + 44);
    const name = `entry ${i} (${hash.toString()})`;
    if (rawLength > limits.maxObjectBytes) throw fail(`${name} declares ${rawLength} bytes, over the ${limits.maxObjectBytes}-byte object limit`);
    if (compression === Compression.none ? storedLength !== rawLength : storedLength > rawLength) {
      throw fail(`${name} stores ${storedLength} bytes for ${rawLength}`);
    }
    if (offset < end) throw fail(`${name} at offset ${offset} overlaps the bytes before it (which end at ${end})`);
    end = offset + storedLength;
    if (end > packLength) throw fail(`${name} ends at ${end}, past the pack's end at ${packLength}`);
    if (seen.has(hash.toString())) throw fail(`${name} appears twice`);
    seen.add(hash.toString());
    entries.push({ hash, compression: compression as CompressionCode, offset, storedLength, rawLength });
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

/** The sha256 hash a reserved ref name ends with, or undefined if the name is not one of `prefix`. */
export function hashOfRefName(name: string, prefix: string): Hash | undefined {
  if (!name.startsWith(prefix)) return undefined;
  const hex = name.slice(prefix.length);
  if (!/^[0-9a-f]{64}$/.test(hex)) return undefined;
  return Hash.fromHex('sha256', hex);
}
