/**
 * A separate process for the cross-process CAS test: increments the counter
 * ref COUNT times by read-then-swap, against the S3 endpoint named by the
 * CAIRN_S3_* variables, with credentials from the standard AWS chain
 * (AWS_ACCESS_KEY_ID...), backing off with jitter after a lost swap.
 * Prints "ready", waits for a line on stdin so that
 * every worker starts together, then prints the number of swaps it lost.
 *
 * Usage: node --import tsx increment-worker.ts <ref> <count>
 */
import { createInterface } from 'node:readline';
import { s3Store } from '../../../src/backends/s3.js';
import { type Hash } from '../../../src/index.js';

const [ref = 'counter', countText = '50'] = process.argv.slice(2);
const store = s3Store({
  bucket: process.env.CAIRN_S3_BUCKET!,
  prefix: process.env.CAIRN_S3_PREFIX!,
  endpoint: process.env.CAIRN_S3_ENDPOINT!,
  forcePathStyle: process.env.CAIRN_S3_FORCE_PATH_STYLE !== 'false',
});
const encoder = new TextEncoder();
const decoder = new TextDecoder();

process.stdout.write('ready\n');
const lines = createInterface({ input: process.stdin });
await new Promise<void>((resolve) => lines.once('line', () => resolve()));
lines.close();
process.stdin.destroy();

// What this worker already knows: values of hashes it has read or written.
const values = new Map<string, number>();
const written = new Map<number, Hash>();
const valueOf = async (hash: Hash): Promise<number> => {
  const known = values.get(hash.hex);
  if (known !== undefined) return known;
  const value = Number(decoder.decode(await store.get(hash)));
  values.set(hash.hex, value);
  return value;
};
let lost = 0;
let current = await store.getRef(ref);
for (let i = 0; i < Number(countText); i++) {
  for (let streak = 0; ; streak++) {
    const value = current === undefined ? 0 : await valueOf(current.hash);
    const next = written.get(value + 1) ?? (await store.put(encoder.encode(String(value + 1))));
    values.set(next.hex, value + 1);
    written.set(value + 1, next);
    // A lost swap reports the value that beat it: retry from there without another read.
    const result = await store.compareAndSwap(ref, current?.hash ?? null, next);
    current = result.current;
    if (result.ok) break;
    lost++;
    // Backoff with jitter, as a real client should: without it 8 processes mostly collide.
    await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(100, 4 * 2 ** streak)));
  }
}
await store.close();
process.stdout.write(`done ${lost}\n`);
