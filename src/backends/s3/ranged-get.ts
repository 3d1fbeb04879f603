/**
 * Streamed reads of large objects as several ranged GETs in flight, yielded
 * in order: one GET stream on a loopback MinIO runs at about the speed one
 * server thread reads and checks its data, and ranges in parallel let the
 * server use its other cores (measured in `bench/s3.ts`).
 *
 * The first request asks for the first range and learns the object's size
 * from `Content-Range`, so an object of one range or less still costs one
 * request. Memory is bounded by `rangeSize * inFlight`, whatever the object's
 * size: a range is only read into a buffer of the length it asked for, and a
 * server that sends more or less than asked, or a size that changes between
 * ranges, fails the read. The caller verifies the hash of what is yielded.
 *
 * @module
 */

import type { Readable } from 'node:stream';
import { BodyTooLargeError } from './direct.js';

/** What a ranged GET answered. */
export interface RangeAnswer {
  /** The body, as it arrived: exactly the bytes asked for, or the whole object if the server ignored the range. */
  readonly chunks: readonly Uint8Array[];
  /** The `Content-Range` header (`bytes 0-99/1000`); `undefined` if the server sent the whole object. */
  readonly contentRange: string | undefined;
}

/** Fetches bytes `start..end` (inclusive) of the object, refusing a body longer than `end - start + 1` bytes. */
export type FetchRange = (start: number, end: number, signal: AbortSignal) => Promise<RangeAnswer>;

/** A range answer that does not match the question: fails the read, as a damaged transfer would. */
export class RangeMismatchError extends Error {
  override readonly name = 'RangeMismatchError';
}

/**
 * Yields the object's bytes in order, fetching up to `inFlight` ranges of
 * `rangeSize` bytes at once. Throws {@link RangeMismatchError} when the
 * server's answers do not add up. The first request's failure is thrown as
 * it came: a 416 means an empty object (it has no range to give), which
 * the caller then fetches whole.
 */
export async function* rangedChunks(
  fetchRange: FetchRange,
  rangeSize: number,
  inFlight: number,
  signal: AbortSignal | undefined,
): AsyncIterable<Uint8Array> {
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const pending: Array<Promise<readonly Uint8Array[]>> = [];
  try {
    const first = await fetchRange(0, rangeSize - 1, controller.signal);
    if (first.contentRange === undefined) {
      // The server ignored the range and sent everything: that is the object.
      yield* first.chunks;
      return;
    }
    const firstLength = lengthOf(first.chunks);
    const total = totalOf(first.contentRange, 0, firstLength);
    let next = firstLength;
    // `limit` ranges in flight at most: one fewer while a range's chunks are being yielded (it is held).
    const schedule = (limit: number): void => {
      while (pending.length < limit && next < total) {
        const start = next;
        const end = Math.min(total, start + rangeSize) - 1;
        next = end + 1;
        const part = fetchRange(start, end, controller.signal).then((answer) => {
          const length = lengthOf(answer.chunks);
          if (answer.contentRange === undefined || totalOf(answer.contentRange, start, length) !== total || length !== end - start + 1) {
            throw new RangeMismatchError(`asked for bytes ${start}-${end} of ${total}, the server answered ${answer.contentRange ?? 'the whole object'}`);
          }
          return answer.chunks;
        });
        // Failures surface in order, when the part is reached; until then they must not go unhandled.
        part.catch(() => undefined);
        pending.push(part);
      }
    };
    schedule(inFlight - 1);
    yield* first.chunks;
    while (pending.length > 0 || next < total) {
      // Nothing held here: top up (with one range in flight, this is where the next one starts).
      schedule(inFlight);
      const chunks = await pending.shift()!;
      yield* chunks;
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    // The consumer stopped early or a range failed: the ranges still in flight are not wanted.
    controller.abort();
  }
}

/** The total size in a `Content-Range` of `length` bytes from `start`; throws if it does not say so. */
function totalOf(contentRange: string, start: number, length: number): number {
  const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(contentRange.trim());
  const total = match === null ? Number.NaN : Number(match[3]);
  if (match === null || Number(match[1]) !== start || Number(match[2]) !== start + length - 1 || !Number.isSafeInteger(total) || total < start + length) {
    throw new RangeMismatchError(`asked for bytes from ${start}, the server answered "${contentRange.slice(0, 80)}" with ${length} bytes`);
  }
  return total;
}

function lengthOf(chunks: readonly Uint8Array[]): number {
  let length = 0;
  for (const chunk of chunks) length += chunk.length;
  return length;
}

/**
 * Reads a body as the chunks that arrive, refusing it with
 * {@link BodyTooLargeError} (and destroying it) as soon as it sends more than
 * `maxBytes`. Chunks are kept as they came rather than copied into one
 * buffer: no large allocation per range, which the allocator would map and
 * unmap each time (RSS grows until the garbage collector runs).
 */
export function readChunks(body: Readable, maxBytes: number, signal: AbortSignal | undefined): Promise<Uint8Array[]> {
  return new Promise<Uint8Array[]>((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let received = 0;
    let settled = false;
    const onAbort = (): void => done(Object.assign(new Error('aborted'), { name: 'AbortError' }));
    signal?.addEventListener('abort', onAbort, { once: true });
    function done(error: Error | undefined): void {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (error === undefined) {
        resolve(chunks);
        return;
      }
      body.destroy();
      reject(error);
    }
    if (signal?.aborted === true) {
      onAbort();
      return;
    }
    body.on('data', (chunk: Buffer) => {
      if (settled) return;
      received += chunk.length;
      if (received > maxBytes) done(new BodyTooLargeError(maxBytes, undefined));
      else chunks.push(chunk);
    });
    body.on('end', () => done(undefined));
    body.on('error', (error) => done(error));
    body.on('close', () => done(Object.assign(new Error('the response was cut off'), { code: 'ECONNRESET' })));
  });
}
