/**
 * Shared helpers for backends and layers: argument normalisation, byte
 * collection, verification, and bounded-concurrency mapping. Backends call
 * these so that every store validates and verifies the same way.
 *
 * @module
 */
import { throwIfAborted } from './abort.js';
import { IntegrityError, InvalidArgumentError } from './errors.js';
import { createHasher, Hash, hashBytes, parseHash, type HashAlgorithm } from './hash.js';
import type { HashLike, ObjectSource } from './store.js';

/** Normalises a {@link HashLike}; text is parsed and bad text is an {@link InvalidHashError}. */
export function toHash(value: HashLike): Hash {
  return value instanceof Hash ? value : parseHash(value);
}

/**
 * Checks the arguments of {@link Store.getRange}: both must be non-negative
 * safe integers. Throws {@link InvalidArgumentError} naming the bad one.
 */
export function assertRange(offset: number, length: number): void {
  for (const [name, value] of [['offset', offset], ['length', length]] as const) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new InvalidArgumentError(`getRange ${name} must be a non-negative integer, got ${String(value)}`);
    }
  }
}

/** The part of `bytes` that a range read of `offset`/`length` returns: clipped to the end, copied. */
export function sliceRange(bytes: Uint8Array, offset: number, length: number): Uint8Array {
  return Uint8Array.prototype.slice.call(bytes, Math.min(offset, bytes.length), Math.min(offset + length, bytes.length));
}

/** True when `source` is a single buffer rather than an iterable of chunks. */
export function isBytes(source: unknown): source is Uint8Array {
  return source instanceof Uint8Array;
}

/** Checks that `source` is something a store can read bytes from. */
export function assertObjectSource(source: unknown): asserts source is ObjectSource {
  if (source instanceof Uint8Array) return;
  if (source != null && typeof source === 'object' && (Symbol.asyncIterator in source || Symbol.iterator in source)) return;
  throw new InvalidArgumentError(
    `put takes a Uint8Array or an (async) iterable of Uint8Array chunks, got ${source === null ? 'null' : typeof source}`,
  );
}

/** Yields a source's chunks, checking each is a Uint8Array. */
export async function* chunksOf(source: ObjectSource, signal?: AbortSignal): AsyncIterable<Uint8Array> {
  assertObjectSource(source);
  if (isBytes(source)) {
    yield source;
    return;
  }
  for await (const chunk of source as AsyncIterable<unknown>) {
    throwIfAborted(signal);
    if (!(chunk instanceof Uint8Array)) {
      throw new InvalidArgumentError(`a stream given to put yielded ${typeof chunk}; it must yield Uint8Array chunks`);
    }
    yield chunk;
  }
}

/** Reads a whole source into one buffer. */
export async function collectBytes(source: ObjectSource, signal?: AbortSignal): Promise<Uint8Array> {
  if (isBytes(source)) return source;
  const parts: Uint8Array[] = [];
  for await (const chunk of chunksOf(source, signal)) parts.push(chunk);
  return concatBytes(parts);
}

/** Concatenates chunks into one buffer. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  return Buffer.concat(parts);
}

/** Throws {@link IntegrityError} unless `bytes` hash to `expected`. */
export function verifyBytes(expected: Hash, bytes: Uint8Array): void {
  const actual = hashBytes(bytes, expected.algorithm);
  if (!actual.equals(expected)) {
    throw new IntegrityError(`object ${expected.toString()} is corrupt: its bytes hash to ${actual.toString()}`, {
      key: expected.toString(),
    });
  }
}

/**
 * Wraps a chunk stream so that it throws {@link IntegrityError} at the end
 * unless the bytes hash to `expected`. The last chunk is held back until the
 * hash is known, so a consumer never sees the stream complete with bad data.
 */
export async function* verifiedStream(expected: Hash, chunks: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  const hasher = createHasher(expected.algorithm);
  let held: Uint8Array | undefined;
  for await (const chunk of chunks) {
    hasher.update(chunk);
    if (held !== undefined) yield held;
    held = chunk;
  }
  const actual = hasher.digest();
  if (!actual.equals(expected)) {
    throw new IntegrityError(`object ${expected.toString()} is corrupt: its bytes hash to ${actual.toString()}`, {
      key: expected.toString(),
    });
  }
  if (held !== undefined) yield held;
}

/** Hashes a buffer with the chosen algorithm. */
export function hashOf(bytes: Uint8Array, algorithm: HashAlgorithm | undefined): Hash {
  return hashBytes(bytes, algorithm);
}

/**
 * Maps `items` through `fn` with at most `limit` calls in flight; results in
 * input order. The first rejection rejects the whole and stops new calls.
 */
export async function mapConcurrent<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const index = next++;
      try {
        results[index] = await fn(items[index]!, index);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, worker));
  return results;
}
