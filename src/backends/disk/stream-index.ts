/**
 * Where each live event of a stream log is: number, file offset and frame
 * length, in three growable typed arrays (24 bytes an event), ordered by
 * number. Events at or below the floor are dropped from the front.
 *
 * @module
 */

/** The in-memory index of one stream log's live events. */
export class EventIndex {
  #seqs: Float64Array<ArrayBuffer> = new Float64Array(64);
  #offsets: Float64Array<ArrayBuffer> = new Float64Array(64);
  #lengths: Float64Array<ArrayBuffer> = new Float64Array(64);
  /** Live entries are at positions `[#start, #end)`. */
  #start = 0;
  #end = 0;

  /** Number of live events. */
  get size(): number {
    return this.#end - this.#start;
  }

  /** Adds an event above every one indexed so far. */
  push(seq: number, offset: number, length: number): void {
    if (this.#end === this.#seqs.length) this.#grow();
    this.#seqs[this.#end] = seq;
    this.#offsets[this.#end] = offset;
    this.#lengths[this.#end] = length;
    this.#end++;
  }

  /** Forgets the events numbered `floor` or less. */
  dropThrough(floor: number): void {
    while (this.#start < this.#end && this.#seqs[this.#start]! <= floor) this.#start++;
    if (this.#start === this.#end) this.#start = this.#end = 0;
  }

  /** The position of the first event numbered `seq` or more (`end()` if none). */
  firstAtOrAbove(seq: number): number {
    let lo = this.#start;
    let hi = this.#end;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#seqs[mid]! < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** One past the last position. */
  end(): number {
    return this.#end;
  }

  seqAt(position: number): number {
    return this.#seqs[position]!;
  }

  offsetAt(position: number): number {
    return this.#offsets[position]!;
  }

  lengthAt(position: number): number {
    return this.#lengths[position]!;
  }

  /** File offset of the first live event, if any. */
  firstOffset(): number | undefined {
    return this.#start < this.#end ? this.#offsets[this.#start] : undefined;
  }

  /** Moves every offset `delta` bytes towards the start of the file (after a rewrite cut that much). */
  shift(delta: number): void {
    for (let i = this.#start; i < this.#end; i++) this.#offsets[i] = this.#offsets[i]! - delta;
  }

  clear(): void {
    this.#start = this.#end = 0;
  }

  #grow(): void {
    const live = this.#end - this.#start;
    // Reuse the dropped front when it is most of the array; else double.
    const capacity = live * 2 <= this.#seqs.length ? this.#seqs.length : this.#seqs.length * 2;
    const move = (from: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> => {
      const to = new Float64Array(capacity);
      to.set(from.subarray(this.#start, this.#end));
      return to;
    };
    this.#seqs = move(this.#seqs);
    this.#offsets = move(this.#offsets);
    this.#lengths = move(this.#lengths);
    this.#start = 0;
    this.#end = live;
  }
}
