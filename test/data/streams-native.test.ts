/**
 * Native stream layouts (disk log, Redis script) as users reach them: which
 * layout a stream takes, that it is fixed for good by the first append,
 * what layers do with it, and appends from several processes at once on
 * the disk log.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openDiskStore, type DiskStore } from '../../src/backends/disk.js';
import { openRedisStore } from '../../src/backends/redis.js';
import { derivedStore } from '../../src/data/derived.js';
import { eventStreams, nativeStreams, nativeStreamsOf } from '../../src/data/streams.js';
import {
  AbortError,
  cached,
  ClosedError,
  CorruptStoreError,
  InvalidArgumentError,
  readOnly,
  ReadOnlyError,
  UnsupportedError,
  type Store,
} from '../../src/index.js';
import { startRedis, type RedisServer } from '../support/redis.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const WRITER = join(ROOT, 'test/data/stream-writer-child.ts');

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/** The store as a layer that knows nothing of native streams would show it: every call passed on, the capability not. */
function hidingNative(store: Store): Store {
  return new Proxy(store, {
    get(target, prop) {
      if (prop === nativeStreams) return undefined;
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

async function snapshot(store: Store): Promise<string[]> {
  return (await collect(store.listRefs())).map((r) => `${r.name}=${r.hash.toString()}`);
}

describe('native streams on disk', () => {
  let dir: string;
  let disk: DiskStore;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-native-'));
    disk = await openDiskStore(dir);
  });

  afterEach(async () => {
    await disk.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a new stream takes the disk-log layout: a marker behind its head ref, one log file, no ref per event', async () => {
    const streams = eventStreams(disk);
    for (let i = 1; i <= 20; i++) expect(await streams.append('orders', { i })).toBe(i);
    expect(nativeStreamsOf(disk)?.layout).toBe('disk-log');
    const head = await disk.getRef('streams/head/orders');
    expect(JSON.parse(new TextDecoder().decode(await disk.get(head!.hash)))).toEqual({ cairn: 'stream', layout: 'disk-log' });
    expect((await collect(disk.listRefs())).map((r) => r.name)).toEqual(['streams/head/orders']);
    expect((await readdir(join(dir, 'streams'))).filter((f) => f.endsWith('.log'))).toHaveLength(1);
    expect(await streams.streams()).toEqual(['orders']);
  });

  it('a stream created in the generic layout (through a layer that hides the native path) stays generic: both kinds of client share one numbering', async () => {
    const generic = eventStreams(hidingNative(disk));
    expect(await generic.append('legacy', { by: 'generic', i: 0 })).toBe(1);
    const native = eventStreams(disk);
    const got = await Promise.all([
      ...Array.from({ length: 30 }, (_, i) => native.append('legacy', { by: 'native', i })),
      ...Array.from({ length: 30 }, (_, i) => generic.append('legacy', { by: 'generic', i: i + 1 })),
    ]);
    expect([1, ...got].sort((a, b) => a - b)).toEqual(Array.from({ length: 61 }, (_, i) => i + 1));
    expect((await collect(disk.listRefs('streams/e/legacy/'))).length).toBe(61);
    expect((await collect(native.read('legacy'))).map((e) => e.seq)).toEqual(Array.from({ length: 61 }, (_, i) => i + 1));
  });

  it('native: false creates generic streams; a default client then continues them generically', async () => {
    expect(await eventStreams(disk, { native: false }).append('portable', 'a')).toBe(1);
    expect(await eventStreams(disk).append('portable', 'b')).toBe(2);
    expect((await collect(disk.listRefs('streams/e/portable/'))).length).toBe(2);
    expect(() => eventStreams(disk, { native: 'yes' as unknown as boolean })).toThrow(InvalidArgumentError);
  });

  it('a native stream reached without the native path is refused with UnsupportedError, changing nothing', async () => {
    await eventStreams(disk).append('native-only', { i: 1 });
    const before = await snapshot(disk);
    for (const store of [hidingNative(disk), derivedStore(disk)]) {
      const blind = eventStreams(store);
      await expect(blind.append('native-only', { i: 2 })).rejects.toBeInstanceOf(UnsupportedError);
      await expect(collect(blind.read('native-only'))).rejects.toBeInstanceOf(UnsupportedError);
      await expect(blind.lastSeq('native-only')).rejects.toBeInstanceOf(UnsupportedError);
      await expect(blind.truncate('native-only', 1)).rejects.toBeInstanceOf(UnsupportedError);
      const error = await blind.lastSeq('native-only').catch((e: unknown) => e);
      expect((error as Error).message).toMatch(/disk-log/);
    }
    expect(await snapshot(disk)).toEqual(before);
    expect(await eventStreams(disk).lastSeq('native-only')).toBe(1);
  });

  it('cached() passes the native path on; readOnly() passes it on for reads and refuses appends and truncation', async () => {
    const viaCache = eventStreams(cached(disk));
    expect(await viaCache.append('shared', 'one')).toBe(1);
    expect(await eventStreams(disk).append('shared', 'two')).toBe(2);
    expect((await collect(disk.listRefs('streams/e/'))).length).toBe(0);

    const view = eventStreams(readOnly(disk));
    expect(await view.lastSeq('shared')).toBe(2);
    expect(await collect(view.read('shared'))).toEqual([
      { seq: 1, event: 'one' },
      { seq: 2, event: 'two' },
    ]);
    await expect(view.append('shared', 'three')).rejects.toBeInstanceOf(ReadOnlyError);
    await expect(view.truncate('shared', 1)).rejects.toBeInstanceOf(ReadOnlyError);
    await expect(view.append('brand-new', 'x')).rejects.toBeInstanceOf(ReadOnlyError);
    expect(await eventStreams(disk).lastSeq('shared')).toBe(2);
    expect(await eventStreams(disk).streams()).toEqual(['shared']);
  });

  it('bad input and abort: an event over 16 MiB is an InvalidArgumentError, an aborted append does not happen, a closed store refuses', async () => {
    const streams = eventStreams(disk);
    await streams.append('s', 'first');
    await expect(streams.append('s', 'x'.repeat(16 * 1024 * 1024 + 1))).rejects.toBeInstanceOf(InvalidArgumentError);
    const controller = new AbortController();
    controller.abort();
    await expect(streams.append('s', 'aborted', { signal: controller.signal })).rejects.toBeInstanceOf(AbortError);
    expect(await collect(streams.read('s'))).toEqual([{ seq: 1, event: 'first' }]);
    expect(await streams.append('s', 'second')).toBe(2);
    await disk.close();
    await expect(streams.append('s', 'late')).rejects.toBeInstanceOf(ClosedError);
    await expect(streams.lastSeq('s')).rejects.toBeInstanceOf(ClosedError);
    disk = await openDiskStore(dir);
    expect(await eventStreams(disk).lastSeq('s')).toBe(2);
  });

  it('3 processes and this one append to one disk-log stream at once: 1..800 handed out once each, every event at its number', async () => {
    await eventStreams(disk).append('multi', { writer: 'parent', i: -1 }); // the stream exists before the children race
    const children = ['a', 'b', 'c'].map((id) =>
      spawn(process.execPath, ['--import', 'tsx', WRITER, dir, '200', id], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }),
    );
    const childNumbers = children.map(
      (child) =>
        new Promise<number[]>((resolveChild, reject) => {
          let out = '';
          let err = '';
          child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
          child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
          child.on('exit', (code) => (code === 0 ? resolveChild(JSON.parse(out) as number[]) : reject(new Error(`writer exited ${code}: ${err}`))));
        }),
    );
    const streams = eventStreams(disk);
    const mine = await Promise.all(Array.from({ length: 199 }, (_, i) => streams.append('multi', { writer: 'parent', i })));
    const [a, b, c] = (await Promise.all(childNumbers)) as [number[], number[], number[]];
    const got = { a, b, c, parent: mine };
    const all = [1, ...Object.values(got).flat()].sort((x, y) => x - y);
    expect(all).toEqual(Array.from({ length: 800 }, (_, i) => i + 1));
    const events = await collect(streams.read('multi'));
    expect(events).toHaveLength(800);
    for (const { seq, event } of events.slice(1) as Array<{ seq: number; event: { writer: keyof typeof got; i: number } }>) {
      expect(got[event.writer][event.i]).toBe(seq);
    }
  }, 120_000);
});

describe('native streams on Redis', () => {
  let server: RedisServer;

  beforeAll(async () => {
    server = await startRedis();
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('a new stream takes the redis-xadd layout: events in a Redis stream under ids 0-<number>, no ref per event', async () => {
    const store = await openRedisStore({ url: server.url, keyPrefix: 'native1:' });
    const raw = new Redis(server.url);
    try {
      const streams = eventStreams(store);
      const got = await Promise.all(Array.from({ length: 50 }, (_, i) => streams.append('orders', { i })));
      expect([...got].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
      expect(await raw.xlen('native1:sx:streams/orders')).toBe(50);
      expect((await raw.xrange('native1:sx:streams/orders', '-', '+', 'COUNT', 1))[0]![0]).toBe('0-1');
      expect((await collect(store.listRefs())).map((r) => r.name)).toEqual(['streams/head/orders']);
      expect(await streams.truncate('orders', 45)).toBe(45);
      expect(await raw.xlen('native1:sx:streams/orders')).toBe(5);
      expect(await streams.append('orders', 'after')).toBe(51);
      expect((await collect(streams.read('orders', { from: 50 }))).map((e) => e.seq)).toEqual([50, 51]);
      // Truncated to nothing: the stream keeps its last number, so the next append still goes up.
      expect(await streams.truncate('orders', Infinity)).toBe(51);
      expect(await raw.xlen('native1:sx:streams/orders')).toBe(0);
      expect(await eventStreams(store).append('orders', 'after all')).toBe(52);
      expect(await streams.lastSeq('orders')).toBe(52);
      // The events lost behind Cairn's back: appends fail rather than number from 1 again.
      await raw.del('native1:sx:streams/orders');
      await expect(streams.append('orders', 'reused?')).rejects.toThrow(/gone from Redis/);
      await expect(streams.lastSeq('orders')).rejects.toBeInstanceOf(CorruptStoreError);
      expect(await raw.exists('native1:sx:streams/orders')).toBe(0);
      // The floor and birth record lost instead: numbering goes on from the stream's own last id.
      expect(await streams.append('other', 1)).toBe(1);
      expect(await streams.append('other', 2)).toBe(2);
      await raw.del('native1:sh:streams/other');
      expect(await streams.append('other', 3)).toBe(3);
      expect((await collect(streams.read('other'))).map((e) => e.event)).toEqual([1, 2, 3]);
    } finally {
      await raw.quit();
      await store.close();
    }
  });

  it('a stream made in the older redis-stream layout (a script per append) keeps it: numbers go on, entries stay <number>-0', async () => {
    const store = await openRedisStore({ url: server.url, keyPrefix: 'native3:' });
    const raw = new Redis(server.url);
    try {
      // What an earlier version left: the head ref names the redis-stream marker, the mark and entries in their keys.
      const marker = new TextEncoder().encode(JSON.stringify({ cairn: 'stream', layout: 'redis-stream' }));
      expect((await store.compareAndSwap('streams/head/old', null, await store.put(marker))).ok).toBe(true);
      await raw.hset('native3:sh:streams/old', 'seq', '2');
      await raw.xadd('native3:sx:streams/old', '1-0', 'e', '"one"');
      await raw.xadd('native3:sx:streams/old', '2-0', 'e', '"two"');
      const streams = eventStreams(store);
      expect(await streams.lastSeq('old')).toBe(2);
      expect(await Promise.all([streams.append('old', 'three'), streams.append('old', 'four')])).toEqual([3, 4]);
      expect((await raw.xrange('native3:sx:streams/old', '-', '+')).map(([id]) => id)).toEqual(['1-0', '2-0', '3-0', '4-0']);
      expect(await streams.truncate('old', 1)).toBe(1);
      expect(await collect(streams.read('old'))).toEqual([
        { seq: 2, event: 'two' },
        { seq: 3, event: 'three' },
        { seq: 4, event: 'four' },
      ]);
      await expect(eventStreams(readOnly(store)).append('old', 'no')).rejects.toBeInstanceOf(ReadOnlyError);
      expect((await collect(eventStreams(readOnly(store)).read('old'))).map((e) => e.seq)).toEqual([2, 3, 4]);
      // Its mark lost behind Cairn's back: appends fail rather than reuse a number.
      await raw.del('native3:sh:streams/old');
      await expect(streams.append('old', 'reused?')).rejects.toThrow(/stream/);
      expect(await raw.xlen('native3:sx:streams/old')).toBe(3);
    } finally {
      await raw.quit();
      await store.close();
    }
  });

  it('a native Redis stream reached without the native path is refused; a generic one stays generic', async () => {
    const store = await openRedisStore({ url: server.url, keyPrefix: 'native2:' });
    try {
      await eventStreams(store).append('native', 1);
      await expect(eventStreams(hidingNative(store)).append('native', 2)).rejects.toBeInstanceOf(UnsupportedError);
      await eventStreams(hidingNative(store)).append('generic', 1);
      expect(await eventStreams(store).append('generic', 2)).toBe(2);
      expect((await collect(store.listRefs('streams/e/'))).map((r) => r.name)).toHaveLength(2);
    } finally {
      await store.close();
    }
  });
});
