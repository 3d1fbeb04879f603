/**
 * Group commit: items added while a batch is open share one commit, as the
 * disk backend shares one fsync. A batch closes when its size reaches the
 * target (so a large putMany fills batches back to back) or when the linger
 * window since its first item ends (so a lone put waits at most that long).
 * At most `maxInFlight` commits run at once; closed batches wait their turn.
 *
 * @module
 */

interface Batch<T> {
  items: T[];
  size: number;
  done: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** See the module comment. */
export class GroupCommit<T> {
  #open: Batch<T> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running = 0;
  readonly #waiting: (() => void)[] = [];
  readonly #inFlight = new Set<Promise<void>>();

  constructor(
    private readonly commit: (items: T[]) => Promise<void>,
    private readonly options: { targetSize: number; maxItems: number; lingerMs: number; maxInFlight: number },
  ) {}

  /** Adds an item of `size` bytes; resolves once the batch holding it is committed. */
  add(item: T, size: number): Promise<void> {
    const batch = (this.#open ??= this.#newBatch());
    batch.items.push(item);
    batch.size += size;
    if (batch.size >= this.options.targetSize || batch.items.length >= this.options.maxItems) this.#close();
    else this.#timer ??= setTimeout(() => this.#close(), this.options.lingerMs);
    return batch.done;
  }

  /** Closes the open batch now and resolves once every commit started so far has settled. */
  async drain(): Promise<void> {
    this.#close();
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  #newBatch(): Batch<T> {
    let resolve!: () => void;
    let reject!: (error: unknown) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A batch nobody awaits any more (every caller aborted) must not become an unhandled rejection.
    done.catch(() => undefined);
    return { items: [], size: 0, done, resolve, reject };
  }

  #close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#open;
    this.#open = undefined;
    if (batch === undefined || batch.items.length === 0) return;
    const run = this.#run(batch);
    this.#inFlight.add(run);
    void run.finally(() => this.#inFlight.delete(run));
  }

  async #run(batch: Batch<T>): Promise<void> {
    if (this.#running >= this.options.maxInFlight) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.#running++;
    try {
      await this.commit(batch.items);
      batch.resolve();
    } catch (error) {
      batch.reject(error);
    } finally {
      this.#running--;
      this.#waiting.shift()?.();
    }
  }
}
