/**
 * Large objects as one ciphertext of independently authenticated segments,
 * so that encryption and decryption stream in bounded memory (one segment)
 * and a range read decrypts only the segments it covers.
 *
 * ## Format (version 1)
 *
 * ```text
 * object    := magic || salt || segmentBytes || segment_0 || ... || segment_(n-1)
 * magic     := "CAIRNSG1"                          8 ASCII bytes
 * salt      := 32 random bytes, new for every object
 * segmentBytes := u32 big-endian                   plaintext bytes per segment
 * segment_i := ct_i || tag_i                       ct_i as long as its plaintext, tag 16 bytes
 *
 * objectKey = HKDF-SHA256(ikm = keys.segment, salt = salt, info = "cairn object v1", 32 bytes)
 *             (deriveKey(keys.segment, 'object v1', salt))
 * ct_i, tag_i = AES-256-GCM(objectKey,
 *                           nonce = 4 zero bytes || u64 big-endian i,
 *                           plaintext = chunk_i,
 *                           aad = associatedData('cairn segment v1', i = n-1 ? '1' : '0'))
 * ```
 *
 * The header (44 bytes) is not encrypted and the nonce is not stored: it is
 * the segment's index. Every segment holds exactly `segmentBytes` plaintext
 * bytes except the last, which holds 1..segmentBytes bytes and is the only
 * one sealed with the final flag `'1'`; an empty object is one final segment
 * of 0 bytes (16 bytes of tag). So an object of `p` plaintext bytes has
 * `n = max(1, ceil(p / segmentBytes))` segments and is stored in exactly
 * `44 + p + 16n` bytes ({@link cipherLength}).
 *
 * ## Why each part
 *
 * - A fresh salt per object gives every object its own key, so the counter
 *   nonce never repeats under a key, and a segment of another object (same
 *   repository key, other salt) does not authenticate.
 * - The index as nonce makes a segment authenticate only at its own
 *   position: reordering, or splicing a segment of the same object, fails.
 * - The final flag makes truncation at a segment boundary fail even for a
 *   reader that did not know the length; Cairn's readers also know the
 *   plaintext length from the authenticated record that names the object,
 *   and check the byte count and that nothing follows the final segment.
 * - The reader compares the header's salt with the salt of that record,
 *   which binds the stored object to the record: another object's whole
 *   ciphertext, put in its place, is refused before a byte is yielded.
 *
 * Errors are {@link IntegrityError}s that name the object (`label`) and
 * what failed; a segment's plaintext is never yielded before its tag has
 * verified, and the final segment not before the end of the stream has
 * been checked.
 *
 * @module
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { throwIfAborted } from '../abort.js';
import { IntegrityError, InvalidArgumentError } from '../errors.js';
import { integerOption, invalidOption } from '../internal/options.js';
import { associatedData, deriveKey, KEY_BYTES, randomKey, TAG_BYTES } from './aead.js';
import { ByteReader } from './byte-reader.js';

/** The magic bytes that open a segmented object. */
export const SEGMENTS_MAGIC = 'CAIRNSG1';
/** Bytes of the salt in the header. */
export const SEGMENTS_SALT_BYTES = 32;
/** Bytes of the header: magic, salt, segmentBytes. */
export const SEGMENTS_HEADER_BYTES = SEGMENTS_MAGIC.length + SEGMENTS_SALT_BYTES + 4;
/** Default plaintext bytes per segment (chosen with bench `crypto`). */
export const DEFAULT_SEGMENT_BYTES = 2 ** 20;
/** Largest `segmentBytes` accepted: memory use is about one segment each way. */
export const MAX_SEGMENT_BYTES = 64 * 2 ** 20;

const ALGORITHM = 'aes-256-gcm';
const MAGIC = Buffer.from(SEGMENTS_MAGIC, 'ascii');
const AAD_MIDDLE = associatedData('cairn segment v1', '0');
const AAD_FINAL = associatedData('cairn segment v1', '1');

