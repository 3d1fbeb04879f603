/**
 * How a store hears of other processes' writes while someone watches: file
 * events on a directory (cheap, immediate, but missing on some network file
 * systems) plus polling at the shortest interval any watcher asked for.
 * Either one only triggers a catch-up read; the log itself says what
 * changed, so a spurious or missed event costs at most one interval.
 *
 * @module
 */
import { watch, type FSWatcher } from 'node:fs';

/** File events and polling on one directory, calling `poll` on each. */
export class ChangeFeed {
  readonly #dir: string;
  readonly #poll: () => void;
  #watcher: FSWatcher | undefined;
  #poller: NodeJS.Timeout | undefined;
  #pollMs = Infinity;

  constructor(dir: string, poll: () => void) {
    this.#dir = dir;
    this.#poll = poll;
  }

  /** Starts (or keeps) file events, and polls at least every `intervalMs`. */
  start(intervalMs: number): void {
    if (this.#watcher === undefined) {
      try {
        // Watch the directory: a rewrite replaces the file, which a watch on the file itself would miss.
        this.#watcher = watch(this.#dir, { persistent: true }, this.#poll);
        this.#watcher.on('error', () => this.#watcher?.close());
      } catch {
        // No fs events here (some network file systems): polling alone covers it.
      }
    }
    if (intervalMs < this.#pollMs) {
      if (this.#poller !== undefined) clearInterval(this.#poller);
      this.#pollMs = intervalMs;
      this.#poller = setInterval(this.#poll, Math.max(5, intervalMs));
    }
  }

  /** Stops events and polling. */
  stop(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
    if (this.#poller !== undefined) clearInterval(this.#poller);
    this.#poller = undefined;
    this.#pollMs = Infinity;
  }
}
