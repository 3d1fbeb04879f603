/**
 * A remote that already holds damaged bytes under a hash the layered store
 * uploads (issue 12, case 1): push must not skip the object on the remote's
 * word, must fail with an IntegrityError naming it and saying what to do,
 * and must publish no ref. Over a memory remote (a view whose reads return
 * other bytes) and a disk remote (a byte flipped in its file).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDiskStore } from '../../src/backends/disk.js';
import { hashBytes, IntegrityError, memoryStore, type Hash, type HashLike, type Store } from '../../src/index.js';
import { layered, type LayeredOptions } from '../../src/layers/layered.js';
import { wrap } from './faulty-store.js';

/** Bytes of `size` that no other test writes. */
function content(size: number, seed: number): Uint8Array {
  return new Uint8Array(size).map((_, i) => (i * 31 + seed * 7 + (i >> 8)) & 0xff);
}

/** A lower store that holds `victim` (so `has` says yes and a put of it is a no-op) but whose reads of it return other bytes. */
async function damagedMemoryRemote(
  victimBytes: Uint8Array,
): Promise<{ store: Store; inner: Store; victim: Hash; repair: () => Promise<void> }> {
  const inner = memoryStore();
  const victim = await inner.put(victimBytes);
  const bad = Uint8Array.from(victimBytes);
  bad[bad.length >> 1] = bad[bad.length >> 1]! ^ 0xff;
  let damaged = true;
  // What `cairn verify --repair` does: delete the damaged copy, so that the next upload can put it again.
  const repair = async (): Promise<void> => {
    damaged = false;
    await inner.delete(victim);
  };
  const isVictim = (h: HashLike): boolean => damaged && h.toString() === victim.toString();
  const store = wrap(inner, {
    get: async (h, o) => (isVictim(h) ? Uint8Array.from(bad) : inner.get(h, o)),
    getMany: async (hs, o) => Promise.all(hs.map((h) => (isVictim(h) ? Uint8Array.from(bad) : inner.get(h, o)))),
    getStream: (h, o) =>
      isVictim(h)
        ? (async function* () {
            yield Uint8Array.from(bad);
          })()
        : inner.getStream(h, o),
    close: async () => {},
  });
  return { store, inner, victim, repair };
}

async function expectDamaged(push: Promise<unknown>, victim: Hash): Promise<void> {
  const error = await push.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(IntegrityError);
  expect((error as IntegrityError).code).toBe('ERR_INTEGRITY');
  expect((error as IntegrityError).key).toBe(victim.toString());
  expect((error as Error).message).toContain(`damaged bytes for ${victim.toString()}`);
  expect((error as Error).message).toContain('cairn verify --repair');
}

type Case = { name: string; size: number; options: Partial<LayeredOptions> };
const cases: Case[] = [
  // 100 KiB is over checkRemoteMinBytes (64 KiB): the uploader asks hasMany and would skip it.
  { name: 'a batched upload', size: 100_000, options: {} },
  // Over streamThresholdBytes: the uploader's streamed path asks has() and would skip it.
  { name: 'a streamed upload', size: 100_000, options: { streamThresholdBytes: 50_000 } },
  // Small objects are checked too when asked for.
  { name: 'a small object with checkRemoteMinBytes: 0', size: 2_000, options: { checkRemoteMinBytes: 0 } },
];

describe('layered push over a memory remote holding damaged bytes', () => {
  for (const { name, size, options } of cases) {
    for (const uploadOnWrite of [false, true]) {
      it(`${name} (uploadOnWrite ${uploadOnWrite}): IntegrityError, no ref published, the object stays pending`, async () => {
        const bytes = content(size, size + (uploadOnWrite ? 1 : 0));
        const { store: lower, inner, victim, repair } = await damagedMemoryRemote(bytes);
        const store = layered({ upper: memoryStore(), lower, uploadOnWrite, ...options });
        const hash = await store.put(bytes);
        expect(hash.equals(victim)).toBe(true);
        await store.setRef('snapshots/s', hash);
        await expectDamaged(store.push(), victim);
        expect(await inner.getRef('snapshots/s')).toBeUndefined();
        const status = await store.status();
        expect(status.pendingObjects).toBe(1);
        expect(status.refs).toEqual([expect.objectContaining({ ref: 'snapshots/s', state: 'ahead' })]);
        // Still refused on the next push: nothing was marked done.
        await expectDamaged(store.push(), victim);
        // Once the damaged copy is deleted (by `cairn verify --repair`), the next push uploads it and goes through.
        await repair();
        const pushed = await store.push();
        expect(pushed.pushed.map((p) => p.ref)).toEqual(['snapshots/s']);
        expect(Buffer.from(await inner.get(victim)).equals(Buffer.from(bytes))).toBe(true);
        await store.close();
      });
    }
  }

  it("a ref's own object that reached the upper store behind the layer, damaged below: push refuses it", async () => {
    const bytes = content(500, 9);
    const { store: lower, inner, victim } = await damagedMemoryRemote(bytes);
    const upper = memoryStore();
    await upper.put(bytes);
    const store = layered({ upper, lower, uploadOnWrite: false });
    await store.setRef('heads/x', victim);
    await expectDamaged(store.push(), victim);
    expect(await inner.getRef('heads/x')).toBeUndefined();
    await store.close();
  });

  it('an intact copy the remote already has is still skipped, not uploaded again', async () => {
    const bytes = content(100_000, 3);
    const lower = memoryStore();
    await lower.put(bytes);
    const puts: number[] = [];
    const counted = wrap(lower, {
      putMany: async (items, o) => {
        puts.push(items.length);
        return lower.putMany(items, o);
      },
      close: async () => {},
    });
    const store = layered({ upper: memoryStore(), lower: counted, uploadOnWrite: false });
    await store.setRef('heads/y', await store.put(bytes));
    const result = await store.push();
    expect(result.pushed.map((p) => p.ref)).toEqual(['heads/y']);
    expect(puts).toEqual([]);
    expect(store.progress().objectsSkipped).toBe(1);
    await store.close();
  });
});

describe('layered push over a disk remote holding damaged bytes', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-damaged-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a byte flipped in the remote file of H: push fails with IntegrityError and publishes nothing', async () => {
    const bytes = content(150_000, 5);
    const remoteDir = join(dir, 'remote');
    const seed = await openDiskStore(remoteDir, { smallObjectMaxBytes: 1024 });
    const victim = await seed.put(bytes);
    await seed.close();
    const file = join(remoteDir, 'large', `sha256-${victim.hex}`);
    const onDisk = await readFile(file);
    onDisk[100_000] = onDisk[100_000]! ^ 0x5a;
    await writeFile(file, onDisk);

    const store = layered({
      upper: await openDiskStore(join(dir, 'local')),
      lower: await openDiskStore(remoteDir, { smallObjectMaxBytes: 1024 }),
      uploadOnWrite: false,
    });
    const hash = await store.put(bytes);
    expect(hash.equals(hashBytes(bytes))).toBe(true);
    await store.setRef('snapshots/d', hash);
    await expectDamaged(store.push(), victim);
    await store.close();
    const remote = await openDiskStore(remoteDir, { smallObjectMaxBytes: 1024 });
    expect(await remote.getRef('snapshots/d')).toBeUndefined();
    await remote.close();
  });
});
