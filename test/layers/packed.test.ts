/**
 * The packed layer's own cases: request counts, index cache, two writers,
 * delete + repack, gc racing a writer, and a remote that lies (flipped
 * bytes, truncated packs, indexes past the end, overlapping, garbage,
 * duplicated, oversized): each is a typed error naming the object, never
 * wrong bytes, never an unbounded read.
 */
import { describe, expect, it } from 'vitest';
import {
  CorruptStoreError,
  hashBytes,
  IntegrityError,
  InvalidRefNameError,
  memoryStore,
  NotFoundError,
  type Hash,
  type Store,
} from '../../src/index.js';
import { Compression, encodeIndex, INDEX_REF_PREFIX, type IndexEntry } from '../../src/layers/packed/format.js';
import { packed, type PackedOptions } from '../../src/layers/packed/packed.js';
import { noise } from '../support/bytes.js';
import { wrap } from './faulty-store.js';

const METHODS = ['put', 'get', 'getRange', 'has', 'delete', 'putMany', 'getMany', 'hasMany', 'getRef', 'setRef', 'deleteRef', 'compareAndSwap', 'listRefs', 'listObjects'] as const;

/** A store that counts calls per method and can serve other bytes for chosen objects (a lying remote). */
function remote(inner: Store = memoryStore()) {
  const calls = new Map<string, number>();
  const ranges: number[] = [];
  const replaced = new Map<string, Uint8Array>();
  const overrides: Record<string, unknown> = {};
  for (const method of METHODS) {
    const original = (inner as unknown as Record<string, (...args: unknown[]) => unknown>)[method]!.bind(inner);
    overrides[method] = (...args: unknown[]): unknown => {
      calls.set(method, (calls.get(method) ?? 0) + 1);
      if (method === 'getRange') {
        const [hash, offset, length] = args as [Hash, number, number];
        ranges.push(length);
        const fake = replaced.get(String(hash));
        if (fake !== undefined) return Promise.resolve(fake.slice(offset, offset + length));
      }
      return original(...args);
    };
  }
  const total = (): number => [...calls.values()].reduce((a, b) => a + b, 0);
  return { store: wrap(inner, overrides as Partial<Store>), calls, ranges, replaced, total, inner, reset: () => (calls.clear(), (ranges.length = 0)) };
}

const small: PackedOptions = { packBytes: 64 * 1024, maxObjectBytes: 64 * 1024, lingerMs: 2 };
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const compressible = (i: number, size = 4096): Uint8Array => text(`object ${i} `.repeat(Math.ceil(size / 8)).slice(0, size));

async function packsIn(inner: Store): Promise<{ hash: Hash; bytes: Uint8Array }[]> {
  const out = [];
  for await (const hash of inner.listObjects()) {
    const bytes = await inner.get(hash);
    if (new TextDecoder().decode(bytes.subarray(0, 8)) === 'CAIRNPK1') out.push({ hash, bytes });
  }
  return out;
}

async function errorOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(() => new Error('expected a rejection'), (e: unknown) => e);
}

