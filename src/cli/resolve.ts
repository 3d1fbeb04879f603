/**
 * Turning command-line words into hashes, ref names and durations, with
 * one-line errors that say what was expected.
 *
 * @module
 */
import { InvalidArgumentError, NotFoundError } from '../errors.js';
import { parseHash, type Hash } from '../hash.js';
import { isValidRefName } from '../ref-name.js';
import type { Store } from '../store.js';
import { UsageError } from './exit-codes.js';

// `alg:...`, or a CID's usual starts ("bafk…", "bafy…", "Qm…"): meant as hashes even when malformed.
const HASH_SHAPE = /^[a-z0-9]+:|^baf[a-z2-7]|^Qm[1-9A-HJ-NP-Za-km-z]/;

/** True when `text` is meant as a hash (even a malformed one), not a ref name. */
export function looksLikeHash(text: string): boolean {
  return HASH_SHAPE.test(text);
}

/**
 * Parses `text` now if it is meant as a hash (so a malformed one is refused
 * before any store is opened); `undefined` for a ref name.
 */
export function hashIfShaped(text: string): Hash | undefined {
  return looksLikeHash(text) ? parseHash(text) : undefined;
}

/**
 * A hash, or the hash a ref holds. Text shaped like a hash is parsed as one
 * (a malformed hash is an {@link InvalidHashError}); anything else is a ref
 * name, and an unknown ref is a {@link NotFoundError} that says how to list refs.
 */
export async function resolveHashOrRef(store: Store, text: string, signal?: AbortSignal): Promise<Hash> {
  if (looksLikeHash(text)) return parseHash(text);
  if (!isValidRefName(text)) {
    throw new InvalidArgumentError(
      `${JSON.stringify(text)} is neither a hash ("sha256:<64 hex digits>" or a CID) nor a ref name; list refs with "cairn ref ls"`,
    );
  }
  const value = await store.getRef(text, { signal });
  if (value === undefined) {
    throw new NotFoundError(`no ref named ${JSON.stringify(text)}; list refs with "cairn ref ls" (or "cairn pull" to fetch the remote's)`, {
      ref: text,
    });
  }
  return value.hash;
}

/** Parses `0`, `90s`, `10m`, `1h`, `7d` (or plain milliseconds) into milliseconds. */
export function parseDuration(text: string, option: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (match === null) {
    throw new UsageError(`--${option} ${JSON.stringify(text)} is not a duration; use for example 0, 30s, 10m, 1h or 7d`);
  }
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] ?? 'ms']!;
  return Math.round(Number(match[1]) * unit);
}

/** Formats milliseconds as the largest whole unit (`1h`, `90s`). */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1_000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** Parses a positive integer option. */
export function parseCount(text: string | undefined, option: string, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${option} must be a positive whole number, got ${JSON.stringify(text)}`);
  return n;
}
