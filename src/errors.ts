/**
 * The error set every Cairn store speaks.
 *
 * Backends map their own failures (HTTP statuses, errno codes) onto these
 * classes at the boundary, so that callers can branch on `code` (stable
 * across releases) or `instanceof` without knowing which backend they use.
 * The original error is always kept as `cause`, never flattened to a string.
 *
 * @module
 */

/** Stable machine-readable codes, one per error class. */
export type CairnErrorCode =
  | 'ERR_NOT_FOUND'
  | 'ERR_INTEGRITY'
  | 'ERR_CONFLICT'
  | 'ERR_READ_ONLY'
  | 'ERR_UNSUPPORTED'
  | 'ERR_INVALID_HASH'
  | 'ERR_INVALID_REF_NAME'
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_PERMISSION'
  | 'ERR_BACKEND'
  | 'ERR_ABORTED'
  | 'ERR_CLOSED'
  | 'ERR_CORRUPT_STORE'
  | 'ERR_LIMIT_EXCEEDED'
  | 'ERR_OUTCOME_UNKNOWN'
  | 'ERR_WRONG_PASSWORD'
  | 'ERR_ENCRYPTION_MISMATCH';

/** What an error concerns: an object key, a ref name, a path, a bucket. */
export interface ErrorSubject {
  /** The object hash (text form) or key concerned. */
  key?: string;
  /** The ref name concerned. */
  ref?: string;
  /** The original error, kept as is. */
  cause?: unknown;
}

/** Base class of every error Cairn throws on purpose. */
export abstract class CairnError extends Error {
  abstract readonly code: CairnErrorCode;
  readonly key: string | undefined;
  readonly ref: string | undefined;

  constructor(message: string, subject: ErrorSubject = {}) {
    super(message, subject.cause === undefined ? undefined : { cause: subject.cause });
    this.key = subject.key;
    this.ref = subject.ref;
  }
}

/** The object or ref does not exist. */
export class NotFoundError extends CairnError {
  override readonly name = 'NotFoundError';
  readonly code = 'ERR_NOT_FOUND';
}

/** Bytes do not match the hash they are stored under: corruption or tampering. */
export class IntegrityError extends CairnError {
  override readonly name = 'IntegrityError';
  readonly code = 'ERR_INTEGRITY';
}

/** A conditional write lost: the ref did not hold the expected value. */
export class ConflictError extends CairnError {
  override readonly name = 'ConflictError';
  readonly code = 'ERR_CONFLICT';
}

/** A write was attempted on a read-only store. Nothing was changed. */
export class ReadOnlyError extends CairnError {
  override readonly name = 'ReadOnlyError';
  readonly code = 'ERR_READ_ONLY';
}

/** The backend cannot do this safely (for example, a server that ignores conditional writes). */
export class UnsupportedError extends CairnError {
  override readonly name = 'UnsupportedError';
  readonly code = 'ERR_UNSUPPORTED';
}

/** Text that should have been a hash is not one. */
export class InvalidHashError extends CairnError {
  override readonly name = 'InvalidHashError';
  readonly code = 'ERR_INVALID_HASH';
}

/** A ref name outside the allowed alphabet or shape. */
export class InvalidRefNameError extends CairnError {
  override readonly name = 'InvalidRefNameError';
  readonly code = 'ERR_INVALID_REF_NAME';
}

/** An option or argument with a bad value; the message names it. */
export class InvalidArgumentError extends CairnError {
  override readonly name = 'InvalidArgumentError';
  readonly code = 'ERR_INVALID_ARGUMENT';
}

/** The backend refused access (HTTP 403, EACCES). */
export class PermissionError extends CairnError {
  override readonly name = 'PermissionError';
  readonly code = 'ERR_PERMISSION';
}

/** Any other backend failure. `retryable` says whether trying again may help. */
export class BackendError extends CairnError {
  override readonly name = 'BackendError';
  readonly code = 'ERR_BACKEND';
  readonly retryable: boolean;

  constructor(message: string, subject: ErrorSubject & { retryable?: boolean } = {}) {
    super(message, subject);
    this.retryable = subject.retryable ?? false;
  }
}