describe('packed: requests', () => {
  it('100 concurrent puts share one pack: 2 puts and 1 ref create; has and re-put then cost nothing', async () => {
    const r = remote();
    const store = packed(r.store, { lingerMs: 5 });
    await store.refresh();
    r.reset();
    const hashes = await Promise.all(Array.from({ length: 100 }, (_, i) => store.put(compressible(i))));
    expect(r.calls.get('put')).toBe(2);
    expect(r.calls.get('compareAndSwap')).toBe(1);
    expect(r.total()).toBe(3);
    r.reset();
    expect(await store.hasMany(hashes)).toEqual(hashes.map(() => true));
    expect(await store.has(hashes[5]!)).toBe(true);
    await store.put(compressible(7));
    await store.putMany([compressible(8), compressible(9)]);
    expect(r.total()).toBe(0);
    const bytes = await store.get(hashes[42]!);
    expect(Buffer.from(bytes).equals(Buffer.from(compressible(42)))).toBe(true);
    expect(r.total()).toBe(1);
    expect(r.calls.get('getRange')).toBe(1);
    await store.close();
  });

  it('reads of the same moment are merged per pack: 200 gets cost a few ranged reads; a lone get reads exactly its bytes', async () => {
    const r = remote();
    const store = packed(r.store, { ...small, compression: 'none', packBytes: 4 * 2 ** 20 });
    const items = Array.from({ length: 200 }, (_, i) => noise(i, 2000));
    const hashes = await store.putMany(items);
    r.reset();
    const got = await store.getMany(hashes);
    expect(got.every((bytes, i) => Buffer.from(bytes).equals(Buffer.from(items[i]!)))).toBe(true);
    // getMany keeps 32 reads in flight: each wave of neighbours is one span, not 32 requests.
    expect(r.calls.get('getRange')).toBeLessThanOrEqual(Math.ceil(200 / 32) + 1);
    const all = await Promise.all(hashes.map((h) => store.getRange(h, 10, 5)));
    expect(all.every((bytes, i) => Buffer.from(bytes).equals(Buffer.from(items[i]!.subarray(10, 15))))).toBe(true);
    r.reset();
    await store.get(hashes[7]!);
    expect(r.calls.get('getRange')).toBe(1);
    expect(r.ranges).toEqual([2000]);
    await store.close();
  });

  it('a span cut short: the blobs past its end are IntegrityErrors, those before it read', async () => {
    const r = remote();
    const store = packed(r.store, { ...small, compression: 'none' });
    const items = Array.from({ length: 10 }, (_, i) => noise(100 + i, 1000));
    const hashes = await store.putMany(items);
    const [pack] = await packsIn(r.inner);
    // Cut after blob 4 (8 header bytes + 5 blobs of 1000).
    r.replaced.set(pack!.hash.toString(), pack!.bytes.slice(0, 8 + 5 * 1000 + 10));
    const results = await Promise.all(hashes.map((h) => store.get(h).then((b) => b, (e: unknown) => e)));
    for (let i = 0; i < 10; i++) {
      if (i < 5) expect(Buffer.from(results[i] as Uint8Array).equals(Buffer.from(items[i]!))).toBe(true);
      else expect(results[i]).toBeInstanceOf(IntegrityError);
    }
    await store.close();
  });

  it('a large putMany fills packs back to back; objects over the limit go to the inner store whole', async () => {
    const r = remote();
    const store = packed(r.store, small);
    const items = Array.from({ length: 200 }, (_, i) => noise(i, 1000));
    const big = noise(999, 100_000);
    const hashes = await store.putMany([...items, big]);
    expect((await packsIn(r.inner)).length).toBe(Math.ceil((200 * (1000 + 48)) / (64 * 1024)));
    expect(await r.inner.has(hashes[200]!)).toBe(true);
    expect((await store.getMany(hashes)).map((b) => b.length)).toEqual([...items.map(() => 1000), 100_000]);
    await store.close();
  });

  it('compresses blobs that pay and stores the others as they are; the address is the hash of the raw bytes', async () => {
    const r = remote();
    const store = packed(r.store, small);
    const [a, b] = await store.putMany([compressible(1, 20_000), noise(2, 20_000)]);
    expect(a!.equals(hashBytes(compressible(1, 20_000)))).toBe(true);
    const [pack] = await packsIn(r.inner);
    expect(pack!.bytes.length).toBeLessThan(8 + 20_000 + 2000);
    expect(Buffer.from(await store.get(b!)).equals(Buffer.from(noise(2, 20_000)))).toBe(true);
    await store.close();
  });

  it('a reopened store with an index cache downloads no index again', async () => {
    const r = remote();
    const cache = memoryStore();
    const first = packed(r.store, { ...small, indexCache: cache });
    for (let i = 0; i < 5; i++) await first.putMany(Array.from({ length: 20 }, (_, j) => noise(i * 100 + j, 4000)));
    await first.flush();
    const cacheView = wrap(cache, { close: async () => undefined });
    const cold = packed(wrap(r.inner, { close: async () => undefined }), { ...small, indexCache: cacheView });
    r.reset();
    const warm = packed(r.store, { ...small, indexCache: cacheView });
    await warm.refresh();
    expect(r.calls.get('getRange') ?? 0).toBe(0);
    expect(r.calls.get('listRefs')).toBeGreaterThan(0);
    expect(await warm.has(hashBytes(noise(402, 4000)))).toBe(true);
    await cold.close();
    await warm.close();
  });

  it('refuses user writes under the reserved ref prefix and hides its refs from listings', async () => {
    const store = packed(memoryStore(), small);
    await store.put(text('x'));
    const hash = hashBytes(text('x'));
    for (const op of [() => store.setRef('.cairn/packs/index/x', hash), () => store.compareAndSwap('.cairn/y', null, hash), () => store.deleteRef('.cairn/z')]) {
      expect(await errorOf(op())).toBeInstanceOf(InvalidRefNameError);
    }
    await store.setRef('heads/main', hash);
    const names: string[] = [];
    for await (const ref of store.listRefs()) names.push(ref.name);
    expect(names).toEqual(['heads/main']);
    await store.close();
  });

  it('objects written loose before packs still read, list and delete', async () => {
    const inner = memoryStore();
    const loose = await inner.put(text('written before packs'));
    const store = packed(inner, small);
    expect(new TextDecoder().decode(await store.get(loose))).toBe('written before packs');
    expect(await store.has(loose)).toBe(true);
    const listed: string[] = [];
    for await (const h of store.listObjects()) listed.push(h.toString());
    expect(listed).toContain(loose.toString());
    await store.delete(loose);
    expect(await store.has(loose)).toBe(false);
    await store.close();
  });
});

