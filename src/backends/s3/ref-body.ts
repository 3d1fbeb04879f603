/**
 * What a ref object holds, and how a writer tells whether its own write
 * landed when the response was lost.
 *
 * Each ref write puts a small JSON body:
 *
 * ```json
 * {"v":1,"hash":"sha256:…","id":"<write id>","h":["<earlier id>", …, ""]}
 * ```
 *
 * - `id` is unique per write. It is the ref's {@link RefValue.version}, and it
 *   makes every body (so every ETag) unique: an ETag never comes back, so a
 *   request conditioned on one can apply at most once.
 * - `h` lists the ids of the writes before this one, newest first, up to
 *   {@link HISTORY_LENGTH}; `""` stands for "the key did not exist", so a
 *   history that ends in `""` reaches back to the ref's creation.
 * - A delete writes a tombstone (`"deleted": true`, no hash) by conditional
 *   PUT, because MinIO ignores `If-Match` on DELETE: the key is never removed,
 *   so deletes are as atomic as updates and the history carries on.
 *
 * A writer whose request may have applied unseen (connection dropped, 5xx,
 * or the SDK retried it) rereads the ref: its id in `id` or `h` means the
 * write landed. If not, the write could only have applied right after the
 * state it was conditioned on (its "basis"), so finding that basis in the
 * history with another write after it proves it did not. Only if the basis
 * has fallen off the history is the outcome unknown, and the store says so
 * rather than guess.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { CorruptStoreError } from '../../errors.js';
import { parseHash, type Hash } from '../../hash.js';
import type { RefValue } from '../../store.js';

/** Earlier write ids kept in each ref body. 32 ids cost about 600 bytes. */
export const HISTORY_LENGTH = 32;

/** The id standing for "the key did not exist". */
export const ABSENT = '';

/** A decoded ref body. */
export interface RefBody {
  readonly id: string;
  /** `undefined` for a tombstone. */
  readonly hash: Hash | undefined;
  readonly history: readonly string[];
}

/** A ref key as last read: its ETag (`undefined` if the key is absent) and body. */
export interface RefState {
  readonly etag: string | undefined;
  readonly body: RefBody | undefined;
  /** Set when the key holds something that is not a Cairn ref (then `body` is undefined). */
  readonly foreign?: CorruptStoreError | undefined;
}

export const ABSENT_STATE: RefState = { etag: undefined, body: undefined };

/** A fresh write id: 96 random bits. */
export function newWriteId(): string {
  return randomBytes(12).toString('base64url');
}

/** The id of the write that produced `state`, or {@link ABSENT}. */
export function currentId(state: RefState): string {
  return state.body?.id ?? ABSENT;
}

/** The value a reader sees: `undefined` for an absent key or a tombstone. */
export function visibleValue(state: RefState): RefValue | undefined {
  const body = state.body;
  return body?.hash === undefined ? undefined : { hash: body.hash, version: body.id };
}

/** The body of write `id` replacing `previous`; an undefined `hash` makes a tombstone. */
export function nextRefBody(id: string, hash: Hash | undefined, previous: RefState): RefBody {
  const history = previous.body === undefined ? [ABSENT] : [previous.body.id, ...previous.body.history];
  return { id, hash, history: history.slice(0, HISTORY_LENGTH) };
}

/** The JSON text of a ref body. */
export function encodeRefBody(body: RefBody): string {
  const { id, hash, history: h } = body;
  return JSON.stringify(hash === undefined ? { v: 1, deleted: true, id, h } : { v: 1, hash: hash.toString(), id, h });
}

/** Parses a ref body; anything else is a {@link CorruptStoreError} naming the key. */
export function decodeRefBody(text: string, key: string): RefBody {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw corrupt(key, 'it is not JSON', cause);
  }
  const body = parsed as { v?: unknown; hash?: unknown; deleted?: unknown; id?: unknown; h?: unknown } | null;
  if (body === null || typeof body !== 'object' || body.v !== 1) throw corrupt(key, 'unknown format version');
  if (typeof body.id !== 'string' || body.id === ABSENT) throw corrupt(key, 'it has no write id');
  if (!Array.isArray(body.h) || !body.h.every((x) => typeof x === 'string')) throw corrupt(key, 'bad history');
  if (body.deleted === true) return { id: body.id, hash: undefined, history: body.h as string[] };
  let hash: Hash;
  try {
    hash = parseHash(body.hash);
  } catch (cause) {
    throw corrupt(key, 'it holds no valid hash', cause);
  }
  return { id: body.id, hash, history: body.h as string[] };
}

function corrupt(key: string, why: string, cause?: unknown): CorruptStoreError {
  return new CorruptStoreError(`ref object ${key} is not a Cairn ref (${why}); was it written by another tool?`, {
    key,
    cause,
  });
}

/**
 * Did write `id` land, given the ref's state now and the bases of every
 * attempt whose outcome we did not see?
 *
 * - `applied`: the id is in the ref's current write or its history.
 * - `not-applied`: every basis is still current (the attempt may be in
 *   flight, but conditioned on the current state it can still only apply
 *   once, as this same write) or is followed in the history by another write.
 * - `unknown`: a basis fell off the history; nothing can be proved.
 */
export function judgeWrite(state: RefState, id: string, bases: ReadonlySet<string>): 'applied' | 'not-applied' | 'unknown' {
  const ids = state.body === undefined ? [] : [state.body.id, ...state.body.history];
  if (ids.includes(id)) return 'applied';
  const now = currentId(state);
  for (const basis of bases) {
    if (basis === now) continue;
    if (ids.indexOf(basis) < 1) return 'unknown';
  }
  return 'not-applied';
}
