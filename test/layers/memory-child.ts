/**
 * Child process for the memory-bound test and bench: writes N objects of
 * SIZE bytes, as fast as it can, into a slow remote that keeps nothing,
 * either straight through a BatchUploader (`uploader`) or as puts to a
 * layered store (`layered`, whose upper store keeps only its journal), with
 * a pending-bytes bound, and prints the peak memory seen as JSON.
 * Run: node --expose-gc --import tsx memory-child.ts <uploader|layered> [count] [size] [boundBytes]
 */
import { hashBytes, memoryStore, type Hash, type Store } from '../../src/index.js';
import { layered } from '../../src/layers/layered.js';
import { BatchUploader } from '../../src/layers/uploader.js';

const mode = process.argv[2] ?? 'uploader';
const count = Number(process.argv[3] ?? 100_000);
const size = Number(process.argv[4] ?? 4096);
const bound = Number(process.argv[5] ?? 16 * 2 ** 20);
const gc = (globalThis as { gc?: () => void }).gc;

/** A slow remote that verifies and counts, keeping no bytes: memory here is the uploader's alone. */
const template = memoryStore();
let received = 0;
let calls = 0;
const sink: Store = new Proxy(template, {
  get(target, prop) {
    if (prop === 'putMany') {
      return async (items: readonly Uint8Array[]): Promise<Hash[]> => {
        await new Promise((r) => setTimeout(r, 2));
        received += items.length;
        calls++;
        return items.map((b) => hashBytes(b));
      };
    }
    const value = (target as unknown as Record<string | symbol, unknown>)[prop];
    return typeof value === 'function' ? value.bind(target) : value;
  },
});

/** An upper store that hashes objects and drops them, keeping refs (the journal): 400 MB would not fit otherwise. */
const upperRefs = memoryStore();
const forgetful: Store = new Proxy(upperRefs, {
  get(target, prop) {
    if (prop === 'put') return async (bytes: Uint8Array): Promise<Hash> => hashBytes(bytes);
    if (prop === 'putMany') return async (items: readonly Uint8Array[]): Promise<Hash[]> => items.map((b) => hashBytes(b));
    if (prop === 'has') return async (): Promise<boolean> => false;
    if (prop === 'hasMany') return async (hashes: readonly unknown[]): Promise<boolean[]> => hashes.map(() => false);
    const value = (target as unknown as Record<string | symbol, unknown>)[prop];
    return typeof value === 'function' ? value.bind(target) : value;
  },
});

function live(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

gc?.();
const baseline = { live: live(), rss: process.memoryUsage.rss() };
let peakLive = baseline.live;
let peakRss = baseline.rss;
const sample = (): void => {
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
  peakLive = Math.max(peakLive, live());
};
const timer = setInterval(sample, 5);

const options = { maxPendingBytes: bound, concurrency: 8, batchSize: 32 };
const uploader = mode === 'layered' ? undefined : new BatchUploader(sink, options);
const store = mode === 'layered' ? layered({ upper: forgetful, lower: sink, ...options }) : undefined;
const pending = (): number => (uploader ?? store!).progress().pendingBytes;
let peakPending = 0;
let peakLiveAfterGc = 0;
const started = performance.now();
for (let i = 0; i < count; i++) {
  const bytes = new Uint8Array(size);
  new DataView(bytes.buffer).setUint32(0, i);
  bytes.fill(i & 0xff, 4);
  if (uploader) await uploader.enqueue(bytes);
  else await store!.put(bytes);
  peakPending = Math.max(peakPending, pending());
  if (i % 10_000 === 0) {
    // Collect garbage first so that the sample measures what is held, not what is merely not yet collected;
    // twice, a turn apart, because array buffers are released by a background sweeper.
    gc?.();
    await new Promise((r) => setImmediate(r));
    gc?.();
    sample();
    peakLiveAfterGc = Math.max(peakLiveAfterGc, live());
  }
}
if (uploader) await uploader.flush();
else await store!.flush();
let journal = 0;
for await (const _ of upperRefs.listRefs('.cairn/')) journal++;
const seconds = (performance.now() - started) / 1000;
clearInterval(timer);
sample();
console.log(
  JSON.stringify({
    mode,
    count,
    size,
    journal,
    bound,
    received,
    calls,
    peakLiveAfterGc,
    seconds,
    peakPending,
    baselineLive: baseline.live,
    peakLive,
    baselineRss: baseline.rss,
    peakRss,
  }),
);
