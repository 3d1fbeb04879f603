/**
 * Option checks shared by the layers: every bad option is an
 * {@link InvalidArgumentError} that names the option and the value given, so
 * that a typo in a config file is found from the message alone.
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';

function shown(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  return typeof value;
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
    throw new InvalidArgumentError(`${owner} option "${name}" must be ${range}, got ${shown(value)}`);
  }
  return value;
}

/** Returns `value` (or `fallback`) if it is a finite number >= `min`. */
export function numberOption(owner: string, name: string, value: unknown, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new InvalidArgumentError(`${owner} option "${name}" must be a finite number >= ${min}, got ${shown(value)}`);
  }
  return value;
}

/** Checks that `value` looks like a Store (has the methods a layer calls). */
export function storeOption(owner: string, name: string, value: unknown): void {
  const store = value as Record<string, unknown> | null;
  const methods = ['put', 'get', 'putMany', 'getMany', 'hasMany', 'getRef', 'compareAndSwap', 'listRefs', 'close'];
  if (store == null || typeof store !== 'object' || methods.some((m) => typeof store[m] !== 'function')) {
    throw new InvalidArgumentError(`${owner} option "${name}" must be a Store (such as memoryStore()), got ${shown(value)}`);
  }
}
