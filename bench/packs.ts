/**
 * Packs against loose objects on a MinIO this section starts on loopback,
 * in the same run (`npx tsx bench/run.ts packs`). HTTP requests are counted
 * at the client (every request the process sends).
 *
 * - Push 10,000 x 4 KiB (half compressible, half random): seconds,
 *   objects/s, requests, loose `putMany` vs `packed(...).putMany`.
 * - Cold random get of 1,000 of them from a store opened afresh: requests
 *   per object and p50/p99 latency, packed vs loose.
 * - Reopen with many packs (`CAIRN_BENCH_PACKS`, default 1,000): requests
 *   and time, cold (no index cache) and warm (index cache kept).
 *
 * The machines are shared and noisy: compare rows of one run, not runs.
 */
import { channel } from 'node:diagnostics_channel';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { memoryStore, type Hash, type S3Store, type Store } from '../src/index.js';
import { s3Store } from '../src/backends/s3.js';
import { packed, type PackedOptions } from '../src/layers/packed/packed.js';
import { startMinio, type RunningServer } from '../test/support/servers.js';
import { percentile, printTable, type Row } from './table.js';

let requests = 0;
channel('http.client.request.start').subscribe(() => {
  requests++;
});

const COUNT = 10_000;
const SIZE = 4096;
const GETS = 1_000;

function items(seed: number): Uint8Array[] {
  return Array.from({ length: COUNT }, (_, i) => {
    if (i % 2 === 0) return randomBytes(SIZE);
    const line = Buffer.from(`${seed} line ${i} of a text file that repeats itself somewhat; `);
    const out = Buffer.alloc(SIZE);
    for (let at = 0; at < SIZE; at += line.length) line.copy(out, at);
    return out;
  });
}

function open(server: RunningServer, prefix: string): S3Store {
  return s3Store({
    bucket: server.bucket,
    prefix,
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number; requests: number }> {
  const before = requests;
  const start = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - start, requests: requests - before };
}

async function randomGets(store: Store, hashes: readonly Hash[]): Promise<{ latencies: number[]; requests: number }> {
  const before = requests;
  const latencies: number[] = [];
  for (let i = 0; i < GETS; i++) {
    const hash = hashes[Math.floor(Math.random() * hashes.length)]!;
    const start = performance.now();
    await store.get(hash);
    latencies.push(performance.now() - start);
  }
  return { latencies, requests: requests - before };
}

export async function run(): Promise<void> {
  const server = await startMinio('cairn-bench-packs');
  try {
    const options: PackedOptions = {};
    // 1. Push.
    const loosePrefix = `loose-${Date.now()}/`;
    const packedPrefix = `packed-${Date.now()}/`;
    const loose = open(server, loosePrefix);
    const looseData = items(1);
    const loosePush = await timed(() => loose.putMany(looseData));
    const pack = packed(open(server, packedPrefix), options);
    const opening = await timed(() => pack.refresh());
    const packedData = items(2);
    const packedPush = await timed(() => pack.putMany(packedData));
    await pack.close();
    const rows: Row[] = [
      { store: 'loose (s3Store.putMany)', seconds: loosePush.ms / 1000, 'objects/s': COUNT / (loosePush.ms / 1000), requests: loosePush.requests, 'vs loose': '1.00x' },
      {
        store: 'packed (16 MiB packs, zstd)',
        seconds: packedPush.ms / 1000,
        'objects/s': COUNT / (packedPush.ms / 1000),
        requests: packedPush.requests,
        'vs loose': `${(loosePush.ms / packedPush.ms).toFixed(2)}x`,
      },
    ];
    printTable(`Push ${COUNT.toLocaleString('en-US')} x 4 KiB to MinIO (opening the packed store: ${opening.requests} requests, ${opening.ms.toFixed(0)} ms, not counted above)`, rows);

    // 2. Cold random gets.
    const coldLoose = open(server, loosePrefix);
    const looseGets = await randomGets(coldLoose, loosePush.value);
    await coldLoose.close();
    const coldPacked = packed(open(server, packedPrefix), options);
    const load = await timed(() => coldPacked.refresh());
    const packedGets = await randomGets(coldPacked, packedPush.value);
    await coldPacked.close();
    printTable(`Cold random get of ${GETS.toLocaleString('en-US')} x 4 KiB, one at a time (opening the packed store: ${load.requests} requests, ${load.ms.toFixed(0)} ms, not counted)`, [
      { store: 'loose', 'requests/object': looseGets.requests / GETS, 'p50 ms': percentile(looseGets.latencies, 50), 'p99 ms': percentile(looseGets.latencies, 99) },
      { store: 'packed', 'requests/object': packedGets.requests / GETS, 'p50 ms': percentile(packedGets.latencies, 50), 'p99 ms': percentile(packedGets.latencies, 99) },
    ]);

    // 3. Reopen with many packs.
    const packs = Number(process.env.CAIRN_BENCH_PACKS ?? 1000);
    const manyPrefix = `many-${Date.now()}/`;
    const cache = memoryStore();
    // The cache outlives each store that uses it (a store closes its cache); methods bound, as MemoryStore has private fields.
    const cacheView = new Proxy(cache, {
      get: (t, p) => {
        if (p === 'close') return async () => undefined;
        const value = (t as unknown as Record<string | symbol, unknown>)[p];
        return typeof value === 'function' ? value.bind(t) : value;
      },
    }) as Store;
    const writer = packed(open(server, manyPrefix), { packBytes: 2 * SIZE, indexCache: cacheView, maxInFlight: 16 });
    const made = await timed(() => writer.putMany(Array.from({ length: packs * 2 }, () => randomBytes(SIZE))));
    await writer.close();
    const cold = packed(open(server, manyPrefix), {});
    const coldOpen = await timed(() => cold.refresh());
    await cold.close();
    const warm = packed(open(server, manyPrefix), { indexCache: cacheView });
    const warmOpen = await timed(() => warm.refresh());
    await warm.close();
    // What the ref listing alone costs: the S3 backend reads each listed ref's body.
    const bare = open(server, manyPrefix);
    const listing = await timed(async () => {
      let n = 0;
      for await (const _ of bare.listRefs('.cairn/packs/')) n++;
      return n;
    });
    await bare.close();
    printTable(`Reopen a packed store with ${packs.toLocaleString('en-US')} packs (writing them took ${(made.ms / 1000).toFixed(1)} s, ${made.requests} requests)`, [
      { open: 'cold (no index cache)', requests: coldOpen.requests, ms: coldOpen.ms },
      { open: 'warm (index cache kept)', requests: warmOpen.requests, ms: warmOpen.ms },
      { open: `baseline: s3Store.listRefs of the ${listing.value} index refs alone`, requests: listing.requests, ms: listing.ms },
    ]);
    await loose.close();
  } finally {
    await server.stop();
  }
}
