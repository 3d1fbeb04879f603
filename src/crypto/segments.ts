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
import { throwIfAborted } from '../abort.js';
import { InvalidArgumentError } from '../errors.js';
import { integerOption } from '../internal/options.js';
import { deriveKey, randomKey, TAG_BYTES } from './aead.js';
import { ByteReader } from './byte-reader.js';
import {
  checkExpectation,
  checkHeader,
  checkKey,
  checkLength,
  cipherLength,
  DEFAULT_SEGMENT_BYTES,
  encodeHeader,
  failure,
  MAX_SEGMENT_BYTES,
  openSegment,
  sealSegment,
  segmentCount,
  segmentFailure,
  SEGMENTS_HEADER_BYTES,
  SEGMENTS_SALT_BYTES,
  type SegmentExpectation,
  type SegmentHeader,
} from './segment-format.js';

export {
  cipherLength,
  DEFAULT_SEGMENT_BYTES,
  MAX_SEGMENT_BYTES,
  SEGMENTS_HEADER_BYTES,
  SEGMENTS_MAGIC,
  SEGMENTS_SALT_BYTES,
  type SegmentExpectation,
  type SegmentHeader,
} from './segment-format.js';

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
  if (source == null || typeof source !== 'object' || !(Symbol.asyncIterator in source || Symbol.iterator in source)) {
    throw new InvalidArgumentError(`encryptSegments takes an (async) iterable of Uint8Array chunks, got ${source === null ? 'null' : typeof source}`);
  }
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
