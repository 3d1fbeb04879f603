/**
 * Refs on S3: the swap engine (conditional PUTs with lost-response
 * detection, see `ref-body.ts`), the ref cache, reads bounded by what a ref
 * can be, listing and watching. The capability probe is in `probe.ts`.
 *
 * Every ref write ends in exactly one of: success, a conflict reported from
 * a fresh read, or {@link OutcomeUnknownError} when the write may have
 * landed and the store cannot tell (a lost answer, then reads that keep
 * failing or a history that no longer reaches back to the write). The
 * attempt is kept, so retrying the same call on this store, or
 * {@link S3Refs.resolve} with the attempt from anywhere, settles it.
 *
 * A ref key whose body is not Cairn's (another tool's, or too large to be
 * one) reads as {@link CorruptStoreError}, is skipped and reported by
 * listings, and counts as absent for writes, which replace it under its
 * current ETag.
 *
 * @module
 */
import { abortError, sleep, type AbortOptions } from '../../abort.js';
import { BackendError, CorruptStoreError, OutcomeUnknownError, UnsupportedError, type RefWriteAttempt } from '../../errors.js';
import type { Hash } from '../../hash.js';
import { casAccepts } from '../../internal/cas.js';
import { integerOption } from '../../internal/options.js';
import { mapConcurrent } from '../../object-io.js';
import { isValidRefName } from '../../ref-name.js';
import type { CasResult, RefEntry, RefListener, RefValue } from '../../store.js';
import type { S3Context } from './context.js';
import { BodyTooLargeError } from './direct.js';
import { attemptsOf, backoff, isAbort, isAmbiguous, isConditionalConflict, isKeyNotFound, isPreconditionFailed, statusOf } from './errors.js';
import type { ForeignReporter } from './foreign.js';
import { PendingWrites } from './pending.js';
import { ConditionalWriteProbe } from './probe.js';
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
import type { ListedKey } from './transport.js';

/**
 * Ref states kept (about 1.5 KiB each) to skip the read before a swap and
 * the GET of a listed ref whose ETag has not changed.
 */
const REF_CACHE_SIZE = 4096;
/** Give up a ref write after this many lost races or retries. */
const MAX_REF_ATTEMPTS = 200;
/** Retries of a ref write after a 409 or an ambiguous failure. */
export const MAX_REF_RETRIES = 8;
/** Tries of the read that tells whether a write whose answer was lost landed. */
const VERDICT_READS = 6;
/**
 * The largest ref body read. Cairn's are under 1 KiB (32 ids of history); a
 * larger one is not Cairn's and is refused unread, whatever its size.
 */
export const MAX_REF_BODY = 64 * 1024;

/** A ref write: `expected` `undefined` means unconditional, `null` absent. */
export interface RefWrite {
  readonly name: string;
  readonly expected: Hash | null | undefined;
  readonly next: Hash | null;
}

/** The refs of one S3 store. */
export class S3Refs {
  readonly #ctx: S3Context;
  readonly #foreign: ForeignReporter;
  readonly #cache = new Map<string, RefState>();
  readonly #pending = new PendingWrites();
  readonly #probe: ConditionalWriteProbe;

  constructor(context: S3Context, foreign: ForeignReporter) {
    this.#ctx = context;
    this.#foreign = foreign;
    this.#probe = new ConditionalWriteProbe(context);
  }

  async get(name: string, signal: AbortSignal | undefined): Promise<RefValue | undefined> {
    const state = await this.#read(name, signal);
    if (state.foreign !== undefined) throw state.foreign;
    return visibleValue(state);
  }

  /**
   * The one ref write path: conditional PUTs until the write lands or the
   * ref no longer accepts what it holds. A conflict is only ever reported
   * from a fresh read, never from the cache. `resume` continues an earlier
   * attempt (same write id) whose outcome was unknown; without it, an
   * unsettled attempt of this store with the same condition and value is
   * resumed.
   */
  async swap(write: RefWrite, signal: AbortSignal | undefined, resume?: RefWriteAttempt): Promise<CasResult> {
    await this.#probe.ensure(signal);
    const { name, next } = write;
    resume ??= this.#pending.take(name, textOf(write.expected), next?.toString() ?? null);
    const id = resume?.writeId ?? newWriteId();
    // States whose successor may be our write without our having seen it.
    const bases = new Set(resume?.bases ?? []);
    try {
      return await this.#swapLoop(write, id, bases, signal);
    } catch (error) {
      if (bases.size === 0 || error instanceof OutcomeUnknownError) throw error;
      const attempt = this.#attempt(write, id, bases);
      this.#pending.add(attempt);
      // The caller stopped waiting; a retry of the same call on this store still recognises the write.
      if (isAbort(error)) throw error;
      const why = error instanceof Error ? error.message : String(error);
      throw this.#unknown(attempt, `after its answer was lost the store could not read the ref back (${why})`, error);
    }
  }

