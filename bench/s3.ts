/**
 * S3 backend against a MinIO this section starts on loopback (the test
 * harness's code), beside plain `PutObjectCommand` / `GetObjectCommand` /
 * `HeadObjectCommand` calls on an `S3Client` with the SDK's default
 * configuration, at the same concurrency, in the same run.
 *
 * - 4 KiB objects at concurrency 1, 16, 64: objects/s, p50/p99 latency,
 *   client CPU per operation, HTTP requests per object.
 * - 64 MiB put/get: MiB/s and peak RSS growth.
 * - 1 GiB streamed put and get with RSS growth: opt-in (`CAIRN_BENCH_1GIB=1`),
 *   as it writes 2 GiB to the temporary data directory.
 *
 * Each 4 KiB measurement runs after a warm-up, in three rounds alternating
 * with its baseline, and the median round is reported: the machines are
 * shared and noisy.
 */
import { channel } from 'node:diagnostics_channel';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { s3Store } from '../src/backends/s3.js';
import { type Hash, type S3Store } from '../src/index.js';
import { startMinio, type RunningServer } from '../test/support/servers.js';
import { percentile, printTable, rssSampler, type Row } from './table.js';

const KiB = 1024;
const MiB = 1024 * KiB;

let requests = 0;
channel('http.client.request.start').subscribe(() => {
  requests++;
});

interface Measure {
  opsPerSec: number;
  p50: number;
  p99: number;
  cpuMsPerOp: number;
  requestsPerOp: number;
}

/** Runs `op(i)` for i in [0, count) with `concurrency` in flight. */
async function measure(count: number, concurrency: number, op: (i: number) => Promise<unknown>): Promise<Measure> {
  const latencies: number[] = [];
  let next = 0;
  const requestsBefore = requests;
  const cpuBefore = process.cpuUsage();
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const i = next++;
        const t = performance.now();
        await op(i);
        latencies.push(performance.now() - t);
      }
    }),
  );
  const elapsed = performance.now() - start;
  const cpu = process.cpuUsage(cpuBefore);
  return {
    opsPerSec: (count * 1000) / elapsed,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    cpuMsPerOp: (cpu.user + cpu.system) / 1000 / count,
    requestsPerOp: (requests - requestsBefore) / count,
  };
}

function row(operation: string, concurrency: number, who: string, m: Measure, baseline?: Measure): Row {
  return {
    operation,
    concurrency: String(concurrency),
    client: who,
    'objects/s': m.opsPerSec,
    'p50 ms': m.p50,
    'p99 ms': m.p99,
    'CPU ms/op': m.cpuMsPerOp,
    'requests/object': m.requestsPerOp,
    'vs SDK': baseline === undefined ? '' : `${(m.opsPerSec / baseline.opsPerSec).toFixed(2)}x`,
  };
}

/** The run with the median objects/s. */
function median(runs: Measure[]): Measure {
  return [...runs].sort((a, b) => a.opsPerSec - b.opsPerSec)[Math.floor(runs.length / 2)]!;
}

const ROUNDS = 3;

/**
 * Measures a Cairn workload and its baseline in alternating rounds (the
 * order flips each round, so neither always runs on a warmer server), after
 * a warm-up of both; returns the median round of each.
 */
async function paired(
  count: number,
  concurrency: number,
  cairn: (round: number) => (i: number) => Promise<unknown>,
  baseline: (round: number) => (i: number) => Promise<unknown>,
): Promise<[Measure, Measure]> {
  await measure(Math.min(count, 200), concurrency, cairn(-1));
  await measure(Math.min(count, 200), concurrency, baseline(-1));
  const ours: Measure[] = [];
  const theirs: Measure[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    if (round % 2 === 0) {
      ours.push(await measure(count, concurrency, cairn(round)));
      theirs.push(await measure(count, concurrency, baseline(round)));
    } else {
      theirs.push(await measure(count, concurrency, baseline(round)));
      ours.push(await measure(count, concurrency, cairn(round)));
    }
  }
  return [median(ours), median(theirs)];
}

async function smallObjects(server: RunningServer, store: S3Store, sdk: S3Client): Promise<void> {
  const rows: Row[] = [];
  for (const concurrency of [1, 16, 64]) {
    const count = concurrency === 1 ? 300 : 1500;
    // Fresh random payloads for every round: each put stores a new object.
    const payloads = (): Buffer[] => Array.from({ length: count }, () => randomBytes(4 * KiB));
    const hashes: Hash[] = [];
    const keys: string[] = [];
    const [cairnPut, sdkPut] = await paired(
      count,
      concurrency,
      () => {
        const data = payloads();
        return async (i) => {
          hashes[i] = await store.put(data[i]!);
        };
      },
      () => {
        const data = payloads();
        return (i) => {
          keys[i] = `baseline/${randomBytes(16).toString('hex')}`;
          return sdk.send(new PutObjectCommand({ Bucket: server.bucket, Key: keys[i], Body: data[i]! }));
        };
      },
    );
    rows.push(row('put 4 KiB', concurrency, 'cairn', cairnPut, sdkPut), row('put 4 KiB', concurrency, 'SDK default', sdkPut));
    const [cairnGet, sdkGet] = await paired(
      count,
      concurrency,
      () => (i) => store.get(hashes[i]!),
      () => async (i) => {
        const out = await sdk.send(new GetObjectCommand({ Bucket: server.bucket, Key: keys[i]! }));
        await out.Body!.transformToByteArray();
      },
    );
    rows.push(row('get 4 KiB (verified)', concurrency, 'cairn', cairnGet, sdkGet), row('get 4 KiB', concurrency, 'SDK default', sdkGet));
    const [cairnHas, sdkHas] = await paired(
      count,
      concurrency,
      () => (i) => store.has(hashes[i]!),
      () => (i) => sdk.send(new HeadObjectCommand({ Bucket: server.bucket, Key: keys[i]! })),
    );
    rows.push(row('has 4 KiB (HEAD)', concurrency, 'cairn', cairnHas, sdkHas), row('has 4 KiB (HEAD)', concurrency, 'SDK default', sdkHas));
  }
  printTable(`S3 on MinIO: 4 KiB objects (median of ${ROUNDS} alternating rounds)`, rows);
}

