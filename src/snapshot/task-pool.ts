/**
 * A small task pool for restore's streaming walk.
 *
 * @module
 */
import { throwIfAborted } from '../abort.js';

/**
 * Runs tasks with at most `limit` in flight. `run` waits for a free slot
 * (backpressure on the walk); the first failure is rethrown by the next
 * `run`, `check` or `drain`, and `drain` waits for every task started, so
 * that nothing writes into a staging directory being removed.
 */
export class TaskPool {
  readonly #limit: number;
  readonly #signal: AbortSignal | undefined;
  readonly #running = new Set<Promise<void>>();
  #failure: { error: unknown } | undefined;

  constructor(limit: number, signal: AbortSignal | undefined) {
    this.#limit = limit;
    this.#signal = signal;
  }

  check(): void {
    if (this.#failure !== undefined) throw this.#failure.error;
    throwIfAborted(this.#signal);
  }

  async run(task: () => Promise<void>): Promise<void> {
    while (this.#running.size >= this.#limit) await Promise.race(this.#running);
    this.check();
    const running: Promise<void> = task().then(
      () => void this.#running.delete(running),
      (error: unknown) => {
        this.#failure ??= { error };
        this.#running.delete(running);
      },
    );
    this.#running.add(running);
  }

  async drain(): Promise<void> {
    while (this.#running.size > 0) await Promise.race(this.#running);
    this.check();
  }

  /** Waits for what runs, keeping the first failure (for the error path). */
  async settle(): Promise<void> {
    while (this.#running.size > 0) await Promise.race(this.#running);
  }
}

