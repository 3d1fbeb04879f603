/**
 * Reading the subtrees of a directory ahead of a depth-first walk. A walk
 * that reads one tree at a time pays one round trip per directory; a remote
 * that keeps sibling trees side by side (a pack) serves the next few in one
 * request when they are asked for together. The window bounds memory: at
 * most {@link TREES_AHEAD} trees per level are held before the walk reaches
 * them.
 *
 * @module
 */
import type { Hash } from '../hash.js';
import type { Store } from '../store.js';
import type { TreeEntry } from './format.js';

/** Subtrees of one level read ahead of the walk. */
export const TREES_AHEAD = 32;

/** The bytes of one level's subtrees, read a window ahead. */
export class TreeReadAhead {
  readonly #ahead = new Map<number, Promise<Uint8Array>>();
  /** The same subtree named twice in the window is read once (a tree may name one subtree many times). */
  readonly #byHash = new Map<string, Promise<Uint8Array>>();
  #next = 0;

  /** `known` says which subtrees need no read (already measured elsewhere). */
  constructor(
    readonly store: Store,
    readonly entries: readonly TreeEntry[],
    readonly signal: AbortSignal | undefined,
    readonly known: (hash: Hash) => boolean = () => false,
  ) {
    this.#fill();
  }

  /** The bytes of the subtree at `index` (a `dir` entry), read ahead or now; moves the window on. */
  take(index: number): Promise<Uint8Array> {
    const entry = this.entries[index];
    if (entry?.type !== 'dir') throw new RangeError(`entry ${index} is not a directory`);
    const read = this.#ahead.get(index) ?? this.store.get(entry.hash, { signal: this.signal });
    this.skip(index);
    return read;
  }

  /** The walk will not take `index` (it knows that subtree already): frees its place in the window. */
  skip(index: number): void {
    if (this.#ahead.delete(index)) {
      const entry = this.entries[index] as { hash: Hash };
      if (![...this.#ahead.keys()].some((i) => (this.entries[i] as { hash: Hash }).hash.equals(entry.hash))) this.#byHash.delete(entry.hash.toString());
    }
    this.#fill();
  }

  #fill(): void {
    // Refilled in halves, not one by one: reads started together reach the store together and share a request.
    if (this.#ahead.size > TREES_AHEAD / 2) return;
    while (this.#ahead.size < TREES_AHEAD && this.#next < this.entries.length) {
      const entry = this.entries[this.#next]!;
      if (entry.type === 'dir' && !this.known(entry.hash)) {
        const key = entry.hash.toString();
        let read = this.#byHash.get(key);
        if (read === undefined) {
          read = this.store.get(entry.hash, { signal: this.signal });
          // Awaited when the walk gets there; one it never reaches (it stopped on an error) is not an unhandled rejection.
          read.catch(() => undefined);
          this.#byHash.set(key, read);
        }
        this.#ahead.set(this.#next, read);
      }
      this.#next++;
    }
  }
}
