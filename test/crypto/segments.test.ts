import { createDecipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { associatedData, deriveKey, randomKey } from '../../src/crypto/aead.js';
import {
  cipherLength,
  decryptSegments,
  DEFAULT_SEGMENT_BYTES,
  encryptSegments,
  readSegmentRange,
  SEGMENTS_HEADER_BYTES,
  type SegmentExpectation,
} from '../../src/crypto/segments.js';
import { AbortError, IntegrityError, InvalidArgumentError } from '../../src/errors.js';

const S = 64; // small segments keep the byte-by-byte cases fast
const TAG = 16;
const key = randomKey();

function* chunked(bytes: Uint8Array, size: number): Iterable<Uint8Array> {
  if (bytes.length === 0) yield bytes;
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

async function* asAsync(chunks: Iterable<Uint8Array>): AsyncIterable<Uint8Array> {
  for (const chunk of chunks) yield chunk;
}

async function encrypt(
  plain: Uint8Array,
  options: { segmentBytes?: number; chunk?: number; withKey?: Uint8Array } = {},
): Promise<{ cipher: Buffer; expect: SegmentExpectation }> {
  const encryption = encryptSegments(asAsync(chunked(plain, options.chunk ?? Math.max(1, plain.length))), options.withKey ?? key, {
    segmentBytes: options.segmentBytes ?? S,
  });
  const parts: Uint8Array[] = [];
  for await (const part of encryption.stream) parts.push(part);
  return { cipher: Buffer.concat(parts), expect: { ...encryption.header(), plainLength: encryption.plainLength() } };
}

/** Decrypts, keeping what was yielded before any error. */
async function decrypt(
  cipher: Iterable<Uint8Array>,
  expectation: SegmentExpectation,
  withKey = key,
): Promise<{ plain: Buffer; error: unknown }> {
  const parts: Uint8Array[] = [];
  try {
    for await (const part of decryptSegments(asAsync(cipher), withKey, expectation, { label: 'sha256:abc' })) parts.push(part);
    return { plain: Buffer.concat(parts), error: undefined };
  } catch (error) {
    return { plain: Buffer.concat(parts), error };
  }
}

describe('encryptSegments / decryptSegments round trip', () => {
  const sizes = [0, 1, S - 1, S, S + 1, 3 * S, 5 * S + 7];
  const chunkings = [1, 7, S, 2 * S + 3, Number.MAX_SAFE_INTEGER];
  for (const size of sizes) {
    it(`${size} bytes in segments of ${S}, every chunking both ways, stored in exactly cipherLength bytes`, async () => {
      const plain = randomBytes(size);
      for (const chunk of chunkings) {
        const { cipher, expect: expectation } = await encrypt(plain, { chunk });
        expect(expectation.plainLength).toBe(size);
        expect(cipher.length).toBe(cipherLength(size, S));
        expect(cipher.length).toBe(SEGMENTS_HEADER_BYTES + size + Math.max(1, Math.ceil(size / S)) * TAG);
        for (const readChunk of [1, 5, S + TAG, cipher.length]) {
          const { plain: back, error } = await decrypt(chunked(cipher, readChunk), expectation);
          expect(error).toBeUndefined();
          expect(back.equals(plain)).toBe(true);
        }
      }
    });
  }

  it('empty chunks in the source and in the cipher stream are skipped', async () => {
    const plain = randomBytes(2 * S + 1);
    const source = [new Uint8Array(0), plain.subarray(0, 10), new Uint8Array(0), plain.subarray(10), new Uint8Array(0)];
    const encryption = encryptSegments(source, key, { segmentBytes: S });
    const parts: Uint8Array[] = [];
    for await (const part of encryption.stream) parts.push(part, new Uint8Array(0));
    const { plain: back } = await decrypt(parts, { ...encryption.header(), plainLength: encryption.plainLength() });
    expect(back.equals(plain)).toBe(true);
  });

  it('a source that refills one buffer for every chunk is encrypted as the bytes it held at the time', async () => {
    const buffer = new Uint8Array(2 * S + 36);
    const expected: Buffer[] = [];
    async function* refilled(): AsyncIterable<Uint8Array> {
      for (let i = 0; i < 9; i++) {
        buffer.fill(i + 1);
        expected.push(Buffer.from(buffer));
        yield buffer;
      }
    }
    const encryption = encryptSegments(refilled(), key, { segmentBytes: S });
    const parts: Uint8Array[] = [];
    for await (const part of encryption.stream) parts.push(part);
    const { plain: back, error } = await decrypt([Buffer.concat(parts)], { ...encryption.header(), plainLength: encryption.plainLength() });
    expect(error).toBeUndefined();
    expect(back.equals(Buffer.concat(expected))).toBe(true);
  });

  it('the default segment size is 1 MiB, and 1 MiB - 1, 1 MiB, 1 MiB + 1 and one 64 MiB chunk round-trip', async () => {
    for (const size of [DEFAULT_SEGMENT_BYTES - 1, DEFAULT_SEGMENT_BYTES, DEFAULT_SEGMENT_BYTES + 1, 64 * 2 ** 20 + 5]) {
      const plain = randomBytes(size);
      const encryption = encryptSegments([plain], key);
      const parts: Uint8Array[] = [];
      for await (const part of encryption.stream) parts.push(part);
      const cipher = Buffer.concat(parts);
      expect(encryption.header().segmentBytes).toBe(DEFAULT_SEGMENT_BYTES);
      expect(cipher.length).toBe(cipherLength(size, DEFAULT_SEGMENT_BYTES));
      const { plain: back, error } = await decrypt(chunked(cipher, 65_536), { ...encryption.header(), plainLength: size });
      expect(error).toBeUndefined();
      expect(back.equals(plain)).toBe(true);
    }
  });

  it('the stored bytes follow the documented format exactly (header, counter nonce, final flag in the aad)', async () => {
    const plain = randomBytes(S + 5);
    const { cipher, expect: expectation } = await encrypt(plain);
    expect(cipher.subarray(0, 8).toString('ascii')).toBe('CAIRNSG1');
    expect(cipher.subarray(8, 40).equals(Buffer.from(expectation.salt))).toBe(true);
    expect(cipher.readUInt32BE(40)).toBe(S);
    const objectKey = deriveKey(key, 'object v1', expectation.salt);
    const openAt = (index: number, from: number, length: number, final: boolean): Buffer => {
      const nonce = Buffer.alloc(12);
      nonce.writeBigUInt64BE(BigInt(index), 4);
      const decipher = createDecipheriv('aes-256-gcm', objectKey, nonce);
      decipher.setAAD(associatedData('cairn segment v1', final ? '1' : '0'));
      decipher.setAuthTag(cipher.subarray(from + length, from + length + TAG));
      return Buffer.concat([decipher.update(cipher.subarray(from, from + length)), decipher.final()]);
    };
    expect(openAt(0, 44, S, false).equals(plain.subarray(0, S))).toBe(true);
    expect(openAt(1, 44 + S + TAG, 5, true).equals(plain.subarray(S))).toBe(true);
  });

  it('each object gets a fresh salt: the same plaintext encrypts differently', async () => {
    const plain = randomBytes(3 * S);
    const [a, b] = [await encrypt(plain), await encrypt(plain)];
    expect(Buffer.from(a.expect.salt).equals(Buffer.from(b.expect.salt))).toBe(false);
    expect(a.cipher.subarray(SEGMENTS_HEADER_BYTES).equals(b.cipher.subarray(SEGMENTS_HEADER_BYTES))).toBe(false);
  });
});

describe('decryptSegments detects tampering, yielding no plaintext of a bad segment', () => {
  // Five segments: four full, a final one of 10 bytes.
  const plain = randomBytes(4 * S + 10);
  const at = (index: number): number => SEGMENTS_HEADER_BYTES + index * (S + TAG);
  const segment = (cipher: Buffer, index: number): Buffer => cipher.subarray(at(index), index === 4 ? cipher.length : at(index + 1));

  async function expectCorrupt(
    cipher: Uint8Array,
    expectation: SegmentExpectation,
    goodSegments: number,
    message: RegExp,
    withKey = key,
  ): Promise<void> {
    const { plain: yielded, error } = await decrypt(chunked(cipher, 13), expectation, withKey);
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as IntegrityError).code).toBe('ERR_INTEGRITY');
    expect((error as IntegrityError).key).toBe('sha256:abc');
    expect((error as Error).message).toMatch(/^large object sha256:abc is corrupt: /);
    expect((error as Error).message).toMatch(message);
    expect(yielded.equals(plain.subarray(0, goodSegments * S))).toBe(true);
  }

  const flip = (bytes: Buffer, index: number): Buffer => {
    const copy = Buffer.from(bytes);
    copy[index]! ^= 0x01;
    return copy;
  };

  it('a flipped byte in the header: magic, salt, segmentBytes', async () => {
    const { cipher, expect: e } = await encrypt(plain);
    await expectCorrupt(flip(cipher, 3), e, 0, /does not start with "CAIRNSG1"/);
    await expectCorrupt(flip(cipher, 20), e, 0, /another salt than its record/);
    await expectCorrupt(flip(cipher, 43), e, 0, /says 65 bytes per segment, its record 64/);
  });

  it('a flipped byte in a segment body or in its tag', async () => {
    const { cipher, expect: e } = await encrypt(plain);
    await expectCorrupt(flip(cipher, at(2) + 5), e, 2, /segment 2 does not authenticate/);
    await expectCorrupt(flip(cipher, at(3) - 1), e, 2, /segment 2 does not authenticate/);
    await expectCorrupt(flip(cipher, cipher.length - 1), e, 4, /segment 4 \(the final one\) does not authenticate/);
  });

  it('truncation at a segment boundary and mid-segment', async () => {
    const { cipher, expect: e } = await encrypt(plain);
    await expectCorrupt(cipher.subarray(0, at(3)), e, 3, /ends after 284 of its 390 bytes \(truncated\)/);
    await expectCorrupt(cipher.subarray(0, at(3) + 20), e, 3, /\(truncated\)/);
    await expectCorrupt(cipher.subarray(0, 30), e, 0, /inside its header \(truncated\)/);
    // A reader told the truncated length (a lying record) still finds no final flag.
    await expectCorrupt(cipher.subarray(0, at(3)), { ...e, plainLength: 3 * S }, 2, /segment 2 \(the final one\) does not authenticate/);
  });

  it('two segments swapped, and a segment of the same object in another place', async () => {
    const { cipher, expect: e } = await encrypt(plain);
    const swapped = Buffer.concat([cipher.subarray(0, at(1)), segment(cipher, 2), segment(cipher, 1), cipher.subarray(at(3))]);
    await expectCorrupt(swapped, e, 1, /segment 1 does not authenticate/);
    const repeated = Buffer.concat([cipher.subarray(0, at(3)), segment(cipher, 1), cipher.subarray(at(4))]);
    await expectCorrupt(repeated, e, 3, /segment 3 does not authenticate/);
  });

  it('a segment spliced from another object under the same key, and a whole other object', async () => {
    const { cipher, expect: e } = await encrypt(plain);
    const other = await encrypt(plain);
    const spliced = Buffer.concat([cipher.subarray(0, at(2)), segment(other.cipher, 2), cipher.subarray(at(3))]);
    await expectCorrupt(spliced, e, 2, /segment 2 does not authenticate/);
    await expectCorrupt(other.cipher, e, 0, /another salt than its record/);
  });

  it('bytes appended after the final segment: the final segment is not yielded', async () => {
    const { cipher, expect: e } = await encrypt(plain);
    await expectCorrupt(Buffer.concat([cipher, Buffer.from([0])]), e, 4, /bytes follow its final segment/);
    const { plain: yielded, error } = await decrypt([cipher, cipher.subarray(0, 1)], e);
    expect(error).toBeInstanceOf(IntegrityError);
    expect(yielded.length).toBe(4 * S);
  });

  it('a wrong expected salt, a wrong key, a longer or shorter expected length', async () => {
    const { cipher, expect: e } = await encrypt(plain);
    await expectCorrupt(cipher, { ...e, salt: randomKey(32) }, 0, /another salt than its record/);
    await expectCorrupt(cipher, e, 0, /segment 0 does not authenticate/, randomKey());
    await expectCorrupt(cipher, { ...e, plainLength: 5 * S }, 4, /\(truncated\)/);
    await expectCorrupt(cipher, { ...e, plainLength: 4 * S + 5 }, 4, /segment 4 \(the final one\) does not authenticate/);
  });
});