/** The unencrypted header of a segmented object; the caller keeps it in the object's authenticated record. */
export interface SegmentHeader {
  /** The object's random salt (32 bytes). */
  readonly salt: Uint8Array;
  /** Plaintext bytes per segment. */
  readonly segmentBytes: number;
}

/** What a reader expects of a stored object: its record's header fields and plaintext length. */
export interface SegmentExpectation extends SegmentHeader {
  /** Plaintext bytes of the object. */
  readonly plainLength: number;
}

/** Options of {@link encryptSegments}. */
export interface EncryptSegmentsOptions {
  /** Plaintext bytes per segment, 1 to {@link MAX_SEGMENT_BYTES}. @default DEFAULT_SEGMENT_BYTES (1 MiB) */
  segmentBytes?: number | undefined;
  /** Stops the stream; it then throws {@link AbortError}. */
  signal?: AbortSignal | undefined;
}

/** Options of {@link decryptSegments} and {@link readSegmentRange}. */
export interface DecryptSegmentsOptions {
  /** Names the object in errors (for example its hash text); also the error's `key`. @default none ("large object is corrupt: ...") */
  label?: string | undefined;
  /** Stops the read; it then throws {@link AbortError}. */
  signal?: AbortSignal | undefined;
}

/** A stream of ciphertext being made; see {@link encryptSegments}. */
export interface SegmentEncryption {
  /** The stored object's bytes, header first. Can be read once. */
  readonly stream: AsyncIterable<Uint8Array>;
  /** The header (known from the start): keep it in the object's record. */
  header(): SegmentHeader;
  /** Plaintext bytes read from the source; throws until `stream` has been read to the end. */
  plainLength(): number;
}

/** Exact stored length of an object of `plainLength` bytes in segments of `segmentBytes`. */
export function cipherLength(plainLength: number, segmentBytes: number): number {
  checkLength('plainLength', plainLength);
  checkSegmentBytes(segmentBytes);
  return SEGMENTS_HEADER_BYTES + plainLength + segmentCount(plainLength, segmentBytes) * TAG_BYTES;
}

/**
 * Encrypts `source` into a segmented object (format in the module notes),
 * in memory bounded by about one segment plus the chunk being read. Chunks
 * of any size are taken; a chunk larger than a segment is encrypted in
 * place, slice by slice. Chunks handed out are fresh buffers the caller may
 * keep.
 *
 * @example
 * ```ts
 * const encryption = encryptSegments(fileChunks, keys.segment);
 * const hash = await inner.put(encryption.stream);
 * const record = { ...encryption.header(), plainLength: encryption.plainLength(), hash };
 * ```
 */
export function encryptSegments(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  segmentKey: Uint8Array,
  options: EncryptSegmentsOptions = {},
): SegmentEncryption {
  checkKey(segmentKey);
  const segmentBytes = integerOption('encryptSegments', 'segmentBytes', options.segmentBytes, DEFAULT_SEGMENT_BYTES, 1, MAX_SEGMENT_BYTES);
  const salt = randomKey(SEGMENTS_SALT_BYTES);
  const key = deriveKey(segmentKey, 'object v1', salt);
  let total: number | undefined;
  let started = false;

  async function* encrypt(): AsyncIterable<Uint8Array> {
    if (started) throw new InvalidArgumentError('an encryptSegments stream can be read once; call encryptSegments again');
    started = true;
    throwIfAborted(options.signal);
    yield encodeHeader(salt, segmentBytes);
    let pending: Buffer | undefined;
    let filled = 0;
    let index = 0;
    let read = 0;
    for await (const chunk of source as AsyncIterable<unknown>) {
      throwIfAborted(options.signal);
      if (!(chunk instanceof Uint8Array)) {
        throw new InvalidArgumentError(`a stream given to encryptSegments yielded ${typeof chunk}; it must yield Uint8Array chunks`);
      }
      read += chunk.length;
      let at = 0;
      while (at < chunk.length) {
        // A full segment with more bytes after it is not the last: seal it now.
        if (filled === segmentBytes) {
          yield* sealSegment(key, index++, pending!, false);
          filled = 0;
        }
        if (filled === 0 && chunk.length - at > segmentBytes) {
          // A whole segment inside the chunk, with more after it: seal it in place, no copy.
          yield* sealSegment(key, index++, chunk.subarray(at, at + segmentBytes), false);
          at += segmentBytes;
          continue;
        }
        const n = Math.min(segmentBytes - filled, chunk.length - at);
        pending ??= Buffer.allocUnsafe(segmentBytes);
        pending.set(chunk.subarray(at, at + n), filled);
        filled += n;
        at += n;
      }
    }
    throwIfAborted(options.signal);
    yield* sealSegment(key, index, (pending ?? Buffer.alloc(0)).subarray(0, filled), true);
    total = read;
  }

  return {
    stream: { [Symbol.asyncIterator]: () => encrypt()[Symbol.asyncIterator]() },
    header: () => ({ salt: salt.slice(), segmentBytes }),
    plainLength: () => {
      if (total === undefined) throw new InvalidArgumentError('plainLength() is known once the encryptSegments stream has been read to the end');
      return total;
    },
  };
}

