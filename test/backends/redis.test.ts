import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRedisStore, type RedisStore } from '../../src/backends/redis.js';
import { BackendError, ClosedError, hashBytes, InvalidArgumentError } from '../../src/index.js';
import { conformanceSuite } from '../conformance.js';
import { startRedis, type RedisServer } from '../support/redis.js';

let server: RedisServer;
let counter = 0;

beforeAll(async () => {
  server = await startRedis();
});

afterAll(async () => {
  await server?.stop();
});

conformanceSuite('redis', {
  // Each case gets its own key prefix on the one server: fresh and empty, no flush needed.
  setup: () => openRedisStore({ url: server.url, keyPrefix: `conf${++counter}:` }),
  // A second connection on the same key prefix (setup just made it): the Lua swap must be atomic between them.
  peer: () => openRedisStore({ url: server.url, keyPrefix: `conf${counter}:` }),
  manyRefs: 2500,
});

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

describe('redis backend', () => {
  it('compare-and-swap checks the expected value on the server, between separate connections', async () => {
    const prefix = `cas${++counter}:`;
    const a = await openRedisStore({ url: server.url, keyPrefix: prefix });
    const b = await openRedisStore({ url: server.url, keyPrefix: prefix });
    try {
      const [x, y, z] = await a.putMany([bytes('x'), bytes('y'), bytes('z')]);
      expect((await a.compareAndSwap('heads/m', null, x!)).ok).toBe(true);
      // b holds a stale expectation: the swap must fail and report a's value.
      const stale = await b.compareAndSwap('heads/m', y!, z!);
      expect(stale.ok).toBe(false);
      expect(stale.current?.hash.equals(x!)).toBe(true);
      expect((await b.getRef('heads/m'))?.hash.equals(x!)).toBe(true);
      // 16 connections race one swap from x: exactly one wins.
      const racers = await Promise.all(Array.from({ length: 16 }, () => openRedisStore({ url: server.url, keyPrefix: prefix })));
      try {
        const targets = await a.putMany(racers.map((_, i) => bytes(`racer ${i}`)));
        const results = await Promise.all(racers.map((r, i) => r.compareAndSwap('heads/m', x!, targets[i]!)));
        expect(results.filter((r) => r.ok)).toHaveLength(1);
      } finally {
        await Promise.all(racers.map((r) => r.close()));
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a watcher on one connection is told of changes made on another', async () => {
    const prefix = `watch${++counter}:`;
    const watcher = await openRedisStore({ url: server.url, keyPrefix: prefix });
    const writer = await openRedisStore({ url: server.url, keyPrefix: prefix });
    try {
      const seen: Array<string | undefined> = [];
      const controller = new AbortController();
      await watcher.watchRef('heads/w', (v) => seen.push(v?.hash.toString()), { signal: controller.signal });
      const h = await writer.put(bytes('watched'));
      await writer.setRef('heads/w', h);
      await writer.deleteRef('heads/w');
      const deadline = Date.now() + 5000;
      while (seen.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(seen).toEqual([h.toString(), undefined]);
      controller.abort();
    } finally {
      await watcher.close();
      await writer.close();
    }
  });

  it('corrupted bytes in Redis are an IntegrityError, never returned', async () => {
    const prefix = `corrupt${++counter}:`;
    const store = await openRedisStore({ url: server.url, keyPrefix: prefix });
    try {
      const hash = await store.put(bytes('pristine'));
      // Overwrite the object's key behind the store's back through a second client.
      const { Redis } = await import('ioredis');
      const client = new Redis(server.url);
      await client.set(`${prefix}o:${hash.toString()}`, 'tampered');
      await client.quit();
      await expect(store.get(hash)).rejects.toMatchObject({ code: 'ERR_INTEGRITY' });
      await expect(store.getMany([hash])).rejects.toMatchObject({ code: 'ERR_INTEGRITY' });
    } finally {
      await store.close();
    }
  });

  it('getStream reads a large object in ranges, verified: a tampered one throws before completing', async () => {
    const prefix = `stream${++counter}:`;
    const store = await openRedisStore({ url: server.url, keyPrefix: prefix });
    try {
      const big = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => (i * 31) & 0xff);
      const hash = await store.put(big);
      const chunks: Uint8Array[] = [];
      for await (const chunk of store.getStream(hash)) chunks.push(chunk);
      expect(chunks.length).toBeGreaterThan(1);
      expect(Buffer.concat(chunks).equals(Buffer.from(big))).toBe(true);
      const { Redis } = await import('ioredis');
      const client = new Redis(server.url);
      await client.setrange(`${prefix}o:${hash.toString()}`, 2 * 1024 * 1024, 'X');
      await client.quit();
      const read = async (): Promise<void> => {
        for await (const _ of store.getStream(hash)) void _;
      };
      await expect(read()).rejects.toMatchObject({ code: 'ERR_INTEGRITY' });
    } finally {
      await store.close();
    }
  });

  it('data survives closing the client and restarting redis-server', async () => {
    const prefix = `restart${++counter}:`;
    let store: RedisStore = await openRedisStore({ url: server.url, keyPrefix: prefix });
    const hash = await store.put(bytes('kept across restarts'));
    const ref = await store.setRef('heads/kept', hash);
    await store.close();
    await server.restart();
    store = await openRedisStore({ url: server.url, keyPrefix: prefix });
    try {
      expect(new TextDecoder().decode(await store.get(hash))).toBe('kept across restarts');
      expect(await store.getRef('heads/kept')).toEqual(ref);
      // The script cache is empty after a restart: swaps still work (EVAL fallback).
      expect((await store.compareAndSwap('heads/kept', hash, null)).ok).toBe(true);
    } finally {
      await store.close();
    }
  });

  it('an unreachable server is a retryable BackendError that does not print the password', async () => {
    const error = await openRedisStore({ url: 'redis://:hunter2@127.0.0.1:1', connectTimeoutMs: 2000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect((error as BackendError).retryable).toBe(true);
    expect((error as Error).message).toContain('127.0.0.1:1');
    expect((error as Error).message).not.toContain('hunter2');
  });

  it('bad options are an InvalidArgumentError; a closed store rejects with ClosedError', async () => {
    await expect(openRedisStore({ url: 'http://127.0.0.1:6379' })).rejects.toBeInstanceOf(InvalidArgumentError);
    const store = await openRedisStore({ url: server.url, keyPrefix: `closed${++counter}:` });
    await store.close();
    await expect(store.has(hashBytes(bytes('x')))).rejects.toBeInstanceOf(ClosedError);
  });
});
