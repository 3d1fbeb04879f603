/**
 * Caller-chosen names of the data APIs (stream names, keys, secret-key
 * names) become ref names or file names, so they are checked against an
 * allow-list before anything is written. A bad name is an
 * {@link InvalidArgumentError} that says what is wrong; the ref-name check
 * underneath stays the last line of defence.
 *
 * @module
 */
import { InvalidArgumentError, InvalidRefNameError } from '../errors.js';
import { assertRefName, assertRefPrefix } from '../ref-name.js';

const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/** Longest single-segment name (stream or secret key), in bytes. */
export const MAX_SEGMENT_NAME = 200;

function shown(name: unknown): string {
  if (typeof name !== 'string') return typeof name;
  return JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}...` : name);
}

/**
 * Checks a one-segment name: 1 to 200 characters from `A-Z a-z 0-9 . _ -`,
 * not starting with `.` and not ending in `.lock` (reserved by the disk
 * backend). `what` names the argument in the message.
 */
export function assertSegmentName(name: unknown, what: string): asserts name is string {
  let problem: string | undefined;
  if (typeof name !== 'string') problem = 'it is not a string';
  else if (name.length === 0) problem = 'it is empty';
  else if (name.length > MAX_SEGMENT_NAME) problem = `it is longer than ${MAX_SEGMENT_NAME} characters`;
  else if (name.startsWith('.')) problem = 'it starts with "."';
  else if (!SEGMENT.test(name)) problem = 'it has a character outside A-Z a-z 0-9 . _ -';
  else if (name.endsWith('.lock')) problem = 'it ends in ".lock", which is reserved';
  if (problem !== undefined) {
    throw new InvalidArgumentError(
      `invalid ${what} ${shown(name)}: ${problem}; use letters, digits, '.', '_' and '-', such as "orders-2024"`,
      { key: typeof name === 'string' ? name.slice(0, 200) : undefined },
    );
  }
}

/**
 * Checks a key that becomes the ref `prefix + key`: the ref-name rules
 * (`/`-separated segments of `A-Z a-z 0-9 . _ -`). Reported as an
 * {@link InvalidArgumentError} with the ref-name error as `cause`.
 */
export function assertKeyName(key: unknown, prefix: string, what: string): asserts key is string {
  try {
    if (typeof key !== 'string' || key.length === 0) throw new InvalidRefNameError('empty or not a string');
    assertRefName(prefix + key);
  } catch (cause) {
    if (!(cause instanceof InvalidRefNameError)) throw cause;
    throw new InvalidArgumentError(
      `invalid ${what} ${shown(key)}: use '/'-separated segments of letters, digits, '.', '_' and '-' (no empty, "." or ".." segment), such as "users/42"`,
      { key: typeof key === 'string' ? key.slice(0, 200) : undefined, cause },
    );
  }
}

/** Checks a listing prefix of keys; see {@link assertKeyName}. */
export function assertKeyPrefix(prefix: unknown, base: string, what: string): asserts prefix is string {
  try {
    if (typeof prefix !== 'string') throw new InvalidRefNameError('not a string');
    assertRefPrefix(base + prefix);
  } catch (cause) {
    if (!(cause instanceof InvalidRefNameError)) throw cause;
    throw new InvalidArgumentError(`invalid ${what} prefix ${shown(prefix)}: use the start of a key such as "users/"`, {
      cause,
    });
  }
}

/** Checks the namespace prefix option of a data API: empty or a ref prefix ending in `/`. */
export function assertNamespace(prefix: unknown, option: string): asserts prefix is string {
  let ok = prefix === '';
  if (!ok && typeof prefix === 'string' && prefix.endsWith('/')) {
    try {
      assertRefName(prefix.slice(0, -1));
      ok = true;
    } catch {
      ok = false;
    }
  }
  if (!ok) {
    throw new InvalidArgumentError(`option ${option} must be "" or a ref prefix ending in "/", such as "app/", got ${shown(prefix)}`);
  }
}
