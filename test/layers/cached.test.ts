import { describe, expect, it } from 'vitest';
import { AbortError, hashBytes, IntegrityError, InvalidArgumentError, memoryStore, ReadOnlyError, type Store } from '../../src/index.js';
import { cached } from '../../src/layers/cached.js';
import { readOnly } from '../../src/layers/read-only.js';
import { conformanceSuite } from '../conformance.js';
import { wrap } from './faulty-store.js';

// Every case but the one that writes into returned bytes (what shareBytes forbids) holds with shared bytes;
// 'checked' mode would fail any case that changed them by mistake.
conformanceSuite("cached over memory, shareBytes 'checked'", {
  setup: async () => cached(memoryStore(), { maxBytes: 4 * 2 ** 20, shareBytes: 'checked' }),
  skip: {
    'stored bytes cannot be changed through the buffers put took or get returned':
      'shareBytes hands out the cached bytes; callers promise not to change them, and the shareBytes cases below check the promise is enforced',
  },
});

/** Counts inner reads and can make them slow or return other bytes. */
function counting(inner: Store = memoryStore()) {
  const state = { gets: 0, getManys: 0, delayMs: 0, corrupt: false, store: inner };
  const wrapped: Partial<Store> = {};
  wrapped.get = async (hash, options) => {
    state.gets++;
    if (state.delayMs) await new Promise((r) => setTimeout(r, state.delayMs));
    const bytes = await inner.get(hash, options);
    if (state.corrupt) bytes[0] = bytes[0]! ^ 0xff;
    return bytes;
  };
  wrapped.getMany = async (hashes, options) => {
    state.getManys++;
    return inner.getMany(hashes, options);
  };
  state.store = wrap(inner, wrapped);
  return state;
}

const bytesOf = (i: number, size = 4096): Uint8Array => new Uint8Array(size).fill(i);

