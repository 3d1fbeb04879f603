/**
 * The layered store's reserved ref names and the small checks its parts
 * share.
 *
 * @module
 */
import { BackendError, InvalidRefNameError } from '../../errors.js';
import type { Hash } from '../../hash.js';
import { assertRefName } from '../../ref-name.js';
import { RESERVED_PREFIX } from '../journal.js';

/** Ref prefix (in the upper store) of the remote value each ref had at the last sync: the base of push's compare-and-swap. */
export const TRACKING_PREFIX = '.cairn/remote/';
/** The value a push is about to publish, per ref: lets the next push recognise its own success if it crashed before recording it. */
export const PUSHING_PREFIX = '.cairn/pushing/';
/** Objects per call when copying or checking between the layers. */
export const COPY_BATCH = 128;

/** A name under the layer's own prefix: hidden from listings, refused as a user ref. */
export function isReserved(name: string): boolean {
  return name.startsWith(RESERVED_PREFIX);
}

/** Throws unless `name` is a valid ref name outside the reserved prefix. */
export function assertUserRef(name: string): void {
  assertRefName(name);
  if (isReserved(name)) {
    throw new InvalidRefNameError(
      `ref name ${JSON.stringify(name)} is reserved: names under "${RESERVED_PREFIX}" hold the layered store's own state`,
      { ref: name },
    );
  }
}

/** Equal hashes, or both absent. */
export function sameHash(a: Hash | undefined, b: Hash | undefined): boolean {
  return a === undefined ? b === undefined : a.equals(b);
}

/** A copy between the layers must land under the hash it was made for. */
export function verifyStored(expected: Hash, stored: Hash): void {
  if (!stored.equals(expected)) {
    throw new BackendError(`copying ${expected.toString()} between layers stored ${stored.toString()} instead`, {
      key: expected.toString(),
    });
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
