/**
 * CLI bench: `cairn snapshot` + `cairn push` of a generated tree of mixed
 * files to MinIO, through the built binary as users run it, then an
 * incremental snapshot + push after changing 1% of the files.
 *
 * Baseline, same run, same server: one raw PutObject per file (the SDK,
 * 16 in flight), and for the increment, re-uploading just the changed files.
 * Requests are counted by a loopback proxy in front of MinIO, for both.
 *
 * Size: CAIRN_BENCH_CLI_MIB (default 1024 = 1 GiB).
 */
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import PQueue from 'p-queue';
import { startMinio } from '../test/support/servers.js';
import { printTable, type Row } from './table.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const BIN = join(ROOT, 'dist/cli/main.js');
const MiB = 2 ** 20;

/** Counts requests by method while forwarding them to `target`. */
export async function countingProxy(target: URL): Promise<{ url: string; counts: Map<string, number>; sent: { bytes: number }; close(): Promise<void> }> {
  const counts = new Map<string, number>();
  const sent = { bytes: 0 };
  const server: Server = createServer((req, res) => {
    counts.set(req.method ?? '?', (counts.get(req.method ?? '?') ?? 0) + 1);
    req.on('data', (chunk: Buffer) => (sent.bytes += chunk.length));
    const upstream = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    sent,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A tree of mixed files: a quarter of the bytes in 1-32 KiB files, a quarter in 128 KiB-1 MiB, half in 8-64 MiB. */
export async function generate(dir: string, totalMiB: number): Promise<string[][]> {
  const groups: string[][] = [];
  const buffer = Buffer.allocUnsafe(8 * MiB);
  let seed = 1;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const plan: Array<[number, number, number]> = [
    [totalMiB * MiB * 0.25, 1024, 32 * 1024],
    [totalMiB * MiB * 0.25, 128 * 1024, MiB],
    [totalMiB * MiB * 0.5, 8 * MiB, 64 * MiB],
  ];
  let n = 0;
  for (const [budget, min, max] of plan) {
    const files: string[] = [];
    groups.push(files);
    let left = budget;
    while (left > 0) {
      const size = Math.min(left, Math.floor(min + rand() * (max - min)));
      left -= size;
      const folder = join(dir, `group-${n % 37}`, `sub-${n % 7}`);
      await mkdir(folder, { recursive: true });
      const path = join(folder, `file-${n++}.bin`);
      const handle = await open(path, 'w');
      for (let written = 0; written < size; ) {
        const piece = Math.min(buffer.length, size - written);
        await handle.write(randomFillSync(buffer, 0, piece), 0, piece);
        written += piece;
      }
      await handle.close();
      files.push(path);
    }
  }
  return groups;
}

export function cairn(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('close', (code) =>
      code === 0 ? resolveRun(Buffer.concat(out).toString()) : reject(new Error(`cairn ${args[0]} exited ${code}: ${Buffer.concat(err).toString()}`)),
    );
  });
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const value = await fn();
  return [value, (performance.now() - start) / 1000];
}

export async function run(): Promise<void> {
  const totalMiB = Number(process.env.CAIRN_BENCH_CLI_MIB ?? 1024);
  const server = await startMinio('cairn-bench-cli');
  const proxy = await countingProxy(new URL(server.endpoint));
  const work = await mkdtemp(join(tmpdir(), 'cairn-bench-cli-'));
  try {
    const src = join(work, 'src');
    const groups = await generate(src, totalMiB);
    const files = groups.flat();
    let bytes = 0;
    for (const f of files) bytes += (await stat(f)).size;
    const mib = bytes / MiB;
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      CAIRN_DIR: join(work, 'local'),
      CAIRN_REMOTE: `s3://${server.bucket}/cairn/`,
      CAIRN_S3_ENDPOINT: proxy.url,
      AWS_ACCESS_KEY_ID: server.accessKeyId,
      AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
      AWS_REGION: server.region,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      // CAIRN_PACKS=0 measures a loose remote (packs are the default).
      ...(process.env.CAIRN_PACKS === undefined ? {} : { CAIRN_PACKS: process.env.CAIRN_PACKS }),
    };
    await cairn(['init'], env);
    const puts = (): number => proxy.counts.get('PUT') ?? 0;
    const requests = (): number => [...proxy.counts.values()].reduce((a, b) => a + b, 0);

    const [snap, snapSeconds] = await timed(async () => JSON.parse(await cairn(['snapshot', src, '--ref', 'snapshots/bench', '--json'], env)) as { written: number });
    const put0 = puts();
    const req0 = requests();
    const [push, pushSeconds] = await timed(async () => JSON.parse(await cairn(['push', '--json'], env)) as { uploaded: number });
    const cairnPuts = puts() - put0;
    const cairnRequests = requests() - req0;

    // Baseline: one PutObject per file, 16 in flight, through the same proxy.
    const client = new S3Client({
      endpoint: proxy.url,
      region: server.region,
      forcePathStyle: true,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const upload = async (list: string[]): Promise<void> => {
      const queue = new PQueue({ concurrency: 16 });
      for (const f of list) {
        void queue.add(async () =>
          client.send(
            new PutObjectCommand({
              Bucket: server.bucket,
              Key: `baseline/${relative(src, f)}`,
              Body: createReadStream(f),
              ContentLength: (await stat(f)).size,
            }),
          ),
        );
      }
      await queue.onIdle();
    };
    const put1 = puts();
    const [, baseSeconds] = await timed(() => upload(files));
    const basePuts = puts() - put1;

    // 1% of the files change (1% of each size class, at least one of each): 8 bytes overwritten in the middle.
    const changed = groups.flatMap((g) => g.filter((_, i) => i % 100 === 50 || (g.length < 100 && i === 0)));
    let changedBytes = 0;
    for (const f of changed) {
      const size = (await stat(f)).size;
      changedBytes += size;
      const handle = await open(f, 'r+');
      await handle.write(Buffer.from('changed!'), 0, 8, Math.floor(size / 2));
      await handle.close();
    }
    const put2 = puts();
    const [inc, incSnapSeconds] = await timed(async () => JSON.parse(await cairn(['snapshot', src, '--ref', 'snapshots/bench', '--json'], env)) as { written: number });
    const [incPush, incPushSeconds] = await timed(async () => JSON.parse(await cairn(['push', '--json'], env)) as { uploaded: number; uploadedBytes: number });
    const incPuts = puts() - put2;
    const put3 = puts();
    const [, baseIncSeconds] = await timed(() => upload(changed));
    const baseIncPuts = puts() - put3;
    client.destroy();

    const row = (name: string, seconds: number, objects: number, putCount: number, dataMiB: number, perMiB = mib): Row => ({
      run: name,
      'MiB of tree': Math.round(mib),
      seconds,
      'MiB/s': perMiB / seconds,
      objects,
      'objects/s': objects / seconds,
      PUTs: putCount,
      'PUTs/MiB': putCount / Math.max(dataMiB, 1e-9),
    });
    printTable(`CLI: snapshot + push of ${Math.round(mib)} MiB (${files.length.toLocaleString('en-US')} files) to MinIO on loopback`, [
      row('cairn snapshot (local, no network)', snapSeconds, snap.written, 0, mib),
      row('cairn push', pushSeconds, push.uploaded, cairnPuts, mib),
      row('cairn snapshot + push', snapSeconds + pushSeconds, push.uploaded, cairnPuts, mib),
      row('baseline: PutObject per file (16 in flight)', baseSeconds, files.length, basePuts, mib),
    ]);
    printTable(`CLI: incremental after changing 1% of the files (${changed.length} files, ${(changedBytes / MiB).toFixed(1)} MiB)`, [
      {
        run: 'cairn snapshot + push',
        seconds: incSnapSeconds + incPushSeconds,
        'objects uploaded': incPush.uploaded,
        'MiB uploaded': incPush.uploadedBytes / MiB,
        PUTs: incPuts,
        'new objects written': inc.written,
      },
      {
        run: 'baseline: re-upload the changed files',
        seconds: baseIncSeconds,
        'objects uploaded': changed.length,
        'MiB uploaded': changedBytes / MiB,
        PUTs: baseIncPuts,
        'new objects written': changed.length,
      },
    ]);
    console.log(`(cairn requests of all kinds during the first push: ${cairnRequests}; CAIRN_BENCH_CLI_MIB=${totalMiB})`);
  } finally {
    await proxy.close();
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }
}
