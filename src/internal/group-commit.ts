/**
 * Group commit: writers that arrive while one batch is being made durable
 * wait together and go out as the next batch, under one write and one
 * fdatasync, instead of paying a sync each.
 *
 * The queue owns only the waiting and the acknowledging; what a batch is
 * (records appended to a segment, ref operations applied under a lock) is
 * the `commit` function's business. Its guarantees:
 *
 * - at most one `commit` runs at a time, in arrival order;
 * - an item is acknowledged only after the `commit` of its batch resolved,
 *   and the items of a batch are acknowledged in the order they were queued;
 * - if `commit` rejects, every item of that batch rejects with the same
 *   error (the commit decides what of the batch may have landed and must
 *   leave its file in a state where none of it is later read as done);
 *   later batches still run.
 *
 * @module
 */

/** Options of {@link GroupCommitQueue}. */
export interface GroupCommitOptions<T, R> {
  /**
   * Makes a batch durable; resolves once it is (for example after the
   * fdatasync), with one result per item in batch order, or with nothing
   * when items have no result.
   */
  readonly commit: (batch: readonly T[]) => Promise<readonly R[] | void>;
  /**
   * A batch stops growing before it would pass `maxBatchBytes` as measured
   * by this function (a single item larger than that is a batch of its own).
   * @default every item counts 0 (batches are unbounded)
   */
  readonly sizeOf?: ((item: T) => number) | undefined;
  /** @default Infinity */
  readonly maxBatchBytes?: number | undefined;
  /**
   * Wait one macrotask before cutting each batch, so that callers whose
   * previous item was just acknowledged can queue their next one first:
   * microseconds that turn a trickle of one-item batches into one batch per
   * sync under steady load.
   * @default false
   */
  readonly gather?: boolean | undefined;
}

interface Waiting<T, R> {
  readonly item: T;
  readonly resolve: (result: R) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * A group-commit queue.
 *
 * @example
 * ```ts
 * const queue = new GroupCommitQueue<Buffer, void>({
 *   commit: async (frames) => {
 *     writevSync(fd, [...frames], end);
 *     await fdatasyncAsync(fd);
 *   },
 * });
 * await queue.enqueue(record); // durable once this resolves
 * ```
 */
export class GroupCommitQueue<T, R = void> {
  readonly #options: GroupCommitOptions<T, R>;
  #waiting: Waiting<T, R>[] = [];
  #draining: Promise<void> | undefined;
  #batch: Promise<unknown> = Promise.resolve();

  constructor(options: GroupCommitOptions<T, R>) {
    this.#options = options;
  }

  /** Queues `item`; resolves with its result once its batch is committed. */
  enqueue(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#waiting.push({ item, resolve, reject });
      this.#draining ??= this.#drain();
    });
  }

  /** Items waiting for a batch (not counting the one being committed). */
  get pending(): number {
    return this.#waiting.length;
  }

  /** Settles when the batch being committed now (if any) has, whether it succeeded or not. */
  batchSettled(): Promise<void> {
    return this.#batch.then(
      () => {},
      () => {},
    );
  }

  /** Resolves once every item queued so far has been committed or failed. */
  async flush(): Promise<void> {
    while (this.#draining !== undefined) await this.#draining;
  }

  async #drain(): Promise<void> {
    try {
      while (this.#waiting.length > 0) {
        if (this.#options.gather === true) await new Promise<void>((resolve) => setImmediate(resolve));
        const batch = this.#waiting.splice(0, this.#cut());
        const items = batch.map((w) => w.item);
        let results: readonly R[] | void;
        try {
          const running = this.#options.commit(items);
          this.#batch = running;
          results = await running;
        } catch (error) {
          for (const w of batch) w.reject(error);
          continue;
        }
        for (let i = 0; i < batch.length; i++) batch[i]!.resolve(results === undefined ? (undefined as R) : results[i]!);
      }
    } finally {
      this.#draining = undefined;
    }
  }

  /** How many waiting items the next batch takes. */
  #cut(): number {
    const { sizeOf, maxBatchBytes = Infinity } = this.#options;
    if (sizeOf === undefined || maxBatchBytes === Infinity) return this.#waiting.length;
    let bytes = 0;
    let count = 0;
    while (count < this.#waiting.length) {
      const size = sizeOf(this.#waiting[count]!.item);
      if (count > 0 && bytes + size > maxBatchBytes) break;
      bytes += size;
      count++;
    }
    return count;
  }
}
