/**
 * A set of listeners for one kind of event (a ref's changes), shared by
 * every backend and layer that pushes watch notifications.
 *
 * Why not a plain `Set<listener>`: the same function may be added twice (two
 * watches) and must then be removed once per watch, and one listener that
 * throws must neither stop the others nor fail the write that emitted.
 *
 * @module
 */

/** Called with the error a listener threw; by default a process warning, so a broken watcher is visible but harmless. */
export type ListenerErrorHandler = (error: unknown) => void;

function warn(error: unknown): void {
  process.emitWarning(`a watch listener threw: ${error instanceof Error ? error.message : String(error)}`, { type: 'CairnListenerWarning' });
}

/** Listeners of values of type `T`, called in the order they were added. */
export class ListenerSet<T> {
  /** One entry per `add`, so a function added twice is called twice and removed once per unsubscribe. */
  readonly #entries = new Set<{ readonly listener: (value: T) => void }>();
  readonly #onError: ListenerErrorHandler;

  constructor(onError: ListenerErrorHandler = warn) {
    this.#onError = onError;
  }

  /** Adds a listener; the returned function removes this registration (idempotent). */
  add(listener: (value: T) => void): () => void {
    const entry = { listener };
    this.#entries.add(entry);
    return () => {
      this.#entries.delete(entry);
    };
  }

  /**
   * Calls every listener registered when `emit` starts, in order. A listener
   * added or removed by another listener takes effect from the next emit. A
   * throwing listener is reported to the error handler and the rest still run.
   */
  emit(value: T): void {
    if (this.#entries.size === 0) return;
    for (const entry of [...this.#entries]) {
      try {
        entry.listener(value);
      } catch (error) {
        this.#onError(error);
      }
    }
  }

  /** How many registrations are live. */
  get size(): number {
    return this.#entries.size;
  }

  /** Removes every listener. */
  clear(): void {
    this.#entries.clear();
  }
}