async function* generated(total: number, chunk = MiB): AsyncIterable<Uint8Array> {
  const template = randomBytes(chunk);
  for (let offset = 0, n = 0; offset < total; offset += chunk, n++) {
    const part = Buffer.from(template.subarray(0, Math.min(chunk, total - offset)));
    part.writeUInt32LE(n, 0);
    yield part;
  }
}

/** Runs `fn` and reports MiB/s for `bytes` and the peak RSS growth over the RSS before it. */
async function throughput(bytes: number, fn: () => Promise<unknown>): Promise<{ mibPerSec: number; rssGrowth: number }> {
  (globalThis as { gc?: () => void }).gc?.();
  const sampler = rssSampler(10);
  const start = performance.now();
  await fn();
  const elapsed = performance.now() - start;
  const peak = sampler.stop();
  return { mibPerSec: bytes / MiB / (elapsed / 1000), rssGrowth: peak - sampler.baseline };
}

async function largeObjects(server: RunningServer, store: S3Store, sdk: S3Client): Promise<void> {
  const size = 64 * MiB;
  const bytes = randomBytes(size);
  const rows: Row[] = [];
  const add = (operation: string, who: string, r: { mibPerSec: number; rssGrowth: number }): void => {
    rows.push({ operation, client: who, 'MiB/s': r.mibPerSec, 'peak RSS growth MiB': r.rssGrowth });
  };
  let hash: Hash | undefined;
  add('put 64 MiB buffer (hash first, multipart)', 'cairn', await throughput(size, async () => (hash = await store.put(bytes))));
  add('put 64 MiB (one PutObject)', 'SDK default', await throughput(size, () => sdk.send(new PutObjectCommand({ Bucket: server.bucket, Key: 'baseline/large', Body: bytes }))));
  add('put 64 MiB stream (multipart to temp, copy)', 'cairn', await throughput(size, () => store.put(generated(size))));
  add('get 64 MiB (verified)', 'cairn', await throughput(size, () => store.get(hash!)));
  add('get 64 MiB', 'SDK default', await throughput(size, async () => {
    const out = await sdk.send(new GetObjectCommand({ Bucket: server.bucket, Key: 'baseline/large' }));
    await out.Body!.transformToByteArray();
  }));
  add('getStream 64 MiB (verified)', 'cairn', await throughput(size, async () => {
    for await (const _ of store.getStream(hash!)) void _;
  }));
  printTable('S3 on MinIO: 64 MiB objects', rows);
}

/**
 * 1 GiB streamed through put and getStream. Runs first, in a process that
 * has not yet held any large buffer, so that RSS growth means something.
 */
async function gigabyte(store: S3Store): Promise<void> {
  const big = 1024 * MiB;
  const rows: Row[] = [];
  const rssBefore = Math.round(process.memoryUsage.rss() / MiB);
  let hash: Hash | undefined;
  const put = await throughput(big, async () => (hash = await store.put(generated(big))));
  rows.push({ operation: 'put 1 GiB stream (multipart to temp, copy)', 'MiB/s': put.mibPerSec, 'peak RSS growth MiB': put.rssGrowth });
  const get = await throughput(big, async () => {
    for await (const _ of store.getStream(hash!)) void _;
  });
  rows.push({ operation: 'getStream 1 GiB (verified)', 'MiB/s': get.mibPerSec, 'peak RSS growth MiB': get.rssGrowth });
  await store.delete(hash!);
  printTable(`S3 on MinIO: 1 GiB, streamed (target: < 100 MiB RSS growth; RSS before: ${rssBefore} MiB)`, rows);
}

export async function run(): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const server = await startMinio('cairn-bench');
  const credentials = { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey };
  const store = s3Store({ bucket: server.bucket, prefix: 'bench/', endpoint: server.endpoint, region: server.region, credentials, concurrency: 64 });
  // The baseline: what a user gets from `new S3Client(...)` with nothing tuned.
  const sdk = new S3Client({ endpoint: server.endpoint, region: server.region, forcePathStyle: true, credentials });
  try {
    if (process.env.CAIRN_BENCH_1GIB === '1') {
      await store.put(new Uint8Array(1));
      await gigabyte(store);
    }
    await smallObjects(server, store, sdk);
    await largeObjects(server, store, sdk);
    if (process.env.CAIRN_BENCH_1GIB !== '1') {
      console.log('\n(1 GiB put/get skipped: set CAIRN_BENCH_1GIB=1 to run it; it writes 2 GiB to the temp directory)');
    }
  } finally {
    sdk.destroy();
    await store.close();
    await server.stop();
  }
}
