/**
 * Group commit: items added while a batch is open share one commit, as the
 * disk backend shares one fsync. A batch closes when its size reaches the
 * target (so a large putMany fills batches back to back), or when the linger
 * window since its first item ends **and no commit is running**: while one
 * is, the open batch keeps filling and closes as soon as the last running
 * commit settles. On an idle store a lone put waits at most the linger
 * window; under a steady stream of writers (a push feeding batches of a few
 * MiB) the packs grow towards the target instead of closing every linger
 * window, since every pack costs a pack PUT, an index PUT and a ref PUT.
 * At most `maxInFlight` commits run at once (full batches); closed batches
 * wait their turn.
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
  /** The open batch's linger window has ended; it closes when no commit is running. */
  #lingered = false;
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
    else this.#timer ??= setTimeout(() => this.#lingerEnded(), this.options.lingerMs);
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

  #lingerEnded(): void {
    this.#timer = undefined;
    if (this.#running === 0 && this.#waiting.length === 0) this.#close();
    else this.#lingered = true;
  }

  #close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#lingered = false;
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
      const next = this.#waiting.shift();
      // A woken batch runs next; the lingering open batch closes after it, so maxInFlight holds.
      if (next !== undefined) next();
      else if (this.#lingered && this.#running === 0) this.#close();
    }
  }
}
