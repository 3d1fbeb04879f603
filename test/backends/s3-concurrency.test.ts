/**
 * Refs under real concurrency and real network failure, on the primary S3
 * server (MinIO by default): separate processes racing on one ref, swaps
 * whose responses are lost in transit, and a server that ignores
 * conditional writes.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { s3Store } from '../../src/backends/s3.js';
import { UnsupportedError, type Hash, type S3Store } from '../../src/index.js';
import { disposeStore, minioEnv, primaryServer, storeOptions, uniquePrefix } from '../support/s3.js';
import { dropFirstTryOfEachCondition, lossyProxy, strippingProxy } from './s3/proxies.js';

const server = primaryServer();
// The proxies speak plain HTTP: against an https endpoint (real AWS) those cases are skipped, saying why.
const plainHttp = server.endpoint.startsWith('http:');
const needsHttp = plainHttp ? '' : ' (skipped: the test proxies speak plain HTTP and this endpoint is https)';
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const WORKER = fileURLToPath(new URL('./s3/increment-worker.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

const stores: S3Store[] = [];
function open(prefix: string, extra: Parameters<typeof storeOptions>[2] = {}): S3Store {
  const store = s3Store(storeOptions(server, prefix, extra));
  stores.push(store);
  return store;
}
afterAll(async () => {
  await Promise.all(stores.map((s) => disposeStore(server, s)));
});

interface Worker {
  ready: Promise<void>;
  done: Promise<number>;
  go(): void;
}

function startWorker(prefix: string, ref: string, count: number): Worker {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER, ref, String(count)], {
    cwd: ROOT,
    env: { ...process.env, ...minioEnv(prefix, server) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines = createInterface({ input: child.stdout });
  let onReady: () => void;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  let lost = -1;
  lines.on('line', (line) => {
    if (line === 'ready') onReady();
    const match = /^done (\d+)$/.exec(line);
    if (match) lost = Number(match[1]);
  });
  const done = new Promise<number>((resolve, reject) =>
    child.on('exit', (code) =>
      code === 0 && lost >= 0 ? resolve(lost) : reject(new Error(`worker exited ${code}: ${stderr.slice(-2000)}`)),
    ),
  );
    // A worker that dies before it is ready must fail the test, not hang it.
  return { ready: Promise.race([ready, done.then(() => undefined)]), done, go: () => child.stdin.end('go\n') };
}

describe(`S3 refs under concurrency (${server.kind})`, () => {
  it('8 processes x 50 read-then-swap increments on one ref end at exactly 400', async () => {
    const prefix = uniquePrefix(server, 'procs');
    const workers = Array.from({ length: 8 }, () => startWorker(prefix, 'counter', 50));
    await Promise.all(workers.map((w) => w.ready));
    for (const worker of workers) worker.go();
    const started = Date.now();
    const lost = await Promise.all(workers.map((w) => w.done));
    console.log(`8 processes x 50 increments: ${Date.now() - started} ms, ${lost.reduce((a, b) => a + b, 0)} swaps lost and retried`);
    const store = open(prefix);
    const final = await store.getRef('counter');
    expect(decoder.decode(await store.get(final!.hash))).toBe('400');
    // The race was real: some swaps lost and were retried.
    expect(lost.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
  }, 120_000);

  for (const [label, maxAttempts] of [
    ['with SDK retries', undefined],
    ['without SDK retries', 1],
  ] as const) {
    it.runIf(plainHttp)(`50 swaps whose responses are lost (${label}): no false conflict, no double apply${needsHttp}`, async () => {
      const prefix = uniquePrefix(server, 'lossy');
      const direct = open(prefix);
      const interferer = open(prefix);
      const hashes = await direct.putMany(Array.from({ length: 51 }, (_, i) => encoder.encode(`lossy ${i}`)));
      const other = await direct.put(encoder.encode('written by someone else'));
      await direct.setRef('heads/lossy', hashes[0]!);
      let interfere = false;
      const proxy = await lossyProxy(server.endpoint, {
        watch: (head) => head.startsWith('PUT ') && head.includes(`/${prefix}refs/`),
        // The first write conditioned on each ETag (each swap's first try) loses its answer; retries get through.
        drop: dropFirstTryOfEachCondition(),
        // Every third lost answer, another writer moves the ref on before the writer rereads it.
        onDrop: async () => {
          if (interfere) await interferer.setRef('heads/lossy', other);
        },
      });
      try {
        const store = open(prefix, { endpoint: proxy.endpoint, ...(maxAttempts === undefined ? {} : { maxAttempts }) });
        let interfered = 0;
        for (let i = 1; i <= 50; i++) {
          interfere = i % 3 === 0;
          const current = await store.getRef('heads/lossy');
          const result = await store.compareAndSwap('heads/lossy', current!.hash, hashes[i]!);
          expect(result.ok, `swap ${i} was reported as a conflict`).toBe(true);
          expect(result.current?.hash.equals(hashes[i]!)).toBe(true);
          const now = (await direct.getRef('heads/lossy'))!.hash;
          const expected: Hash = interfere ? other : hashes[i]!;
          expect(now.equals(expected), `after swap ${i}`).toBe(true);
          if (interfere) interfered++;
        }
        expect(interfered).toBe(16);
        // Every swap lost its first answer after the server had applied it...
        expect(proxy.dropped).toHaveLength(50);
        expect(proxy.dropped.every((status) => status === 200)).toBe(true);
        // ...and the server applied exactly 50 ref writes from this client: none twice.
        expect(proxy.watched.filter((status) => status === 200)).toHaveLength(50);
      } finally {
        await proxy.close();
      }
    }, 60_000);
  }

  it.runIf(plainHttp)(`a server that ignores conditional writes gets ref writes refused; objects still work${needsHttp}`, async () => {
    const prefix = uniquePrefix(server, 'strip');
    const proxy = await strippingProxy(server.endpoint, { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey }, server.region);
    try {
      const store = open(prefix, { endpoint: proxy.endpoint });
      const hash = await store.put(encoder.encode('objects still work'));
      expect(decoder.decode(await store.get(hash))).toBe('objects still work');
      const error = await store.setRef('heads/main', hash).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnsupportedError);
      expect((error as Error).message).toMatch(/does not enforce conditional writes/);
      await expect(store.compareAndSwap('heads/main', null, hash)).rejects.toBeInstanceOf(UnsupportedError);
      await expect(store.deleteRef('heads/main')).rejects.toBeInstanceOf(UnsupportedError);
      // Nothing was written, and reads still work.
      expect(await store.getRef('heads/main')).toBeUndefined();
      expect(await open(prefix).getRef('heads/main')).toBeUndefined();
    } finally {
      await proxy.close();
    }
  });
});
