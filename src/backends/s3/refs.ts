/**
 * Refs on S3: the swap engine (conditional PUTs with lost-response
 * detection, see `ref-body.ts`), the conditional-write capability probe, the
 * cache of ref states, listing and watching.
 *
 * @module
 */
import { abortError, backoffDelay, raceAbort, sleep, type AbortOptions } from '../../abort.js';
import { BackendError, UnsupportedError } from '../../errors.js';
import type { Hash } from '../../hash.js';
import { mapConcurrent } from '../../object-io.js';
import { isValidRefName } from '../../ref-name.js';
import type { CasResult, RefEntry, RefListener, RefValue } from '../../store.js';
import { positiveInt } from './config.js';
import type { S3Context } from './context.js';
import { attemptsOf, isAbort, isAmbiguous, isConditionalConflict, isKeyNotFound, isPreconditionFailed, statusOf } from './errors.js';
import {
  ABSENT_STATE,
  currentId,
  decodeRefBody,
  encodeRefBody,
  judgeWrite,
  newWriteId,
  nextRefBody,
  visibleValue,
  type RefState,
} from './ref-body.js';

/**
 * Ref states kept (about 1.5 KiB each) to skip the read before a swap and
 * the GET of a listed ref whose ETag has not changed.
 */
const REF_CACHE_SIZE = 4096;
/** Give up a ref write after this many lost races or retries. */
const MAX_REF_ATTEMPTS = 200;
/** Retries of a ref write after a 409 or an ambiguous failure. */
export const MAX_REF_RETRIES = 8;

/** Backoff before retry `attempt` of a request that lost to another writer. */
export function backoff(attempt: number): number {
  return 10 + backoffDelay(attempt);
}

/** The refs of one S3 store. */
export class S3Refs {
  readonly #ctx: S3Context;
  readonly #cache = new Map<string, RefState>();
  #conditionalWrites: Promise<void> | undefined;
  #conditionalWritesOk = false;

  constructor(context: S3Context) {
    this.#ctx = context;
  }

