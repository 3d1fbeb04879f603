/** Layered stores over the real backends: disk over disk, and disk over MinIO. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDiskStore } from '../../src/backends/disk.js';
import type { Store } from '../../src/index.js';
import { layered } from '../../src/layers/layered.js';
import { describe, expect, it } from 'vitest';
import { s3Store } from '../../src/backends/s3.js';
import { conformanceSuite } from '../conformance.js';
import { freshMinioStore, minioOptions, uniquePrefix } from '../support/s3.js';
import { counterValue, raceIncrements } from './race.js';

const dirs = new Map<Store, string>();

async function teardown(store: Store): Promise<void> {
  await store.close();
  const dir = dirs.get(store);
  dirs.delete(store);
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
}

conformanceSuite('layered disk over disk', {
  setup: async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-layered-'));
    const store = layered({ upper: await openDiskStore(join(dir, 'upper')), lower: await openDiskStore(join(dir, 'lower')) });
    dirs.set(store, dir);
    return store;
  },
  teardown,
  manyRefs: 500,
});

conformanceSuite('layered disk over MinIO', {
  setup: async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-layered-'));
    const store = layered({ upper: await openDiskStore(join(dir, 'upper')), lower: freshMinioStore() });
    dirs.set(store, dir);
    return store;
  },
  teardown,
  manyRefs: 500,
});

describe('two layered stores on two directories sharing one lower store', () => {
  const lowers: Record<string, (dir: string, shared: string) => Promise<Store>> = {
    'a directory': async (dir) => openDiskStore(join(dir, 'lower')),
    MinIO: async (_dir, prefix) => s3Store(minioOptions(prefix)),
  };
  for (const [label, openLower] of Object.entries(lowers)) {
    it(`race to advance one ref on ${label}: no lost update, the loser gets the winner's value`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'cairn-layered-race-'));
      const prefix = uniquePrefix(undefined, 'race');
      try {
        const stores = await Promise.all(
          ['a', 'b'].map(async (name) => layered({ upper: await openDiskStore(join(dir, name)), lower: await openLower(dir, prefix) })),
        );
        const conflicts = await raceIncrements(stores, 12);
        for (const store of stores) await store.close();
        const lower = await openLower(dir, prefix);
        const final = await lower.getRef('counter');
        expect(counterValue(await lower.get(final!.hash))).toBe(24);
        expect(conflicts).toBeGreaterThan(0);
        await lower.close();
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }, 120_000);
  }
});
