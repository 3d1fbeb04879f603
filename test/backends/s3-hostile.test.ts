/**
 * A bucket that other tools also write to (issue 12, the S3 side; issue 16,
 * item 3), on the primary server (MinIO by default): ref bodies that are not
 * Cairn's, a 50 MB body at a ref key, keys under refs/ and objects/ that
 * name no ref or hash, a damaged ref record, and an endpoint URL holding
 * credentials. Listings yield everything else and report what they skip;
 * reads fail with a typed error, bounded by what a ref can be; writes
 * replace a foreign ref under its current ETag.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, it } from 'vitest';
import { CorruptStoreError, hashBytes, InvalidArgumentError, s3Store, type ForeignEntry, type S3Store, type S3StoreOptions } from '../../src/index.js';
import { disposeStore, primaryServer, rawClient, storeOptions, uniquePrefix } from '../support/s3.js';
import { chaosProxy } from './s3/proxies.js';

const server = primaryServer();
const plainHttp = server.endpoint.startsWith('http:');
const encoder = new TextEncoder();
const MB = 1024 * 1024;

const stores: S3Store[] = [];
function open(prefix: string, extra: Partial<S3StoreOptions> = {}): { store: S3Store; foreign: ForeignEntry[] } {
  const foreign: ForeignEntry[] = [];
  const store = s3Store(storeOptions(server, prefix, { onForeign: (entry) => foreign.push(entry), ...extra }));
  stores.push(store);
  return { store, foreign };
}
afterAll(async () => {
  await Promise.all(stores.map((s) => disposeStore(server, s)));
});

/** Writes raw bytes at a key, as another tool would; resolves false if the server refuses the key. */
async function plant(key: string, body: string | Uint8Array): Promise<boolean> {
  const client = rawClient(server);
  try {
    await client.send(new PutObjectCommand({ Bucket: server.bucket, Key: key, Body: body }));
    return true;
  } catch {
    return false;
  } finally {
    client.destroy();
  }
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

const FOREIGN_BODIES: Record<string, string> = {
  'tool/not-json': 'ref: refs/heads/main\n',
  'tool/other-shape': JSON.stringify({ sha: 'abc123', branch: 'main' }),
  'tool/wrong-algorithm': JSON.stringify({ v: 1, hash: `md5:${'a'.repeat(32)}`, id: 'x1', h: [''] }),
  'tool/future-version': JSON.stringify({ v: 2, hash: `sha256:${'a'.repeat(64)}`, id: 'x2', h: [''] }),
  'tool/truncated': '{"v":1,"hash":"sha256:aaaa',
};

describe(`S3 bucket shared with other tools (${server.kind})`, () => {
  it('ref bodies another tool wrote: getRef is a CorruptStoreError, listRefs yields the others and reports each, setRef and compareAndSwap replace them', async () => {
    const prefix = uniquePrefix(server, 'foreign');
    const { store, foreign } = open(prefix);
    const good = await store.put(encoder.encode('good'));
    await store.setRef('heads/a', good);
    await store.setRef('tool/z-after', good);
    for (const [name, body] of Object.entries(FOREIGN_BODIES)) expect(await plant(`${prefix}refs/${name}`, body)).toBe(true);

    for (const name of Object.keys(FOREIGN_BODIES)) {
      const error = await store.getRef(name).catch((e: unknown) => e);
      expect(error, name).toBeInstanceOf(CorruptStoreError);
      expect((error as CorruptStoreError).key).toBe(`${prefix}refs/${name}`);
      expect((error as Error).message).toMatch(/not a Cairn ref/);
    }
    const listed = await collect(store.listRefs());
    expect(listed.map((r) => r.name)).toEqual(['heads/a', 'tool/z-after']);
    expect(foreign.map((f) => f.key).sort()).toEqual(Object.keys(FOREIGN_BODIES).map((n) => `${prefix}refs/${n}`).sort());
    expect(foreign.every((f) => f.kind === 'ref' && f.reason.length > 0)).toBe(true);

    // A foreign ref counts as absent for writes: a swap expecting a value fails and changes nothing...
    expect(await store.compareAndSwap('tool/not-json', good, good)).toEqual({ ok: false, current: undefined });
    await expect(store.getRef('tool/not-json')).rejects.toBeInstanceOf(CorruptStoreError);
    // ...a create-only swap and setRef replace it (under its ETag), and a delete tombstones it.
    expect((await store.compareAndSwap('tool/not-json', null, good)).ok).toBe(true);
    expect((await store.setRef('tool/other-shape', good)).hash.equals(good)).toBe(true);
    await store.deleteRef('tool/truncated');
    const fresh = open(prefix);
    expect((await fresh.store.getRef('tool/not-json'))?.hash.equals(good)).toBe(true);
    expect((await fresh.store.getRef('tool/other-shape'))?.hash.equals(good)).toBe(true);
    expect(await fresh.store.getRef('tool/truncated')).toBeUndefined();
    expect((await collect(fresh.store.listRefs())).map((r) => r.name)).toEqual(['heads/a', 'tool/not-json', 'tool/other-shape', 'tool/z-after']);
  });

  it('a damaged record of the newest value is reported, never read as the older value', async () => {
    const prefix = uniquePrefix(server, 'damaged');
    const { store, foreign } = open(prefix);
    const [older, newer] = await store.putMany([encoder.encode('older'), encoder.encode('newer')]);
    await store.setRef('heads/main', older!);
    await store.setRef('heads/main', newer!);
    const record = JSON.stringify({ v: 1, hash: newer!.toString(), id: 'damaged', h: ['x', ''] });
    expect(await plant(`${prefix}refs/heads/main`, record.slice(0, record.length - 7))).toBe(true);
    for (const reader of [store, open(prefix).store]) await expect(reader.getRef('heads/main')).rejects.toBeInstanceOf(CorruptStoreError);
    expect(await collect(store.listRefs())).toEqual([]);
    expect(foreign.map((f) => f.key)).toEqual([`${prefix}refs/heads/main`]);
  });

  for (const direct of [true, false]) {
    it.runIf(plainHttp)(
      `a 50 MB body at a ref key is refused unread (${direct ? 'direct client' : 'SDK'}): a typed error, bounded memory, and it can be replaced`,
      async () => {
        const prefix = uniquePrefix(server, 'big');
        expect(await plant(`${prefix}refs/heads/big`, new Uint8Array(50 * MB).fill(0x7b))).toBe(true);
        const proxy = await chaosProxy(server.endpoint, { lossRate: 0, maxDelayMs: 0 });
        try {
          const { store, foreign } = open(prefix, { endpoint: proxy.endpoint, directRequests: direct });
          const before = proxy.bytesToClients();
          const started = Date.now();
          const error = await store.getRef('heads/big').catch((e: unknown) => e);
          expect(error).toBeInstanceOf(CorruptStoreError);
          expect((error as Error).message).toMatch(/larger than any Cairn ref/);
          // Loopback socket buffers hold a few MB at most; reading the body would pass all 50.
          expect(proxy.bytesToClients() - before).toBeLessThan(8 * MB);
          expect(Date.now() - started).toBeLessThan(5000);
          expect(await collect(store.listRefs())).toEqual([]);
          expect(foreign.map((f) => f.reason)).toEqual([expect.stringMatching(/52428800 bytes, larger than any Cairn ref/)]);
          const hash = await store.put(encoder.encode('replacement'));
          expect((await store.compareAndSwap('heads/big', null, hash)).ok).toBe(true);
          expect((await open(prefix).store.getRef('heads/big'))?.hash.equals(hash)).toBe(true);
        } finally {
          await proxy.close();
        }
      },
      60_000,
    );
  }

  it('keys under refs/ that are not valid ref names are skipped and reported, never returned', async () => {
    const prefix = uniquePrefix(server, 'names');
    const { store, foreign } = open(prefix);
    const hash = await store.put(encoder.encode('named'));
    await store.setRef('heads/ok', hash);
    const body = JSON.stringify({ v: 1, hash: hash.toString(), id: 'planted', h: [''] });
    const candidates = ['../x', 'a/../x', 'heads/bad\u0001name', 'heads/tab\tname', 'heads/x.lock', 'heads//double', 'heads/trailing/', 'heads/sp ace'];
    const planted: string[] = [];
    for (const name of candidates) if (await plant(`${prefix}refs/${name}`, body)) planted.push(name);
    // The server took some of them (MinIO refuses ".." segments itself).
    expect(planted.length).toBeGreaterThanOrEqual(4);
    const listed = await collect(store.listRefs());
    expect(listed.map((r) => r.name)).toEqual(['heads/ok']);
    const reported = foreign.map((f) => f.key.slice(`${prefix}refs/`.length));
    // Each planted key the listing met is reported once (the server may list "a//b" or "a/" as given).
    expect(reported.sort()).toEqual(planted.filter((n) => reported.includes(n)).sort());
    expect(reported.length).toBeGreaterThanOrEqual(4);
    expect(foreign.every((f) => f.reason === 'it is not a valid ref name')).toBe(true);
  });

  it('keys under objects/ that name no hash are skipped by listObjects and reported', async () => {
    const prefix = uniquePrefix(server, 'objkeys');
    const { store, foreign } = open(prefix);
    const real = await store.put(encoder.encode('real object'));
    const upper = hashBytes(encoder.encode('upper'));
    const stray = [
      'objects/sha256/zz/not-a-hash',
      `objects/sha256/${upper.hex.slice(0, 2).toUpperCase()}/${upper.hex.slice(2).toUpperCase()}`,
      `objects/md5/ab/${'c'.repeat(30)}`,
      `objects/sha256/${upper.hex.slice(0, 2)}/${upper.hex.slice(2)}/extra`,
      'objects/README',
    ];
    for (const key of stray) expect(await plant(`${prefix}${key}`, 'stray')).toBe(true);
    const hashes = await collect(store.listObjects());
    expect(hashes.map((h) => h.toString())).toEqual([real.toString()]);
    expect(foreign.map((f) => f.key.slice(prefix.length)).sort()).toEqual([...stray].sort());
    expect(foreign.every((f) => f.kind === 'object')).toBe(true);
  });

  it('without onForeign, a skipped key is a process warning (CAIRN_FOREIGN_KEY) with control characters escaped, once per key', async () => {
    const prefix = uniquePrefix(server, 'warn');
    const store = s3Store(storeOptions(server, prefix));
    stores.push(store);
    expect(await plant(`${prefix}refs/heads/bell\u0007`, 'x')).toBe(true);
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    try {
      expect(await collect(store.listRefs())).toEqual([]);
      expect(await collect(store.listRefs())).toEqual([]);
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    const ours = warnings.filter((w) => (w as { code?: string }).code === 'CAIRN_FOREIGN_KEY');
    expect(ours).toHaveLength(1);
    expect(ours[0]!.message).toContain('heads/bell\\u0007');
    expect(ours[0]!.message).not.toContain('\u0007');
  });

  it('an endpoint URL holding credentials is refused with InvalidArgumentError that does not echo the secret', () => {
    const secret = 'wJalrXUtnFEMI-K7MDENG-s3cret';
    for (const endpoint of [`http://AKIAEXAMPLE:${secret}@127.0.0.1:9000`, `https://user:${secret}@s3.example.com/base`, `http://only-user@127.0.0.1:9000`]) {
      let error: unknown;
      try {
        s3Store({ bucket: 'b', endpoint });
      } catch (e) {
        error = e;
      }
      expect(error, endpoint).toBeInstanceOf(InvalidArgumentError);
      const text = `${(error as Error).message} ${(error as Error).stack} ${JSON.stringify(error)}`;
      expect(text).not.toContain(secret);
      expect(text).not.toContain('AKIAEXAMPLE');
      expect((error as Error).message).toMatch(/must not hold credentials.*credentials option/);
    }
    const saved = process.env.AWS_ENDPOINT_URL_S3;
    process.env.AWS_ENDPOINT_URL_S3 = `http://KEY:${secret}@127.0.0.1:9000`;
    try {
      expect(() => s3Store({ bucket: 'b' })).toThrow(InvalidArgumentError);
      expect(() => s3Store({ bucket: 'b' })).toThrow(/AWS_ENDPOINT_URL_S3/);
    } finally {
      if (saved === undefined) delete process.env.AWS_ENDPOINT_URL_S3;
      else process.env.AWS_ENDPOINT_URL_S3 = saved;
    }
  });
});
