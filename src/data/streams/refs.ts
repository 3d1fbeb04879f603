/**
 * The generic stream layout: event streams on any {@link Store}, built only
 * on refs and compare-and-swap, with sequence numbers that only go up and
 * are never reused, even across truncation, crashes and writers on
 * different machines. {@link EventStreams} uses it on stores without a
 * native stream path, and for streams created in this layout.
 *
 * ## Layout (refs under `prefix`, default `streams/`)
 *
 * - `head/<stream>` names a small JSON object `{"seq":N,"floor":F}`: the
 *   high-water mark `N` (every number up to it is committed) and the
 *   truncation floor `F` (every number `<= F` is dead). It is created by the
 *   first append and never deleted, which is what
 *   {@link EventStreams.streams} lists.
 * - `e/<stream>/<seq, 16 digits>` names the event's JSON bytes.
 *
 * ## Appending: claim, check, commit
 *
 * A writer **claims** number `n` by creating `e/<stream>/n` with
 * `compareAndSwap(ref, null, event)`, which at most one writer wins; the
 * losers move on to `n + 1`, so two events never share a number. It then
 * reads the head and, unless the floor has reached `n` (see below), raises
 * the high-water mark to `n` by compare-and-swap. Raising the mark is the
 * commit: readers, `lastSeq` and `truncate` see only numbers up to it. The
 * mark only goes up, and raising it to `n` also commits claims below `n`
 * whose writers have not got there yet (or crashed after claiming): an
 * interrupted append then happened, complete, once.
 *
 * ## Why numbers are never reused
 *
 * Truncation deletes event refs, and a deleted ref could be created again by
 * a writer still working from an old view. So truncation first raises the
 * floor in the head, then deletes; and a writer reads the head only
 * **after** its claim: if the floor has reached `n`, the claim may be a
 * reuse, so it is withdrawn and the append retried above the floor. A number
 * is returned only if the head read after its claim showed `floor < n`; a
 * deletion of `e/n` before the claim would have raised the floor first
 * (floors only rise), so no two appends ever return the same number.
 * Truncation only covers committed numbers, so it never withdraws a claim
 * in flight unless another writer has already committed it.
 *
 * One corner is documented rather than prevented: in that last case (a claim
 * committed by another writer and truncated before its own writer read the
 * head) the event is appended again under a new number, so a reader that
 * read it in that instant sees it twice.
 *
 * Writers find the end of the claims by doubling then bisecting with
 * `getRef` (claims above the floor are contiguous), and on a slow (remote)
 * store they look before claiming and back off after a lost claim, because
 * there a lost claim costs a conditional write and a read.
 *
 * A ref write whose answer was lost (`OutcomeUnknownError` from S3)
 * is settled before the writer acts on it (`internal/settle.ts`): a claim
 * that landed unseen is the writer's, so the event keeps that number and is
 * never appended again under another.
 *
 * Truncated events' bytes become unreachable objects that `gc` reclaims; the
 * head objects replaced by each append likewise.
 *
 * @module
 */
import { LRUCache } from 'lru-cache';
import { sleep, throwIfAborted, type AbortOptions } from '../../abort.js';
import { CorruptStoreError, InvalidArgumentError, UnsupportedError } from '../../errors.js';
import { hashBytes, type Hash } from '../../hash.js';
import { settledCompareAndSwap, settledDeleteRef } from '../../internal/settle.js';
import { mapConcurrent } from '../../object-io.js';
import type { Store } from '../../store.js';
import { tryDecodeJson } from '../json.js';
import { markerLayout, type NativeStreamEvent } from './native.js';

/** The head object: high-water mark and truncation floor. */
interface HeadState {
  readonly seq: number;
  readonly floor: number;
}

interface Head extends HeadState {
  /** The hash the head ref held when read, for compare-and-swap; null if absent. */
  readonly hash: Hash | null;
}

const SEQ_DIGITS = 16;
const encoder = new TextEncoder();
/** Events fetched per round trip while reading. */
const READ_BATCH = 64;
/** Deletes in flight while truncating. */
const DELETE_CONCURRENCY = 16;
/** Failed claims in a row after which a writer on a fast store re-reads the head to jump ahead. */
const REREAD_AFTER = 4;
/** A claim slower than this (ms) means a remote store, where lost claims are worth avoiding. */
const SLOW_CLAIM_MS = 2;
/** Head states tried when recognising a head object by its hash, around the last known number. */
const RECOGNISE_BEHIND = 8;
const RECOGNISE_AHEAD = 64;

