/**
 * Event streams on any {@link Store}: append-only logs of JSON events with
 * sequence numbers that start at 1, only go up and are never reused, even
 * across truncation, crashes and writers in different processes or on
 * different machines.
 *
 * ## Two layouts, one behaviour
 *
 * - **Generic** (`streams/refs.ts`): events and a head object behind refs,
 *   appended by conditional create and compare-and-swap. It works on every
 *   store (S3, memory, any layer) and costs about 5 store calls an append.
 * - **Native**: a backend that offers a cheaper path (see
 *   `streams/native.ts`) keeps the stream its own way: Redis appends with
 *   one XADD that numbers the event itself (one round trip, no script),
 *   disk appends to a per-stream log with one fdatasync per batch of
 *   concurrent appends.
 *
 * New streams take the backend's native layout when it has one (unless
 * {@link EventStreamsOptions.native} is false). A stream's layout is fixed
 * by its first append and recorded in the store (a marker behind its head
 * ref), so every client agrees on it: a stream created in the generic
 * layout stays generic even on a backend with a native path, and a native
 * stream reached through a layer that does not pass the native path on is
 * refused with {@link UnsupportedError} instead of being given a second,
 * independent numbering. `cached()` and `readOnly()` pass it on (read-only:
 * reads only); `derivedStore()` and `layered()` do not, because their writes
 * must not reach the backend directly; so push/pull carries generic streams
 * only, and a stream meant to be synced that way is created with
 * `native: false`.
 *
 * @module
 */
import { throwIfAborted, type AbortOptions } from '../abort.js';
import { CorruptStoreError, InvalidArgumentError } from '../errors.js';
import { hashBytes, type Hash } from '../hash.js';
import type { Store } from '../store.js';
import { encodeJson, tryDecodeJson, type JsonValue } from './json.js';
import { assertNamespace, assertSegmentName } from './names.js';
import { encodeMarker, nativeStreamsOf, type NativeStreamEvent, type NativeStreams } from './streams/native.js';
import { RefStreams } from './streams/refs.js';

export { nativeStreams, nativeStreamsOf, readOnlyNativeStreams, type NativeStreamEvent, type NativeStreams } from './streams/native.js';

/** One event as {@link EventStreams.read} yields it. */
export interface StreamEvent<T = JsonValue> {
  /** Its sequence number: 1 for a stream's first event, increasing, never reused. */
  readonly seq: number;
  /** The event, as appended. */
  readonly event: T;
}

/** Options of {@link eventStreams}. */
export interface EventStreamsOptions {
  /**
   * Ref prefix under which streams live; `""` or ending in `/`. Two
   * `EventStreams` share streams exactly when they share store and prefix.
   * @default 'streams/'
   */
  prefix?: string | undefined;
  /**
   * Create new streams in the backend's native layout when it offers one
   * (disk, Redis). `false` creates them in the generic layout, which
   * `layered()` push/pull carries to other stores. Streams that already
   * exist keep their layout either way.
   * @default true
   */
  native?: boolean | undefined;
}

/** Options of {@link EventStreams.read}. */
export interface StreamReadOptions extends AbortOptions {
  /**
   * First sequence number to return (events below it, and truncated ones, are skipped).
   * @default 1
   */
  from?: number | undefined;
  /**
   * Most events to return.
   * @default Infinity
   */
  limit?: number | undefined;
}

/** How one stream is kept; `none` when it has no head yet (nothing to read, 0, nothing to drop). */
type Layout = { readonly kind: 'refs' } | { readonly kind: 'native'; readonly native: NativeStreams } | { readonly kind: 'none' };

const REFS: Layout = { kind: 'refs' };
const NONE: Layout = { kind: 'none' };

/**
 * Event streams over `store`.
 *
 * @example
 * ```ts
 * const streams = eventStreams(store);
 * const seq = await streams.append('orders', { id: 7, total: 12.5 }); // 1
 * for await (const { seq, event } of streams.read('orders', { from: 1 })) console.log(seq, event);
 * await streams.truncate('orders', seq); // drops 1..seq; the next append gets seq + 1
 * ```
 */