  async get(name: string, signal: AbortSignal | undefined): Promise<RefValue | undefined> {
    return visibleValue(await this.#read(name, signal));
  }

  /**
   * The one ref write path: conditional PUTs until the write lands or the
   * ref no longer `accepts` what it holds. A conflict is only ever reported
   * from a fresh read, never from the cache.
   */
  async swap(name: string, accepts: (value: RefValue | undefined) => boolean, next: Hash | null, signal: AbortSignal | undefined): Promise<CasResult> {
    await this.#ensureConditionalWrites(signal);
    const key = this.#ctx.keys.ref(name);
    const id = newWriteId();
    const written: CasResult = { ok: true, current: next === null ? undefined : { hash: next, version: id } };
    // States whose successor may be our write without our having seen it.
    const bases = new Set<string>();
    // Unknown refs are assumed absent: a create then costs one request, and a
    // wrong guess only costs a 412 and a read.
    let state = this.#cache.get(name) ?? ABSENT_STATE;
    let fresh = false;
    if (!accepts(visibleValue(state))) {
      state = await this.#read(name, signal);
      fresh = true;
    }
    let retries = 0;
    for (let attempt = 0; ; attempt++) {
      if (bases.size > 0) {
        const verdict = judgeWrite(state, id, bases);
        if (verdict === 'applied') return written;
        if (verdict === 'unknown') {
          throw new BackendError(
            `the outcome of a write to ref ${name} is unknown: its response was lost and the ref changed many times since; read the ref to see its value`,
            { ref: name, retryable: false },
          );
        }
      }
      const current = visibleValue(state);
      const nothingToDelete = next === null && current === undefined;
      // A conflict or a no-op delete is only ever reported from a fresh read.
      if (!fresh && (!accepts(current) || nothingToDelete)) {
        state = await this.#read(name, signal);
        fresh = true;
        continue;
      }
      if (!accepts(current)) return { ok: false, current };
      if (nothingToDelete) return { ok: true, current: undefined };
      if (attempt >= MAX_REF_ATTEMPTS) {
        throw new BackendError(`gave up writing ref ${name} after ${attempt} attempts lost to other writers; try again`, {
          ref: name,
          retryable: true,
        });
      }
      const body = nextRefBody(id, next ?? undefined, state);
      const condition = state.etag === undefined ? { ifNoneMatch: '*' as const } : { ifMatch: state.etag };
      try {
        const out = await this.#ctx.transport.put(key, Buffer.from(encodeRefBody(body)), { contentType: 'application/json', signal, ...condition });
        this.#remember(name, { etag: out.etag, body });
        return written;
      } catch (error) {
        if (isAbort(error) || signal?.aborted) throw abortError(signal);
        // The client may have retried a request that had applied: its last answer then hides it.
        if (isAmbiguous(error) || attemptsOf(error) > 1) bases.add(currentId(state));
        if (isConditionalConflict(error) || isAmbiguous(error)) {
          if (++retries > MAX_REF_RETRIES) {
            const mapped = this.#ctx.error(error, 'write ref', signal, undefined, name);
            if (bases.size === 0) throw mapped;
            throw new BackendError(`${mapped.message}; the write may or may not have landed: read ref ${name} to see`, {
              ref: name,
              cause: error,
              retryable: true,
            });
          }
          await sleep(backoff(retries), signal);
        } else if (isPreconditionFailed(error) || isKeyNotFound(error)) {
          // Lost a race: someone wrote since our read. Back off only when it keeps happening.
          if (attempt >= 3) await sleep(backoff(attempt - 3), signal);
        } else {
          throw this.#ctx.error(error, 'write ref', signal, undefined, name);
        }
      }
      state = await this.#read(name, signal);
      fresh = true;
    }
  }

  async #read(name: string, signal: AbortSignal | undefined): Promise<RefState> {
    const key = this.#ctx.keys.ref(name);
    try {
      const { bytes, etag } = await this.#ctx.transport.get(key, { signal });
      const state = { etag: this.#etagOf(etag, key), body: decodeRefBody(Buffer.from(bytes).toString('utf8'), key) };
      this.#remember(name, state);
      return state;
    } catch (error) {
      if (isKeyNotFound(error)) {
        this.#remember(name, ABSENT_STATE);
        return ABSENT_STATE;
      }
      throw this.#ctx.error(error, 'read ref', signal, undefined, name);
    }
  }

  /** Reads a ref only if its ETag is no longer `etag`: `undefined` means unchanged (a cheap 304). */
  async #poll(name: string, etag: string | undefined, signal: AbortSignal): Promise<RefState | undefined> {
    if (etag === undefined) {
      const state = await this.#read(name, signal);
      return state.etag === undefined ? undefined : state;
    }
    const key = this.#ctx.keys.ref(name);
    try {
      const read = await this.#ctx.transport.get(key, { signal, ifNoneMatch: etag });
      return { etag: this.#etagOf(read.etag, key), body: decodeRefBody(Buffer.from(read.bytes).toString('utf8'), key) };
    } catch (error) {
      if (statusOf(error) === 304) return undefined;
      if (isKeyNotFound(error)) return ABSENT_STATE;
      throw this.#ctx.error(error, 'watch ref', signal, undefined, name);
    }
  }

  #etagOf(etag: string | undefined, key: string): string {
    if (etag === undefined || etag === '') {
      throw new UnsupportedError(`${this.#ctx.config.endpointLabel} sent no ETag for ${key}; Cairn refs need ETags for conditional writes`, { key });
    }
    return etag;
  }

  #remember(name: string, state: RefState): void {
    this.#cache.delete(name);
    this.#cache.set(name, state);
    if (this.#cache.size > REF_CACHE_SIZE) this.#cache.delete(this.#cache.keys().next().value!);
  }

