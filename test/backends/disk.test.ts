import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDiskStore, type DiskStore } from '../../src/backends/disk.js';
import { conformanceSuite } from '../conformance.js';

const dirs = new Map<DiskStore, string>();

conformanceSuite('disk', {
  setup: async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-disk-'));
    const store = await openDiskStore(join(dir, 'store'));
    dirs.set(store, dir);
    return store;
  },
  teardown: async (store) => {
    await store.close();
    const dir = dirs.get(store as DiskStore);
    dirs.delete(store as DiskStore);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  },
});
