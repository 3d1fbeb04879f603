/**
 * S3 backend against a MinIO this section starts on loopback (the test
 * harness's code), beside plain `PutObjectCommand` / `GetObjectCommand` /
 * `HeadObjectCommand` calls on an `S3Client` with the SDK's default
 * configuration, at the same concurrency, in the same run.
 *
 * - 4 KiB objects at concurrency 1, 16, 64: objects/s, p50/p99 latency,
 *   client CPU per operation, HTTP requests per object.
 * - 64 MiB put/get of buffers: MiB/s and peak RSS growth.
 * - 64 MiB streams, each in alternating rounds with its baseline: streamed
 *   put against `@aws-sdk/lib-storage` `Upload` of the same stream to a fixed
 *   key, the put's server-side copy step alone (ranged parallel against one
 *   part), getStream's ranged GETs against one GET stream; MiB/s, client and
 *   MinIO CPU per MiB, peak RSS growth.
 * - The same at 1 GiB: opt-in (`CAIRN_BENCH_1GIB=1`), as it writes several
 *   GiB to the temporary data directory. `CAIRN_BENCH_S3_ROUNDS` sets the
 *   rounds of the stream comparisons (default 3).
 *
 * Each 4 KiB measurement runs after a warm-up, in three rounds alternating
 * with its baseline, and the median round is reported: the machines are
 * shared and noisy.
 */
import { channel } from 'node:diagnostics_channel';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { s3Store } from '../src/backends/s3.js';
import { type Hash, type S3Store } from '../src/index.js';
import { sdkMultipart } from '../src/backends/s3/multipart.js';
import { copy, COPY_CONCURRENCY, COPY_PART_SIZE, type UploadContext } from '../src/backends/s3/upload.js';
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

/** CPU time (user + system) the server process has used, in ms, from /proc (Linux); NaN elsewhere. */
function serverCpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}
const CLOCK_TICKS = 100;

interface Transfer {
  mib: number;
  mibPerSec: number;
  rssGrowth: number;
  clientCpuMs: number;
  serverCpuMs: number;
}

/** Runs `fn` and reports MiB/s for `bytes`, peak RSS growth, and the CPU both processes used. */
async function throughput(bytes: number, fn: () => Promise<unknown>, serverPid?: number): Promise<Transfer> {
  (globalThis as { gc?: () => void }).gc?.();
  const sampler = rssSampler(10);
  const cpu = process.cpuUsage();
  const server = serverPid === undefined ? Number.NaN : serverCpuMs(serverPid);
  const start = performance.now();
  await fn();
  const elapsed = performance.now() - start;
  const used = process.cpuUsage(cpu);
  const peak = sampler.stop();
  return {
    mib: bytes / MiB,
    mibPerSec: bytes / MiB / (elapsed / 1000),
    rssGrowth: peak - sampler.baseline,
    clientCpuMs: (used.user + used.system) / 1000,
    serverCpuMs: serverPid === undefined ? Number.NaN : serverCpuMs(serverPid) - server,
  };
}

/** Alternating rounds of two transfers (order flipped each round); the median round of each by MiB/s, and the worst RSS growth. */
async function pairedTransfer(rounds: number, ours: () => Promise<Transfer>, theirs: () => Promise<Transfer>): Promise<[Transfer, Transfer]> {
  const a: Transfer[] = [];
  const b: Transfer[] = [];
  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      a.push(await ours());
      b.push(await theirs());
    } else {
      b.push(await theirs());
      a.push(await ours());
    }
  }
  const pick = (runs: Transfer[]): Transfer => {
    const mid = [...runs].sort((x, y) => x.mibPerSec - y.mibPerSec)[Math.floor(runs.length / 2)]!;
    return { ...mid, rssGrowth: Math.max(...runs.map((r) => r.rssGrowth)) };
  };
  return [pick(a), pick(b)];
}

function transferRow(operation: string, who: string, r: Transfer, baseline?: Transfer): Row {
  return {
    operation,
    client: who,
    'MiB/s': r.mibPerSec,
    'vs baseline': baseline === undefined ? '' : `${(r.mibPerSec / baseline.mibPerSec).toFixed(2)}x`,
    'client CPU ms/MiB': r.clientCpuMs / r.mib,
    'server CPU ms/MiB': r.serverCpuMs / r.mib,
    'peak RSS growth MiB': r.rssGrowth,
  };
}

/**
 * The large-object comparisons, each against its baseline in alternating
 * rounds: a streamed put against `@aws-sdk/lib-storage` `Upload` of the same
 * stream to a fixed key (default S3Client, as a user would write it), the
 * server-side copy step of the streamed put alone (one part against ranges
 * in parallel), and getStream (parallel ranged GETs) against the same
 * verified read as one GET stream.
 */
