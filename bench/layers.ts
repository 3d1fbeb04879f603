/**
 * Layers, each beside a baseline measured in the same run:
 *
 * - push of 10,000 x 4 KiB objects from a disk upper store to MinIO (started
 *   here on loopback) beside a hand-written p-queue loop of
 *   `PutObjectCommand` at the same number of requests in flight
 *   (target: at least 0.9x). Best of 2 runs each: the machines are shared.
 * - `cached` gets per second and measured hit rate at 0%, 50%, 90% and
 *   100% hits, beside the same lookups in a plain `Map`; at 100% also with
 *   `shareBytes: true` (target: at least 0.5x the Map). `CAIRN_BENCH_LAYERS=cache`
 *   runs this section alone.
 * - peak memory of 100,000 queued 4 KiB objects through the batch uploader
 *   with a 16 MiB pending bound, in a child process (`--expose-gc`).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import PQueue from 'p-queue';
import { openDiskStore } from '../src/backends/disk.js';
import { s3Store } from '../src/backends/s3.js';
import { memoryStore, type Hash } from '../src/index.js';
import { cached } from '../src/layers/cached.js';
import { layered } from '../src/layers/layered.js';
import { startMinio, type RunningServer } from '../test/support/servers.js';
import { printTable, type Row } from './table.js';

const KiB = 1024;
const MiB = 1024 * KiB;

interface Timed {
  objectsPerSec: number;
  cpuMsPerObject: number;
}

async function timed(count: number, fn: () => Promise<unknown>): Promise<Timed> {
  const cpu = process.cpuUsage();
  const start = performance.now();
  await fn();
  const seconds = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu);
  return { objectsPerSec: count / seconds, cpuMsPerObject: (used.user + used.system) / 1000 / count };
}

const better = (a: Timed | undefined, b: Timed): Timed => (a === undefined || b.objectsPerSec > a.objectsPerSec ? b : a);

/** Push from a disk upper (objects written beforehand, uploads deferred) to MinIO. */
async function pushBench(server: RunningServer): Promise<void> {
  const count = 10_000;
  // Requests in flight, the same on both sides: 4 batches x 4 requests each for Cairn, 16 for the loop.
  const batches = 4;
  const perBatch = 4;
  const inFlight = batches * perBatch;
  const credentials = { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey };
  const sdk = new S3Client({ endpoint: server.endpoint, region: server.region, forcePathStyle: true, credentials });
  let cairn: Timed | undefined;
  let loop: Timed | undefined;
  try {
    for (let round = 0; round < 2; round++) {
      const dir = await mkdtemp(join(tmpdir(), 'cairn-bench-layers-'));
      try {
        const lower = s3Store({
          bucket: server.bucket,
          prefix: `layers-${round}/`,
          endpoint: server.endpoint,
          region: server.region,
          credentials,
          concurrency: perBatch,
        });
        const store = layered({
          upper: await openDiskStore(join(dir, 'upper')),
          lower,
          uploadOnWrite: false,
          concurrency: batches,
          batchSize: 16,
        });
        const payloads = Array.from({ length: count }, () => randomBytes(4 * KiB));
        for (let i = 0; i < count; i += 500) await store.putMany(payloads.slice(i, i + 500));
        let last: Hash | undefined;
        for await (const hash of store.listObjects()) last = hash;
        await store.setRef('heads/main', last!);
        cairn = better(cairn, await timed(count, () => store.push()));
        await store.close();

        const sdkPayloads = Array.from({ length: count }, () => randomBytes(4 * KiB));
        const queue = new PQueue({ concurrency: inFlight });
        loop = better(
          loop,
          await timed(count, async () => {
            for (let i = 0; i < count; i++) {
              void queue.add(() =>
                sdk.send(new PutObjectCommand({ Bucket: server.bucket, Key: `loop-${round}/${i}`, Body: sdkPayloads[i]! })),
              );
            }
            await queue.onIdle();
          }),
        );
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
  } finally {
    sdk.destroy();
  }
  printTable(`Layered push: 10,000 x 4 KiB, disk upper -> MinIO, ${inFlight} requests in flight (best of 2)`, [
    {
      client: 'cairn layered push (putMany batches)',
      'objects/s': cairn!.objectsPerSec,
      'CPU ms/object': cairn!.cpuMsPerObject,
      'vs loop': `${(cairn!.objectsPerSec / loop!.objectsPerSec).toFixed(2)}x`,
    },
    { client: 'baseline: p-queue loop of PutObjectCommand', 'objects/s': loop!.objectsPerSec, 'CPU ms/object': loop!.cpuMsPerObject, 'vs loop': '1.00x' },
  ]);
}

/**
 * Gets per second of each contender: the best of many short slices (2,000
 * gets each, 100 per contender), interleaved one slice of each per round
 * with the order rotating. On a shared, loaded machine a long pass of the
 * slowest contender is always preempted while a short pass of the fastest
 * often is not, which flatters the fast one; short slices give every
 * contender the same chance of an undisturbed run.
 */
async function bestRates(sequence: readonly Hash[], contenders: Record<string, (hash: Hash) => Promise<unknown>>): Promise<Record<string, number>> {
  const names = Object.keys(contenders);
  const best: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
  const slice = 2_000;
  for (let round = 0; round < 100; round++) {
    const from = (round * slice) % sequence.length;
    const part = sequence.slice(from, from + slice);
    for (let k = 0; k < names.length; k++) {
      const name = names[(round + k) % names.length]!;
      const get = contenders[name]!;
      const start = performance.now();
      for (const hash of part) await get(hash);
      best[name] = Math.max(best[name]!, part.length / ((performance.now() - start) / 1000));
    }
  }
  return best;
}

/** `cached` at several hit ratios, beside a plain Map holding every object. */
async function cacheBench(): Promise<void> {
  const hot = 1000;
  const ops = 20_000;
  const inner = memoryStore();
  const hotBytes = Array.from({ length: hot }, () => randomBytes(4 * KiB));
  const hotHashes = await inner.putMany(hotBytes);
  const map = new Map<string, Uint8Array>(hotHashes.map((h, i) => [h.toString(), hotBytes[i]!]));
  const rows: Row[] = [];

  for (const ratio of [0, 0.5, 0.9, 1]) {
    // Misses are objects never read before (always a miss); hits come from a hot set the cache holds.
    const isCold = (i: number): boolean => i % 10 < Math.round((1 - ratio) * 10);
    const coldCount = Array.from({ length: ops }, (_, i) => i).filter(isCold).length;
    const coldHashes = coldCount > 0 ? await inner.putMany(Array.from({ length: coldCount }, () => randomBytes(4 * KiB))) : [];
    let c = 0;
    const sequence = Array.from({ length: ops }, (_, i) => (isCold(i) ? coldHashes[c++]! : hotHashes[i % hot]!));
    const store = cached(inner, { maxBytes: 16 * MiB });
    await store.getMany(hotHashes); // warm the hot set
    const before = store.stats();
    const start = performance.now();
    for (const hash of sequence) await store.get(hash);
    const rate = ops / ((performance.now() - start) / 1000);
    const after = store.stats();
    const hits = after.hits - before.hits;
    if (ratio < 1) {
      rows.push({ lookup: `cached over memory, ${Math.round(ratio * 100)}% hits wanted`, 'measured hit rate': `${((hits / ops) * 100).toFixed(1)}%`, 'gets/s': rate, 'vs Map': '' });
    } else {
      // All hits: repeatable, so the best of interleaved passes (a shared, noisy machine), beside the baselines.
      const sharing = cached(inner, { maxBytes: 16 * MiB, shareBytes: true });
      await sharing.getMany(hotHashes);
      const sharedBefore = sharing.stats();
      const rates = await bestRates(sequence, {
        copying: (hash) => store.get(hash),
        // The opt-in: hits hand out the cached bytes, no copy (target: at least 0.5x the Map).
        sharing: (hash) => sharing.get(hash),
        // The same sequence through a Map in an async function: a store-shaped lookup with no policy.
        map: async (hash) => map.get(hash.toString()),
        mapCopy: async (hash) => Uint8Array.prototype.slice.call(map.get(hash.toString())!),
      });
      const sharedAfter = sharing.stats();
      const sharedHits = sharedAfter.hits - sharedBefore.hits;
      const sharedReads = sharedHits + sharedAfter.misses - sharedBefore.misses;
      const copying = Math.max(rate, rates.copying!);
      const vsMap = (r: number): string => `${(r / rates.map!).toFixed(2)}x`;
      rows.push(
        { lookup: 'cached over memory, 100% hits wanted (copies: the default)', 'measured hit rate': `${((hits / ops) * 100).toFixed(1)}%`, 'gets/s': copying, 'vs Map': vsMap(copying) },
        { lookup: 'cached over memory, 100% hits, shareBytes: true', 'measured hit rate': `${((sharedHits / sharedReads) * 100).toFixed(1)}%`, 'gets/s': rates.sharing!, 'vs Map': vsMap(rates.sharing!) },
        { lookup: 'baseline: Map.get by hash text, awaited', 'measured hit rate': '100%', 'gets/s': rates.map!, 'vs Map': '1.00x' },
        { lookup: 'baseline: Map.get + a copy of the bytes (as any store returns), awaited', 'measured hit rate': '100%', 'gets/s': rates.mapCopy!, 'vs Map': vsMap(rates.mapCopy!) },
      );
    }
    for (const hash of coldHashes) await inner.delete(hash);
  }
  printTable(`cached: ${ops.toLocaleString('en-US')} gets of 4 KiB objects, 16 MiB cache, hot set of ${hot}`, rows);
}

/** Peak memory of 100,000 writes of 4 KiB with a 16 MiB pending bound, measured in a child process per mode. */
async function memoryBench(): Promise<void> {
  const child = fileURLToPath(new URL('../test/layers/memory-child.ts', import.meta.url));
  const rows: Row[] = [];
  for (const mode of ['uploader', 'layered']) {
    const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '--import', 'tsx', child, mode, '100000', '4096', String(16 * MiB)]);
    const r = JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, number>;
    rows.push({
      writer: mode === 'layered' ? 'layered store put (journal in upper)' : 'BatchUploader.enqueue',
      'peak pending MiB': r.peakPending! / MiB,
      'peak live above start, after GC, MiB': (r.peakLiveAfterGc! - r.baselineLive!) / MiB,
      'peak RSS MiB': r.peakRss! / MiB,
      'peak RSS growth MiB': (r.peakRss! - r.baselineRss!) / MiB,
      'objects/s': r.count! / r.seconds!,
    });
  }
  printTable('100,000 x 4 KiB writes (400 MB) with a 16 MiB pending bound into a slow remote (2 ms per batch)', rows);
}

export async function run(): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  await cacheBench();
  // CAIRN_BENCH_LAYERS=cache runs the cache section alone (no child processes, no MinIO).
  if (process.env.CAIRN_BENCH_LAYERS === 'cache') return;
  await memoryBench();
  const server = await startMinio('cairn-bench-layers');
  try {
    await pushBench(server);
  } finally {
    await server.stop();
  }
}