/** The operation was cancelled through its `AbortSignal`. */
export class AbortError extends CairnError {
  override readonly name = 'AbortError';
  readonly code = 'ERR_ABORTED';
}

/** The store was closed; open a new one. */
export class ClosedError extends CairnError {
  override readonly name = 'ClosedError';
  readonly code = 'ERR_CLOSED';
}

/** A store's files are not a Cairn store, or are of an unknown layout. */
export class CorruptStoreError extends CairnError {
  override readonly name = 'CorruptStoreError';
  readonly code = 'ERR_CORRUPT_STORE';
}

/**
 * Input is larger than a limit allows (a snapshot that expands to too many
 * files, bytes or levels, a name longer than the file system takes). The
 * message names the limit and how to raise it. Nothing was changed.
 */
export class LimitExceededError extends CairnError {
  override readonly name = 'LimitExceededError';
  readonly code = 'ERR_LIMIT_EXCEEDED';
}

/**
 * No key of an encrypted remote opens with the password (or key file)
 * given. Nothing was read or changed. Give the right password, or ask
 * someone who has one to add a key for you (`cairn key add`).
 */
export class WrongPasswordError extends CairnError {
  override readonly name = 'WrongPasswordError';
  readonly code = 'ERR_WRONG_PASSWORD';
}

/**
 * Encrypted and plain data would be mixed: an encrypted remote opened
 * without a key, a plain remote opened with one, or an encrypted remote
 * created over a non-empty plain one. Nothing was read or changed; the
 * message says which side is which.
 */
export class EncryptionMismatchError extends CairnError {
  override readonly name = 'EncryptionMismatchError';
  readonly code = 'ERR_ENCRYPTION_MISMATCH';
}

/**
 * A ref write whose outcome is not known yet, as plain data: it can be kept,
 * logged or handed to another process, and settled with the store's
 * `resolveOutcome` (for example {@link OutcomeUnknownError.attempt}).
 */
export interface RefWriteAttempt {
  /** The ref written. */
  readonly ref: string;
  /** The write's unique id: the ref's `version` once the write has landed. */
  readonly writeId: string;
  /** The hash the write sets (text form), or `null` for a delete. */
  readonly next: string | null;
  /**
   * The write's condition: the hash the ref had to hold (text form), `null`
   * for "absent", `undefined` for an unconditional `setRef`/`deleteRef`.
   */
  readonly expected: string | null | undefined;
  /** Backend bookkeeping: the ref versions the write may have followed. */
  readonly bases: readonly string[];
}

/**
 * A ref write may or may not have landed: its answer was lost (a dropped
 * connection, a timeout, a 5xx) and the store could not tell afterwards.
 * Nothing else is wrong, and the write can never land twice. Settle it with
 * `store.resolveOutcome(error.attempt)` (it reports whether the write
 * landed, or lands it if the ref still holds what it expected), or retry
 * the same call on the same store, which recognises its own write; or read
 * the ref: a `version` equal to {@link OutcomeUnknownError.writeId} means it
 * landed.
 *
 * @example
 * ```ts
 * try {
 *   await store.compareAndSwap('heads/main', old, next);
 * } catch (error) {
 *   if (!(error instanceof OutcomeUnknownError)) throw error;
 *   const settled = await store.resolveOutcome(error.attempt); // { ok, current }
 * }
 * ```
 */
export class OutcomeUnknownError extends CairnError {
  override readonly name = 'OutcomeUnknownError';
  readonly code = 'ERR_OUTCOME_UNKNOWN';
  /** What was written, to settle it later. */
  readonly attempt: RefWriteAttempt;

  constructor(message: string, attempt: RefWriteAttempt, cause?: unknown) {
    super(message, { ref: attempt.ref, cause });
    this.attempt = attempt;
  }

  /** The write's id: the ref's `version` if it landed. */
  get writeId(): string {
    return this.attempt.writeId;
  }

  /** The hash the write sets (text form), or `null` for a delete. */
  get attempted(): string | null {
    return this.attempt.next;
  }
}

/** True when `error` is a Cairn error with the given code. */
export function isCairnError(error: unknown, code?: CairnErrorCode): error is CairnError {
  return error instanceof CairnError && (code === undefined || error.code === code);
}
