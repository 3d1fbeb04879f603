/**
 * Child process for the disk store's crash and cross-process tests.
 *
 *   child crash <dir> <seed>      writes, swaps and deletes until killed, printing
 *                                 every acknowledged operation on stdout
 *   child increment <dir> <n>     n read-then-swap increments of the ref "counter"
 *
 * Protocol lines (crash): `put <hash>` (must survive), `tmp <hash>` (may be
 * deleted later), `trydel <hash>` then `del <hash>`, `try <ref> <hash>` then
 * `ref <ref> <hash>`, `compacted <segments>`. A line is printed only after
 * the operation resolved.
 */
import { openDiskStore } from '../../../src/backends/disk.js';

const [mode, dir, arg] = process.argv.slice(2);
if (mode === undefined || dir === undefined || arg === undefined) {
  console.error('usage: child crash|increment <dir> <seed|count>');
  process.exit(2);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const say = (line: string): void => void process.stdout.write(`${line}\n`);

if (mode === 'increment') {
  const store = await openDiskStore(dir);
  let retries = 0;
  for (let i = 0; i < Number(arg); i++) {
    for (;;) {
      const current = await store.getRef('counter');
      const value = current === undefined ? 0 : Number(decoder.decode(await store.get(current.hash)));
      const next = await store.put(encoder.encode(String(value + 1)));
      if ((await store.compareAndSwap('counter', current?.hash ?? null, next)).ok) break;
      retries++;
    }
  }
  await store.close();
  say(`done ${retries}`);
  process.exit(0);
}

// crash mode: small limits so that a short run rotates segments, writes checkpoints and large files.
const seed = Number(arg);
const store = await openDiskStore(dir, {
  segmentMaxBytes: 64 * 1024,
  smallObjectMaxBytes: 16 * 1024,
  checkpointEveryBytes: 48 * 1024,
});
say('ready');

let random = seed * 2654435761 + 7;
const next = (n: number): number => {
  random ^= random << 13;
  random ^= random >>> 17;
  random ^= random << 5;
  return (random >>> 0) % n;
};

const payload = (worker: number, i: number, size: number): Uint8Array => {
  const head = encoder.encode(`seed ${seed} worker ${worker} op ${i} `);
  const out = new Uint8Array(Math.max(size, head.length));
  out.set(head);
  for (let k = head.length; k < out.length; k++) out[k] = (k * 31 + i + worker) & 0xff;
  return out;
};

async function worker(w: number): Promise<void> {
  const deletable: string[] = [];
  // Every fourth run starts with a compaction, so that some finish and some are killed part-way.
  if (w === 0 && seed % 4 === 2) say(`compacted ${(await store.compact()).segmentsCompacted}`);
  for (let i = 0; ; i++) {
    const action = next(20);
    if (action < 10) {
      say(`put ${(await store.put(payload(w, i, next(3000)))).toString()}`);
    } else if (action < 12) {
      const hashes = await store.putMany(Array.from({ length: 8 }, (_, k) => payload(w, i * 100 + k, next(1500))));
      for (const hash of hashes) say(`put ${hash.toString()}`);
    } else if (action === 12) {
      say(`put ${(await store.put(payload(w, i, 40_000))).toString()}`);
    } else if (action < 15) {
      const hash = await store.put(payload(w + 100, i, next(2000)));
      say(`tmp ${hash.toString()}`);
      deletable.push(hash.toString());
    } else if (action === 15 && deletable.length > 0) {
      const victim = deletable.shift()!;
      say(`trydel ${victim}`);
      await store.delete(victim);
      say(`del ${victim}`);
    } else if (action === 16 && w === 0 && i % 2 === 0) {
      say(`compacted ${(await store.compact()).segmentsCompacted}`);
    } else {
      const name = `r/${w}`;
      const target = await store.put(payload(w + 200, i, 64));
      say(`put ${target.toString()}`);
      const current = await store.getRef(name);
      say(`try ${name} ${target.toString()}`);
      const result = await store.compareAndSwap(name, current?.hash ?? null, target);
      if (!result.ok) throw new Error(`only this worker writes ${name}, yet the swap failed`);
      say(`ref ${name} ${target.toString()}`);
    }
  }
}

await Promise.all([0, 1, 2, 3].map(worker));
