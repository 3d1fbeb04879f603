/**
 * Disk backend: durable 4 KiB puts per second with 1 and 16 concurrent
 * writers, and warm gets per second, beside the one-file-per-object design
 * (temp file, fsync, rename, directory fsync, as cacache does) implemented
 * here as the baseline and measured in the same run on the same disk.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { openDiskStore } from '../src/backends/disk.js';
import { percentile, printTable } from './table.js';

const OBJECT_BYTES = 4096;
const PUT_SECONDS = 3;
const GET_SECONDS = 2;
const GET_OBJECTS = 10_000;

/** The baseline: one file per object, each made durable on its own. */
class FilePerObject {
  readonly #dir: string;
  readonly #made = new Set<string>();

  constructor(dir: string) {
    this.#dir = dir;
  }

  async put(bytes: Uint8Array): Promise<string> {
    const hex = createHash('sha256').update(bytes).digest('hex');
    const shard = join(this.#dir, hex.slice(0, 2));
    if (!this.#made.has(shard)) {
      await mkdir(shard, { recursive: true });
      this.#made.add(shard);
    }
    const temp = join(shard, `.tmp-${randomBytes(6).toString('hex')}`);
    const file = await open(temp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY);
    try {
      await file.write(bytes);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, join(shard, hex));
    const dir = await open(shard, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    return hex;
  }

  async get(hex: string): Promise<Uint8Array> {
    const bytes = await readFile(join(this.#dir, hex.slice(0, 2), hex));
    if (createHash('sha256').update(bytes).digest('hex') !== hex) throw new Error(`corrupt ${hex}`);
    return bytes;
  }
}

let counter = 0;
function payload(): Uint8Array {
  const bytes = randomBytes(OBJECT_BYTES);
  bytes.writeUInt32LE(counter++, 0);
  return bytes;
}

/** Runs `writers` loops of `op` for `seconds`; returns completed ops per second. */
async function throughput(writers: number, seconds: number, op: () => Promise<unknown>): Promise<number> {
  let done = 0;
  const deadline = performance.now() + seconds * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (performance.now() < deadline) {
        await op();
        done++;
      }
    }),
  );
  return (done * 1000) / (performance.now() - start);
}

/** Median latency of write + fdatasync of a 64 KiB append: the floor under every durable put. */
async function fdatasyncLatency(path: string): Promise<number> {
  const file = await open(path, 'w');
  const block = Buffer.alloc(65536, 1);
  const samples: number[] = [];
  try {
    for (let i = 0; i < 50; i++) {
      const t = performance.now();
      await file.write(block, 0, block.length, i * block.length);
      await file.datasync();
      samples.push(performance.now() - t);
    }
  } finally {
    await file.close();
  }
  return percentile(samples, 50);
}

/**
 * Measures two designs in alternating slices (8 each) rather than one after
 * the other, so that load from elsewhere on a shared machine hits both alike.
 */
async function sideBySide(
  writers: number,
  seconds: number,
  cairn: () => Promise<unknown>,
  baseline: () => Promise<unknown>,
): Promise<[number, number]> {
  const slices = 8;
  let a = 0;
  let b = 0;
  for (let k = 0; k < slices; k++) {
    a += await throughput(writers, seconds / slices, cairn);
    b += await throughput(writers, seconds / slices, baseline);
  }
  return [a / slices, b / slices];
}

export async function run(): Promise<void> {
  const base = await mkdtemp(join(tmpdir(), 'cairn-bench-disk-'));
  try {
    const store = await openDiskStore(join(base, 'cairn'));
    const baseline = new FilePerObject(join(base, 'files'));
    const rows = [];
    for (const writers of [1, 16]) {
      const [cairn, files] = await sideBySide(
        writers,
        PUT_SECONDS,
        () => store.put(payload()),
        () => baseline.put(payload()),
      );
      rows.push({
        operation: `durable 4 KiB put, ${writers} writer${writers > 1 ? 's' : ''}`,
        'cairn ops/s': cairn,
        'one-file-per-object ops/s': files,
        'cairn / baseline': `${(cairn / files).toFixed(1)}x`,
      });
    }

    const items = Array.from({ length: GET_OBJECTS }, payload);
    const hashes = await store.putMany(items);
    const hexes = await Promise.all(items.map((b) => baseline.put(b)));
    let i = 0;
    let j = 0;
    // Warm-up pass over both, so that both read from the page cache.
    for (const h of hashes) await store.get(h);
    for (const h of hexes) await baseline.get(h);
    const [cairnGets, fileGets] = await sideBySide(
      16,
      GET_SECONDS,
      () => store.get(hashes[i++ % hashes.length]!),
      () => baseline.get(hexes[j++ % hexes.length]!),
    );
    rows.push({
      operation: 'warm 4 KiB get (verified), 16 readers',
      'cairn ops/s': cairnGets,
      'one-file-per-object ops/s': fileGets,
      'cairn / baseline': `${(cairnGets / fileGets).toFixed(1)}x`,
    });

    const batch = Array.from({ length: 1000 }, payload);
    const t0 = performance.now();
    await store.putMany(batch);
    const manyRate = (batch.length * 1000) / (performance.now() - t0);
    const t1 = performance.now();
    await Promise.all(batch.map(() => baseline.put(payload())));
    const filesMany = (batch.length * 1000) / (performance.now() - t1);
    rows.push({
      operation: 'putMany of 1000 x 4 KiB (baseline: 1000 puts at once)',
      'cairn ops/s': manyRate,
      'one-file-per-object ops/s': filesMany,
      'cairn / baseline': `${(manyRate / filesMany).toFixed(1)}x`,
    });
    await store.close();

    const t2 = performance.now();
    const reopened = await openDiskStore(join(base, 'cairn'));
    const openMs = performance.now() - t2;
    await reopened.close();
    const syncMs = await fdatasyncLatency(join(base, 'probe'));
    printTable('Disk backend: log-structured store vs one file per object (same disk, same run)', rows);
    console.log(
      `\nfdatasync of a 64 KiB append on this disk during the run: median ${syncMs.toFixed(2)} ms. ` +
        `Group commit puts at most 16 puts behind each sync, so 16 writers top out near ${Math.round(16000 / syncMs).toLocaleString('en-US')} puts/s here.`,
    );
    console.log(`\nReopen of the store (${hashes.length + batch.length}+ objects, from the checkpoint): ${openMs.toFixed(0)} ms`);
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}
