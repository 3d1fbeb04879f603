/**
 * The encrypted packed layer's own cases: what the bucket holds (only
 * ciphertext: no plaintext, no address of the user's data), and a hostile
 * remote: a flipped byte, blobs swapped inside a pack or brought from
 * another pack, a tampered index, a damaged or truncated large object, a
 * ref body replayed from another ref or another repository, a wrong master
 * key, and plain and encrypted data mixed. Each is a typed error naming
 * what failed; no wrong bytes ever come out.
 */
import { describe, expect, it } from 'vitest';
import { initEncryption, unlock } from '../../src/crypto/keys.js';
import { MasterKey } from '../../src/crypto/master-key.js';
import {
  CorruptStoreError,
  EncryptionMismatchError,
  hashBytes,
  IntegrityError,
  memoryStore,
  NotFoundError,
  WrongPasswordError,
  type Hash,
  type Store,
} from '../../src/index.js';
import { packed, type PackedOptions } from '../../src/layers/packed/packed.js';
import { noise } from '../support/bytes.js';
import { wrap } from './faulty-store.js';

const small: PackedOptions = { packBytes: 64 * 1024, maxObjectBytes: 64 * 1024, lingerMs: 2 };
const kdf = { N: 2 ** 10 };
const PASSWORD = 'test password';
const text = (s: string): Uint8Array => new TextEncoder().encode(s);


/** A memory store whose objects can be made to read as other bytes (a remote that lies or was damaged). */
function lyingRemote(inner: Store = memoryStore()) {
  const replaced = new Map<string, Uint8Array>();
  const served = (hash: unknown): Uint8Array | undefined => replaced.get(String(hash));
  const store = wrap(inner, {
    get: async (hash, options) => served(hash) ?? inner.get(hash, options),
    getRange: async (hash, offset, length, options) => {
      const fake = served(hash);
      return fake === undefined ? inner.getRange(hash, offset, length, options) : fake.slice(offset, offset + length);
    },
    getStream: (hash, options) => {
      const fake = served(hash);
      if (fake === undefined) return inner.getStream(hash, options);
      return (async function* () {
        // Served in 100 KiB pieces, as a network would.
        for (let at = 0; at < fake.length; at += 100 * 1024) yield fake.slice(at, at + 100 * 1024);
      })();
    },
  });
  return { store, inner, replaced };
}

/** Every object of `inner` with its bytes. */
async function objectsIn(inner: Store): Promise<{ hash: Hash; bytes: Uint8Array }[]> {
  const out = [];
  for await (const hash of inner.listObjects()) out.push({ hash, bytes: await inner.get(hash) });
  return out;
}

const startsWith = (bytes: Uint8Array, magic: string): boolean => Buffer.from(bytes.subarray(0, magic.length)).toString('latin1') === magic;

async function errorOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(() => new Error('expected a rejection'), (e: unknown) => e);
}

async function drain(stream: AsyncIterable<Uint8Array>): Promise<{ bytes: number; error: unknown }> {
  let bytes = 0;
  try {
    for await (const chunk of stream) bytes += chunk.length;
  } catch (error) {
    return { bytes, error };
  }
  return { bytes, error: undefined };
}

async function encryptedStore(inner: Store, options: PackedOptions = {}) {
  const master = await initEncryption(inner, PASSWORD, { kdf });
  return { store: packed(inner, { ...small, ...options, encryption: master }), master };
}