  /** Checks once, before the first ref write, that the server enforces conditional PUTs. */
  async #ensureConditionalWrites(signal: AbortSignal | undefined): Promise<void> {
    if (this.#conditionalWritesOk) return;
    this.#conditionalWrites ??= this.#probeConditionalWrites().then(
      () => {
        this.#conditionalWritesOk = true;
      },
      (error: unknown) => {
        // A transient failure is retried by the next write; an unsupported server stays refused.
        if (!(error instanceof UnsupportedError)) this.#conditionalWrites = undefined;
        throw error;
      },
    );
    await raceAbort(this.#conditionalWrites, signal);
  }

  async #probeConditionalWrites(): Promise<void> {
    const key = this.#ctx.keys.probe;
    const put = (condition: { ifNoneMatch?: '*'; ifMatch?: string }): Promise<unknown> =>
      this.#ctx.transport.put(key, Buffer.from(newWriteId()), { signal: this.#ctx.closing, ...condition });
    try {
      await put({});
    } catch (error) {
      throw this.#ctx.error(error, 'probe conditional writes', undefined, key);
    }
    const checks: Array<[string, { ifNoneMatch?: '*'; ifMatch?: string }]> = [
      ['If-None-Match: * on an existing key', { ifNoneMatch: '*' }],
      ['If-Match with a wrong ETag', { ifMatch: '"cairn-probe-0000000000000000"' }],
    ];
    for (const [what, condition] of checks) {
      let enforced = false;
      try {
        await put(condition);
      } catch (error) {
        enforced = isPreconditionFailed(error);
        const status = statusOf(error);
        if (!enforced && status !== 501 && status !== 400) throw this.#ctx.error(error, 'probe conditional writes', undefined, key);
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

  async *list(prefix: string, options: AbortOptions | undefined, listKeys: (prefix: string) => AsyncIterable<Array<{ key: string; etag: string | undefined }>>): AsyncIterable<RefEntry> {
    const signal = options?.signal;
    const base = this.#ctx.keys.refs;
    for await (const entries of listKeys(base + prefix)) {
      // Keys come in byte order, which is name order for ASCII ref names.
      const listed = entries.map(({ key, etag }) => ({ name: key.slice(base.length), etag })).filter(({ name }) => isValidRefName(name));
      const states = await mapConcurrent(listed, this.#ctx.config.concurrency, async ({ name, etag }) => {
        // Every ref body is unique (it carries a write id), so an unchanged ETag means an unchanged ref.
        const cached = this.#cache.get(name);
        return cached !== undefined && etag !== undefined && cached.etag === etag ? cached : this.#read(name, signal);
      });
      for (let i = 0; i < listed.length; i++) {
        const value = visibleValue(states[i]!);
        if (value !== undefined) yield { name: listed[i]!.name, ...value };
      }
    }
  }

  async watch(name: string, listener: RefListener, intervalOption: number | undefined, callerSignal: AbortSignal | undefined): Promise<void> {
    const intervalMs = positiveInt('intervalMs', intervalOption, this.#ctx.config.watchIntervalMs);
    const closing = this.#ctx.closing;
    const signal = callerSignal === undefined ? closing : AbortSignal.any([callerSignal, closing]);
    let state = await this.#read(name, signal).catch((error: unknown) => {
      throw isAbort(error) || signal.aborted ? abortError(signal) : error;
    });
    let version = visibleValue(state)?.version;
    const poll = async (): Promise<void> => {
      let failures = 0;
      while (!signal.aborted) {
        try {
          await sleep(failures === 0 ? intervalMs : Math.min(30_000, intervalMs * 2 ** failures), signal);
          const changed = await this.#poll(name, state.etag, signal);
          failures = 0;
          if (changed === undefined) continue;
          state = changed;
          const value = visibleValue(changed);
          if (value?.version === version || signal.aborted) continue;
          version = value?.version;
          try {
            listener(value);
          } catch {
            // A throwing listener must not stop the watch.
          }
        } catch {
          // Transient failures back off and retry; abort ends the loop above.
          failures++;
        }
      }
    };
    void poll();
  }
}
