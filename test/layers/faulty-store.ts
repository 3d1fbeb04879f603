/**
 * A Store wrapper for tests: fails a share of calls with a retryable
 * BackendError, either before the call reaches the inner store (nothing
 * happened) or after it (it happened, the answer was lost), and can be slowed
 * or gated. Counts calls per method.
 */
import { BackendError, type Store } from '../../src/index.js';

export interface FaultyOptions {
  /** Share of calls that fail, 0..1. */
  failRate?: number;
  /** Delay added to every call, ms. */
  delayMs?: number;
  /** Deterministic random source. */
  random?: () => number;
}

export interface Faulty {
  store: Store;
  calls: Map<string, number>;
  failures: number;
  /** While set, calls wait for it to resolve. */
  gate: Promise<void> | undefined;
  failRate: number;
}

const WRAPPED = [
  'put',
  'get',
  'has',
  'delete',
  'putMany',
  'getMany',
  'hasMany',
  'getRef',
  'setRef',
  'deleteRef',
  'compareAndSwap',
  'flush',
] as const;

export function seeded(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

export function faulty(inner: Store, options: FaultyOptions = {}): Faulty {
  const random = options.random ?? Math.random;
  const state: Faulty = { store: undefined as unknown as Store, calls: new Map(), failures: 0, gate: undefined, failRate: options.failRate ?? 0 };
  const wrapped: Record<string, unknown> = {};
  for (const method of WRAPPED) {
    const original = (inner as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>)[method]!.bind(inner);
    wrapped[method] = async (...args: unknown[]): Promise<unknown> => {
      state.calls.set(method, (state.calls.get(method) ?? 0) + 1);
      if (state.gate) await state.gate;
      if (options.delayMs) await new Promise((r) => setTimeout(r, options.delayMs));
      const roll = random();
      if (roll < state.failRate / 2) {
        state.failures++;
        throw new BackendError(`injected failure before ${method}`, { retryable: true });
      }
      const result = await original(...args);
      if (roll < state.failRate) {
        state.failures++;
        throw new BackendError(`injected failure after ${method}`, { retryable: true });
      }
      return result;
    };
  }
  state.store = wrap(inner, wrapped as Partial<Store>);
  return state;
}

/** A view of `inner` with some methods replaced; the rest are bound to `inner` (private fields need the real receiver). */
export function wrap(inner: Store, overrides: Partial<Store>): Store {
  return new Proxy(inner, {
    get(target, prop) {
      if (Object.hasOwn(overrides, prop)) return (overrides as Record<string | symbol, unknown>)[prop];
      const value = (target as unknown as Record<string | symbol, unknown>)[prop];
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
