/**
 * Single-flight requests: concurrent callers asking for the same key share
 * one request (common when writers race on content, or readers on a hot
 * object).
 *
 * @module
 */
import { raceAbort } from '../../abort.js';

interface Flight<T> {
  promise: Promise<T>;
  joiners: number;
}

/** In-flight requests by key. */
export class SingleFlight {
  readonly #inflight = new Map<string, Flight<unknown>>();

  /**
   * Runs `run` once for all callers of `key` while it is in flight. It runs
   * under `shared` (the store's own signal), and each caller waits under its
   * own, so one caller's abort does not fail the others. `copy` gives each
   * caller its own value when several shared it.
   */
  async run<T>(
    key: string,
    shared: AbortSignal,
    signal: AbortSignal | undefined,
    run: (signal: AbortSignal) => Promise<T>,
    copy?: (value: T) => T,
  ): Promise<T> {
    let entry = this.#inflight.get(key) as Flight<T> | undefined;
    if (entry === undefined) {
      const created: Flight<T> = { promise: Promise.resolve() as Promise<T>, joiners: 0 };
      // Removed before any caller resumes, so nobody joins a settled request.
      created.promise = run(shared).finally(() => this.#inflight.delete(key));
      // Every caller may have stopped waiting (aborted): the failure must not go unhandled.
      created.promise.catch(() => undefined);
      this.#inflight.set(key, created);
      entry = created;
    } else {
      entry.joiners++;
    }
    const value = await raceAbort(entry.promise, signal);
    return copy !== undefined && entry.joiners > 0 ? copy(value) : value;
  }
}
