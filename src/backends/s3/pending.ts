/**
 * Ref writes of this store whose outcome is unknown, so that retrying the
 * same call recognises its own earlier write instead of reporting it as a
 * conflict. Kept in memory, per store; another process settles an attempt
 * with `resolveOutcome` and the attempt data the error carried.
 *
 * @module
 */
import { InvalidArgumentError, type RefWriteAttempt } from '../../errors.js';
import { parseHash, type Hash } from '../../hash.js';
import { isValidRefName } from '../../ref-name.js';
import { currentId, judgeWrite, type RefState } from './ref-body.js';
import type { RefWrite } from './refs.js';

/** Refs with unsettled attempts kept; the oldest is forgotten beyond this (its retry then gets a fresh id). */
const MAX_REFS = 1024;
/** Unsettled attempts kept per ref. */
const MAX_PER_REF = 8;

/** See the module comment. */
export class PendingWrites {
  readonly #byRef = new Map<string, RefWriteAttempt[]>();

  add(attempt: RefWriteAttempt): void {
    const list = (this.#byRef.get(attempt.ref) ?? []).filter((a) => a.writeId !== attempt.writeId);
    list.push(attempt);
    if (list.length > MAX_PER_REF) list.shift();
    this.#byRef.delete(attempt.ref);
    this.#byRef.set(attempt.ref, list);
    if (this.#byRef.size > MAX_REFS) this.#byRef.delete(this.#byRef.keys().next().value!);
  }

  /** Removes and returns the unsettled attempt of the same write (same ref, condition and value), if any. */
  take(ref: string, expected: string | null | undefined, next: string | null): RefWriteAttempt | undefined {
    const list = this.#byRef.get(ref);
    const found = list?.find((a) => a.expected === expected && a.next === next);
    if (found !== undefined) this.remove(found);
    return found;
  }

  remove(attempt: RefWriteAttempt): void {
    const list = this.#byRef.get(attempt.ref)?.filter((a) => a.writeId !== attempt.writeId);
    if (list === undefined) return;
    if (list.length === 0) this.#byRef.delete(attempt.ref);
    else this.#byRef.set(attempt.ref, list);
  }

  /**
   * Forgets the attempts on `ref` that a fresh read settles: landed, or
   * unable to land any more (the state they were conditioned on has been
   * replaced by another write). Those conditioned on the current state stay:
   * a request of theirs could still be on its way.
   */
  prune(ref: string, state: RefState): void {
    const list = this.#byRef.get(ref);
    if (list === undefined) return;
    const now = currentId(state);
    for (const attempt of list) {
      const verdict = judgeWrite(state, attempt.writeId, new Set(attempt.bases));
      if (verdict !== 'not-applied' || !attempt.bases.includes(now)) this.remove(attempt);
    }
  }
}

/** Checks an attempt handed back by a caller (it may come from a file or another process). */
export function parseAttempt(attempt: RefWriteAttempt): RefWrite {
  const bad = (why: string): InvalidArgumentError =>
    new InvalidArgumentError(`resolveOutcome takes the attempt of an OutcomeUnknownError (error.attempt); ${why}`);
  if (attempt === null || typeof attempt !== 'object') throw bad(`got ${attempt === null ? 'null' : typeof attempt}`);
  if (!isValidRefName(attempt.ref)) throw bad('its ref is not a valid ref name');
  if (typeof attempt.writeId !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(attempt.writeId)) throw bad('its writeId is not a write id');
  if (!Array.isArray(attempt.bases) || attempt.bases.length > 64 || !attempt.bases.every((b) => typeof b === 'string' && b.length <= 64)) {
    throw bad('its bases are not a list of write ids');
  }
  const hashOrNull = (value: unknown, what: string): Hash | null => {
    if (value === null) return null;
    try {
      return parseHash(value);
    } catch {
      throw bad(`its ${what} is not a hash or null`);
    }
  };
  return {
    name: attempt.ref,
    expected: attempt.expected === undefined ? undefined : hashOrNull(attempt.expected, 'expected value'),
    next: hashOrNull(attempt.next, 'next value'),
  };
}