describe('readSegmentRange', () => {
  const plain = randomBytes(7 * S + 33);

  it('answers random ranges (across boundaries, past the end) like getRange, with one read of the covering segments', async () => {
    const { cipher, expect: e } = await encrypt(plain);
    const reads: Array<[number, number]> = [];
    const read = async (offset: number, length: number): Promise<Uint8Array> => {
      reads.push([offset, length]);
      return cipher.subarray(offset, offset + length);
    };
    const cases: Array<[number, number]> = [[0, 0], [0, 1], [0, plain.length], [S - 1, 2], [S, S], [3 * S + 5, 2 * S], [plain.length - 1, 10], [plain.length, 5], [plain.length + 100, 5], [10, Number.MAX_SAFE_INTEGER - 10]];
    for (let i = 0; i < 200; i++) {
      const offset = Math.floor(Math.random() * (plain.length + 10));
      cases.push([offset, Math.floor(Math.random() * 3 * S)]);
    }
    for (const [offset, length] of cases) {
      reads.length = 0;
      const got = await readSegmentRange(read, key, e, offset, length, { label: 'x' });
      const want = plain.subarray(Math.min(offset, plain.length), Math.min(offset + length, plain.length));
      expect(Buffer.from(got).equals(want)).toBe(true);
      if (want.length === 0) {
        expect(reads).toEqual([]);
        continue;
      }
      const first = Math.floor(offset / S);
      const last = Math.floor((offset + want.length - 1) / S);
      const from = first === 0 ? 0 : SEGMENTS_HEADER_BYTES + first * (S + TAG);
      const to = Math.min(SEGMENTS_HEADER_BYTES + (last + 1) * (S + TAG), cipher.length);
      expect(reads).toEqual([[from, to - from]]);
    }
  });

  it('a damaged covering segment, a short answer, another object, a damaged header: IntegrityError; damage elsewhere is not read', async () => {
    const { cipher, expect: e } = await encrypt(plain);
    const damaged = Buffer.from(cipher);
    damaged[SEGMENTS_HEADER_BYTES + 3 * (S + TAG) + 7]! ^= 0x80;
    const from = (bytes: Uint8Array) => async (offset: number, length: number) => bytes.subarray(offset, offset + length);
    await expect(readSegmentRange(from(damaged), key, e, 3 * S + 1, 1)).rejects.toThrow(/segment 3 does not authenticate/);
    await expect(readSegmentRange(from(damaged), key, e, 2 * S, 2 * S)).rejects.toBeInstanceOf(IntegrityError);
    expect(Buffer.from(await readSegmentRange(from(damaged), key, e, 4 * S, S)).equals(plain.subarray(4 * S, 5 * S))).toBe(true);
    await expect(readSegmentRange(from(cipher.subarray(0, cipher.length - 1)), key, e, 7 * S, 10)).rejects.toThrow(/answered/);
    const other = await encrypt(plain);
    await expect(readSegmentRange(from(other.cipher), key, e, 2 * S, 10, { label: 'sha256:abc' })).rejects.toThrow(
      /^large object sha256:abc is corrupt: segment 2 does not authenticate/,
    );
    await expect(readSegmentRange(from(other.cipher), key, e, 0, 10)).rejects.toThrow(/another salt/);
    await expect(readSegmentRange(from(cipher), randomKey(), e, 7 * S, 1)).rejects.toThrow(/segment 7 \(the final one\)/);
  });
});

