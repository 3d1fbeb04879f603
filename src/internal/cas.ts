/**
 * The compare-and-swap acceptance rule of the Store contract, in one place
 * for every backend that compares in process (memory, derived, S3's swap
 * engine).
 *
 * @module
 */
import type { Hash } from '../hash.js';
import type { RefValue } from '../store.js';

/**
 * True when a ref holding `current` accepts a swap that expects `expected`:
 * `null` accepts only an absent ref, a hash only a present ref holding that
 * hash. Versions are not compared: the contract swaps on the hash the
 * caller saw.
 */
export function casAccepts(current: RefValue | undefined, expected: Hash | null): boolean {
  return expected === null ? current === undefined : current !== undefined && current.hash.equals(expected);
}