  async #swapLoop(write: RefWrite, id: string, bases: Set<string>, signal: AbortSignal | undefined): Promise<CasResult> {
    const { name, next, expected } = write;
    const key = this.#ctx.keys.ref(name);
    const accepts = (value: RefValue | undefined): boolean =>
      expected === undefined || casAccepts(value, expected);
    const written: CasResult = { ok: true, current: next === null ? undefined : { hash: next, version: id } };
    // Unknown refs are assumed absent: a create then costs one request, and a
    // wrong guess only costs a 412 and a read. A resumed write starts from the truth.
    let state = bases.size > 0 ? await this.#readBack(name, signal) : (this.#cache.get(name) ?? ABSENT_STATE);
    let fresh = bases.size > 0;
    if (!fresh && !accepts(visibleValue(state))) {
      state = await this.#read(name, signal);
      fresh = true;
    }
    let retries = 0;
    for (let attempt = 0; ; attempt++) {
      if (bases.size > 0) {
        const verdict = judgeWrite(state, id, bases);
        if (verdict === 'applied') return written;
        if (verdict === 'unknown') {
          const unsettled = this.#attempt(write, id, bases);
          this.#pending.add(unsettled);
          throw this.#unknown(unsettled, 'the ref has changed too often since for its history to tell');
        }
      }
      const current = visibleValue(state);
      const nothingToDelete = next === null && current === undefined && state.foreign === undefined;
      // A conflict or a no-op delete is only ever reported from a fresh read.
      if (!fresh && (!accepts(current) || nothingToDelete)) {
        state = await this.#read(name, signal);
        fresh = true;
        continue;
      }
      if (!accepts(current)) return { ok: false, current };
      if (nothingToDelete) return { ok: true, current: undefined };
      if (attempt >= MAX_REF_ATTEMPTS) {
        throw new BackendError(`gave up writing ref ${name} after ${attempt} attempts lost to other writers; try again`, { ref: name, retryable: true });
      }
      const body = nextRefBody(id, next ?? undefined, state);
      const condition = state.etag === undefined ? { ifNoneMatch: '*' as const } : { ifMatch: state.etag };
      try {
        const out = await this.#ctx.transport.put(key, Buffer.from(encodeRefBody(body)), { contentType: 'application/json', signal, ...condition });
        this.#remember(name, { etag: out.etag, body });
        return written;
      } catch (error) {
        if (isAbort(error) || signal?.aborted) {
          // The request may have reached the server before the abort.
          bases.add(currentId(state));
          throw abortError(signal);
        }
        // The client may have retried a request that had applied: its last answer then hides it.
        if (isAmbiguous(error) || attemptsOf(error) > 1) bases.add(currentId(state));
        if (isConditionalConflict(error) || isAmbiguous(error)) {
          if (++retries > MAX_REF_RETRIES) {
            const mapped = this.#ctx.error(error, 'write ref', signal, undefined, name);
            if (bases.size === 0) throw mapped;
            const unsettled = this.#attempt(write, id, bases);
            this.#pending.add(unsettled);
            throw this.#unknown(unsettled, `its answers kept getting lost (${mapped.message})`, error);
          }
          await sleep(backoff(retries), signal);
        } else if (isPreconditionFailed(error) || isKeyNotFound(error)) {
          // Lost a race: someone wrote since our read. Back off only when it keeps happening.
          if (attempt >= 3) await sleep(backoff(attempt - 3), signal);
        } else {
          throw this.#ctx.error(error, 'write ref', signal, undefined, name);
        }
      }
      state = bases.size > 0 ? await this.#readBack(name, signal) : await this.#read(name, signal);
      fresh = true;
    }
  }

  /**
   * Settles an attempt whose outcome was unknown: `{ ok: true }` if it
   * landed, or lands it now if the ref still holds what it expected;
   * otherwise `{ ok: false, current }`.
   */
  async resolve(write: RefWrite, attempt: RefWriteAttempt, signal: AbortSignal | undefined): Promise<CasResult> {
    this.#pending.remove(attempt);
    return this.swap(write, signal, attempt);
  }

  #attempt(write: RefWrite, id: string, bases: ReadonlySet<string>): RefWriteAttempt {
    return { ref: write.name, writeId: id, next: write.next?.toString() ?? null, expected: textOf(write.expected), bases: [...bases] };
  }

  #unknown(attempt: RefWriteAttempt, why: string, cause?: unknown): OutcomeUnknownError {
    const what = attempt.next === null ? 'a delete' : `to ${attempt.next}`;
    return new OutcomeUnknownError(
      `the write of ref ${attempt.ref} (${what}, write id ${attempt.writeId}) may or may not have landed: ${why}. ` +
        'It can never land twice. Settle it with resolveOutcome(error.attempt) on an S3 store of this bucket, or retry the same ' +
        `call on this store (both recognise the write id), or read the ref: version ${attempt.writeId} means it landed`,
      attempt,
      cause,
    );
  }

  /** Reads a ref after a write whose answer was lost, retrying failures that may pass. */
  async #readBack(name: string, signal: AbortSignal | undefined): Promise<RefState> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#read(name, signal);
      } catch (error) {
        const retryable = error instanceof BackendError && error.retryable;
        if (!retryable || attempt >= VERDICT_READS || signal?.aborted) throw error;
        await sleep(backoff(attempt + 2), signal);
      }
    }
  }

  /** Reads a ref key. A body that is not a Cairn ref gives a state with `foreign` set, not an error. */
  async #read(name: string, signal: AbortSignal | undefined): Promise<RefState> {
    const key = this.#ctx.keys.ref(name);
    let state: RefState;
    try {
      const { bytes, etag } = await this.#ctx.transport.get(key, { signal, maxBytes: MAX_REF_BODY });
      state = this.#decode(bytes, this.#etagOf(etag, key), key);
    } catch (error) {
      if (error instanceof BodyTooLargeError && error.etag !== undefined) {
        state = foreignState(error.etag, key, `it is ${error.declared ?? 'more than'} ${error.declared === undefined ? `${MAX_REF_BODY} ` : ''}bytes, larger than any Cairn ref`);
      } else if (isKeyNotFound(error)) {
        state = ABSENT_STATE;
      } else {
        throw this.#ctx.error(error, 'read ref', signal, undefined, name);
      }
    }
    this.#remember(name, state);
    this.#pending.prune(name, state);
    return state;
  }

  #decode(bytes: Uint8Array, etag: string, key: string): RefState {
    try {
      return { etag, body: decodeRefBody(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8'), key) };
    } catch (error) {
      if (!(error instanceof CorruptStoreError)) throw error;
      return { etag, body: undefined, foreign: error };
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
      const read = await this.#ctx.transport.get(key, { signal, ifNoneMatch: etag, maxBytes: MAX_REF_BODY });
      return this.#decode(read.bytes, this.#etagOf(read.etag, key), key);
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

  /** Every ref under `prefix`, in name order; foreign keys are skipped and reported. */
  async *list(prefix: string, options: AbortOptions | undefined, listKeys: (prefix: string) => AsyncIterable<ListedKey[]>): AsyncIterable<RefEntry> {
    const signal = options?.signal;
    const base = this.#ctx.keys.refs;
    for await (const keys of listKeys(base + prefix)) {
      // Keys come in byte order, which is name order for ASCII ref names.
      const listed: Array<{ name: string; etag: string | undefined }> = [];
      for (const { key, etag, size } of keys) {
        const name = key.slice(base.length);
        if (!isValidRefName(name)) this.#foreign.report({ kind: 'ref', key, reason: 'it is not a valid ref name' });
        else if (size !== undefined && size > MAX_REF_BODY) this.#foreign.report({ kind: 'ref', key, reason: `it is ${size} bytes, larger than any Cairn ref` });
        else listed.push({ name, etag });
      }
      const states = await mapConcurrent(listed, this.#ctx.config.concurrency, async ({ name, etag }) => {
        // Every ref body is unique (it carries a write id), so an unchanged ETag means an unchanged ref.
        const cached = this.#cache.get(name);
        return cached !== undefined && etag !== undefined && cached.etag === etag ? cached : this.#read(name, signal);
      });
      for (let i = 0; i < listed.length; i++) {
        const state = states[i]!;
        if (state.foreign !== undefined) {
          this.#foreign.report({ kind: 'ref', key: base + listed[i]!.name, reason: state.foreign.message });
          continue;
        }
        const value = visibleValue(state);
        if (value !== undefined) yield { name: listed[i]!.name, ...value };
      }
    }
  }

  async watch(name: string, listener: RefListener, intervalOption: number | undefined, callerSignal: AbortSignal | undefined): Promise<void> {
    const intervalMs = integerOption('s3Store.watch', 'intervalMs', intervalOption, this.#ctx.config.watchIntervalMs, 1);
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

function textOf(expected: Hash | null | undefined): string | null | undefined {
  return expected === undefined || expected === null ? expected : expected.toString();
}

function foreignState(etag: string, key: string, why: string): RefState {
  return {
    etag,
    body: undefined,
    foreign: new CorruptStoreError(`ref object ${key} is not a Cairn ref (${why}); was it written by another tool?`, { key }),
  };
}