/**
 * Decrypts a segmented object read as a stream, in memory bounded by one
 * segment (plus the chunk being read). The header is checked against
 * `expect` (magic, salt, segmentBytes) before anything is yielded; each
 * segment's plaintext is yielded only once its tag verifies, and the last
 * one only once the stream has ended where `expect.plainLength` says.
 * Throws {@link IntegrityError} naming what failed: a damaged or foreign
 * header, a segment that does not authenticate (tampered, reordered, from
 * another object, or under another key), too few bytes, or bytes after the
 * final segment.
 *
 * @example
 * ```ts
 * for await (const chunk of decryptSegments(inner.getStream(record.hash), keys.segment, record, { label: hash.toString() })) {
 *   out.write(chunk);
 * }
 * ```
 */
export async function* decryptSegments(
  cipher: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  segmentKey: Uint8Array,
  expect: SegmentExpectation,
  options: DecryptSegmentsOptions = {},
): AsyncIterable<Uint8Array> {
  checkKey(segmentKey);
  checkExpectation(expect);
  const fail = failure(options.label);
  const { segmentBytes, plainLength } = expect;
  const count = segmentCount(plainLength, segmentBytes);
  const expected = cipherLength(plainLength, segmentBytes);
  const reader = new ByteReader(cipher, options.signal);
  try {
    const header = await reader.read(SEGMENTS_HEADER_BYTES);
    checkHeader(header, expect, fail, expected, header.length);
    const key = deriveKey(segmentKey, 'object v1', expect.salt);
    let consumed = SEGMENTS_HEADER_BYTES;
    for (let index = 0; index < count; index++) {
      const final = index === count - 1;
      const length = final ? plainLength - index * segmentBytes : segmentBytes;
      const box = await reader.read(length + TAG_BYTES);
      consumed += box.length;
      if (box.length < length + TAG_BYTES) throw fail(`it ends after ${consumed} of its ${expected} bytes (truncated)`);
      const plain = openSegment(key, index, box, final);
      if (plain === undefined) throw fail(segmentFailure(index, final));
      if (final && !(await reader.atEnd())) throw fail(`bytes follow its final segment (${expected} bytes expected)`);
      yield plain;
    }
  } finally {
    await reader.close();
  }
}

/**
 * Reads plaintext `offset`..`offset + length` of a segmented object with one
 * ranged read of the segments that cover it (`readCipherRange(offset,
 * length)` must answer exactly those cipher bytes), each authenticated.
 * Clamped like a store's `getRange`: a range past the end is cut at the
 * end, one starting at or past the end is empty (and reads nothing).
 * The header is read and checked only when the range starts in segment 0
 * (it is then in the same read): the segments of any other object, or from
 * another position, do not authenticate under the key derived from
 * `expect.salt`, so a header check would cost a request and add nothing.
 *
 * @example
 * ```ts
 * const bytes = await readSegmentRange((at, n) => inner.getRange(record.hash, at, n), keys.segment, record, 5_000_000, 4096);
 * ```
 */
