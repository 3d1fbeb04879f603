/**
 * The conditional-write capability probe. Some servers (GCS's XML API,
 * DigitalOcean Spaces, others) accept `If-None-Match` and `If-Match` on PUT
 * without enforcing them; a store that trusted them would lose updates. So
 * before its first ref write the store writes a probe key, then checks that
 * a create-only PUT on it and a PUT with a wrong ETag are both refused.
 *
 * Every probe request is safe to repeat, so a lost answer is retried here
 * rather than failing the ref write that needed the probe.
 *
 * @module
 */
import { raceAbort, sleep } from '../../abort.js';
import { UnsupportedError } from '../../errors.js';
import type { S3Context } from './context.js';
import { backoff, isAmbiguous, isPreconditionFailed, statusOf } from './errors.js';
import { newWriteId } from './ref-body.js';


/** Tries of each probe request whose answer was lost. */
const PROBE_TRIES = 6;

/** Runs the probe once per store; a transient failure lets the next ref write try again. */
export class ConditionalWriteProbe {
  readonly #ctx: S3Context;
  #running: Promise<void> | undefined;
  #ok = false;

  constructor(context: S3Context) {
    this.#ctx = context;
  }

  async ensure(signal: AbortSignal | undefined): Promise<void> {
    if (this.#ok) return;
    this.#running ??= this.#probe().then(
      () => {
        this.#ok = true;
      },
      (error: unknown) => {
        // A transient failure is retried by the next write; an unsupported server stays refused.
        if (!(error instanceof UnsupportedError)) this.#running = undefined;
        throw error;
      },
    );
    await raceAbort(this.#running, signal);
  }

  /** One probe PUT, retried while its answer is lost; resolves with the error a definite answer gave, if any. */
  async #put(condition: { ifNoneMatch?: '*'; ifMatch?: string }): Promise<unknown> {
    const key = this.#ctx.keys.probe;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#ctx.transport.put(key, Buffer.from(newWriteId()), { signal: this.#ctx.closing, ...condition });
        return undefined;
      } catch (error) {
        if (!isAmbiguous(error) || attempt >= PROBE_TRIES || this.#ctx.closed) return error;
        await sleep(backoff(attempt), this.#ctx.closing);
      }
    }
  }

  async #probe(): Promise<void> {
    const key = this.#ctx.keys.probe;
    const failed = await this.#put({});
    if (failed !== undefined) throw this.#ctx.error(failed, 'probe conditional writes', undefined, key);
    const checks: Array<[string, { ifNoneMatch?: '*'; ifMatch?: string }]> = [
      ['If-None-Match: * on an existing key', { ifNoneMatch: '*' }],
      ['If-Match with a wrong ETag', { ifMatch: '"cairn-probe-0000000000000000"' }],
    ];
    for (const [what, condition] of checks) {
      const error = await this.#put(condition);
      const enforced = error !== undefined && isPreconditionFailed(error);
      const status = statusOf(error);
      if (error !== undefined && !enforced && status !== 501 && status !== 400) {
        throw this.#ctx.error(error, 'probe conditional writes', undefined, key);
      }
      if (!enforced) {
        const { endpointLabel, bucket } = this.#ctx.config;
        throw new UnsupportedError(
          `${endpointLabel} does not enforce conditional writes (a PUT with ${what} was not refused), ` +
            `so refs in bucket "${bucket}" cannot be updated safely and ref writes are refused; objects still work. ` +
            'Use a server that enforces If-None-Match and If-Match on PUT (AWS S3, MinIO, Ceph RGW, R2)',
          { key },
        );
      }
    }
  }
}