describe('encrypted packed: what the bucket holds', () => {
  it('only ciphertext: no plaintext, no address or ref value of the user data, in any object or ref', async () => {
    const inner = memoryStore();
    const { store } = await encryptedStore(inner);
    const small = Array.from({ length: 40 }, (_, i) => text(`SECRET-MARKER small object ${i} `.repeat(20)));
    const large = Buffer.concat([text('SECRET-MARKER large object '), noise(1, 200_000)]);
    const hashes = await store.putMany([...small, large]);
    const streamed = await store.put((async function* () {
      for (let i = 0; i < 5; i++) yield text(`SECRET-MARKER streamed part ${i} `.repeat(3000));
    })());
    await store.setRef('heads/main', hashes[0]!);
    await store.compareAndSwap('heads/other', null, streamed);
    await store.flush();

    const secrets = [...hashes, streamed].flatMap((h) => [Buffer.from(h.digest), Buffer.from(h.hex, 'latin1'), Buffer.from(h.toString(), 'latin1')]);
    const objects = await objectsIn(inner);
    expect(objects.length).toBeGreaterThan(5);
    for (const { hash, bytes } of objects) {
      const buffer = Buffer.from(bytes);
      expect(buffer.includes('SECRET-MARKER'), `object ${hash.toString()} holds plaintext`).toBe(false);
      for (const secret of secrets) expect(buffer.includes(secret), `object ${hash.toString()} holds an address of user data`).toBe(false);
      expect([...hashes, streamed].some((h) => h.equals(hash)), 'an object is stored under its plaintext address').toBe(false);
    }
    for await (const ref of inner.listRefs()) {
      expect([...hashes, streamed].some((h) => h.equals(ref.hash)), `ref ${ref.name} holds a user hash`).toBe(false);
      for (const secret of secrets) expect(ref.name.includes(secret.toString('latin1'))).toBe(false);
    }

    // And it all reads back, through a store reopened with the password.
    const reopened = packed(inner, { ...small, encryption: await unlock(inner, PASSWORD) });
    expect(Buffer.from(await reopened.get(hashes[40]!)).equals(large)).toBe(true);
    expect((await drain(reopened.getStream(streamed))).bytes).toBe(5 * text('SECRET-MARKER streamed part 0 '.repeat(3000)).length);
    expect((await reopened.getRef('heads/main'))?.hash.equals(hashes[0]!)).toBe(true);
    const listed = new Set<string>();
    for await (const h of reopened.listObjects()) listed.add(h.toString());
    expect(listed).toEqual(new Set([...hashes, streamed].map(String)));
    const refs = [];
    for await (const ref of reopened.listRefs()) refs.push([ref.name, ref.hash.toString()]);
    expect(refs).toEqual([
      ['heads/main', hashes[0]!.toString()],
      ['heads/other', streamed.toString()],
    ]);
    await reopened.close();
  });

  it('a range of a large object reads only the segments that cover it', async () => {
    const inner = memoryStore();
    const { store } = await encryptedStore(inner);
    const big = noise(3, 3 * 2 ** 20 + 12345);
    const hash = await store.put(big);
    for (const [offset, length] of [[0, 10], [2 ** 20 - 5, 10], [3 * 2 ** 20, 20_000], [100, 0], [big.length - 3, 100]] as const) {
      const got = await store.getRange(hash, offset, length);
      expect(Buffer.from(got).equals(Buffer.from(big.subarray(offset, offset + length))), `range ${offset}+${length}`).toBe(true);
    }
    await store.close();
  });
});

