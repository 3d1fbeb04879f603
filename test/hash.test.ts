import { createHash } from 'node:crypto';
import { blake3 } from '@noble/hashes/blake3.js';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHasher, Hash, hashBytes, hashStream, InvalidHashError, parseCid, parseHash } from '../src/index.js';
import { base32 } from './support/base32.js';

const text = (s: string): Uint8Array => new TextEncoder().encode(s);


describe('hashes', () => {
  it('hashes with node:crypto SHA-256 by default', () => {
    const h = hashBytes(text('hello'));
    expect(h.algorithm).toBe('sha256');
    expect(h.hex).toBe(createHash('sha256').update('hello').digest('hex'));
    expect(h.toString()).toBe(`sha256:${h.hex}`);
  });

  it('hashes with BLAKE3 from @noble/hashes', () => {
    const h = hashBytes(text('hello'), 'blake3');
    expect(h.hex).toBe(Buffer.from(blake3(text('hello'))).toString('hex'));
    expect(h.toString().startsWith('blake3:')).toBe(true);
  });

  it('streaming hashing equals one-shot hashing for any chunking', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 5000 }), fc.integer({ min: 1, max: 700 }), async (bytes, size) => {
        const chunks: Uint8Array[] = [];
        for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
        for (const alg of ['sha256', 'blake3'] as const) {
          expect((await hashStream(chunks, alg)).equals(hashBytes(bytes, alg))).toBe(true);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('text form round-trips through parseHash, upper-case hex accepted', () => {
    for (const alg of ['sha256', 'blake3'] as const) {
      const h = hashBytes(text('round trip'), alg);
      expect(parseHash(h.toString()).equals(h)).toBe(true);
      expect(parseHash(`${alg}:${h.hex.toUpperCase()}`).equals(h)).toBe(true);
      expect(JSON.stringify({ h })).toBe(`{"h":"${h.toString()}"}`);
    }
  });

  it('renders a CIDv1 (raw, sha2-256, base32) as IPFS tools print it', () => {
    const bytes = text('hello world');
    const h = hashBytes(bytes);
    const expected = `b${base32(Uint8Array.from([0x01, 0x55, 0x12, 0x20, ...h.digest]))}`;
    expect(h.toCid()).toBe(expected);
    // What `ipfs add --raw-leaves --cid-version=1` prints for "hello world" (no newline).
    expect(h.toCid()).toBe('bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e');
    expect(parseHash(h.toCid()).equals(h)).toBe(true);
    expect(parseCid(h.toCid()).equals(h)).toBe(true);
  });

  it('BLAKE3 hashes render and parse as CIDs with multihash 0x1e', () => {
    const h = hashBytes(text('b3'), 'blake3');
    expect(h.toCid()).toBe(`b${base32(Uint8Array.from([0x01, 0x55, 0x1e, 0x20, ...h.digest]))}`);
    expect(parseHash(h.toCid()).equals(h)).toBe(true);
  });

  it('rejects untrusted text with InvalidHashError only', () => {
    const bad: unknown[] = [
      '', 'sha256', 'sha256:', ':abc', `sha256:${'a'.repeat(63)}`, `sha256:${'a'.repeat(65)}`,
      `sha256:${'z'.repeat(64)}`, `sha1:${'a'.repeat(40)}`, 'bafy', 'bnotbase32!!', 'Qmshort',
      // a dag-pb CIDv0: valid CID, but not raw bytes
      'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG',
      // a dag-cbor CIDv1
      'bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua',
      null, undefined, 42, {}, ['sha256:ab'],
    ];
    for (const value of bad) {
      let caught: unknown;
      try {
        parseHash(value);
      } catch (error) {
        caught = error;
      }
      expect(caught, String(value)).toBeInstanceOf(InvalidHashError);
      expect((caught as InvalidHashError).code).toBe('ERR_INVALID_HASH');
    }
  });

  it('never throws anything but InvalidHashError for arbitrary strings', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 120 }), (s) => {
        try {
          parseHash(s);
        } catch (error) {
          expect(error).toBeInstanceOf(InvalidHashError);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('fromDigest rejects a digest of the wrong length', () => {
    expect(() => Hash.fromDigest('sha256', new Uint8Array(31))).toThrow(InvalidHashError);
    expect(() => Hash.fromDigest('md5' as 'sha256', new Uint8Array(32))).toThrow(InvalidHashError);
  });

  it('a hasher is independent per call', () => {
    const a = createHasher();
    const b = createHasher();
    a.update(text('a'));
    b.update(text('b'));
    expect(a.digest().equals(hashBytes(text('a')))).toBe(true);
    expect(b.digest().equals(hashBytes(text('b')))).toBe(true);
  });
});
