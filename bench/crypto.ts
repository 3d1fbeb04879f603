/**
 * Encryption cost, against hashing measured in the same run
 * (`npx tsx bench/run.ts crypto`):
 *
 * - AES-256-GCM boxes (`seal`/`open` of src/crypto/aead.ts: a random nonce,
 *   one cipher object per box) of 1 KiB, 64 KiB and 1 MiB, against
 *   node:crypto SHA-256 of the same bytes, which every put already pays.
 * - Large objects in segments (src/crypto/segments.ts): encrypt 128 MiB
 *   streamed in 1 MiB chunks, and decrypt it streamed in 64 KiB chunks (the
 *   size a socket or file stream hands over), at segmentBytes 64 KiB to
 *   4 MiB; the best of three rounds each.
 *
 * The machines are shared and noisy: compare rows of one run, not runs.
 */
import { createHash, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { open, randomKey, seal } from '../src/crypto/aead.js';
import { cipherLength, decryptSegments, encryptSegments } from '../src/crypto/segments.js';
import { opsPerSecond, printTable, type Row } from './table.js';

const KiB = 1024;
const MiB = 2 ** 20;
const OBJECT_BYTES = 128 * MiB;
const ROUNDS = 3;

async function boxes(): Promise<void> {
  const key = randomKey();
  const rows: Row[] = [];
  for (const [label, size] of [['1 KiB', KiB], ['64 KiB', 64 * KiB], ['1 MiB', MiB]] as const) {
    const data = randomBytes(size);
    const box = seal(key, data);
    const ms = size === KiB ? 700 : 1200;
    const candidates: Array<[string, () => unknown]> = [
      ['sha256 node:crypto (baseline)', () => createHash('sha256').update(data).digest()],
      ['aes-256-gcm seal', () => seal(key, data)],
      ['aes-256-gcm open', () => open(key, box)],
    ];
    for (const [name, fn] of candidates) {
      const perSecond = await opsPerSecond(fn, ms);
      rows.push({ operation: name, size: label, 'boxes/s': perSecond, 'MiB/s': (perSecond * size) / MiB });
    }
  }
  printTable('AES-256-GCM boxes vs SHA-256 (one call per box)', rows);
}

async function* repeat(chunk: Uint8Array, total: number): AsyncIterable<Uint8Array> {
  for (let sent = 0; sent < total; sent += chunk.length) yield chunk.subarray(0, Math.min(chunk.length, total - sent));
}

async function* slices(parts: readonly Uint8Array[], size: number): AsyncIterable<Uint8Array> {
  for (const part of parts) for (let at = 0; at < part.length; at += size) yield part.subarray(at, at + size);
}

/** One round at one segment size: milliseconds to encrypt and to decrypt OBJECT_BYTES. */
async function segmentRound(key: Uint8Array, chunk: Uint8Array, segmentBytes: number): Promise<{ encryptMs: number; decryptMs: number }> {
  const encryption = encryptSegments(repeat(chunk, OBJECT_BYTES), key, { segmentBytes });
  // Pieces are kept (as a store's multipart buffers would hold them briefly) so that decryption has input.
  const stored: Uint8Array[] = [];
  let start = performance.now();
  for await (const piece of encryption.stream) stored.push(piece);
  const encryptMs = performance.now() - start;
  // One buffer, read in 64 KiB slices: decryption sees a socket's or a file's chunks, not the encryptor's pieces.
  const cipher = Buffer.concat(stored);
  stored.length = 0;
  const expect = { ...encryption.header(), plainLength: encryption.plainLength() };
  start = performance.now();
  let bytes = 0;
  for await (const plain of decryptSegments(slices([cipher], 64 * KiB), key, expect)) bytes += plain.length;
  const decryptMs = performance.now() - start;
  if (bytes !== OBJECT_BYTES) throw new Error(`decrypted ${bytes} bytes, expected ${OBJECT_BYTES}`);
  return { encryptMs, decryptMs };
}

async function segments(): Promise<void> {
  const key = randomKey();
  const chunk = randomBytes(MiB);
  const sizes = [['64 KiB', 64 * KiB], ['256 KiB', 256 * KiB], ['1 MiB', MiB], ['4 MiB', 4 * MiB]] as const;
  const best = sizes.map(() => ({ encryptMs: Infinity, decryptMs: Infinity, shaMs: Infinity }));
  // Rounds go over every size in turn, so that a noisy moment on the shared machine does not land on one size only.
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, [, segmentBytes]] of sizes.entries()) {
      const { encryptMs, decryptMs } = await segmentRound(key, chunk, segmentBytes);
      const start = performance.now();
      const hasher = createHash('sha256');
      for await (const piece of repeat(chunk, OBJECT_BYTES)) hasher.update(piece);
      hasher.digest();
      const shaMs = performance.now() - start;
      const b = best[i]!;
      best[i] = { encryptMs: Math.min(b.encryptMs, encryptMs), decryptMs: Math.min(b.decryptMs, decryptMs), shaMs: Math.min(b.shaMs, shaMs) };
    }
  }
  const mibps = (ms: number): number => OBJECT_BYTES / MiB / (ms / 1000);
  const rows: Row[] = sizes.map(([label, segmentBytes], i) => ({
    segmentBytes: label,
    'encrypt MiB/s': mibps(best[i]!.encryptMs),
    'decrypt MiB/s': mibps(best[i]!.decryptMs),
    'sha256 MiB/s (same stream)': mibps(best[i]!.shaMs),
    'stored overhead': `${(((cipherLength(OBJECT_BYTES, segmentBytes) - OBJECT_BYTES) / OBJECT_BYTES) * 100).toFixed(3)}%`,
  }));
  printTable(`Large objects in segments: ${OBJECT_BYTES / MiB} MiB, best of ${ROUNDS} (encrypt from 1 MiB chunks, decrypt from 64 KiB chunks)`, rows);
}

export async function run(): Promise<void> {
  await boxes();
  await segments();
}