describe('encrypted packed: a hostile or damaged remote', () => {
  /** Four incompressible blobs of one size in one pack, so stored blobs are equal in length and at known offsets. */
  async function onePack() {
    const r = lyingRemote();
    const { store, master } = await encryptedStore(r.store, { compression: 'none' });
    const items = Array.from({ length: 4 }, (_, i) => noise(10 + i, 1000));
    const hashes = await store.putMany(items);
    const packs = (await objectsIn(r.inner)).filter((o) => startsWith(o.bytes, 'CAIRNPK1'));
    expect(packs).toHaveLength(1);
    // Blob i is stored at 8 + i * (1000 + 28): nonce, ciphertext and tag.
    const at = (i: number): number => 8 + i * 1028;
    return { r, store, master, items, hashes, pack: packs[0]!, at };
  }

  it('a flipped byte in a pack: that object is an IntegrityError naming it; the others still read', async () => {
    const { r, store, items, hashes, pack, at } = await onePack();
    const bad = Uint8Array.prototype.slice.call(pack.bytes);
    bad[at(2) + 500]! ^= 0x01;
    r.replaced.set(pack.hash.toString(), bad);
    const error = await errorOf(store.get(hashes[2]!));
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as Error).message).toContain(hashes[2]!.toString());
    expect((error as Error).message).toMatch(/do not authenticate/);
    expect(Buffer.from(await store.get(hashes[1]!)).equals(Buffer.from(items[1]!))).toBe(true);
    await store.close();
  });

  it('two blobs swapped inside a pack, or one brought from another pack: IntegrityError, never the other bytes', async () => {
    const { r, store, hashes, pack, at } = await onePack();
    const swapped = Uint8Array.prototype.slice.call(pack.bytes);
    swapped.set(pack.bytes.subarray(at(1), at(2)), at(0));
    swapped.set(pack.bytes.subarray(at(0), at(1)), at(1));
    r.replaced.set(pack.hash.toString(), swapped);
    for (const i of [0, 1]) expect(await errorOf(store.get(hashes[i]!))).toBeInstanceOf(IntegrityError);

    // Another pack of the same remote (same key), blob 0 copied over blob 3 of the first.
    const other = noise(99, 1000);
    await store.put(other);
    const second = (await objectsIn(r.inner)).find((o) => startsWith(o.bytes, 'CAIRNPK1') && !o.hash.equals(pack.hash))!;
    const spliced = Uint8Array.prototype.slice.call(pack.bytes);
    spliced.set(second.bytes.subarray(8, 8 + 1028), at(3));
    r.replaced.set(pack.hash.toString(), spliced);
    const error = await errorOf(store.get(hashes[3]!));
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as Error).message).toContain(hashes[3]!.toString());
    await store.close();
  });

  it('a tampered index is set aside as damaged (CorruptStoreError); its objects are reported, not read as anything', async () => {
    const { r, store, hashes } = await onePack();
    const index = (await objectsIn(r.inner)).find((o) => startsWith(o.bytes, 'CAIRNSE1'))!;
    const bad = Uint8Array.prototype.slice.call(index.bytes);
    bad[bad.length - 20]! ^= 0x80;
    // A remote that rewrites the index and its ref to match (its address checks out; only the key can tell).
    const badHash = await r.inner.put(bad);
    await r.inner.deleteRef(`.cairn/packs/index/${index.hash.hex}`);
    await r.inner.compareAndSwap(`.cairn/packs/index/${badHash.hex}`, null, badHash);
    // A second handle, with no local copy of the index, reads the damaged one.
    const reader = packed(r.store, { ...small, encryption: await unlock(r.inner, PASSWORD) });
    const error = await errorOf(reader.get(hashes[0]!));
    expect(error).toBeInstanceOf(CorruptStoreError);
    expect(reader.damaged().some((e) => /does not authenticate/.test(e.message))).toBe(true);
    await reader.close();
    await store.close();
  });

  it('a large object with a flipped byte or cut short: IntegrityError; a stream yields no byte of a bad segment', async () => {
    const r = lyingRemote();
    const { store } = await encryptedStore(r.store);
    const big = noise(5, 3 * 2 ** 20);
    const hash = await store.put(big);
    const segments = (await objectsIn(r.inner)).find((o) => startsWith(o.bytes, 'CAIRNSG1'))!;

    const flippedFirst = Uint8Array.prototype.slice.call(segments.bytes);
    flippedFirst[1000]! ^= 0x04;
    r.replaced.set(segments.hash.toString(), flippedFirst);
    expect(await errorOf(store.get(hash))).toBeInstanceOf(IntegrityError);
    const first = await drain(store.getStream(hash));
    expect(first.error).toBeInstanceOf(IntegrityError);
    expect(first.bytes).toBe(0);

    const flippedSecond = Uint8Array.prototype.slice.call(segments.bytes);
    // Header (44 bytes), then segments of 1 MiB + a 16-byte tag: this byte is in the second segment.
    flippedSecond[44 + 2 ** 20 + 16 + 100]! ^= 0x04;
    r.replaced.set(segments.hash.toString(), flippedSecond);
    const second = await drain(store.getStream(hash));
    expect(second.error).toBeInstanceOf(IntegrityError);
    expect(second.bytes).toBe(2 ** 20);

    r.replaced.set(segments.hash.toString(), segments.bytes.slice(0, segments.bytes.length - (2 ** 20 + 16)));
    const cut = await drain(store.getStream(hash));
    expect(cut.error).toBeInstanceOf(IntegrityError);
    expect(cut.bytes).toBeLessThanOrEqual(2 * 2 ** 20);
    expect(await errorOf(store.get(hash))).toBeInstanceOf(IntegrityError);
    await store.close();
  });

  it('a ref body replayed from another ref, or from another repository, is an IntegrityError naming the ref', async () => {
    const inner = memoryStore();
    const { store } = await encryptedStore(inner);
    const a = await store.put(text('a'));
    const b = await store.put(text('b'));
    await store.setRef('heads/a', a);
    await store.setRef('heads/b', b);
    // Another ref's body.
    await inner.setRef('heads/b', (await inner.getRef('heads/a'))!.hash);
    const replayed = await errorOf(store.getRef('heads/b'));
    expect(replayed).toBeInstanceOf(IntegrityError);
    expect((replayed as Error).message).toMatch(/heads\/b.*replayed from another ref or repository/);
    expect(await errorOf(store.compareAndSwap('heads/b', b, a))).toBeInstanceOf(IntegrityError);

    // The same ref's body from another repository (its own master key).
    const otherInner = memoryStore();
    const { store: other } = await encryptedStore(otherInner);
    await other.setRef('heads/a', await other.put(text('a')));
    const foreignBody = (await otherInner.getRef('heads/a'))!.hash;
    await inner.put(await otherInner.get(foreignBody));
    await inner.setRef('heads/a', foreignBody);
    expect(await errorOf(store.getRef('heads/a'))).toBeInstanceOf(IntegrityError);
    // Nothing came out as a value: the ref still cannot be read, rather than read as something.
    await expect(store.getRef('heads/a')).rejects.toBeInstanceOf(IntegrityError);
    await store.close();
    await other.close();
  });

  it('a wrong password is a WrongPasswordError; a master key of another repository reads nothing', async () => {
    const inner = memoryStore();
    const { store } = await encryptedStore(inner);
    const hash = await store.put(text('secret'));
    await store.flush();
    expect(await errorOf(unlock(inner, 'not the password'))).toBeInstanceOf(WrongPasswordError);
    const stranger = packed(inner, { ...small, encryption: MasterKey.generate() });
    const error = await errorOf(stranger.get(hash));
    expect(error).toBeInstanceOf(CorruptStoreError);
    expect(stranger.damaged().length).toBeGreaterThan(0);
    await stranger.close();
  });
});

