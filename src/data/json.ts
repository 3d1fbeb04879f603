/**
 * JSON values that survive a round trip.
 *
 * `JSON.stringify` is lossy without a word: `undefined` and functions vanish,
 * `NaN` becomes `null`, a `Date` becomes a string, a `Map` becomes `{}`, a
 * sparse array grows `null`s, and a cycle or a BigInt throws a bare
 * `TypeError`. Events and key-value values are stored as JSON text, so a value
 * that would come back different is refused up front with an
 * {@link InvalidArgumentError} naming the path of the first bad part.
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';

/** A value that JSON text represents exactly. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Deeper nesting is refused: parsing it back could overflow the stack of a reader. */
export const MAX_JSON_DEPTH = 256;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Throws {@link InvalidArgumentError} unless `value` is a JSON value that
 * parses back equal to itself: `null`, booleans, finite numbers, strings,
 * dense arrays and plain objects (prototype `Object.prototype` or `null`,
 * string keys only) of those, without cycles, at most {@link MAX_JSON_DEPTH}
 * deep. `what` names the value in the message (`"event"`, `"value"`).
 * One loss is accepted on purpose: `-0` reads back as `0` (they are `===`,
 * and refusing a value `Math.round(-0.4)` returns would surprise more).
 *
 * @example
 * ```ts
 * assertJsonValue({ a: [1, 'x', null] }, 'event'); // ok
 * assertJsonValue({ when: new Date() }, 'event');  // throws: event.when is a Date
 * ```
 */
export function assertJsonValue(value: unknown, what: string): asserts value is JsonValue {
  const problem = jsonProblem(value, what, new Set(), 0);
  if (problem !== undefined) {
    throw new InvalidArgumentError(
      `${problem}; a ${what} must be a JSON value (null, booleans, finite numbers, strings, arrays and plain objects of those) that reads back unchanged`,
    );
  }
}

/**
 * Where a part sits in the value (`event.items[2].name`), kept as links and
 * written out only for a message: most values have no problem.
 */
type Path = string | { readonly parent: Path; readonly key: string | number };

function shown(path: Path): string {
  if (typeof path === 'string') return path;
  const { parent, key } = path;
  if (typeof key === 'number') return `${shown(parent)}[${key}]`;
  return `${shown(parent)}${/^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`}`;
}

function jsonProblem(value: unknown, path: Path, ancestors: Set<object>, depth: number): string | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return undefined;
    case 'number':
      return Number.isFinite(value) ? undefined : `${shown(path)} is ${String(value)}, which JSON cannot represent`;
    case 'undefined':
      return `${shown(path)} is undefined`;
    case 'function':
      return `${shown(path)} is a function`;
    case 'bigint':
      return `${shown(path)} is a BigInt (convert it to a string or number)`;
    case 'symbol':
      return `${shown(path)} is a symbol`;
    default:
      break;
  }
  if (value === null) return undefined;
  const object = value as object;
  if (depth >= MAX_JSON_DEPTH) return `${shown(path)} is nested more than ${MAX_JSON_DEPTH} levels deep`;
  if (ancestors.has(object)) return `${shown(path)} refers back to one of its parents (a cycle)`;
  ancestors.add(object);
  try {
    if (Array.isArray(object)) return arrayProblem(object, path, ancestors, depth);
    const proto = Object.getPrototypeOf(object) as unknown;
    if (proto !== Object.prototype && proto !== null) {
      const kind = (object as { constructor?: { name?: unknown } }).constructor?.name;
      return `${shown(path)} is a ${typeof kind === 'string' && kind !== '' ? kind : 'non-plain object'}, not a plain object`;
    }
    if (Object.getOwnPropertySymbols(object).length > 0) return `${shown(path)} has symbol keys, which JSON drops`;
    const descriptors = Object.getOwnPropertyDescriptors(object);
    for (const [key, descriptor] of Object.entries(descriptors)) {
      const at: Path = { parent: path, key };
      if (!descriptor.enumerable) return `${shown(at)} is not enumerable, so JSON drops it`;
      if (descriptor.get !== undefined || descriptor.set !== undefined) return `${shown(at)} is a getter/setter`;
      const problem = jsonProblem(descriptor.value, at, ancestors, depth + 1);
      if (problem !== undefined) return problem;
    }
    return undefined;
  } finally {
    ancestors.delete(object);
  }
}

function arrayProblem(array: unknown[], path: Path, ancestors: Set<object>, depth: number): string | undefined {
  if (Object.getPrototypeOf(array) !== Array.prototype) return `${shown(path)} is an array subclass`;
  const keys = Object.keys(array);
  if (keys.length !== array.length) {
    return keys.length < array.length ? `${shown(path)} is a sparse array (holes read back as null)` : `${shown(path)} has non-index properties`;
  }
  for (let i = 0; i < array.length; i++) {
    const problem = jsonProblem(array[i], { parent: path, key: i }, ancestors, depth + 1);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

/**
 * Validates `value` (see {@link assertJsonValue}) and encodes it as UTF-8 JSON text.
 *
 * @example
 * ```ts
 * encodeJson({ a: 1 }, 'value'); // the bytes of '{"a":1}'
 * ```
 */
export function encodeJson(value: unknown, what: string): Uint8Array {
  assertJsonValue(value, what);
  return encoder.encode(JSON.stringify(value));
}

/**
 * Decodes UTF-8 JSON text. Returns `undefined` for bytes that are not JSON,
 * so that the caller can throw the error that fits its context.
 */
export function tryDecodeJson(bytes: Uint8Array): { value: JsonValue } | undefined {
  try {
    return { value: JSON.parse(decoder.decode(bytes)) as JsonValue };
  } catch {
    return undefined;
  }
}

/**
 * A plain `Uint8Array` view of bytes a store returned (some return a Node
 * `Buffer`, whose extra methods and `toJSON` callers should not come to rely on).
 */
export function plainBytes(bytes: Uint8Array): Uint8Array {
  return Object.getPrototypeOf(bytes) === Uint8Array.prototype ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