describe('packed: moving loose objects into packs', () => {
  it('repack with loose moves small loose objects into packs, deletes the loose copies, and leaves large ones', async () => {
    const r = remote();
    const smallOnes = await r.inner.putMany(Array.from({ length: 30 }, (_, i) => noise(i, 1500)));
    const large = await r.inner.put(noise(77, 100_000));
    const store = packed(r.store, small);
    const report = await store.repack({ loose: true });
    expect(report.looseMoved).toBe(30);
    for (const h of smallOnes) expect(await r.inner.has(h)).toBe(false);
    expect(await r.inner.has(large)).toBe(true);
    const fresh = packed(wrap(r.inner, { close: async () => undefined }), small);
    expect((await fresh.getMany([...smallOnes, large])).map((b) => b.length)).toEqual([...smallOnes.map(() => 1500), 100_000]);
    await fresh.close();
    await store.close();
  });
});

describe('packed: several writers and gc', () => {
  it('two writers on one remote see each other after a refresh', async () => {
    const shared = memoryStore();
    const open = (): Store => wrap(shared, { close: async () => undefined });
    const a = packed(open(), small);
    const b = packed(open(), small);
    const fromA = await a.putMany(Array.from({ length: 30 }, (_, i) => noise(i, 2000)));
    const fromB = await b.putMany(Array.from({ length: 30 }, (_, i) => noise(100 + i, 2000)));
    await a.refresh();
    await b.refresh();
    expect(await a.hasMany(fromB)).toEqual(fromB.map(() => true));
    expect(await b.hasMany(fromA)).toEqual(fromA.map(() => true));
    expect((await b.get(fromA[3]!)).length).toBe(2000);
    await a.close();
    await b.close();
  });

  it('delete withdraws packed objects; repack rewrites sparse packs and collects them after the grace period', async () => {
    const r = remote();
    const store = packed(r.store, small);
    const hashes = await store.putMany(Array.from({ length: 20 }, (_, i) => noise(i, 2000)));
    for (const h of hashes.slice(0, 15)) await store.delete(h);
    expect(await store.has(hashes[0]!)).toBe(false);
    expect(await errorOf(store.get(hashes[0]!))).toBeInstanceOf(NotFoundError);
    const oldPack = (await packsIn(r.inner))[0]!.hash;
    const first = await store.repack({ threshold: 0.5, graceMs: 60_000, nowMs: 1_000_000 });
    expect(first).toMatchObject({ packsRetired: 1, blobsCopied: 5, packsCollected: 0 });
    // Within the grace period the old pack is still there for readers holding its index.
    expect(await r.inner.has(oldPack)).toBe(true);
    const second = await store.repack({ threshold: 0.5, graceMs: 60_000, nowMs: 1_000_000 + 60_001 });
    expect(second.packsCollected).toBe(1);
    expect(await r.inner.has(oldPack)).toBe(false);
    const fresh = packed(wrap(r.inner, { close: async () => undefined }), small);
    for (const h of hashes.slice(15)) expect((await fresh.get(h)).length).toBe(2000);
    expect(await fresh.hasMany(hashes.slice(0, 15))).toEqual(hashes.slice(0, 15).map(() => false));
    const refs: string[] = [];
    for await (const ref of r.inner.listRefs('.cairn/')) refs.push(ref.name);
    expect(refs.filter((n) => n.includes('/removed/') || n.includes('/retired/'))).toEqual([]);
    await fresh.close();
    await store.close();
  });

  it('a reader holding an old index finds objects moved by a repack whose packs are gone', async () => {
    const shared = memoryStore();
    const open = (): Store => wrap(shared, { close: async () => undefined });
    const writer = packed(open(), small);
    const hashes = await writer.putMany(Array.from({ length: 10 }, (_, i) => noise(i, 3000)));
    const reader = packed(open(), small);
    await reader.refresh();
    for (const h of hashes.slice(0, 8)) await writer.delete(h);
    await writer.repack({ threshold: 0.5, graceMs: 0, nowMs: 10 });
    await writer.repack({ threshold: 0.5, graceMs: 0, nowMs: 20 });
    expect((await reader.get(hashes[9]!)).length).toBe(3000);
    await writer.close();
    await reader.close();
  });

  it('gc racing a writer loses no acknowledged object', async () => {
    const shared = memoryStore();
    const open = (): Store => wrap(shared, { close: async () => undefined });
    const writer = packed(open(), { ...small, packBytes: 8 * 1024 });
    const gc = packed(open(), small);
    const acknowledged: Hash[] = [];
    let stop = false;
    const writing = (async () => {
      for (let i = 0; !stop; i++) {
        acknowledged.push(...(await writer.putMany(Array.from({ length: 5 }, (_, j) => noise(i * 10 + j, 500 + j)))));
        // Some objects the writer puts again: they may sit in a pack the collector is rewriting.
        if (i % 3 === 0 && acknowledged.length > 10) await writer.put(noise(((i - 3) * 10) | 0, 500));
      }
    })();
    const victims: Hash[] = [];
    for (let round = 0; round < 25; round++) {
      // The collector deletes its own objects (never the writer's) and repacks hard, with no grace.
      victims.push(...(await gc.putMany(Array.from({ length: 8 }, (_, j) => noise(100_000 + round * 10 + j, 700)))));
      await gc.refresh();
      for (const v of victims.splice(0, 6)) await gc.delete(v);
      await gc.repack({ threshold: 0.9, graceMs: 0, nowMs: round * 10 });
    }
    stop = true;
    await writing;
    await writer.flush();
    const check = packed(open(), small);
    expect(acknowledged.length).toBeGreaterThan(50);
    const bytes = await check.getMany(acknowledged);
    expect(bytes.every((b) => b.length >= 500)).toBe(true);
    await Promise.all([writer.close(), gc.close(), check.close()]);
  }, 60_000);
});

