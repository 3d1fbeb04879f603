/**
 * Ref names: the only mutable names in a store, and the only caller-chosen
 * text that reaches a file path or an S3 key. They are checked against an
 * allow-list, not a deny-list, so that no byte sequence can name a path
 * outside the store on any backend.
 *
 * @module
 */
import { InvalidRefNameError } from './errors.js';

/** Longest ref name accepted, in bytes (all allowed characters are ASCII). */
export const MAX_REF_NAME_BYTES = 1024;

const ALLOWED = /^[A-Za-z0-9._/-]+$/;

/**
 * Throws {@link InvalidRefNameError} unless `name` is a safe ref name:
 * characters `A-Z a-z 0-9 . _ / -`, 1 to 1024 bytes, `/`-separated segments
 * that are neither empty, `.` nor `..`, and no segment ending in `.lock`
 * (reserved by the disk backend for its lock files).
 *
 * @example
 * ```ts
 * assertRefName('heads/main');   // ok
 * assertRefName('../etc/passwd'); // throws InvalidRefNameError
 * ```
 */
export function assertRefName(name: unknown): asserts name is string {
  const problem = refNameProblem(name);
  if (problem !== undefined) {
    const shown = typeof name === 'string' ? JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}...` : name) : typeof name;
    throw new InvalidRefNameError(
      `invalid ref name ${shown}: ${problem}; use letters, digits, '.', '_', '-' and '/'-separated segments such as "heads/main"`,
      { ref: typeof name === 'string' ? name.slice(0, 200) : undefined },
    );
  }
}

/** True when `name` is a safe ref name (see {@link assertRefName}). */
export function isValidRefName(name: unknown): name is string {
  return refNameProblem(name) === undefined;
}

function refNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return 'a ref name must be a string';
  if (name.length === 0) return 'it is empty';
  if (name.length > MAX_REF_NAME_BYTES) return `it is longer than ${MAX_REF_NAME_BYTES} bytes`;
  if (!ALLOWED.test(name)) return 'it has a character outside A-Z a-z 0-9 . _ / -';
  if (name.startsWith('/')) return 'it starts with "/"';
  for (const segment of name.split('/')) {
    if (segment === '') return 'it has an empty segment ("//" or a trailing "/")';
    if (segment === '.' || segment === '..') return `it has a "${segment}" segment`;
    if (segment.endsWith('.lock')) return 'a segment ends in ".lock", which is reserved';
  }
  return undefined;
}

/**
 * Checks a listing prefix: empty, or a string of allowed characters with no
 * `.`/`..` segment. Unlike a name, a prefix may end in `/` or part-way
 * through a segment.
 */
export function assertRefPrefix(prefix: unknown): asserts prefix is string {
  if (prefix === '') return;
  if (typeof prefix !== 'string' || prefix.length > MAX_REF_NAME_BYTES || !ALLOWED.test(prefix) || prefix.startsWith('/')) {
    throw new InvalidRefNameError(
      `invalid ref prefix ${typeof prefix === 'string' ? JSON.stringify(prefix.slice(0, 80)) : typeof prefix}; use the start of a ref name such as "heads/"`,
    );
  }
  const segments = prefix.split('/');
  if (segments.some((s, i) => s === '..' || (s === '.' && i < segments.length - 1) || (s === '' && i < segments.length - 1))) {
    throw new InvalidRefNameError(`invalid ref prefix ${JSON.stringify(prefix.slice(0, 80))}: it has an empty, "." or ".." segment`);
  }
}
