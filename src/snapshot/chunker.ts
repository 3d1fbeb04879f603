/**
 * Content-defined chunking (FastCDC with a gear hash and normalised chunking).
 *
 * A cut point depends only on the bytes just before it, so inserting or
 * changing a few bytes in a large file moves at most the one or two chunk
 * boundaries around the edit: every other chunk keeps its bytes and its
 * hash, and a second snapshot re-uploads only the chunks that changed.
 *
 * The gear table and the masks are part of the snapshot format: changing
 * them changes where files are cut (snapshots stay readable, but
 * de-duplication against older snapshots is lost). See `format.ts`.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';

/** Chunk size bounds, in bytes. */
export interface ChunkerOptions {
  /** No chunk is smaller than this, except a file's last. @default 16384 */
  minSize?: number;
  /** The size chunks cluster around; a power of two. @default 65536 */
  avgSize?: number;
  /** No chunk is larger than this. @default 262144 */
  maxSize?: number;
}

/** The bounds snapshots use (16 KiB / 64 KiB / 256 KiB). */
export const DEFAULT_CHUNKING: Required<ChunkerOptions> = { minSize: 16 * 1024, avgSize: 64 * 1024, maxSize: 256 * 1024 };

/**
 * 256 pseudo-random 32-bit values, derived from SHA-256 so that they are
 * reproducible from this one line and never need to be copied as a table.
 */
const GEAR: Int32Array = (() => {
  const table = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    table[i] = createHash('sha256').update(`cairn-gear-${i}`).digest().readInt32LE(0);
  }
  return table;
})();

interface Plan {
  min: number;
  avg: number;
  max: number;
  /** Harder mask (more bits) before the average size: fewer cuts in small chunks. */
  maskS: number;
  /** Easier mask (fewer bits) after it: chunks rarely run to the maximum. */
  maskL: number;
}

function plan(options: ChunkerOptions = {}): Plan {
  const min = options.minSize ?? DEFAULT_CHUNKING.minSize;
  const avg = options.avgSize ?? DEFAULT_CHUNKING.avgSize;
  const max = options.maxSize ?? DEFAULT_CHUNKING.maxSize;
  const bits = Math.log2(avg);
  if (!Number.isInteger(bits) || bits < 8 || bits > 28) {
    throw new InvalidArgumentError(`chunker avgSize must be a power of two between 256 and 2^28, got ${avg}`);
  }
  if (!(Number.isInteger(min) && Number.isInteger(max) && min >= 64 && min < avg && avg < max)) {
    throw new InvalidArgumentError(`chunker sizes must satisfy 64 <= minSize < avgSize < maxSize, got ${min}/${avg}/${max}`);
  }
  // The gear hash shifts left, so its high bits depend on the most bytes: masks use the top bits.
  const topBits = (n: number): number => (n >= 32 ? -1 : ~(0xffffffff >>> n)) | 0;
  return { min, avg, max, maskS: topBits(bits + 2), maskL: topBits(bits - 2) };
}

/** Length of the first chunk of `buf[0..len)`; `len` itself if no cut point is found before it. */
function cutPoint(buf: Uint8Array, len: number, p: Plan): number {
  if (len <= p.min) return len;
  const end = Math.min(len, p.max);
  const normal = Math.min(end, p.avg);
  let h = 0;
  let i = p.min;
  for (; i < normal; i++) {
    h = ((h << 1) + GEAR[buf[i]!]!) | 0;
    if ((h & p.maskS) === 0) return i + 1;
  }
  for (; i < end; i++) {
    h = ((h << 1) + GEAR[buf[i]!]!) | 0;
    if ((h & p.maskL) === 0) return i + 1;
  }
  return end;
}

/**
 * Splits a byte stream into content-defined chunks, holding at most
 * `maxSize` bytes plus one input chunk in memory. Each yielded chunk is a
 * fresh buffer the caller may keep. An empty input yields nothing.
 *
 * @example
 * ```ts
 * for await (const chunk of chunkStream(fs.createReadStream(path))) await store.put(chunk);
 * ```
 */
export async function* chunkStream(
  input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options?: ChunkerOptions,
): AsyncIterable<Uint8Array> {
  const p = plan(options);
  const buf = new Uint8Array(p.max);
  let len = 0;
  for await (const piece of input) {
    let offset = 0;
    while (offset < piece.length) {
      const take = Math.min(piece.length - offset, p.max - len);
      buf.set(piece.subarray(offset, offset + take), len);
      len += take;
      offset += take;
      if (len === p.max) {
        const n = cutPoint(buf, len, p);
        yield buf.slice(0, n);
        buf.copyWithin(0, n, len);
        len -= n;
      }
    }
  }
  while (len > 0) {
    const n = cutPoint(buf, len, p);
    yield buf.slice(0, n);
    buf.copyWithin(0, n, len);
    len -= n;
  }
}

/**
 * Splits a buffer into chunks (views into it); the same cuts as {@link chunkStream}.
 *
 * @example
 * ```ts
 * const hashes = chunkBytes(bytes).map((c) => hashBytes(c).toString());
 * ```
 */
export function chunkBytes(bytes: Uint8Array, options?: ChunkerOptions): Uint8Array[] {
  const p = plan(options);
  const out: Uint8Array[] = [];
  let start = 0;
  while (start < bytes.length) {
    const n = cutPoint(bytes.subarray(start), bytes.length - start, p);
    out.push(bytes.subarray(start, start + n));
    start += n;
  }
  return out;
}
