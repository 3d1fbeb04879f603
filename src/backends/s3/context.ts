/**
 * What the parts of the S3 store share: its checked options, its transport,
 * its key layout, its close signal, and the mapping of failures onto Cairn's
 * errors.
 *
 * @module
 */
import { setMaxListeners } from 'node:events';
import { abortError, throwIfAborted } from '../../abort.js';
import { ClosedError, type CairnError } from '../../errors.js';
import type { S3Config } from './config.js';
import { isAbort, toCairnError } from './errors.js';
import type { KeyLayout } from './keys.js';
import type { Transport } from './transport.js';

/** See the module comment. */
export class S3Context {
  readonly #closing = new AbortController();
  #closed = false;

  constructor(
    readonly config: S3Config,
    readonly transport: Transport,
    readonly keys: KeyLayout,
  ) {
    // Every request in flight listens to the close signal: hundreds is normal, not a leak.
    setMaxListeners(0, this.#closing.signal);
  }

  /** Fires when the store closes; every request in flight listens to it. */
  get closing(): AbortSignal {
    return this.#closing.signal;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Marks the store closed and aborts what is in flight. False if it already was. */
  close(): boolean {
    if (this.#closed) return false;
    this.#closed = true;
    this.#closing.abort(new ClosedError('the S3 store was closed'));
    return true;
  }

  /** Throws if the store is closed or `signal` has fired. */
  check(signal: AbortSignal | undefined): void {
    if (this.#closed) throw new ClosedError(`the S3 store on s3://${this.config.bucket}/${this.config.prefix} is closed; open a new one`);
    throwIfAborted(signal);
  }

  /** Maps any failure of `op` to a Cairn error: closed, aborted, or what `errors.ts` makes of it. */
  error(error: unknown, op: string, signal: AbortSignal | undefined, key?: string, ref?: string): CairnError {
    if (this.#closed && !(error instanceof ClosedError) && isAbort(error)) {
      return new ClosedError(`the S3 store was closed during ${op}`, { cause: error });
    }
    if (signal?.aborted && isAbort(error)) return abortError(signal);
    return toCairnError(error, { endpoint: this.config.endpointLabel, bucket: this.config.bucket, op, key, ref });
  }
}
