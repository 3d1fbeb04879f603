/**
 * Option checks for every factory and layer, in one message style:
 *
 *     <owner> option "<name>" must be <requirement>, got <value>
 *
 * as an {@link InvalidArgumentError}, so that a typo in a config file is
 * found from the message alone, whichever part of Cairn read it. Values are
 * shown short (long strings cut, objects by type), and never a URL's
 * password: callers check URLs with {@link invalidOption} and show no value.
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';

/** A value as an option error shows it. */
export function shown(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  return typeof value;
}

/**
 * The error for a bad option: `<owner> option "<name>" must be <requirement>, got <value>`.
 * Pass `{ hideValue: true }` for values that may hold secrets (URLs).
 */
export function invalidOption(
  owner: string,
  name: string,
  requirement: string,
  value: unknown,
  extra: { cause?: unknown; hideValue?: boolean } = {},
): InvalidArgumentError {
  const got = extra.hideValue ? '' : `, got ${shown(value)}`;
  return new InvalidArgumentError(`${owner} option "${name}" must be ${requirement}${got}`, extra.cause === undefined ? {} : { cause: extra.cause });
}

/** Returns `value` (or `fallback` when undefined) if it is an integer in `[min, max]`. */
export function integerOption(
  owner: string,
  name: string,
  value: unknown,
  fallback: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`;
    throw invalidOption(owner, name, range, value);
  }
  return value;
}

/** Returns `value` (or `fallback`) if it is a finite number >= `min` (> `min` with `exclusive`). */
export function numberOption(owner: string, name: string, value: unknown, fallback: number, min: number, exclusive = false): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (exclusive && value === min)) {
    throw invalidOption(owner, name, `a finite number ${exclusive ? '>' : '>='} ${min}`, value);
  }
  return value;
}

/** Returns `value` (or `fallback`) if it is a string (non-empty with `nonEmpty`). */
export function stringOption(owner: string, name: string, value: unknown, fallback: string, nonEmpty = false): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || (nonEmpty && value === '')) throw invalidOption(owner, name, nonEmpty ? 'a non-empty string' : 'a string', value);
  return value;
}

/** Checks that `value` looks like a Store (has the methods a layer calls). */
export function storeOption(owner: string, name: string, value: unknown): void {
  const store = value as Record<string, unknown> | null;
  const methods = ['put', 'get', 'putMany', 'getMany', 'hasMany', 'getRef', 'compareAndSwap', 'listRefs', 'close'];
  if (store == null || typeof store !== 'object' || methods.some((m) => typeof store[m] !== 'function')) {
    throw invalidOption(owner, name, 'a Store (such as memoryStore())', value);
  }
}
