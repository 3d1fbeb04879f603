/**
 * Child process of the crash test: a layered store (disk over disk) that
 * writes objects, points refs at them and pushes, in a loop, until killed.
 * Every acknowledged write is appended to the ack file (synchronously, so a
 * SIGKILL cannot lose a line for a write that was acknowledged) before the
 * next one starts.
 * Run: node --import tsx crash-child.ts <upperDir> <lowerDir> <ackFile> <seed>
 */
import { appendFileSync } from 'node:fs';
import { openDiskStore } from '../../src/backends/disk.js';
import { layered } from '../../src/layers/layered.js';

const [upperDir, lowerDir, ackFile, seedText] = process.argv.slice(2) as [string, string, string, string];
let x = Number(seedText) * 2654435761 + 1;
const random = (): number => {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return (x >>> 0) / 2 ** 32;
};

function payload(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i += 4) new DataView(out.buffer).setUint32(Math.min(i, size - 4), (random() * 2 ** 32) >>> 0);
  return out;
}

const store = layered({
  upper: await openDiskStore(upperDir),
  lower: await openDiskStore(lowerDir),
  batchSize: 16,
  concurrency: 4,
});
process.stdout.write('ready\n');
const ack = (line: string): void => appendFileSync(ackFile, `${line}\n`);

for (let round = 0; ; round++) {
  const roll = random();
  let last;
  if (roll < 0.4) {
    last = await store.put(payload(64 + Math.floor(random() * 4000)));
    ack(`object ${last.toString()}`);
  } else if (roll < 0.8) {
    const items = Array.from({ length: 2 + Math.floor(random() * 20) }, () => payload(32 + Math.floor(random() * 2000)));
    const hashes = await store.putMany(items);
    for (const hash of hashes) ack(`object ${hash.toString()}`);
    last = hashes.at(-1)!;
  } else if (roll < 0.9) {
    // A streamed object large enough to be uploaded as a stream, not held.
    const big = payload(1_200_000 + Math.floor(random() * 100_000));
    last = await store.put((async function* () {
      for (let i = 0; i < big.length; i += 65_536) yield big.subarray(i, i + 65_536);
    })());
    ack(`object ${last.toString()}`);
  } else {
    const result = await store.push();
    ack(`pushed ${result.pushed.length} ${result.conflicts.length}`);
    continue;
  }
  const ref = `heads/r${Math.floor(random() * 5)}`;
  await store.setRef(ref, last);
  ack(`ref ${ref} ${last.toString()}`);
}