/** The generic layout of the streams under one prefix of one store. See the module comment. */
export class RefStreams {
  readonly #store: Store;
  readonly #prefix: string;
  /** Head objects are immutable, so their decoded form can be cached by hash. */
  readonly #heads = new LRUCache<string, HeadState>({ max: 1024 });
  /** The highest number this instance has seen per stream: a starting guess, never trusted. */
  readonly #hints = new Map<string, number>();
  /** The last floor seen per stream, for recognising heads. */
  readonly #floors = new Map<string, number>();

  /** `prefix` is checked by the caller. */
  constructor(store: Store, prefix: string) {
    this.#store = store;
    this.#prefix = prefix;
  }

  /** Appends `bytes` (an encoded JSON event) and resolves to its number; see {@link EventStreams.append}. */
  async append(stream: string, bytes: Uint8Array, options: AbortOptions): Promise<number> {
    const hash = await this.#store.put(bytes, options);
    let n: number;
    const hint = this.#hints.get(stream);
    if (hint === undefined) {
      let head = await this.#readHead(stream, options);
      if (head.hash === null) head = await this.#register(stream, options);
      n = (await this.#probe(stream, Math.max(head.seq, head.floor), options)) + 1;
    } else {
      // A guess is enough: a taken number fails its claim, and the commit checks the floor.
      n = hint + 1;
    }
    let slow = false;
    for (let failures = 0; ; ) {
      if (slow && failures > 0) {
        // On a remote store a lost claim costs a conditional write and a read, a taken number
        // found by a read costs the read alone: look before claiming again.
        n = (await this.#probe(stream, n - 1, options)) + 1;
      }
      assertSeq(n);
      throwIfAborted(options.signal);
      const started = performance.now();
      // Settled: a claim that landed unseen must count as ours, or the event would take a second number.
      const claim = await settledCompareAndSwap(this.#store, this.#eventRef(stream, n), null, hash, options);
      if (claim.ok) {
        // The number is ours: finish without the signal so the event is never left half-appended.
        if (await this.#commit(stream, n, hash)) {
          this.#hint(stream, n);
          return n;
        }
        const head = await this.#readHead(stream, {});
        n = Math.max(n, head.seq, head.floor) + 1;
        continue;
      }
      failures++;
      n++;
      const elapsed = performance.now() - started;
      if (elapsed >= SLOW_CLAIM_MS) {
        slow = true;
        // Exponential backoff with jitter: losers that keep losing step aside, so the
        // requests a saturated server spends on lost claims fall instead of growing.
        await sleep(Math.random() * elapsed * 2 ** Math.min(failures - 1, 4), options.signal);
      } else if (failures % REREAD_AFTER === 0) {
        const head = await this.#readHead(stream, options);
        n = Math.max(n, head.seq + 1, head.floor + 1);
      }
    }
  }

  /** The surviving events numbered `from` or more, at most `limit`; see {@link EventStreams.read}. */
  async *read(stream: string, from: number, limit: number, options: AbortOptions): AsyncIterable<NativeStreamEvent> {
    const head = await this.#readHead(stream, options);
    if (head.hash === null || limit === 0) return;
    const last = head.seq;
    const first = Math.max(from, head.floor + 1);
    if (first > last) return;
    // Every number in [first, last] starts with the digits the two share: list only that range.
    const lo = pad(first);
    const hi = pad(last);
    let common = 0;
    while (common < SEQ_DIGITS && lo[common] === hi[common]) common++;
    const base = `${this.#prefix}e/${stream}/`;
    let batch: Array<{ seq: number; hash: Hash }> = [];
    let left = limit;
    for await (const ref of this.#store.listRefs(base + lo.slice(0, common), options)) {
      const seq = parseSeq(ref.name.slice(base.length));
      if (seq === undefined || seq < first) continue;
      if (seq > last) break;
      batch.push({ seq, hash: ref.hash });
      if (batch.length >= Math.min(READ_BATCH, left)) {
        yield* this.#fetch(batch, options);
        left -= batch.length;
        batch = [];
        if (left <= 0) return;
      }
    }
    if (batch.length > 0) yield* this.#fetch(batch, options);
  }

  /** Reads a batch of listed events in one round trip. */
  async *#fetch(items: ReadonlyArray<{ seq: number; hash: Hash }>, options: AbortOptions): AsyncIterable<NativeStreamEvent> {
    const bodies = await this.#store.getMany(
      items.map((item) => item.hash),
      options,
    );
    for (let i = 0; i < items.length; i++) yield { seq: items[i]!.seq, bytes: bodies[i]! };
  }

  /** The highest number committed (0 if none); see {@link EventStreams.lastSeq}. */
  async lastSeq(stream: string, options: AbortOptions): Promise<number> {
    const head = await this.#readHead(stream, options);
    return head.seq;
  }

  /** Drops the events numbered `upTo` or less and resolves to the floor; see {@link EventStreams.truncate}. */
  async truncate(stream: string, upTo: number, options: AbortOptions): Promise<number> {
    let head = await this.#readHead(stream, options);
    if (head.hash === null) return 0;
    for (;;) {
      // Only committed numbers: covering a claim still in flight would make its writer retry it.
      const target = Math.min(upTo, head.seq);
      if (target <= head.floor) break;
      // The floor is raised before any event ref is deleted: see the module comment.
      const next = await this.#putHead({ seq: head.seq, floor: target }, options);
      const swap = await settledCompareAndSwap(this.#store, this.headRef(stream), head.hash, next, options);
      if (swap.ok) {
        head = { seq: head.seq, floor: target, hash: next };
        break;
      }
      head = await this.#readHead(stream, options);
    }
    // Deletes everything at or below the floor, including leftovers of an interrupted truncation.
    const base = `${this.#prefix}e/${stream}/`;
    const doomed: string[] = [];
    for await (const ref of this.#store.listRefs(base, options)) {
      const seq = parseSeq(ref.name.slice(base.length));
      if (seq === undefined) continue;
      if (seq > head.floor) break;
      doomed.push(ref.name);
    }
    await mapConcurrent(doomed, DELETE_CONCURRENCY, (name) => settledDeleteRef(this.#store, name, options));
    return head.floor;
  }

  /**
   * Commits a claim of `n`: checks the floor (false: the claim was
   * withdrawn) and raises the head to `n` unless it is already there.
   */
  async #commit(stream: string, n: number, hash: Hash): Promise<boolean> {
    let head = await this.#readHead(stream, {});
    for (;;) {
      if (head.floor >= n) {
        // Possibly a reuse of a truncated number: give it back, unless truncation already took it.
        await settledCompareAndSwap(this.#store, this.#eventRef(stream, n), hash, null);
        return false;
      }
      if (head.seq >= n) return true;
      const next = await this.#putHead({ seq: n, floor: head.floor }, {});
      const swap = await settledCompareAndSwap(this.#store, this.headRef(stream), head.hash, next);
      if (swap.ok) return true;
      head = await this.#headFromRef(stream, swap.current?.hash ?? null, {});
    }
  }

  /** Creates the head of a new stream, so that it is listed from its first append on. */
  async #register(stream: string, options: AbortOptions): Promise<Head> {
    const initial = await this.#putHead({ seq: 0, floor: 0 }, options);
    const swap = await settledCompareAndSwap(this.#store, this.headRef(stream), null, initial, options);
    if (swap.ok) return { seq: 0, floor: 0, hash: initial };
    return this.#headFromRef(stream, swap.current?.hash ?? null, options);
  }

  /**
   * The last number claimed at or above `from` (itself taken, or the head
   * or floor). Claims above the floor are contiguous (a writer claims `n`
   * only after seeing `n - 1` taken), so the end is found by doubling the
   * step and then bisecting: a few reads however far behind the caller is.
   */
  async #probe(stream: string, from: number, options: AbortOptions): Promise<number> {
    const taken = async (seq: number): Promise<boolean> =>
      (await this.#store.getRef(this.#eventRef(stream, seq), options)) !== undefined;
    let lo = from;
    let hi = from + 1;
    for (let step = 1; await taken(hi); step *= 2) {
      lo = hi;
      hi = from + step * 2;
    }
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (await taken(mid)) lo = mid;
      else hi = mid;
    }
    this.#hint(stream, lo);
    return lo;
  }

  async #readHead(stream: string, options: AbortOptions): Promise<Head> {
    const ref = await this.#store.getRef(this.headRef(stream), options);
    return this.#headFromRef(stream, ref?.hash ?? null, options);
  }

  async #headFromRef(stream: string, hash: Hash | null, options: AbortOptions): Promise<Head> {
    if (hash === null) return { seq: 0, floor: 0, hash: null };
    const key = hash.toString();
    let state = this.#heads.get(key) ?? this.#recognise(stream, hash);
    if (state === undefined) {
      state = parseHead(stream, await this.#store.get(hash, options));
      this.#heads.set(key, state);
    }
    this.#floors.set(stream, state.floor);
    this.#hint(stream, state.seq);
    return { ...state, hash };
  }

  /**
   * Head objects are encoded deterministically, so a head another writer
   * wrote can usually be recognised by hashing the few states it is likely
   * to hold, which costs microseconds instead of a read from the store.
   */
  #recognise(stream: string, hash: Hash): HeadState | undefined {
    if (hash.algorithm !== 'sha256') return undefined;
    const near = this.#hints.get(stream) ?? 0;
    const floor = this.#floors.get(stream) ?? 0;
    for (let seq = Math.max(floor, near - RECOGNISE_BEHIND); seq <= near + RECOGNISE_AHEAD; seq++) {
      const state = { seq, floor };
      const candidate = hashBytes(encodeHead(state));
      if (candidate.equals(hash)) {
        this.#heads.set(hash.toString(), state);
        return state;
      }
    }
    return undefined;
  }

  async #putHead(state: HeadState, options: AbortOptions): Promise<Hash> {
    const hash = await this.#store.put(encodeHead(state), options);
    this.#heads.set(hash.toString(), state);
    return hash;
  }

  #hint(stream: string, seq: number): void {
    if (seq > (this.#hints.get(stream) ?? 0)) this.#hints.set(stream, seq);
  }

  /** The ref that names the stream's head; it exists from the stream's first append on. */
  headRef(stream: string): string {
    return `${this.#prefix}head/${stream}`;
  }

  #eventRef(stream: string, seq: number): string {
    return `${this.#prefix}e/${stream}/${pad(seq)}`;
  }
}

/** The one encoding of a head state, so that equal states are equal objects. */
function encodeHead(state: HeadState): Uint8Array {
  return encoder.encode(JSON.stringify({ seq: state.seq, floor: state.floor }));
}

function pad(seq: number): string {
  return String(seq).padStart(SEQ_DIGITS, '0');
}

function parseSeq(text: string): number | undefined {
  if (text.length !== SEQ_DIGITS || !/^\d+$/.test(text)) return undefined;
  return Number(text);
}

function assertSeq(n: number): void {
  if (!Number.isSafeInteger(n)) {
    throw new InvalidArgumentError(`stream sequence numbers are exhausted (${n} is past Number.MAX_SAFE_INTEGER)`);
  }
}

function parseHead(stream: string, bytes: Uint8Array): HeadState {
  const decoded = tryDecodeJson(bytes)?.value as { seq?: unknown; floor?: unknown } | undefined;
  const layout = markerLayout(decoded);
  if (layout !== undefined) throw nativeElsewhere(stream, layout);
  const seq = decoded?.seq;
  const floor = decoded?.floor;
  if (
    typeof seq !== 'number' ||
    typeof floor !== 'number' ||
    !Number.isSafeInteger(seq) ||
    !Number.isSafeInteger(floor) ||
    floor < 0 ||
    floor > seq
  ) {
    throw new CorruptStoreError(`the head of stream "${stream}" is not a {"seq","floor"} record; was it written by something else?`);
  }
  return { seq, floor };
}

/** The error for a stream whose head is another layout's marker (see `native.ts`). */
export function nativeElsewhere(stream: string, layout: string): UnsupportedError {
  return new UnsupportedError(
    `stream "${stream}" is kept in the backend's native "${layout}" layout, which this store does not offer ` +
      '(a layer that does not pass native streams on, another kind of backend, or refs copied without the stream data); ' +
      'open the stream on the backend store itself, or through cached() or readOnly()',
  );
}
