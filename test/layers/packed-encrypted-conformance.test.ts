/**
 * The conformance suite on the encrypted packed layer over memory, disk and
 * MinIO: every Store guarantee holds when every blob, record, large object
 * and ref body is encrypted. Small packs and a small object limit, so that
 * cases cross pack boundaries and large objects go through segments.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe } from 'vitest';
import { openDiskStore } from '../../src/backends/disk.js';
import { s3Store } from '../../src/backends/s3.js';
import { initEncryption } from '../../src/crypto/keys.js';
import { memoryStore, type Store } from '../../src/index.js';
import { packed, type PackedOptions } from '../../src/layers/packed/packed.js';
import { conformanceSuite } from '../conformance.js';
import { disposeStore, s3Servers, storeOptions } from '../support/s3.js';

const small: PackedOptions = { packBytes: 64 * 1024, maxObjectBytes: 64 * 1024, lingerMs: 2 };
/** Cheap scrypt for tests: the key derivation is not what is under test here. */
const kdf = { N: 2 ** 10 };

async function encrypted(inner: Store, options: PackedOptions = {}): Promise<Store> {
  const master = await initEncryption(inner, 'conformance password', { kdf });
  return packed(inner, { ...small, ...options, encryption: master });
}

conformanceSuite('encrypted packed over memory', {
  setup: async () => encrypted(memoryStore()),
});

const dirs = new WeakMap<Store, string>();
conformanceSuite('encrypted packed over disk', {
  setup: async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-packed-enc-'));
    const store = await encrypted(await openDiskStore(dir), { indexCache: memoryStore() });
    dirs.set(store, dir);
    return store;
  },
  teardown: async (store) => {
    await store.close();
    await rm(dirs.get(store)!, { recursive: true, force: true });
  },
});

for (const server of s3Servers().filter((s) => s.kind === 'minio')) {
  describe(`encrypted packed over S3 on ${server.kind}`, () => {
    const inners = new WeakMap<Store, ReturnType<typeof s3Store>>();
    conformanceSuite(`encrypted packed over s3 (${server.kind})`, {
      setup: async () => {
        const inner = s3Store(storeOptions(server, undefined, { multipartThreshold: 5 * 1024 * 1024, partSize: 5 * 1024 * 1024 }));
        const store = await encrypted(inner);
        inners.set(store, inner);
        return store;
      },
      teardown: async (store) => {
        await store.close().catch(() => undefined);
        await disposeStore(server, inners.get(store)!).catch(() => undefined);
      },
      // Each encrypted ref write is a body PUT, a ref read and a conditional write: the increment race needs time on a loaded machine.
      timeoutMs: 240_000,
      manyRefs: 1000,
    });
  });
}
