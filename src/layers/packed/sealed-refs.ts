/**
 * Encrypted ref bodies. In an encrypted store a user ref's value (a hash of
 * the user's data) must not be readable in the bucket, yet the ref must keep
 * its compare-and-swap by ETag. So the inner ref keeps its name and points
 * at a small **ref body** object instead of the hash itself:
 *
 * ```
 * body := "CAIRNRB1" || box(keys.ref, hash text, associatedData('cairn ref v1', ref name))
 * ```
 *
 * Every write makes a new body (a fresh random nonce), so the inner ref's
 * value names one write exactly: a swap conditional on the body read is a
 * swap conditional on that very version, and a lost answer is settled by
 * asking whether the ref holds this write's body (unique, so never someone
 * else's). A body copied from another ref, or another repository, does not
 * open under this name and key: {@link IntegrityError} naming the ref, never
 * another value. The body a write replaces is deleted after the write; a
 * reader that finds a body gone re-reads the ref.
 *
 * @module
 */
import { associatedData, open, seal } from '../../crypto/aead.js';
import { InvalidHashError, IntegrityError, isCairnError } from '../../errors.js';
import { parseHash, type Hash } from '../../hash.js';
import { settledCompareAndSwap } from '../../internal/settle.js';
import { toHash } from '../../object-io.js';
import type { AbortOptions } from '../../abort.js';
import type { CasResult, HashLike, RefEntry, RefListener, RefValue, Store, WatchOptions } from '../../store.js';
import { REF_BODY_MAGIC, RESERVED_REF_PREFIX } from './format.js';

const MAGIC = Buffer.from(REF_BODY_MAGIC, 'ascii');
/** A body is a few dozen bytes; reading more than this is reading something else. */
const MAX_BODY_BYTES = 4096;
/** Re-reads of a ref whose body vanished under a concurrent write before giving up. */
const BODY_RACE_TRIES = 5;
/** Swaps retried when the ref was rewritten to the value expected (another body, same hash). */
const SAME_VALUE_TRIES = 8;
/** Bodies kept opened (by ref and body hash): listing and watching re-open the same bodies often. */
const BODY_CACHE = 4096;

/** The ref half of a Store: what the packed layer forwards refs to. */
export type RefSide = Pick<Store, 'getRef' | 'setRef' | 'deleteRef' | 'compareAndSwap' | 'listRefs' | 'watchRef'>;

/** Refs whose bodies are encrypted under `refKey`; see the module comment. */
export class SealedRefs implements RefSide {
  readonly #opened = new Map<string, Hash>();

  constructor(
    readonly inner: Store,
    readonly refKey: Uint8Array,
  ) {}

