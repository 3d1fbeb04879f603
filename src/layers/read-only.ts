/**
 * The read-only layer: a view of a store that refuses every write.
 *
 * Writes are refused before anything else is looked at (arguments, signal,
 * closed state), so a refused call can never have touched the inner store
 * and the caller always learns the real reason first: this view cannot write.
 * Everything else is forwarded by {@link ForwardingStore}.
 *
 * @module
 */
import { ReadOnlyError } from '../errors.js';
import type { Hash } from '../hash.js';
import type { CasResult, RefValue, Store } from '../store.js';
import { ForwardingStore } from './forwarding.js';
import { nativeStreams, nativeStreamsOf, readOnlyNativeStreams, type NativeStreams } from '../data/streams/native.js';

/**
 * Wraps `store` so that every write (put, putMany, delete, setRef,
 * deleteRef, compareAndSwap) rejects with {@link ReadOnlyError} and changes
 * nothing; reads, listings, watches and `flush` pass through.
 * `capabilities.writable` is false. Closing the view closes `store`: the
 * view owns it, like every Cairn layer.
 *
 * @example
 * ```ts
 * const view = readOnly(await openDiskStore('/srv/cairn'));
 * await view.get(hash);               // fine
 * await view.put(bytes);              // rejects with ReadOnlyError
 * ```
 */
export function readOnly(store: Store): Store {
  return new ReadOnlyStore(store);
}

function refuse(operation: string): Promise<never> {
  return Promise.reject(new ReadOnlyError(`${operation} was refused: this store is read-only; write through a writable store instead`));
}

/** See {@link readOnly}. */
export class ReadOnlyStore extends ForwardingStore {
  /** The inner store's native event streams, read-only (see `data/streams/native.ts`). */
  readonly [nativeStreams]: NativeStreams | undefined;

  constructor(inner: Store) {
    super(inner, { name: 'read-only store', capabilities: { writable: false } });
    const native = nativeStreamsOf(inner);
    this[nativeStreams] = native && readOnlyNativeStreams(native);
  }

  override put(): Promise<Hash> {
    return refuse('put');
  }

  override putMany(): Promise<Hash[]> {
    return refuse('putMany');
  }

  override delete(): Promise<void> {
    return refuse('delete');
  }

  override setRef(): Promise<RefValue> {
    return refuse('setRef');
  }

  override deleteRef(): Promise<void> {
    return refuse('deleteRef');
  }

  override compareAndSwap(): Promise<CasResult> {
    return refuse('compareAndSwap');
  }
}