export function eventStreams(store: Store, options: EventStreamsOptions = {}): EventStreams {
  return new EventStreams(store, options);
}

/** See {@link eventStreams}. */
export class EventStreams {
  readonly #store: Store;
  readonly #prefix: string;
  readonly #refs: RefStreams;
  readonly #native: NativeStreams | undefined;
  /** The marker new native streams get. */
  readonly #marker: { readonly bytes: Uint8Array; readonly hash: Hash } | undefined;
  /** Each marker's hash text and the native layout it names (the backend's own and its older ones). */
  readonly #markers = new Map<string, NativeStreams>();
  readonly #createNative: boolean;
  /** Layouts found so far; a stream's layout never changes once its head exists. */
  readonly #layouts = new Map<string, Layout>();

  constructor(store: Store, options: EventStreamsOptions = {}) {
    const prefix = options.prefix ?? 'streams/';
    assertNamespace(prefix, 'prefix');
    if (options.native !== undefined && typeof options.native !== 'boolean') {
      throw new InvalidArgumentError(`option native must be true or false, got ${typeof options.native}`);
    }
    this.#store = store;
    this.#prefix = prefix;
    this.#refs = new RefStreams(store, prefix);
    this.#native = nativeStreamsOf(store);
    this.#createNative = options.native !== false;
    if (this.#native !== undefined) {
      const bytes = encodeMarker(this.#native.layout);
      this.#marker = { bytes, hash: hashBytes(bytes) };
      for (const native of [this.#native, ...(this.#native.older ?? [])]) {
        this.#markers.set(hashBytes(encodeMarker(native.layout)).toString(), native);
      }
    }
  }

  /**
   * Appends one event and resolves to its sequence number: the next free
   * one, greater than every number handed out before. The event must be a
   * JSON value that reads back unchanged (else {@link InvalidArgumentError},
   * nothing written). Safe to call concurrently from any number of
   * processes sharing the store; each gets a distinct number.
   *
   * Once the event is being written the append completes even if `signal`
   * fires, so an aborted append either did not happen or happened completely.
   *
   * @example
   * ```ts
   * const seq = await streams.append('audit', { user: 'ada', action: 'login' });
   * ```
   */
  async append(stream: string, event: unknown, options: AbortOptions = {}): Promise<number> {
    assertSegmentName(stream, 'stream name');
    const bytes = encodeJson(event, 'event');
    throwIfAborted(options.signal);
    const layout = this.#layouts.get(stream) ?? (await this.#layout(stream, true, options));
    if (layout.kind === 'native') return layout.native.append(this.#prefix + stream, bytes, options);
    return this.#refs.append(stream, bytes, options);
  }

  /**
   * Yields the surviving events numbered `from` or more, in order, up to the
   * last number committed when the call started.
   *
   * @example
   * ```ts
   * for await (const { seq, event } of streams.read('audit', { from: 100 })) handle(seq, event);
   * ```
   */
  async *read(stream: string, options: StreamReadOptions = {}): AsyncIterable<StreamEvent> {
    assertSegmentName(stream, 'stream name');
    const from = options.from ?? 1;
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    if (!Number.isSafeInteger(from) || from < 0) {
      throw new InvalidArgumentError(`read option from must be a whole number >= 0, got ${String(from)}`);
    }
    if (!(limit >= 0) || (limit !== Number.POSITIVE_INFINITY && !Number.isSafeInteger(limit))) {
      throw new InvalidArgumentError(`read option limit must be a whole number >= 0 or Infinity, got ${String(limit)}`);
    }
    const layout = this.#layouts.get(stream) ?? (await this.#layout(stream, false, options));
    if (layout.kind === 'none') return;
    const events: AsyncIterable<NativeStreamEvent> =
      layout.kind === 'native'
        ? layout.native.read(this.#prefix + stream, from, limit, options)
        : this.#refs.read(stream, from, limit, options);
    for await (const { seq, bytes } of events) yield { seq, event: decodeEvent(stream, seq, bytes) };
  }

  /**
   * The highest number committed on `stream` (0 if it never had an append):
   * every append that has resolved is at or below it. Truncation does not
   * lower it.
   *
   * @example
   * ```ts
   * const next = (await streams.lastSeq('audit')) + 1; // at least what the next append returns
   * ```
   */
  async lastSeq(stream: string, options: AbortOptions = {}): Promise<number> {
    assertSegmentName(stream, 'stream name');
    const layout = this.#layouts.get(stream) ?? (await this.#layout(stream, false, options));
    if (layout.kind === 'none') return 0;
    if (layout.kind === 'native') return layout.native.lastSeq(this.#prefix + stream, options);
    return this.#refs.lastSeq(stream, options);
  }

  /**
   * The name of every stream that ever had an append, sorted, including
   * streams truncated to nothing.
   *
   * @example
   * ```ts
   * for (const name of await streams.streams()) console.log(name, await streams.lastSeq(name));
   * ```
   */
  async streams(options: AbortOptions = {}): Promise<string[]> {
    const base = this.#refs.headRef('');
    const names: string[] = [];
    for await (const ref of this.#store.listRefs(base, options)) names.push(ref.name.slice(base.length));
    return names;
  }

  /**
   * Drops the events numbered `upTo` or less (`upTo` is capped at
   * {@link EventStreams.lastSeq}; `Infinity` drops everything committed). Later appends still get
   * numbers above every number handed out before. Resolves to the new
   * floor: every number at or below it is gone for good. A stream that never
   * had an append is left alone (resolves to 0).
   *
   * @example
   * ```ts
   * const floor = await streams.truncate('audit', 1000); // events 1..1000 dropped
   * ```
   */
  async truncate(stream: string, upTo: number, options: AbortOptions = {}): Promise<number> {
    assertSegmentName(stream, 'stream name');
    if (!(upTo >= 0) || (upTo !== Number.POSITIVE_INFINITY && !Number.isSafeInteger(upTo))) {
      throw new InvalidArgumentError(`truncate upTo must be a whole number >= 0 or Infinity, got ${String(upTo)}`);
    }
    const layout = this.#layouts.get(stream) ?? (await this.#layout(stream, false, options));
    if (layout.kind === 'none') return 0;
    if (layout.kind === 'native') return layout.native.truncate(this.#prefix + stream, upTo, options);
    return this.#refs.truncate(stream, upTo, options);
  }

  /**
   * Finds how `stream` is kept, from its head ref: one of this backend's
   * markers (its layout or an older one it still serves) means native, anything else (or no head, unless `create`) generic; the
   * generic layout refuses another layout's marker when it reads the head.
   * With `create`, a new stream is registered in the native layout when the
   * backend offers one, by creating its head ref, which one client wins.
   */
  async #layout(stream: string, create: boolean, options: AbortOptions): Promise<Layout> {
    const marker = this.#marker;
    const native = this.#native;
    if (marker === undefined || native === undefined) return REFS;
    const headRef = this.#refs.headRef(stream);
    let head = (await this.#store.getRef(headRef, options))?.hash;
    if (head === undefined && create && this.#createNative) {
      // Stored first, so the ref never names a missing object.
      await this.#store.put(marker.bytes, options);
      const swap = await this.#store.compareAndSwap(headRef, null, marker.hash, options);
      head = swap.ok ? marker.hash : swap.current?.hash;
    }
    // No head yet: answered here (empty, 0), not by the generic layout, whose own look at the head
    // could already find another client's native marker; an append without `native` goes generic.
    if (head === undefined) return create ? REFS : NONE;
    const found = this.#markers.get(head.toString());
    const layout: Layout = found !== undefined ? { kind: 'native', native: found } : REFS;
    this.#layouts.set(stream, layout);
    return layout;
  }
}

function decodeEvent(stream: string, seq: number, bytes: Uint8Array): JsonValue {
  const decoded = tryDecodeJson(bytes);
  if (decoded === undefined) {
    throw new CorruptStoreError(`event ${seq} of stream "${stream}" is not JSON; was it written by something else?`, {
      key: `${stream}/${seq}`,
    });
  }
  return decoded.value;
}
