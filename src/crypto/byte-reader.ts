/**
 * Reads a chunk stream as pieces of the sizes a parser asks for, holding
 * no more than the piece being assembled plus the chunk being read: the
 * sender decides how bytes are chunked, the reader how many it keeps.
 *
 * @module
 */
import { throwIfAborted } from '../abort.js';
import { InvalidArgumentError } from '../errors.js';

/** Pulls exact-size pieces from an (async) iterable of byte chunks. */
export class ByteReader {
  readonly #iterator: AsyncIterator<unknown> | Iterator<unknown>;
  readonly #signal: AbortSignal | undefined;
  #chunk: Uint8Array = new Uint8Array(0);
  #done = false;

  constructor(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, signal?: AbortSignal) {
    if (source != null && typeof source === 'object' && Symbol.asyncIterator in source) this.#iterator = source[Symbol.asyncIterator]();
    else if (source != null && typeof source === 'object' && Symbol.iterator in source) this.#iterator = source[Symbol.iterator]();
    else throw new InvalidArgumentError(`a byte stream must be an (async) iterable of Uint8Array chunks, got ${source === null ? 'null' : typeof source}`);
    this.#signal = signal;
  }

  /**
   * The next `n` bytes, or fewer when the stream ends first. A piece that
   * lies inside one chunk is a view of it (no copy); otherwise it is
   * assembled in a buffer of `n` bytes.
   */
  async read(n: number): Promise<Uint8Array> {
    if (this.#chunk.length >= n || (this.#chunk.length === 0 && (await this.#pull()) && this.#chunk.length >= n)) {
      return this.#take(n);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      if (this.#chunk.length === 0 && !(await this.#pull())) return out.subarray(0, filled);
      const piece = this.#take(Math.min(n - filled, this.#chunk.length));
      out.set(piece, filled);
      filled += piece.length;
    }
    return out;
  }

  /** True when no byte is left. */
  async atEnd(): Promise<boolean> {
    return this.#chunk.length === 0 && !(await this.#pull());
  }

  /** Lets the source go (closes its iterator) when reading stops early. */
  async close(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.#iterator.return?.();
  }

  #take(n: number): Uint8Array {
    const piece = this.#chunk.subarray(0, n);
    this.#chunk = this.#chunk.subarray(n);
    return piece;
  }

  /** Loads the next non-empty chunk; false at the end of the stream. */
  async #pull(): Promise<boolean> {
    while (!this.#done) {
      throwIfAborted(this.#signal);
      const next = await this.#iterator.next();
      throwIfAborted(this.#signal);
      if (next.done === true) {
        this.#done = true;
        break;
      }
      if (!(next.value instanceof Uint8Array)) {
        throw new InvalidArgumentError(`a byte stream yielded ${typeof next.value}; it must yield Uint8Array chunks`);
      }
      if (next.value.length > 0) {
        this.#chunk = next.value;
        return true;
      }
    }
    return false;
  }
}