describe('encrypted packed: plain and encrypted never mix', () => {
  it('a plain store over an encrypted remote, and an encrypted one over a plain remote, are refused before any read or write', async () => {
    const encryptedInner = memoryStore();
    const { store } = await encryptedStore(encryptedInner);
    const hash = await store.put(text('x'));
    await store.setRef('heads/main', hash);
    await store.flush();
    const plain = packed(encryptedInner, small);
    for (const call of [() => plain.get(hash), () => plain.put(text('y')), () => plain.getRef('heads/main'), () => plain.setRef('heads/main', hash)]) {
      const error = await errorOf(call());
      expect(error).toBeInstanceOf(EncryptionMismatchError);
      expect((error as Error).message).toMatch(/the remote is encrypted/);
    }

    const plainInner = memoryStore();
    const plainStore = packed(plainInner, small);
    await plainStore.setRef('heads/main', await plainStore.put(text('plain')));
    await plainStore.flush();
    const before = await objectsIn(plainInner);
    const wrongSide = packed(plainInner, { ...small, encryption: MasterKey.generate() });
    for (const call of [() => wrongSide.getRef('heads/main'), () => wrongSide.put(text('z')), () => wrongSide.get(hash)]) {
      const error = await errorOf(call());
      expect(error).toBeInstanceOf(EncryptionMismatchError);
      expect((error as Error).message).toMatch(/the remote is not encrypted/);
    }
    expect((await objectsIn(plainInner)).length).toBe(before.length);
    await expect(initEncryption(plainInner, PASSWORD, { kdf })).rejects.toBeInstanceOf(EncryptionMismatchError);
    await wrongSide.close();
    await plain.close();
  });
});

describe('encrypted packed: deletes and repack', () => {
  it('a deleted small and large object are gone, and repack removes their bytes from the remote', async () => {
    const inner = memoryStore();
    const { store } = await encryptedStore(inner);
    const keep = await store.put(noise(1, 5000));
    const gone = await store.put(noise(2, 5000));
    const large = await store.put(noise(3, 300_000));
    await store.delete(gone);
    await store.delete(large);
    expect(await store.has(gone)).toBe(false);
    expect(await errorOf(store.get(large))).toBeInstanceOf(NotFoundError);
    const segmentsBefore = (await objectsIn(inner)).filter((o) => startsWith(o.bytes, 'CAIRNSG1'));
    expect(segmentsBefore).toHaveLength(1);
    const report = await store.repack({ threshold: 0.9, graceMs: 0 });
    expect(report.largeCollected).toBe(1);
    expect((await objectsIn(inner)).filter((o) => startsWith(o.bytes, 'CAIRNSG1'))).toHaveLength(0);
    await store.repack({ threshold: 0.9, graceMs: 0 });
    expect(Buffer.from(await store.get(keep)).equals(Buffer.from(noise(1, 5000)))).toBe(true);
    // The deleted blob's pack was rewritten and collected: its bytes are nowhere.
    const reopened = packed(inner, { ...small, encryption: await unlock(inner, PASSWORD) });
    expect(await reopened.has(gone)).toBe(false);
    expect(hashBytes(await reopened.get(keep)).equals(keep)).toBe(true);
    await reopened.close();
    await store.close();
  });
});
