import { describe, expect, it } from 'vitest';
import {
  AbortError,
  BackendError,
  hashBytes,
  InvalidArgumentError,
  memoryStore,
  PermissionError,
  type Store,
} from '../../src/index.js';
import { BatchUploader, type UploadProgress } from '../../src/layers/uploader.js';
import { faulty, seeded, wrap } from './faulty-store.js';

const bytesOf = (i: number, size = 64): Uint8Array => {
  const out = new Uint8Array(size);
  new DataView(out.buffer).setUint32(0, i);
  out.fill(i % 251, 4);
  return out;
};

function deferred(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** A remote that records how many putMany calls run at once and what they carried. */
function watched(inner: Store = memoryStore()): { store: Store; maxConcurrent: number; batches: number[]; puts: number; gate?: Promise<void> } {
  const state = { store: inner, maxConcurrent: 0, batches: [] as number[], puts: 0, gate: undefined as Promise<void> | undefined };
  let running = 0;
  const wrapped: Partial<Store> = {};
  wrapped.putMany = async (items, options) => {
    running++;
    state.maxConcurrent = Math.max(state.maxConcurrent, running);
    state.batches.push(items.length);
    try {
      if (state.gate) await state.gate;
      await new Promise((r) => setTimeout(r, 2));
      return await inner.putMany(items, options);
    } finally {
      running--;
    }
  };
  wrapped.put = async (source, options) => {
    state.puts++;
    return inner.put(source, options);
  };
  state.store = wrap(inner, wrapped);
  return state;
}

describe('BatchUploader', () => {
  it('uploads through putMany in batches, never more than `concurrency` at once', async () => {
    const remote = memoryStore();
    const w = watched(remote);
    const uploader = new BatchUploader(w.store, { concurrency: 3, batchSize: 16 });
    const items = Array.from({ length: 400 }, (_, i) => bytesOf(i));
    for (const item of items) await uploader.enqueue(item);
    await uploader.flush();
    expect(w.maxConcurrent).toBeLessThanOrEqual(3);
    expect(w.maxConcurrent).toBeGreaterThan(1);
    expect(w.puts).toBe(0);
    expect(w.batches.reduce((a, b) => a + b, 0)).toBe(400);
    expect(Math.max(...w.batches)).toBe(16);
    expect(w.batches.length).toBeLessThan(100);
    expect(await remote.hasMany(items.map((b) => hashBytes(b)))).toEqual(items.map(() => true));
  });

  it('uploads the same hash once while it is in flight', async () => {
    const w = watched();
    const gate = deferred();
    w.gate = gate.promise;
    const uploader = new BatchUploader(w.store, { concurrency: 2 });
    const bytes = bytesOf(7);
    await Promise.all(Array.from({ length: 10 }, () => uploader.enqueue(bytes)));
    expect(uploader.pendingObjects).toBe(1);
    gate.open();
    await uploader.flush();
    expect(w.batches.reduce((a, b) => a + b, 0)).toBe(1);
    expect(uploader.progress()).toMatchObject({ objectsDone: 1, objectsTotal: 1, bytesDone: 64, bytesTotal: 64 });
  });

  it('retries transient failures (20% of calls fail) and every object arrives intact', async () => {
    const remote = memoryStore();
    const flaky = faulty(remote, { failRate: 0.2, random: seeded(42) });
    const uploader = new BatchUploader(flaky.store, { concurrency: 4, batchSize: 8, retryBaseMs: 1, retryCapMs: 5 });
    const items = Array.from({ length: 300 }, (_, i) => bytesOf(i, 300));
    for (const item of items) await uploader.enqueue(item);
    await uploader.flush();
    expect(flaky.failures).toBeGreaterThan(5);
    const read = await remote.getMany(items.map((b) => hashBytes(b)));
    expect(read.map((b) => Buffer.from(b).toString('hex'))).toEqual(items.map((b) => Buffer.from(b).toString('hex')));
  });

  it('reports a permanent failure for the one object at fault and uploads the rest', async () => {
    const remote = memoryStore();
    const bad = bytesOf(13);
    const wrapped: Partial<Store> = {};
    wrapped.putMany = async (items, options) => {
      if (items.some((b) => Buffer.from(b).equals(Buffer.from(bad)))) throw new PermissionError('denied for this key');
      return remote.putMany(items, options);
    };
    const uploader = new BatchUploader(wrap(remote, wrapped), { batchSize: 8, retryBaseMs: 1 });
    const failed: string[] = [];
    uploader.on('failed', (f) => failed.push(f.hash.toString()));
    const items = Array.from({ length: 40 }, (_, i) => bytesOf(i));
    for (const item of items) await uploader.enqueue(item);
    const error = await uploader.flush().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect((error as BackendError).key).toBe(hashBytes(bad).toString());
    expect((error as BackendError).message).toContain('denied for this key');
    expect(failed).toEqual([hashBytes(bad).toString()]);
    expect(uploader.failures().map((f) => f.error)).toEqual([expect.any(PermissionError)]);
    const present = await remote.hasMany(items.map((b) => hashBytes(b)));
    expect(present.filter((p) => !p)).toHaveLength(1);
    expect(present[13]).toBe(false);
  });

  it('gives up on a transient failure after maxAttempts', async () => {
    const remote = memoryStore();
    const flaky = faulty(remote, { failRate: 1 });
    const uploader = new BatchUploader(flaky.store, { maxAttempts: 3, retryBaseMs: 1 });
    await uploader.enqueue(bytesOf(1));
    const error = await uploader.flush().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect((error as BackendError).retryable).toBe(true);
    expect(flaky.calls.get('putMany')).toBe(3);
  });

  it('backpressure: enqueue waits while maxPendingBytes are pending, and pending bytes never exceed it', async () => {
    const w = watched();
    const gate = deferred();
    w.gate = gate.promise;
    const uploader = new BatchUploader(w.store, { maxPendingBytes: 10 * 1024, concurrency: 1 });
    let peak = 0;
    uploader.on('progress', (p) => {
      peak = Math.max(peak, p.pendingBytes);
    });
    await uploader.enqueue(bytesOf(1, 4096));
    await uploader.enqueue(bytesOf(2, 4096));
    let third = false;
    const waiting = uploader.enqueue(bytesOf(3, 4096)).then(() => {
      third = true;
    });
    await new Promise((r) => setTimeout(r, 30));
    expect(third).toBe(false);
    gate.open();
    await waiting;
    await uploader.flush();
    expect(third).toBe(true);
    expect(peak).toBeLessThanOrEqual(10 * 1024);
  });

  it('flush waits for every object enqueued before it', async () => {
    const w = watched();
    const gate = deferred();
    w.gate = gate.promise;
    const uploader = new BatchUploader(w.store);
    await uploader.enqueue(bytesOf(1));
    let flushed = false;
    const flushing = uploader.flush().then(() => {
      flushed = true;
    });
    await new Promise((r) => setTimeout(r, 30));
    expect(flushed).toBe(false);
    gate.open();
    await flushing;
    expect(await w.store.has(hashBytes(bytesOf(1)))).toBe(true);
  });

  it('an aborted signal drops queued work, rejects waiting callers with AbortError', async () => {
    const w = watched();
    const gate = deferred();
    w.gate = gate.promise;
    const controller = new AbortController();
    const uploader = new BatchUploader(w.store, { signal: controller.signal, maxPendingBytes: 128, concurrency: 1 });
    await uploader.enqueue(bytesOf(1));
    await uploader.enqueue(bytesOf(2));
    const blocked = uploader.enqueue(bytesOf(3)).catch((e: unknown) => e);
    const enqueueSignal = new AbortController();
    const cancelled = uploader.enqueue(bytesOf(4), { signal: enqueueSignal.signal }).catch((e: unknown) => e);
    enqueueSignal.abort();
    expect(await cancelled).toBeInstanceOf(AbortError);
    controller.abort();
    expect(await blocked).toBeInstanceOf(AbortError);
    await expect(uploader.flush()).rejects.toBeInstanceOf(AbortError);
    await expect(uploader.enqueue(bytesOf(5))).rejects.toBeInstanceOf(AbortError);
    gate.open();
  });

  it('reports progress: objects and bytes done and total', async () => {
    const uploader = new BatchUploader(memoryStore());
    const seen: UploadProgress[] = [];
    uploader.on('progress', (p) => seen.push(p));
    for (let i = 0; i < 5; i++) await uploader.enqueue(bytesOf(i, 100));
    await uploader.flush();
    const last = seen.at(-1)!;
    expect(last).toMatchObject({ objectsDone: 5, objectsTotal: 5, bytesDone: 500, bytesTotal: 500, pendingBytes: 0 });
    expect(seen.some((p) => p.objectsDone < p.objectsTotal)).toBe(true);
  });

  it('reads items without bytes from `source`, streaming large ones and skipping what the remote has', async () => {
    const source = memoryStore();
    const remote = memoryStore();
    const w = watched(remote);
    const small = bytesOf(1, 1000);
    const large = bytesOf(2, 3 * 2 ** 20);
    const already = bytesOf(3, 500);
    const [hs, hl, ha] = await source.putMany([small, large, already]);
    await remote.put(already);
    const uploader = new BatchUploader(w.store, { source });
    await uploader.enqueue({ hash: hs!, size: small.length });
    await uploader.enqueue({ hash: hl!, size: large.length });
    await uploader.enqueue({ hash: ha!, size: already.length, checkRemote: true });
    await uploader.flush();
    expect(await remote.hasMany([hs!, hl!])).toEqual([true, true]);
    expect(w.puts).toBe(1);
    expect(uploader.progress().objectsSkipped).toBe(1);
  });

  it('rejects bad options with an InvalidArgumentError naming the option and value', () => {
    const remote = memoryStore();
    for (const [options, text] of [
      [{ concurrency: 0 }, '"concurrency" must be an integer from 1 to 1024, got 0'],
      [{ maxPendingBytes: -1 }, '"maxPendingBytes" must be an integer >= 1, got -1'],
      [{ batchSize: 2.5 }, '"batchSize" must be an integer from 1 to 10000, got 2.5'],
      [{ maxAttempts: 'x' }, '"maxAttempts" must be an integer from 1 to 1000, got "x"'],
    ] as const) {
      expect(() => new BatchUploader(remote, options as never)).toThrow(InvalidArgumentError);
      expect(() => new BatchUploader(remote, options as never)).toThrow(text);
    }
    expect(() => new BatchUploader({} as Store)).toThrow('"remote" must be a Store');
  });

  it('rejects a bad item with an InvalidArgumentError and queues nothing', async () => {
    const uploader = new BatchUploader(memoryStore());
    await expect(uploader.enqueue('text' as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(uploader.enqueue({ hash: hashBytes(bytesOf(1)), size: -1 })).rejects.toThrow('"size" must be an integer >= 0, got -1');
    await expect(uploader.enqueue({ hash: hashBytes(bytesOf(1)), size: 1 })).rejects.toThrow('no "source" option');
    expect(uploader.progress().objectsTotal).toBe(0);
  });
});