export async function readSegmentRange(
  readCipherRange: (offset: number, length: number) => Promise<Uint8Array>,
  segmentKey: Uint8Array,
  expect: SegmentExpectation,
  offset: number,
  length: number,
  options: DecryptSegmentsOptions = {},
): Promise<Uint8Array> {
  checkKey(segmentKey);
  checkExpectation(expect);
  checkLength('offset', offset);
  checkLength('length', length);
  throwIfAborted(options.signal);
  const fail = failure(options.label);
  const { segmentBytes, plainLength } = expect;
  const start = Math.min(offset, plainLength);
  const end = Math.min(offset + length, plainLength);
  if (start >= end) return new Uint8Array(0);
  const count = segmentCount(plainLength, segmentBytes);
  const first = Math.floor(start / segmentBytes);
  const last = Math.floor((end - 1) / segmentBytes);
  const boxBytes = segmentBytes + TAG_BYTES;
  const withHeader = first === 0;
  const readFrom = withHeader ? 0 : SEGMENTS_HEADER_BYTES + first * boxBytes;
  const readTo = Math.min(SEGMENTS_HEADER_BYTES + (last + 1) * boxBytes, cipherLength(plainLength, segmentBytes));
  const bytes = await readCipherRange(readFrom, readTo - readFrom);
  throwIfAborted(options.signal);
  if (!(bytes instanceof Uint8Array) || bytes.length !== readTo - readFrom) {
    const got = bytes instanceof Uint8Array ? `${bytes.length} bytes` : typeof bytes;
    throw fail(`a read of ${readTo - readFrom} bytes at ${readFrom} answered ${got} (truncated or replaced)`);
  }
  let at = 0;
  if (withHeader) {
    checkHeader(bytes.subarray(0, SEGMENTS_HEADER_BYTES), expect, fail, cipherLength(plainLength, segmentBytes), bytes.length);
    at = SEGMENTS_HEADER_BYTES;
  }
  const key = deriveKey(segmentKey, 'object v1', expect.salt);
  const out = Buffer.allocUnsafe(end - start);
  for (let index = first; index <= last; index++) {
    const final = index === count - 1;
    const plainBytes = final ? plainLength - index * segmentBytes : segmentBytes;
    const plain = openSegment(key, index, bytes.subarray(at, at + plainBytes + TAG_BYTES), final);
    if (plain === undefined) throw fail(segmentFailure(index, final));
    at += plainBytes + TAG_BYTES;
    const segmentStart = index * segmentBytes;
    const from = Math.max(start - segmentStart, 0);
    const to = Math.min(end - segmentStart, plainBytes);
    out.set(plain.subarray(from, to), segmentStart + from - start);
  }
  return out;
}

/** Segments of an object of `plainLength` bytes: at least one (an empty object is one empty final segment). */
function segmentCount(plainLength: number, segmentBytes: number): number {
  return Math.max(1, Math.ceil(plainLength / segmentBytes));
}

function nonceOf(index: number): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64BE(BigInt(index), 4);
  return nonce;
}

function* sealSegment(key: Uint8Array, index: number, plain: Uint8Array, final: boolean): Iterable<Uint8Array> {
  const cipher = createCipheriv(ALGORITHM, key, nonceOf(index), { authTagLength: TAG_BYTES });
  cipher.setAAD(final ? AAD_FINAL : AAD_MIDDLE);
  const body = cipher.update(plain);
  cipher.final();
  // The tag goes out as its own chunk: joining it to the body would copy every segment once more.
  if (body.length > 0) yield body;
  yield cipher.getAuthTag();
}