describe('bad input', () => {
  it('bad options and arguments are InvalidArgumentErrors naming the value', async () => {
    for (const segmentBytes of [0, 1.5, 64 * 2 ** 20 + 1, -1]) {
      expect(() => encryptSegments([], key, { segmentBytes })).toThrow(InvalidArgumentError);
    }
    expect(() => encryptSegments([], new Uint8Array(16))).toThrow(/32-byte/);
    expect(() => encryptSegments(42 as unknown as Iterable<Uint8Array>, key)).toThrow(/iterable of Uint8Array chunks, got number/);
    expect(() => cipherLength(-1, S)).toThrow(InvalidArgumentError);
    const { cipher, expect: e } = await encrypt(randomBytes(10));
    await expect(decrypt([cipher], { ...e, salt: new Uint8Array(8) })).resolves.toMatchObject({ error: expect.any(InvalidArgumentError) });
    await expect(readSegmentRange(async () => cipher, key, e, -1, 1)).rejects.toThrow(/offset must be a non-negative integer/);
    const bad = encryptSegments(['text' as unknown as Uint8Array], key);
    await expect(async () => {
      for await (const _ of bad.stream);
    }).rejects.toThrow(/yielded string/);
  });

  it('plainLength() throws until the stream is read; the stream is read once', async () => {
    const encryption = encryptSegments([randomBytes(5)], key, { segmentBytes: S });
    expect(() => encryption.plainLength()).toThrow(InvalidArgumentError);
    for await (const _ of encryption.stream);
    expect(encryption.plainLength()).toBe(5);
    await expect(async () => {
      for await (const _ of encryption.stream);
    }).rejects.toThrow(/read once/);
  });

  it('an aborted signal stops encryption and decryption with AbortError', async () => {
    const controller = new AbortController();
    controller.abort();
    const encryption = encryptSegments([randomBytes(5)], key, { signal: controller.signal });
    await expect(async () => {
      for await (const _ of encryption.stream);
    }).rejects.toBeInstanceOf(AbortError);
    const { cipher, expect: e } = await encrypt(randomBytes(5));
    await expect(async () => {
      for await (const _ of decryptSegments([cipher], key, e, { signal: controller.signal }));
    }).rejects.toBeInstanceOf(AbortError);
  });

  it('a signal fired mid-stream stops decryption after the segment in hand', async () => {
    const plain = randomBytes(4 * S);
    const { cipher, expect: e } = await encrypt(plain);
    const controller = new AbortController();
    const yielded: Uint8Array[] = [];
    await expect(async () => {
      for await (const part of decryptSegments(chunked(cipher, 16), key, e, { signal: controller.signal })) {
        yielded.push(part);
        controller.abort();
      }
    }).rejects.toBeInstanceOf(AbortError);
    expect(Buffer.concat(yielded).equals(plain.subarray(0, S))).toBe(true);
  });

  it('a consumer that stops early releases the cipher stream', async () => {
    const { cipher, expect: e } = await encrypt(randomBytes(3 * S));
    let closed = false;
    async function* source(): AsyncIterable<Uint8Array> {
      try {
        yield* chunked(cipher, 10);
      } finally {
        closed = true;
      }
    }
    for await (const _ of decryptSegments(source(), key, e)) break;
    expect(closed).toBe(true);
  });
});