async function largeTransfers(server: RunningServer, store: S3Store, sdk: S3Client, size: number, rounds: number): Promise<Row[]> {
  const label = size >= 1024 * MiB ? `${size / 1024 / MiB} GiB` : `${size / MiB} MiB`;
  const rows: Row[] = [];
  let n = 0;
  const measure = (fn: () => Promise<unknown>): Promise<Transfer> => throughput(size, fn, server.pid);
  const [put, upload] = await pairedTransfer(
    rounds,
    () => measure(async () => store.delete(await store.put(generated(size)))),
    () =>
      measure(async () => {
        const key = `baseline/upload-${n++}`;
        await new Upload({ client: sdk, params: { Bucket: server.bucket, Key: key, Body: Readable.from(generated(size), { objectMode: false }) } }).done();
        await sdk.send(new DeleteObjectCommand({ Bucket: server.bucket, Key: key }));
      }),
  );
  rows.push(
    transferRow(`put ${label} stream (parts to temp key, ranged copy)`, 'cairn', put, upload),
    transferRow(`put ${label} stream to a fixed key`, 'lib-storage Upload', upload),
  );

  // The copy step alone, on a temporary object uploaded once.
  const tmp = 'bench-copy/source';
  await new Upload({ client: sdk, params: { Bucket: server.bucket, Key: tmp, Body: Readable.from(generated(size), { objectMode: false }) } }).done();
  const api = sdkMultipart(sdk, server.bucket);
  const context = (copyConcurrency: number): UploadContext => ({
    api,
    partSize: 8 * MiB,
    queueSize: 4,
    copyPartSize: copyConcurrency === 1 ? Number.MAX_SAFE_INTEGER : COPY_PART_SIZE,
    copyConcurrency,
    exists: async () => false,
  });
  const [ranged, single] = await pairedTransfer(
    rounds,
    () => measure(async () => {
      const key = `bench-copy/ranged-${n++}`;
      await copy(context(COPY_CONCURRENCY), tmp, key, size, undefined);
      await api.remove(key);
    }),
    () => measure(async () => {
      const key = `bench-copy/single-${n++}`;
      await copy(context(1), tmp, key, size, undefined);
      await api.remove(key);
    }),
  );
  rows.push(
    transferRow(`copy step alone ${label} (UploadPartCopy ranges of <= ${COPY_PART_SIZE / MiB} MiB, ${COPY_CONCURRENCY} in flight)`, 'cairn', ranged, single),
    transferRow(`copy step alone ${label} (one UploadPartCopy)`, 'cairn before', single),
  );
  await api.remove(tmp);

  const hash = await store.put(generated(size));
  const single1 = s3Store({ bucket: server.bucket, prefix: store.prefix, endpoint: server.endpoint, region: server.region, credentials: credentialsOf(server), directRequests: false });
  const [parallel, one] = await pairedTransfer(
    rounds,
    () => measure(async () => {
      for await (const _ of store.getStream(hash)) void _;
    }),
    () => measure(async () => {
      for await (const _ of single1.getStream(hash)) void _;
    }),
  );
  await single1.close();
  rows.push(
    transferRow(`getStream ${label} (verified, ranged GETs 8 MiB x 4)`, 'cairn', parallel, one),
    transferRow(`getStream ${label} (verified, one GET stream)`, 'cairn before', one),
  );
  await store.delete(hash);
  return rows;
}

function credentialsOf(server: RunningServer): { accessKeyId: string; secretAccessKey: string } {
  return { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey };
}

async function largeObjects(server: RunningServer, store: S3Store, sdk: S3Client): Promise<void> {
  const size = 64 * MiB;
  const bytes = randomBytes(size);
  const rows: Row[] = [];
  const add = (operation: string, who: string, r: Transfer): void => {
    rows.push({ operation, client: who, 'MiB/s': r.mibPerSec, 'peak RSS growth MiB': r.rssGrowth });
  };
  let hash: Hash | undefined;
  add('put 64 MiB buffer (hash first, multipart)', 'cairn', await throughput(size, async () => (hash = await store.put(bytes))));
  add('put 64 MiB (one PutObject)', 'SDK default', await throughput(size, () => sdk.send(new PutObjectCommand({ Bucket: server.bucket, Key: 'baseline/large', Body: bytes }))));
  add('get 64 MiB (verified)', 'cairn', await throughput(size, () => store.get(hash!)));
  add('get 64 MiB', 'SDK default', await throughput(size, async () => {
    const out = await sdk.send(new GetObjectCommand({ Bucket: server.bucket, Key: 'baseline/large' }));
    await out.Body!.transformToByteArray();
  }));
  printTable('S3 on MinIO: 64 MiB buffers', rows);
  const rounds = Number(process.env.CAIRN_BENCH_S3_ROUNDS ?? ROUNDS);
  printTable(
    `S3 on MinIO: 64 MiB streams (median of ${rounds} alternating rounds; CPU per MiB moved, client and MinIO; RSS: worst round)`,
    await largeTransfers(server, store, sdk, size, rounds),
  );
}

/**
 * 1 GiB streamed through put and getStream, against the same baselines.
 * Runs first, in a process that has not yet held any large buffer, so that
 * RSS growth means something.
 */
async function gigabyte(server: RunningServer, store: S3Store, sdk: S3Client): Promise<void> {
  const rssBefore = Math.round(process.memoryUsage.rss() / MiB);
  const rounds = Number(process.env.CAIRN_BENCH_S3_ROUNDS ?? ROUNDS);
  const rows = await largeTransfers(server, store, sdk, 1024 * MiB, rounds);
  printTable(`S3 on MinIO: 1 GiB, streamed (median of ${rounds} alternating rounds; targets: put >= 0.8x lib-storage with <= 64 MiB RSS growth, getStream >= 1.5x one GET; RSS before: ${rssBefore} MiB)`, rows);
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
      await gigabyte(server, store, sdk);
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
