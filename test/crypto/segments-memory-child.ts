/**
 * Child process for the segments memory-bound test: encrypts TOTAL bytes
 * from a generator and decrypts the stream as it is made, never holding
 * the object, and prints the memory seen as JSON.
 * Run: node --expose-gc --import tsx segments-memory-child.ts <stream|huge-chunk> [totalBytes]
 *   stream:     the source yields fresh 64 KiB..1 MiB chunks
 *   huge-chunk: the source yields one 64 MiB buffer again and again (allocated before the baseline),
 *               so a copy of a whole chunk would show as 64 MiB of growth
 */
import { createHash } from 'node:crypto';
import { randomKey } from '../../src/crypto/aead.js';
import { decryptSegments, encryptSegments } from '../../src/crypto/segments.js';

const mode = process.argv[2] ?? 'stream';
const total = Number(process.argv[3] ?? 256 * 2 ** 20);
const gc = (globalThis as { gc?: () => void }).gc;
const MiB = 2 ** 20;

function live(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

async function settle(): Promise<void> {
  // Twice, a turn apart: array buffers are released by a background sweeper.
  gc?.();
  await new Promise((r) => setImmediate(r));
  gc?.();
}

const huge = mode === 'huge-chunk' ? new Uint8Array(64 * MiB).map((_, i) => i & 0xff) : undefined;
const sourceHash = createHash('sha256');

async function* source(): AsyncIterable<Uint8Array> {
  let sent = 0;
  let i = 0;
  while (sent < total) {
    let chunk: Uint8Array;
    if (huge) chunk = huge.subarray(0, Math.min(huge.length, total - sent));
    else {
      const size = Math.min(total - sent, [64 * 1024, MiB, 300_001][i % 3]!);
      chunk = new Uint8Array(size).fill(i & 0xff);
    }
    sourceHash.update(chunk);
    sent += chunk.length;
    i++;
    yield chunk;
  }
}

await settle();
const baseline = { live: live(), rss: process.memoryUsage.rss() };
let peakLive = baseline.live;
let peakRss = baseline.rss;
let peakLiveAfterGc = baseline.live;
const sample = (): void => {
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
  peakLive = Math.max(peakLive, live());
};
const timer = setInterval(sample, 5);

const key = randomKey();
const encryption = encryptSegments(source(), key);
const plainHash = createHash('sha256');
let plainBytes = 0;
let chunks = 0;
for await (const plain of decryptSegments(encryption.stream, key, { ...encryption.header(), plainLength: total })) {
  plainHash.update(plain);
  plainBytes += plain.length;
  if (++chunks % 16 === 0) {
    await settle();
    sample();
    peakLiveAfterGc = Math.max(peakLiveAfterGc, live());
  }
}
clearInterval(timer);
sample();
console.log(
  JSON.stringify({
    mode,
    total,
    plainBytes,
    plainLength: encryption.plainLength(),
    sameBytes: plainHash.digest('hex') === sourceHash.digest('hex'),
    baselineLive: baseline.live,
    peakLiveAfterGc,
    peakLive,
    baselineRss: baseline.rss,
    peakRss,
  }),
);
