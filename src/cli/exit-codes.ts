/**
 * Exit codes of the `cairn` command, and the mapping from errors to codes
 * and to the one line a person reads. Documented in `docs/cli.md`.
 *
 * @module
 */
import { isCairnError } from '../errors.js';
import { isNetworkError } from '../internal/network-errors.js';

/** Every exit code `cairn` uses. Stable: scripts branch on them. */
export const EXIT = {
  /** Success (for `has`: the object is present; for `verify`: nothing is wrong). */
  ok: 0,
  /** The operation failed: a backend, file system or unexpected error. */
  failed: 1,
  /** Bad usage: unknown command or option, bad hash, bad ref name, bad argument. */
  usage: 2,
  /** Something named does not exist: an object, a ref, a directory, a bucket. */
  notFound: 3,
  /** A compare-and-swap lost, or a push/pull found diverged refs. */
  conflict: 4,
  /** Corrupt or missing data found (`verify`), or an object failed its hash check. */
  corrupt: 5,
  /** The remote refused access or could not be reached (credentials, permissions, network). */
  remote: 6,
  /** A limit was exceeded (snapshot too large or too deep, name too long); the message names the flag that raises it. */
  limit: 7,
  /**
   * A remote ref write may or may not have landed (its answer was lost, and
   * settling it failed too). Nothing is wrong with the data: run the same
   * command again (a push recognises its own write), or look with
   * `cairn status`.
   */
  outcomeUnknown: 8,
  /**
   * No key of the encrypted remote opens with the password given
   * (`CAIRN_PASSWORD`, `--password-file` or the prompt). Nothing was read or
   * changed. Its own code, so that a script can tell a bad password from
   * bad usage or an unreachable remote.
   */
  wrongPassword: 9,
  /** Stopped by Ctrl-C (SIGINT) or SIGTERM; nothing was left half-written. */
  interrupted: 130,
} as const;

/** A usage problem found by the CLI itself (before any store is touched). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  readonly code = 'ERR_USAGE';
}

/** Exit code for an error thrown by a command. */
export function exitCodeOf(error: unknown): number {
  if (error instanceof UsageError) return EXIT.usage;
  if (!isCairnError(error)) return EXIT.failed;
  switch (error.code) {
    case 'ERR_INVALID_HASH':
    case 'ERR_INVALID_REF_NAME':
    case 'ERR_INVALID_ARGUMENT':
    // Encrypted and plain mixed: the command must be called differently (init --encrypt, another URL).
    case 'ERR_ENCRYPTION_MISMATCH':
      return EXIT.usage;
    case 'ERR_WRONG_PASSWORD':
      return EXIT.wrongPassword;
    case 'ERR_NOT_FOUND':
      return EXIT.notFound;
    case 'ERR_CONFLICT':
      return EXIT.conflict;
    case 'ERR_INTEGRITY':
    case 'ERR_CORRUPT_STORE':
      return EXIT.corrupt;
    case 'ERR_PERMISSION':
      return EXIT.remote;
    case 'ERR_LIMIT_EXCEEDED':
      return EXIT.limit;
    case 'ERR_ABORTED':
      return EXIT.interrupted;
    case 'ERR_OUTCOME_UNKNOWN':
      return EXIT.outcomeUnknown;
    case 'ERR_BACKEND':
      return isNetworkError(error) ? EXIT.remote : EXIT.failed;
    default:
      return EXIT.failed;
  }
}

/** What to do, added to the message of errors whose own words are about the library, not the command line. */
const OUTCOME_ADVICE =
  'the remote ref may or may not have been written; nothing is lost: run the same command again ' +
  '(push recognises its own write and never reports it as a conflict), or see where the ref stands with "cairn status"';

/** The error as one line: newlines flattened, never a stack, credentials in URLs masked. */
export function oneLine(error: unknown): string {
  let message = error instanceof Error ? error.message : String(error);
  if (isCairnError(error, 'ERR_OUTCOME_UNKNOWN')) message = `${message}; ${OUTCOME_ADVICE}`;
  return redactUrls(message.replace(/\s*\n\s*/g, ' ').trim()) || 'unknown error';
}

/** Masks the user name and password of every URL in `text` (`http://KEY:SECRET@host` becomes `http://***@host`). */
export function redactUrls(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@"']*@/gi, '$1***@');
}