describe('packed: a remote that lies', () => {
  async function onePack(options: PackedOptions = small) {
    const r = remote();
    const writer = packed(wrap(r.store, { close: async () => undefined }), options);
    const items = [compressible(1, 3000), noise(2, 3000), compressible(3, 3000)];
    const hashes = await writer.putMany(items);
    await writer.close();
    const [pack] = await packsIn(r.inner);
    const reader = packed(r.store, options);
    return { r, hashes, items, pack: pack!, reader };
  }

  it('a flipped byte in a pack is an IntegrityError naming the object, for stored and compressed blobs', async () => {
    const { r, hashes, pack, reader } = await onePack();
    for (const at of [8 + 10, pack.bytes.length - 20, 8 + 2]) {
      const flipped = new Uint8Array(pack.bytes);
      flipped[at] = flipped[at]! ^ 0x40;
      r.replaced.set(pack.hash.toString(), flipped);
      const errors = await Promise.all(hashes.map((h) => reader.get(h).then((b) => b, (e: unknown) => e)));
      const failed = errors.filter((e) => e instanceof IntegrityError) as IntegrityError[];
      expect(failed.length).toBe(1);
      expect(hashes.map(String)).toContain(failed[0]!.key);
      expect(failed[0]!.message).toContain(failed[0]!.key);
      // The other two read back intact: never other bytes.
      errors.forEach((e, i) => {
        if (e instanceof Uint8Array) expect(hashBytes(e).equals(hashes[i]!)).toBe(true);
      });
      expect(errors.filter((e) => e instanceof Uint8Array).length).toBe(2);
    }
    await reader.close();
  });

  it('a truncated pack fails the objects past its end and serves the ones before', async () => {
    const { r, hashes, items, pack, reader } = await onePack({ ...small, compression: 'none' });
    r.replaced.set(pack.hash.toString(), new Uint8Array(pack.bytes.subarray(0, 8 + 4000)));
    expect(Buffer.from(await reader.get(hashes[0]!)).equals(Buffer.from(items[0]!))).toBe(true);
    const error = await errorOf(reader.get(hashes[2]!));
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as IntegrityError).key).toBe(hashes[2]!.toString());
    expect((error as Error).message).toMatch(/truncated/);
    await reader.close();
  });

  async function publishIndex(inner: Store, bytes: Uint8Array, refHash = hashBytes(bytes)): Promise<Hash> {
    const hash = await inner.put(bytes);
    await inner.compareAndSwap(INDEX_REF_PREFIX + refHash.hex, null, hash);
    return hash;
  }

  it('indexes past the end, overlapping, over the size limit, garbage or misnamed are set aside with typed errors; good ones still serve', async () => {
    const { r, hashes, items, pack, reader } = await onePack({ ...small, compression: 'none' });
    const entry = (hash: Hash, offset: number, length: number, raw = length): IndexEntry => ({ hash, compression: Compression.none, cipher: 0, offset, storedLength: length, rawLength: raw });
    const ghost = hashBytes(text('never stored'));
    const bad = [
      encodeIndex({ pack: pack.hash, packLength: pack.bytes.length, entries: [entry(ghost, pack.bytes.length - 10, 100)] }),
      encodeIndex({ pack: pack.hash, packLength: pack.bytes.length, entries: [entry(hashes[0]!, 8, 3000), entry(ghost, 100, 3000)] }),
      encodeIndex({ pack: pack.hash, packLength: 2 ** 31, entries: [entry(ghost, 8, 2 ** 30)] }),
      text('CAIRNIX1 but then garbage'),
      noise(5, 300),
    ];
    for (const bytes of bad) await publishIndex(r.inner, bytes);
    // The same (good) index published again under another name.
    const goodIndex = encodeIndex({ pack: pack.hash, packLength: pack.bytes.length, entries: [entry(hashes[1]!, 8 + 3000, 3000)] });
    await publishIndex(r.inner, goodIndex, hashBytes(text('another name')));
    await reader.refresh();
    const damaged = reader.damaged();
    expect(damaged.length).toBe(6);
    expect(damaged.every((e) => e instanceof CorruptStoreError || e instanceof IntegrityError)).toBe(true);
    expect(Buffer.from(await reader.get(hashes[1]!)).equals(Buffer.from(items[1]!))).toBe(true);
    const missing = await errorOf(reader.get(ghost));
    expect(missing).toBeInstanceOf(CorruptStoreError);
    expect((missing as CorruptStoreError).key).toBe(ghost.toString());
    expect(await reader.has(ghost)).toBe(false);
    await reader.close();
  });

  it('an index that names the wrong bytes for a hash yields an IntegrityError, never those bytes', async () => {
    const { r, hashes, pack, reader } = await onePack({ ...small, compression: 'none' });
    const liar = hashBytes(text('claimed'));
    await publishIndex(r.inner, encodeIndex({ pack: pack.hash, packLength: pack.bytes.length, entries: [{ hash: liar, compression: Compression.none, cipher: 0, offset: 8, storedLength: 3000, rawLength: 3000 }] }));
    await reader.refresh();
    const error = await errorOf(reader.get(liar));
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as IntegrityError).key).toBe(liar.toString());
    expect((await reader.get(hashes[0]!)).length).toBe(3000);
    await reader.close();
  });

  it('a zstd frame that declares more than its index entry is refused before it is decoded', async () => {
    const r = remote();
    const frame = new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0xc0, 0x00, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
    const packBytes = new Uint8Array([...text('CAIRNPK1'), ...frame]);
    const packHash = await r.inner.put(packBytes);
    const claimed = hashBytes(text('x'.repeat(100)));
    await publishIndex(r.inner, encodeIndex({ pack: packHash, packLength: packBytes.length, entries: [{ hash: claimed, compression: Compression.zstd, cipher: 0, offset: 8, storedLength: frame.length, rawLength: 100 }] }));
    const reader = packed(r.store, small);
    const error = await errorOf(reader.get(claimed));
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as Error).message).toMatch(/declares/);
    await reader.close();
  });

  it('reads of an index are bounded by maxIndexBytes, whatever the remote holds', async () => {
    const r = remote();
    const huge = new Uint8Array(3 * 1024 * 1024).fill(7);
    huge.set(text('CAIRNIX1'));
    await publishIndex(r.inner, huge);
    const reader = packed(r.store, { ...small, maxIndexBytes: 64 * 1024 });
    await reader.refresh();
    expect(Math.max(...r.ranges)).toBe(64 * 1024 + 1);
    expect(reader.damaged()[0]).toBeInstanceOf(CorruptStoreError);
    await reader.close();
  });
});
