/**
 * Child process of the packed crash test: a packed store over a disk store
 * that writes small objects (put and putMany, some over the pack limit) and
 * points refs at them, until killed. Each acknowledged write is appended to
 * the ack file synchronously before the next starts.
 * With a password, the remote is an encrypted one (made by the test) and
 * the child unlocks it.
 * Run: node packed-crash-child.mjs <innerDir> <ackFile> <seed> [password]
 */
import { appendFileSync } from 'node:fs';
import { openDiskStore } from '../../src/backends/disk.js';
import { unlock } from '../../src/crypto/keys.js';
import { packed } from '../../src/layers/packed/packed.js';

const [innerDir, ackFile, seedText, password] = process.argv.slice(2) as [string, string, string, string | undefined];
let x = Number(seedText) * 2654435761 + 1;
const random = (): number => {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return (x >>> 0) / 2 ** 32;
};
function payload(size: number): Uint8Array {
  const out = new Uint8Array(size);
  // Half random, half repeated: some blobs compress, some do not.
  const period = random() < 0.5 ? 16 : size;
  for (let i = 0; i < size; i++) out[i] = i < period ? (random() * 256) | 0 : out[i - period]!;
  return out;
}

const inner = await openDiskStore(innerDir);
const encryption = password === undefined ? undefined : await unlock(inner, password);
const store = packed(inner, { packBytes: 32 * 1024, maxObjectBytes: 16 * 1024, lingerMs: 2, encryption });
await store.refresh();
process.stdout.write('ready\n');
const ack = (line: string): void => appendFileSync(ackFile, `${line}\n`);

for (;;) {
  const roll = random();
  const pending: Promise<void>[] = [];
  // Several writers at once, so that puts share packs (group commit) when the kill lands.
  for (let w = 0; w < 4; w++) {
    pending.push(
      (async () => {
        if (roll < 0.5) {
          const hash = await store.put(payload(32 + Math.floor(random() * (roll < 0.05 ? 40_000 : 6000))));
          ack(`object ${hash.toString()}`);
          await store.setRef(`heads/w${w}`, hash);
          ack(`ref heads/w${w} ${hash.toString()}`);
        } else {
          const hashes = await store.putMany(Array.from({ length: 2 + Math.floor(random() * 30) }, () => payload(16 + Math.floor(random() * 3000))));
          for (const hash of hashes) ack(`object ${hash.toString()}`);
        }
      })(),
    );
  }
  await Promise.all(pending);
}
