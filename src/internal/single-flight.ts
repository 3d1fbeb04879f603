/**
 * Single-flight: concurrent callers asking for one key share one call.
 *
 * Used by the cache layer (misses, singly and in batches) and meant for S3's
 * reads too. Callers race their own signals against `flight.promise`
 * (with `raceAbort`): the shared call never takes one caller's signal, so
 * one caller's abort cannot fail the others.
 *
 * @module
 */
import { raceAbort } from '../abort.js';

/** A call in flight, shared by everyone who asked for its key while it ran. */
export interface Flight<V> {
  /** Settles with the call's outcome. A rejection is also observed here, so it never goes unhandled if every caller left. */
  readonly promise: Promise<V>;
  /** Callers that joined after the one that started it: more than 0 means the value is shared. */
  readonly joiners: number;
}

interface MutableFlight<V> {
  promise: Promise<V>;
  joiners: number;
}

/** Calls in flight by key. A key is forgotten as soon as its call settles, before any caller resumes. */
export class SingleFlight<K, V> {
  readonly #flights = new Map<K, MutableFlight<V>>();

  /** Joins the call in flight for `key`, if any (counting the caller as a joiner). */
  join(key: K): Flight<V> | undefined {
    const flight = this.#flights.get(key);
    if (flight !== undefined) flight.joiners++;
    return flight;
  }

  /** Starts `run` as the call for `key`. Call {@link SingleFlight.join} first: a call already in flight is replaced. */
  start(key: K, run: () => Promise<V>): Flight<V> {
    const flight: MutableFlight<V> = { promise: undefined as unknown as Promise<V>, joiners: 0 };
    let started: Promise<V>;
    try {
      started = run();
    } catch (error) {
      started = Promise.reject(error);
    }
    flight.promise = started.finally(() => {
      // A forget() or a newer start() may have replaced this flight; leave theirs alone.
      if (this.#flights.get(key) === flight) this.#flights.delete(key);
    });
    flight.promise.catch(() => undefined);
    this.#flights.set(key, flight);
    return flight;
  }

  /** Joins the call for `key`, or starts `run` as it; `joined` says which. */
  run(key: K, run: () => Promise<V>): { flight: Flight<V>; joined: boolean } {
    const joined = this.join(key);
    return joined !== undefined ? { flight: joined, joined: true } : { flight: this.start(key, run), joined: false };
  }

  /**
   * Joins or starts the call for `key` and waits for it under the caller's
   * own `signal` (the call itself runs under whatever signal `run` closes
   * over, never a caller's). `copy` gives each caller its own value once the
   * value is shared (a joiner came).
   */
  async share(key: K, run: () => Promise<V>, signal?: AbortSignal, copy?: (value: V) => V): Promise<V> {
    const { flight } = this.run(key, run);
    const value = await raceAbort(flight.promise, signal);
    return copy !== undefined && flight.joiners > 0 ? copy(value) : value;
  }

  /** Makes the next caller for `key` start a new call (after a delete, say); callers already waiting keep theirs. */
  forget(key: K): void {
    this.#flights.delete(key);
  }

  /** Forgets every key. */
  clear(): void {
    this.#flights.clear();
  }

  /** Keys in flight. */
  get size(): number {
    return this.#flights.size;
  }
}
