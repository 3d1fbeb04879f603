/**
 * The one classifier of "the network failed" for every backend and the CLI:
 * the connection was refused, dropped or timed out, or the name did not
 * resolve, so no answer came. Such a failure may pass (worth a retry) and
 * means "could not reach the remote" to a person (the CLI's exit code 6).
 *
 * It looks at raw errors (Node errno codes, undici and ioredis names) along
 * the `cause` chain, so a Cairn error that kept the original as `cause` is
 * recognised too. HTTP answers are not network errors: a backend that has
 * a status decides from the status (see `s3/errors.ts`).
 *
 * @module
 */

/** Codes of a connection that failed, dropped or timed out, or a name that did not resolve. */
export const NETWORK_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTDOWN',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** Error names with the same meaning: a timeout (AbortSignal.timeout, the AWS SDK) or ioredis giving up on a dead connection. */
const NETWORK_ERROR_NAMES: ReadonlySet<string> = new Set(['TimeoutError', 'MaxRetriesPerRequestError']);

/** Messages of errors that carry no code: Node's HTTP client and ioredis's closed connection. */
const NETWORK_ERROR_MESSAGE = /socket hang up|premature close|Connection is closed|Stream isn't writeable/i;

/** How deep the `cause` chain is followed. */
const MAX_DEPTH = 5;

/** The code, name or message fragment that makes `error` (or one of its causes) a network error, or `undefined`. */
export function networkErrorCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < MAX_DEPTH && current != null && typeof current === 'object'; depth++) {
    const { code, name, message, cause } = current as { code?: unknown; name?: unknown; message?: unknown; cause?: unknown };
    if (typeof code === 'string' && NETWORK_ERROR_CODES.has(code)) return code;
    if (typeof name === 'string' && NETWORK_ERROR_NAMES.has(name)) return name;
    const matched = typeof message === 'string' ? NETWORK_ERROR_MESSAGE.exec(message) : null;
    if (matched !== null) return matched[0];
    current = cause;
  }
  return undefined;
}

/** True when `error` or one of its causes says the network failed (see {@link networkErrorCode}). */
export function isNetworkError(error: unknown): boolean {
  return networkErrorCode(error) !== undefined;
}
