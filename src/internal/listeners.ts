/**
 * A set of listeners that one event source calls in turn. A listener that
 * throws does not stop the others (nor the source that emits): watchers are
 * independent consumers, and one failing must not silence the rest.
 *
 * @module
 */

/**
 * Listeners of values of type `T`.
 *
 * @example
 * ```ts
 * const listeners = new ListenerSet<string>();
 * const off = listeners.add((v) => console.log(v));
 * listeners.emit('changed'); // logs "changed"
 * off();
 * ```
 */
export class ListenerSet<T> {
  readonly #listeners = new Set<(value: T) => void>();

  /** Adds `listener`; returns the function that removes it (calling it twice is harmless). */
  add(listener: (value: T) => void): () => void {
    // Wrapped, so that adding the same function twice registers it twice and each unsubscribe removes one.
    const entry = (value: T): void => listener(value);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  /** Calls every listener registered now with `value`; exceptions they throw are swallowed. */
  emit(value: T): void {
    // A copy: a listener may add or remove listeners while being called.
    for (const listener of [...this.#listeners]) {
      try {
        listener(value);
      } catch {
        // See the module comment: one failing watcher must not stop the others.
      }
    }
  }

  /** Number of listeners registered. */
  get size(): number {
    return this.#listeners.size;
  }

  /** Removes every listener. */
  clear(): void {
    this.#listeners.clear();
  }
}