  #aad(name: string): Uint8Array {
    return associatedData('cairn ref v1', name);
  }

  /** Writes the body of `name` → `hash`; resolves once it is durable. */
  async #putBody(name: string, hash: Hash, signal: AbortSignal | undefined): Promise<Hash> {
    const body = Buffer.concat([MAGIC, seal(this.refKey, Buffer.from(hash.toString(), 'utf8'), this.#aad(name))]);
    const address = await this.inner.put(body, { signal });
    this.#remember(name, address, hash);
    return address;
  }

  #remember(name: string, body: Hash, hash: Hash): void {
    if (this.#opened.size >= BODY_CACHE) this.#opened.delete(this.#opened.keys().next().value!);
    this.#opened.set(`${name}\n${body.toString()}`, hash);
  }

  /** The hash a body holds; undefined when the body is gone (replaced by a concurrent write). */
  async #openBody(name: string, body: Hash, signal: AbortSignal | undefined): Promise<Hash | undefined> {
    const cached = this.#opened.get(`${name}\n${body.toString()}`);
    if (cached !== undefined) return cached;
    let bytes: Uint8Array;
    try {
      bytes = await this.inner.getRange(body, 0, MAX_BODY_BYTES + 1, { signal });
    } catch (error) {
      if (isCairnError(error, 'ERR_NOT_FOUND')) return undefined;
      throw error;
    }
    const damaged = (why: string): IntegrityError =>
      new IntegrityError(`ref ${name} is damaged: its encrypted body ${body.toString()} ${why}; set the ref again, or restore it from a copy`, { ref: name, key: body.toString() });
    if (bytes.length > MAX_BODY_BYTES || bytes.length < MAGIC.length || !MAGIC.equals(bytes.subarray(0, MAGIC.length))) throw damaged('is not a ref body');
    const plain = open(this.refKey, bytes.subarray(MAGIC.length), this.#aad(name));
    if (plain === undefined) throw damaged('does not authenticate as this ref\'s in this repository (tampered with, or replayed from another ref or repository)');
    let hash: Hash;
    try {
      hash = parseHash(Buffer.from(plain).toString('utf8'));
    } catch (error) {
      if (error instanceof InvalidHashError) throw damaged('holds no hash');
      throw error;
    }
    this.#remember(name, body, hash);
    return hash;
  }

  /** The inner value of `name` and the hash its body holds (re-read while a concurrent write replaces the body). */
  async #read(name: string, signal: AbortSignal | undefined): Promise<{ inner: RefValue; hash: Hash } | undefined> {
    for (let tries = 0; ; tries++) {
      const inner = await this.inner.getRef(name, { signal });
      if (inner === undefined) return undefined;
      const hash = await this.#openBody(name, inner.hash, signal);
      if (hash !== undefined) return { inner, hash };
      if (tries + 1 >= BODY_RACE_TRIES) {
        throw new IntegrityError(`ref ${name} names body ${inner.hash.toString()}, which is missing; set the ref again`, { ref: name, key: inner.hash.toString() });
      }
    }
  }

  #deleteBody(body: Hash | undefined): void {
    // Best effort: an old body left behind is a few dozen bytes of garbage, never a wrong value.
    if (body !== undefined) void this.inner.delete(body).catch(() => undefined);
  }

  async getRef(name: string, options?: AbortOptions): Promise<RefValue | undefined> {
    const read = await this.#read(name, options?.signal);
    return read === undefined ? undefined : { hash: read.hash, version: read.inner.version };
  }

  async setRef(name: string, hashLike: HashLike, options?: AbortOptions): Promise<RefValue> {
    const hash = toHash(hashLike);
    const old = await this.inner.getRef(name, options);
    const body = await this.#putBody(name, hash, options?.signal);
    const value = await this.inner.setRef(name, body, options);
    if (old !== undefined && !old.hash.equals(body)) this.#deleteBody(old.hash);
    return { hash, version: value.version };
  }

  async deleteRef(name: string, options?: AbortOptions): Promise<void> {
    const old = await this.inner.getRef(name, options);
    await this.inner.deleteRef(name, options);
    this.#deleteBody(old?.hash);
  }

  async compareAndSwap(name: string, expectedLike: HashLike | null, nextLike: HashLike | null, options?: AbortOptions): Promise<CasResult> {
    const signal = options?.signal;
    const expected = expectedLike === null ? null : toHash(expectedLike);
    const next = nextLike === null ? null : toHash(nextLike);
    let body: Hash | null | undefined;
    for (let tries = 0; ; tries++) {
      const current = await this.#read(name, signal);
      const currentValue = current === undefined ? undefined : { hash: current.hash, version: current.inner.version };
      if (expected === null ? current !== undefined : current === undefined || !current.hash.equals(expected)) return { ok: false, current: currentValue };
      // One body per call: a retry after a lost answer must be the same write.
      body ??= next === null ? null : await this.#putBody(name, next, signal);
      // Our body is unique to this write, so "the ref holds it" means this write landed, whoever answered (not so "the ref is absent", after a delete).
      const result = await settledCompareAndSwap(this.inner, name, current?.inner.hash ?? null, body, { signal, sameValueIsMine: body !== null });
      if (result.ok) {
        this.#deleteBody(current?.inner.hash);
        return { ok: true, current: next === null || result.current === undefined ? undefined : { hash: next, version: result.current.version } };
      }
      // Lost to another writer: report what it wrote, unless it wrote the very value expected (then try again).
      const after = result.current === undefined ? undefined : await this.#openBody(name, result.current.hash, signal);
      const sameAsExpected = expected === null ? result.current === undefined : after !== undefined && after.equals(expected);
      if (!sameAsExpected || tries + 1 >= SAME_VALUE_TRIES) {
        if (body !== null) this.#deleteBody(body);
        if (result.current !== undefined && after === undefined) return { ok: false, current: await this.getRef(name, options) };
        return { ok: false, current: result.current === undefined ? undefined : { hash: after!, version: result.current.version } };
      }
    }
  }

  async *listRefs(prefix?: string, options?: AbortOptions): AsyncIterable<RefEntry> {
    for await (const entry of this.inner.listRefs(prefix, options)) {
      if (entry.name.startsWith(RESERVED_REF_PREFIX)) {
        yield entry;
        continue;
      }
      const hash = await this.#openBody(entry.name, entry.hash, options?.signal);
      if (hash !== undefined) {
        yield { name: entry.name, hash, version: entry.version };
        continue;
      }
      // Rewritten since the listing: its newest value (or nothing, if deleted since).
      const now = await this.getRef(entry.name, options);
      if (now !== undefined) yield { name: entry.name, ...now };
    }
  }

  async watchRef(name: string, listener: RefListener, options?: WatchOptions): Promise<void> {
    // Bodies are opened in the order the inner store reports them, so the listener sees values in order.
    let chain = Promise.resolve();
    await this.inner.watchRef(
      name,
      (value) => {
        chain = chain.then(async () => {
          if (value === undefined) return listener(undefined);
          try {
            const hash = await this.#openBody(name, value.hash, options?.signal);
            const now = hash !== undefined ? { hash, version: value.version } : await this.getRef(name, options);
            listener(now);
          } catch {
            // A damaged body is reported by the next read of the ref; a watcher is not the place to throw.
          }
        });
      },
      options,
    );
  }
}
