/**
 * Encrypted refs on a real S3 server (MinIO): compare-and-swap is still the
 * server's conditional write on the ref object (`If-Match` on the ETag of
 * the encrypted body's address), and a swap whose answer is lost in transit
 * is settled truthfully: no false conflict, no write applied twice.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { s3Store } from '../../src/backends/s3.js';
import { initEncryption } from '../../src/crypto/keys.js';
import type { Hash, S3Store } from '../../src/index.js';
import { packed } from '../../src/layers/packed/packed.js';
import { dropFirstTryOfEachCondition, lossyProxy } from '../backends/s3/proxies.js';
import { disposeStore, primaryServer, storeOptions, uniquePrefix } from '../support/s3.js';

const server = primaryServer();
const plainHttp = server.endpoint.startsWith('http:');
const needsHttp = plainHttp ? '' : ' (skipped: the test proxy speaks plain HTTP and this endpoint is https)';
const encoder = new TextEncoder();

const stores: S3Store[] = [];
function open(prefix: string, extra: Parameters<typeof storeOptions>[2] = {}): S3Store {
  const store = s3Store(storeOptions(server, prefix, extra));
  stores.push(store);
  return store;
}
afterAll(async () => {
  await Promise.all(stores.map((s) => disposeStore(server, s).catch(() => undefined)));
});

describe('encrypted refs on S3', () => {
  it.runIf(plainHttp)(`30 encrypted swaps whose answers are lost: no false conflict, no double apply${needsHttp}`, async () => {
    const prefix = uniquePrefix(server, 'enc-lossy');
    const direct = open(prefix);
    const master = await initEncryption(direct, 'lossy password', { kdf: { N: 2 ** 10 } });
    const writer = packed(direct, { encryption: master, lingerMs: 1 });
    const interferer = packed(open(prefix), { encryption: master, lingerMs: 1 });
    const hashes = await writer.putMany(Array.from({ length: 31 }, (_, i) => encoder.encode(`lossy ${i}`)));
    const other = await writer.put(encoder.encode('written by someone else'));
    await writer.setRef('heads/lossy', hashes[0]!);
    let interfere = false;
    const proxy = await lossyProxy(server.endpoint, {
      watch: (head) => head.startsWith('PUT ') && head.includes(`/${prefix}refs/heads/`),
      // The first write conditioned on each ETag (each swap's first try) loses its answer; retries get through.
      drop: dropFirstTryOfEachCondition(),
      onDrop: async () => {
        if (interfere) await interferer.setRef('heads/lossy', other);
      },
    });
    try {
      const store = packed(open(prefix, { endpoint: proxy.endpoint }), { encryption: master, lingerMs: 1 });
      for (let i = 1; i <= 30; i++) {
        interfere = i % 3 === 0;
        const current = await store.getRef('heads/lossy');
        const result = await store.compareAndSwap('heads/lossy', current!.hash, hashes[i]!);
        expect(result.ok, `swap ${i} was reported as a conflict`).toBe(true);
        expect(result.current?.hash.equals(hashes[i]!)).toBe(true);
        const now = (await writer.getRef('heads/lossy'))!.hash;
        const expected: Hash = interfere ? other : hashes[i]!;
        expect(now.equals(expected), `after swap ${i}`).toBe(true);
      }
      expect(proxy.dropped).toHaveLength(30);
      expect(proxy.dropped.every((status) => status === 200)).toBe(true);
      // The server applied exactly 30 ref writes from this client: none twice.
      expect(proxy.watched.filter((status) => status === 200)).toHaveLength(30);
    } finally {
      await proxy.close();
    }
  }, 120_000);

  it('a stale swap is refused by the server, and the ref is left as the winner wrote it', async () => {
    const prefix = uniquePrefix(server, 'enc-cas');
    const inner = open(prefix);
    const master = await initEncryption(inner, 'cas password', { kdf: { N: 2 ** 10 } });
    const a = packed(inner, { encryption: master, lingerMs: 1 });
    const b = packed(open(prefix), { encryption: master, lingerMs: 1 });
    const [one, two, three] = await a.putMany(['1', '2', '3'].map((t) => encoder.encode(t)));
    await a.setRef('heads/x', one!);
    const seenByB = await b.getRef('heads/x');
    expect((await a.compareAndSwap('heads/x', one!, two!)).ok).toBe(true);
    const stale = await b.compareAndSwap('heads/x', seenByB!.hash, three!);
    expect(stale.ok).toBe(false);
    expect(stale.current?.hash.equals(two!)).toBe(true);
    expect((await b.getRef('heads/x'))?.hash.equals(two!)).toBe(true);
  });
});
