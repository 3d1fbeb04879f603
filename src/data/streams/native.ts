/**
 * The optional native-stream capability: a way for a backend that has a
 * cheaper append than the generic ref protocol (a Redis script, a disk
 * append log) to offer it to {@link EventStreams}.
 *
 * A store offers it by holding a {@link NativeStreams} under the
 * {@link nativeStreams} symbol key. It is a plain property, not part of the
 * {@link Store} interface: backends and layers that know nothing about it
 * keep working, because a stream's layout is recorded in the store itself.
 *
 * ## How a stream's layout is fixed
 *
 * Every stream has a head ref (`<prefix>head/<stream>`), created by its
 * first append and never removed. A native stream's head ref names a
 * **marker** object, `{"cairn":"stream","layout":"<layout>"}`, instead of
 * the generic `{"seq","floor"}` head. The head ref is created by
 * compare-and-swap from "absent", so exactly one layout wins for each
 * stream, whichever clients race to create it, and it never changes:
 *
 * - a client without the capability (a layer that does not pass it on, a
 *   store copied elsewhere by push/pull) meets the marker and gets an
 *   {@link UnsupportedError}, never a second, empty numbering;
 * - a client with the capability meets a generic head (a stream created
 *   before the backend had a native path, or through such a layer) and
 *   keeps using the generic protocol for that stream.
 *
 * ## Layers
 *
 * A layer that passes every call to one inner store (`cached`) passes the
 * capability on as it is; a read-only view passes on
 * {@link readOnlyNativeStreams} of it; a layer whose writes must not reach
 * the inner store directly (`derivedStore`, `layered`) does not pass it on,
 * so its native streams are refused as above rather than written around it.
 *
 * @module
 */
import type { AbortOptions } from '../../abort.js';
import { ReadOnlyError } from '../../errors.js';
import type { Store } from '../../store.js';

/**
 * The property key under which a store offers {@link NativeStreams}.
 * Registered with `Symbol.for`, so two copies of Cairn in one program agree.
 */
export const nativeStreams: unique symbol = Symbol.for('cairn.nativeStreams') as never;

/** One event as a native backend returns it: its number and its JSON bytes. */
export interface NativeStreamEvent {
  readonly seq: number;
  readonly bytes: Uint8Array;
}

/**
 * A backend's own stream implementation, with the guarantees of
 * {@link EventStreams}: numbers start at 1, only go up, are never reused
 * (not after truncation, not after a crash, not between processes or
 * clients sharing the backend), and each acknowledged append is durable as
 * the store is (`capabilities.durable`).
 *
 * `stream` is the full stream key (`<prefix><name>`, a valid ref name); a
 * backend treats it as opaque. Arguments are validated by the caller.
 */
export interface NativeStreams {
  /** The layout's name, recorded in each native stream's marker (e.g. `disk-log`, `redis-xadd`). */
  readonly layout: string;
  /** False for a read-only view: `append` and `truncate` reject with {@link ReadOnlyError}. */
  readonly writable: boolean;
  /**
   * Layouts this backend no longer creates but still serves, for the
   * streams whose marker names them (each with its own `layout`).
   */
  readonly older?: readonly NativeStreams[] | undefined;
  /**
   * Appends one event (JSON bytes) and resolves to its number, the next
   * free one. An append whose `signal` fires before it is written does not
   * happen; once written it completes.
   */
  append(stream: string, event: Uint8Array, options?: AbortOptions): Promise<number>;
  /** The highest number handed out (0 if none). */
  lastSeq(stream: string, options?: AbortOptions): Promise<number>;
  /**
   * The surviving events numbered `from` or more, in order, at most
   * `limit`, up to the last number handed out when the call started.
   */
  read(stream: string, from: number, limit: number, options?: AbortOptions): AsyncIterable<NativeStreamEvent>;
  /**
   * Raises the floor to `min(upTo, lastSeq)` if that is higher and drops the
   * events at or below it; resolves to the floor (0 for an unknown stream).
   */
  truncate(stream: string, upTo: number, options?: AbortOptions): Promise<number>;
}

/** A store that may offer native streams. */
export interface NativeStreamHost {
  readonly [nativeStreams]?: NativeStreams | undefined;
}

/**
 * The native streams `store` offers, if any.
 *
 * @example
 * ```ts
 * const native = nativeStreamsOf(await openDiskStore(dir)); // its disk-log layout
 * ```
 */
export function nativeStreamsOf(store: Store): NativeStreams | undefined {
  const offered = (store as Store & NativeStreamHost)[nativeStreams];
  return offered !== undefined && offered !== null && typeof offered.append === 'function' ? offered : undefined;
}

/**
 * A view of `inner` that reads and refuses appends and truncation with
 * {@link ReadOnlyError}, for read-only layers to offer.
 *
 * @example
 * ```ts
 * readonly [nativeStreams] = inner[nativeStreams] && readOnlyNativeStreams(inner[nativeStreams]);
 * ```
 */
export function readOnlyNativeStreams(inner: NativeStreams): NativeStreams {
  const refuse = (operation: string): Promise<never> =>
    Promise.reject(new ReadOnlyError(`stream ${operation} was refused: this store is read-only; write through a writable store instead`));
  return {
    layout: inner.layout,
    writable: false,
    older: inner.older?.map(readOnlyNativeStreams),
    append: () => refuse('append'),
    truncate: () => refuse('truncate'),
    lastSeq: (stream, options) => inner.lastSeq(stream, options),
    read: (stream, from, limit, options) => inner.read(stream, from, limit, options),
  };
}

const encoder = new TextEncoder();

/** The one encoding of a layout's marker, so that equal layouts are equal objects. */
export function encodeMarker(layout: string): Uint8Array {
  return encoder.encode(JSON.stringify({ cairn: 'stream', layout }));
}

/** The layout a head object names, if it is a marker. */
export function markerLayout(decoded: unknown): string | undefined {
  if (typeof decoded !== 'object' || decoded === null) return undefined;
  const { cairn, layout } = decoded as { cairn?: unknown; layout?: unknown };
  return cairn === 'stream' && typeof layout === 'string' ? layout : undefined;
}