/** The segment's plaintext, or undefined when `box` (ct || tag) does not authenticate as segment `index`. */
function openSegment(key: Uint8Array, index: number, box: Uint8Array, final: boolean): Uint8Array | undefined {
  const decipher = createDecipheriv(ALGORITHM, key, nonceOf(index), { authTagLength: TAG_BYTES });
  decipher.setAAD(final ? AAD_FINAL : AAD_MIDDLE);
  decipher.setAuthTag(box.subarray(box.length - TAG_BYTES));
  const plain = decipher.update(box.subarray(0, box.length - TAG_BYTES));
  try {
    decipher.final();
    return plain;
  } catch {
    return undefined;
  }
}

function segmentFailure(index: number, final: boolean): string {
  const which = final ? `segment ${index} (the final one)` : `segment ${index}`;
  return `${which} does not authenticate (tampered, reordered, truncated, from another object, or another key)`;
}

function encodeHeader(salt: Uint8Array, segmentBytes: number): Uint8Array {
  const header = Buffer.allocUnsafe(SEGMENTS_HEADER_BYTES);
  MAGIC.copy(header, 0);
  header.set(salt, MAGIC.length);
  header.writeUInt32BE(segmentBytes, MAGIC.length + SEGMENTS_SALT_BYTES);
  return header;
}

function checkHeader(
  header: Uint8Array,
  expect: SegmentExpectation,
  fail: (what: string) => IntegrityError,
  expectedLength: number,
  got: number,
): void {
  if (header.length < SEGMENTS_HEADER_BYTES) throw fail(`it ends after ${got} of its ${expectedLength} bytes, inside its header (truncated)`);
  const bytes = Buffer.from(header.buffer, header.byteOffset, SEGMENTS_HEADER_BYTES);
  if (!bytes.subarray(0, MAGIC.length).equals(MAGIC)) throw fail(`its header does not start with "${SEGMENTS_MAGIC}" (not a segmented object, or damaged)`);
  if (!bytes.subarray(MAGIC.length, MAGIC.length + SEGMENTS_SALT_BYTES).equals(expect.salt)) {
    throw fail('its header holds another salt than its record (another object in its place, or a damaged header)');
  }
  const segmentBytes = bytes.readUInt32BE(MAGIC.length + SEGMENTS_SALT_BYTES);
  if (segmentBytes !== expect.segmentBytes) {
    throw fail(`its header says ${segmentBytes} bytes per segment, its record ${expect.segmentBytes} (damaged header)`);
  }
}

function failure(label: string | undefined): (what: string) => IntegrityError {
  const name = label === undefined ? 'large object' : `large object ${label}`;
  return (what) => new IntegrityError(`${name} is corrupt: ${what}`, label === undefined ? {} : { key: label });
}

function checkKey(key: unknown): void {
  if (!(key instanceof Uint8Array) || key.length !== KEY_BYTES) {
    throw new InvalidArgumentError(`a segment key is a ${KEY_BYTES}-byte Uint8Array (RepositoryKeys.segment)`);
  }
}

function checkSegmentBytes(value: unknown): void {
  integerOption('segments', 'segmentBytes', value, DEFAULT_SEGMENT_BYTES, 1, MAX_SEGMENT_BYTES);
  if (value === undefined) throw invalidOption('segments', 'segmentBytes', 'given', value);
}

function checkLength(name: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(`segments ${name} must be a non-negative integer, got ${String(value)}`);
  }
}

function checkExpectation(expect: SegmentExpectation): void {
  if (expect == null || typeof expect !== 'object') throw new InvalidArgumentError('segments expect must be { salt, segmentBytes, plainLength }');
  if (!(expect.salt instanceof Uint8Array) || expect.salt.length !== SEGMENTS_SALT_BYTES) {
    throw new InvalidArgumentError(`segments expect.salt must be a ${SEGMENTS_SALT_BYTES}-byte Uint8Array`);
  }
  checkSegmentBytes(expect.segmentBytes);
  checkLength('plainLength', expect.plainLength);
}
