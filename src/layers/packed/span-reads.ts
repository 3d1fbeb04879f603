/**
 * Coalesced reads of packed blobs. A restore asks for hundreds of small
 * objects at once, and most sit side by side in the same packs (a snapshot
 * packs them in the order it reads them). One ranged GET each is what S3
 * users pay per request and what makes a restore slow: the reads that
 * arrive within one turn of the event loop are grouped by pack, sorted,
 * and merged into spans (neighbours at most `maxGapBytes` apart, spans at
 * most `maxSpanBytes` long), one ranged read per span; each blob is then
 * cut out of its span (a copy, so that a small blob does not keep a large
 * span alive). A lone read still costs one request for exactly its bytes.
 *
 * The bytes a span returns are checked by the caller per blob as before
 * (length, then decode and hash): a span cut short makes the blobs past its
 * end short, and so an {@link IntegrityError} each, never wrong bytes.
 *
 * @module
 */
import type { Hash } from '../../hash.js';
import type { Store } from '../../store.js';

/** Where a blob's stored bytes are. */
export interface StoredRange {
  readonly pack: Hash;
  readonly offset: number;
  readonly storedLength: number;
}

/** Options of {@link SpanReads}. */
export interface SpanReadOptions {
  /** Two blobs at most this far apart are read in one span (the gap is read and dropped). */
  readonly maxGapBytes: number;
  /** Longest span read at once: bounds the memory of one read. */
  readonly maxSpanBytes: number;
}

interface Waiting {
  readonly range: StoredRange;
  readonly signal: AbortSignal | undefined;
  resolve(bytes: Uint8Array): void;
  reject(error: unknown): void;
}

/** See the module comment. */
export class SpanReads {
  #waiting: Waiting[] = [];
  #scheduled = false;

  constructor(
    readonly inner: Store,
    readonly options: SpanReadOptions,
  ) {}

  /** The stored bytes of one blob (shorter than `storedLength` when the pack is cut short). */
  read(range: StoredRange, signal: AbortSignal | undefined): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ range, signal, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    const waiting = this.#waiting;
    this.#waiting = [];
    this.#scheduled = false;
    const byPack = new Map<string, Waiting[]>();
    for (const w of waiting) {
      const key = w.range.pack.toString();
      const list = byPack.get(key);
      if (list === undefined) byPack.set(key, [w]);
      else list.push(w);
    }
    for (const list of byPack.values()) {
      list.sort((a, b) => a.range.offset - b.range.offset);
      let span: Waiting[] = [];
      let start = 0;
      let end = 0;
      for (const w of list) {
        const wEnd = w.range.offset + w.range.storedLength;
        if (span.length > 0 && w.range.offset - end <= this.options.maxGapBytes && Math.max(end, wEnd) - start <= this.options.maxSpanBytes) {
          span.push(w);
          end = Math.max(end, wEnd);
          continue;
        }
        if (span.length > 0) void this.#readSpan(span, start, end);
        span = [w];
        start = w.range.offset;
        end = wEnd;
      }
      if (span.length > 0) void this.#readSpan(span, start, end);
    }
  }

  async #readSpan(span: readonly Waiting[], start: number, end: number): Promise<void> {
    // One signal for the whole span: the first reader's (a span is only shared by reads of the same moment).
    const signal = span.length === 1 ? span[0]!.signal : undefined;
    let bytes: Uint8Array;
    try {
      bytes = await this.inner.getRange(span[0]!.range.pack, start, end - start, { signal });
    } catch (error) {
      for (const w of span) w.reject(error);
      return;
    }
    for (const w of span) {
      const from = w.range.offset - start;
      const piece = bytes.subarray(Math.min(from, bytes.length), Math.min(from + w.range.storedLength, bytes.length));
      w.resolve(span.length === 1 ? piece : Uint8Array.prototype.slice.call(piece));
    }
  }
}
