/** Settling ref writes whose outcome is unknown (src/internal/settle.ts). */
import { describe, expect, it } from 'vitest';
import { SETTLE_TRIES, settledCompareAndSwap, settledDeleteRef } from '../../src/internal/settle.js';
import { BackendError, ForwardingStore, hashBytes, memoryStore, OutcomeUnknownError, type RefWriteAttempt } from '../../src/index.js';

const attempt = (ref: string): RefWriteAttempt => ({ ref, writeId: 'w1', next: null, expected: null, bases: [] });

/** A store whose answers never come back: every ref write throws OutcomeUnknownError and changes nothing. */
class Unreachable extends ForwardingStore {
  calls = 0;
  override compareAndSwap(name: string): Promise<never> {
    this.calls++;
    return Promise.reject(new OutcomeUnknownError(`swap of ${name}: no answer`, attempt(name)));
  }
  override deleteRef(name: string): Promise<never> {
    this.calls++;
    return Promise.reject(new OutcomeUnknownError(`delete of ${name}: no answer`, attempt(name)));
  }
}

describe('settledCompareAndSwap / settledDeleteRef', () => {
  it('pass a definite answer through unchanged, and other errors at once', async () => {
    const store = memoryStore();
    const hash = await store.put(new TextEncoder().encode('x'));
    expect((await settledCompareAndSwap(store, 'a', null, hash)).ok).toBe(true);
    const again = await settledCompareAndSwap(store, 'a', null, hash);
    expect(again.ok).toBe(false);
    expect(again.current?.hash.equals(hash)).toBe(true);
    class Broken extends ForwardingStore {
      calls = 0;
      override compareAndSwap(): Promise<never> {
        this.calls++;
        return Promise.reject(new BackendError('refused'));
      }
    }
    const broken = new Broken(memoryStore(), { name: 'broken' });
    await expect(settledCompareAndSwap(broken, 'a', null, hash)).rejects.toBeInstanceOf(BackendError);
    expect(broken.calls).toBe(1);
  });

  it(`give up with OutcomeUnknownError after ${SETTLE_TRIES} unclear tries`, async () => {
    const store = new Unreachable(memoryStore(), { name: 'unreachable' });
    await expect(settledCompareAndSwap(store, 'a', null, hashBytes(new Uint8Array(1)))).rejects.toBeInstanceOf(OutcomeUnknownError);
    expect(store.calls).toBe(SETTLE_TRIES);
    store.calls = 0;
    await expect(settledDeleteRef(store, 'a')).rejects.toBeInstanceOf(OutcomeUnknownError);
    expect(store.calls).toBe(SETTLE_TRIES);
  }, 30_000);
});
