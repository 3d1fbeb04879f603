import { describe, expect, it } from 'vitest';
import {
  AbortError,
  defaultGetMany,
  defaultHasMany,
  defaultPutMany,
  DEFAULT_BATCH_CONCURRENCY,
  ForwardingStore,
  hashBytes,
  InvalidArgumentError,
  InvalidHashError,
  memoryStore,
  NotFoundError,
  type Hash,
  type HashLike,
  type ObjectSource,
  type PutOptions,
  type Store,
} from '../../src/index.js';
import type { AbortOptions } from '../../src/abort.js';
import { conformanceSuite } from '../conformance.js';

conformanceSuite('forwarding base over memory', {
  setup: async () => new ForwardingStore(memoryStore()),
});

/** A store whose batch calls are the default helpers over its own single calls. */
class SingleCallStore extends ForwardingStore {
  override putMany(items: readonly Uint8Array[], options?: PutOptions): Promise<Hash[]> {
    return defaultPutMany(this, items, options);
  }
  override getMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<Uint8Array[]> {
    return defaultGetMany(this, hashes, options);
  }
  override hasMany(hashes: readonly HashLike[], options?: AbortOptions): Promise<boolean[]> {
    return defaultHasMany(this, hashes, options);
  }
}

conformanceSuite('default batch helpers over memory', {
  setup: async () => new SingleCallStore(memoryStore()),
});

const bytesOf = (text: string): Uint8Array => new TextEncoder().encode(text);

class CountingStore extends ForwardingStore {
  puts = 0;
  override put(source: ObjectSource, options?: PutOptions): Promise<Hash> {
    this.puts++;
    return super.put(source, options);
  }
}

describe('ForwardingStore', () => {
  it('a layer overrides one method; batch calls reach the inner batch path, not its single calls', async () => {
    const calls: string[] = [];
    const inner = memoryStore();
    const spy = new Proxy(inner, {
      get(target, key, receiver) {
        const value = Reflect.get(target, key, receiver) as unknown;
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          calls.push(String(key));
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    }) as Store;
    const layer = new CountingStore(spy, { name: 'counting store' });
    await layer.put(bytesOf('one'));
    const hashes = await layer.putMany([bytesOf('a'), bytesOf('b')]);
    await layer.getMany(hashes);
    await layer.hasMany(hashes);
    expect(layer.puts).toBe(1);
    expect(calls).toEqual(['put', 'putMany', 'getMany', 'hasMany']);
    expect((await layer.getRange(hashes[0]!, 0, 1))[0]).toBe(0x61);
  });

  it('takes capability overrides and names itself once closed; close closes the inner store once', async () => {
    const inner = memoryStore();
    let closes = 0;
    const close = inner.close.bind(inner);
    inner.close = async () => {
      closes++;
      await close();
    };
    const layer = new ForwardingStore(inner, { name: 'test layer', capabilities: { durable: true } });
    expect(layer.capabilities).toEqual({ ...inner.capabilities, durable: true });
    await layer.close();
    await layer.close();
    expect(closes).toBe(1);
    await expect(layer.get(hashBytes(bytesOf('x')))).rejects.toThrow('the test layer is closed');
  });
});

describe('default batch helpers', () => {
  it('getMany rejects with the first missing hash in input order, whatever finishes first', async () => {
    const inner = memoryStore();
    const present = await inner.put(bytesOf('present'));
    const [late, early] = [hashBytes(bytesOf('missing first')), hashBytes(bytesOf('missing second'))];
    // The first missing hash answers last.
    const slow = {
      get: async (hash: HashLike) => {
        if (String(hash) === late.toString()) await new Promise((r) => setTimeout(r, 30));
        return inner.get(hash);
      },
    };
    const error = await defaultGetMany(slow, [present, late, early]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NotFoundError);
    expect((error as NotFoundError).key).toBe(late.toString());
  });

  it(`keeps at most ${DEFAULT_BATCH_CONCURRENCY} calls in flight and answers in input order`, async () => {
    let inFlight = 0;
    let peak = 0;
    const store = {
      has: async (hash: HashLike) => {
        peak = Math.max(peak, ++inFlight);
        await new Promise((r) => setTimeout(r, 1));
        inFlight--;
        return String(hash).endsWith('0');
      },
    };
    const hashes = Array.from({ length: 100 }, (_, i) => hashBytes(bytesOf(`h${i}`)));
    const answers = await defaultHasMany(store, hashes);
    expect(answers).toEqual(hashes.map((h) => h.toString().endsWith('0')));
    expect(peak).toBe(DEFAULT_BATCH_CONCURRENCY);
  });

  it('checks every argument before the first call: bad input and a fired signal change nothing', async () => {
    const inner = memoryStore();
    let puts = 0;
    const store = { put: (source: ObjectSource) => (puts++, inner.put(source)) };
    await expect(defaultPutMany(store, [bytesOf('ok'), 'no' as unknown as Uint8Array])).rejects.toThrow(
      new InvalidArgumentError('putMany item 1 must be a Uint8Array, got string'),
    );
    const controller = new AbortController();
    controller.abort();
    await expect(defaultPutMany(store, [bytesOf('ok')], { signal: controller.signal })).rejects.toBeInstanceOf(AbortError);
    await expect(defaultGetMany(inner, [hashBytes(bytesOf('ok')), 'sha256:bad'])).rejects.toBeInstanceOf(InvalidHashError);
    expect(puts).toBe(0);
  });
});