describe('cached', () => {
  it('serves a second read from memory and counts hits and misses', async () => {
    const inner = counting();
    const store = cached(inner.store);
    const hash = await store.put(bytesOf(1));
    await store.get(hash);
    await store.get(hash);
    await store.get(hash.toString());
    expect(inner.gets).toBe(1);
    expect(store.stats()).toMatchObject({ hits: 2, misses: 1, entries: 1, bytes: 4096 });
    expect(store.stats().hitRate).toBeCloseTo(2 / 3);
  });

  it('makes one inner read for concurrent misses of one hash', async () => {
    const inner = counting();
    inner.delayMs = 20;
    const store = cached(inner.store);
    const hash = await store.put(bytesOf(2));
    const all = await Promise.all(Array.from({ length: 20 }, () => store.get(hash)));
    expect(inner.gets).toBe(1);
    expect(all.every((b) => b.length === 4096 && b[0] === 2)).toBe(true);
    expect(store.stats()).toMatchObject({ misses: 1, coalesced: 19 });
  });

  it('one caller aborting does not fail the others sharing its read', async () => {
    const inner = counting();
    inner.delayMs = 30;
    const store = cached(inner.store);
    const hash = await store.put(bytesOf(3));
    const controller = new AbortController();
    const first = store.get(hash, { signal: controller.signal }).catch((e: unknown) => e);
    const second = store.get(hash);
    controller.abort();
    expect(await first).toBeInstanceOf(AbortError);
    expect((await second)[0]).toBe(3);
    expect(inner.gets).toBe(1);
  });

  it('never caches bytes that do not match their hash', async () => {
    const inner = counting();
    const store = cached(inner.store);
    const hash = await store.put(bytesOf(4));
    inner.corrupt = true;
    await expect(store.get(hash)).rejects.toBeInstanceOf(IntegrityError);
    expect(store.stats().entries).toBe(0);
    inner.corrupt = false;
    expect((await store.get(hash))[0]).toBe(4);
    expect(inner.gets).toBe(2);
  });

  it('stays under maxBytes, evicting the least recently used', async () => {
    const store = cached(memoryStore(), { maxBytes: 5 * 4096, maxObjectBytes: 4096 });
    const hashes = await store.putMany(Array.from({ length: 10 }, (_, i) => bytesOf(i)));
    for (const hash of hashes) await store.get(hash);
    const stats = store.stats();
    expect(stats.bytes).toBeLessThanOrEqual(5 * 4096);
    expect(stats.entries).toBe(5);
    expect(stats.evictions).toBe(5);
    await store.get(hashes[9]!);
    expect(store.stats().hits).toBe(1);
  });

  it('does not cache objects over maxObjectBytes', async () => {
    const store = cached(memoryStore(), { maxBytes: 100_000, maxObjectBytes: 1000 });
    const hash = await store.put(bytesOf(5, 2000));
    await store.get(hash);
    expect(store.stats().entries).toBe(0);
  });

  it('sends getMany misses to the inner batch path in one call', async () => {
    const inner = counting();
    const store = cached(inner.store);
    const hashes = await store.putMany(Array.from({ length: 10 }, (_, i) => bytesOf(i)));
    await store.get(hashes[0]!);
    const read = await store.getMany(hashes);
    expect(read.map((b) => b[0])).toEqual(hashes.map((_, i) => i));
    expect(inner.getManys).toBe(1);
    expect(inner.gets).toBe(1);
    expect(store.stats().hits).toBe(1);
  });

  it('never serves a stale ref: refs pass through', async () => {
    const inner = memoryStore();
    const store = cached(inner);
    const [a, b] = await inner.putMany([bytesOf(1), bytesOf(2)]);
    await store.setRef('heads/main', a!);
    expect((await store.getRef('heads/main'))?.hash.equals(a!)).toBe(true);
    await inner.setRef('heads/main', b!);
    expect((await store.getRef('heads/main'))?.hash.equals(b!)).toBe(true);
  });

  it('forgets a deleted object', async () => {
    const store = cached(memoryStore());
    const hash = await store.put(bytesOf(9));
    await store.get(hash);
    await store.delete(hash);
    expect(await store.has(hash)).toBe(false);
    expect(store.stats().entries).toBe(0);
  });

  it('hands out copies even when the inner store returns Buffers (whose slice is a view)', async () => {
    const inner = memoryStore();
    const store = cached(wrap(inner, { get: async (hash, options) => Buffer.from(await inner.get(hash, options)) }));
    const hash = await store.put(bytesOf(6, 16));
    const first = await store.get(hash);
    first[0] = 99;
    const second = await store.get(hash);
    expect(second[0]).toBe(6);
    second[0] = 99;
    expect((await store.getMany([hash]))[0]![0]).toBe(6);
  });

  it('shareBytes: hits hand out the cached bytes themselves, not copies; the default still copies', async () => {
    const shared = cached(memoryStore(), { shareBytes: true });
    const copying = cached(memoryStore());
    for (const store of [shared, copying]) {
      const hash = await store.put(bytesOf(7, 64));
      const miss = await store.get(hash);
      const [hitA, hitB] = [await store.get(hash), await store.get(hash)];
      const [many] = await store.getMany([hash]);
      const range = await store.getRange(hash, 8, 4);
      const same = store === shared;
      expect(hitA === hitB).toBe(same);
      expect(hitA === miss).toBe(same);
      expect(many === hitA).toBe(same);
      expect(range.buffer === hitA.buffer).toBe(same);
      expect(store.stats().hits).toBe(4);
    }
  });

  it("shareBytes 'checked': a reader that changes shared bytes is caught on the next hit, naming the object, and the bytes are dropped", async () => {
    const inner = counting();
    const store = cached(inner.store, { shareBytes: 'checked' });
    const hash = await store.put(bytesOf(8, 256));
    const bytes = await store.get(hash);
    bytes[0] = 99; // the mistake shareBytes forbids
    const error = await store.get(hash).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as IntegrityError).key).toBe(hash.toString());
    expect((error as Error).message).toMatch(/changed by a reader/);
    // The changed bytes are gone: the next read fetches the real ones again.
    expect(store.stats().entries).toBe(0);
    expect((await store.get(hash))[0]).toBe(8);
    expect(inner.gets).toBe(2);
  });

  it("shareBytes 'checked': a change found on eviction or delete fails the next read", async () => {
    const store = cached(memoryStore(), { shareBytes: 'checked', maxBytes: 2 * 4096, maxObjectBytes: 4096 });
    const [a, b, c] = await store.putMany([bytesOf(1), bytesOf(2), bytesOf(3)]);
    (await store.get(a!))[5] = 0xee;
    await store.get(b!);
    await store.get(c!); // evicts a, whose bytes were changed
    expect(store.stats().evictions).toBe(1);
    const error = await store.get(b!).catch((e: unknown) => e);
    expect((error as IntegrityError).key).toBe(a!.toString());
    expect((await store.get(b!))[0]).toBe(2);
    (await store.get(b!))[0] = 0;
    await store.delete(b!);
    await expect(store.has(c!)).rejects.toMatchObject({ code: 'ERR_INTEGRITY', key: b!.toString() });
    // Unchanged shared bytes pass every check.
    expect((await store.get(c!))[0]).toBe(3);
  });

  it('rejects bad options naming the option and value', () => {
    expect(() => cached(memoryStore(), { shareBytes: 'yes' as unknown as boolean })).toThrow(
      'cached option "shareBytes" must be true, false or \'checked\', got "yes"',
    );
    expect(() => cached(memoryStore(), { maxBytes: 0 })).toThrow(InvalidArgumentError);
    expect(() => cached(memoryStore(), { maxBytes: 0 })).toThrow('"maxBytes" must be an integer >= 1, got 0');
    expect(() => cached(memoryStore(), { maxBytes: 10, maxObjectBytes: 11 })).toThrow('"maxObjectBytes"');
  });
});

describe('readOnly', () => {
  it('reports writable false and refuses writes with a message that says why', async () => {
    const inner = memoryStore();
    const view = readOnly(inner);
    expect(view.capabilities.writable).toBe(false);
    expect(inner.capabilities.writable).toBe(true);
    const error = await view.put(bytesOf(1)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReadOnlyError);
    expect((error as Error).message).toMatch(/read-only/);
    const hash = await inner.put(bytesOf(1));
    expect(await view.has(hashBytes(bytesOf(1)))).toBe(true);
    expect((await view.get(hash))[0]).toBe(1);
  });
});
