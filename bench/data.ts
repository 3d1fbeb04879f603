/**
 * Data APIs: stream appends and key-value operations, on memory, disk and
 * Redis, beside Redis's own primitives (XADD for streams, GET/SET for
 * key-value) measured in the same run on the same server. Also counts the
 * store calls one append costs (a native stream call counts as one), which
 * is what a remote backend bills. Disk and Redis run twice: in their native
 * stream layout (the default) and in the generic ref layout (`native: false`).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { openDiskStore } from '../src/backends/disk.js';
import { openRedisStore } from '../src/backends/redis.js';
import { eventStreams, nativeStreams } from '../src/data/streams.js';
import { keyValue } from '../src/data/kv.js';
import { memoryStore, type Store } from '../src/index.js';
import { startRedis } from '../test/support/redis.js';
import { opsPerSecond, printTable, type Row } from './table.js';

/** Appends per measurement on the fast paths, and on the generic layout of disk and Redis (a few hundred a second). */
const APPENDS = 2000;
const GENERIC_APPENDS = 400;

/** Rounds of the Redis native row against XADD. */
const XADD_ROUNDS = 5;
const REDIS_NATIVE = 'redis (native XADD)';

function median(values: readonly number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
}

/** Wraps a store (and its native streams, if any) to count calls per method. */
function counting<T extends object>(store: T, counts: Map<string, number>): T {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (prop === nativeStreams && typeof value === 'object' && value !== null) return counting(value, counts);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        counts.set(String(prop), (counts.get(String(prop)) ?? 0) + 1);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

/**
 * Appends `total` events from `writers` concurrent clients, each awaiting its
 * own appends; returns appends/s and store calls per append. Each writer's
 * first append (which creates the stream, opens its log) is not timed.
 */
async function appendRate(open: () => Promise<Store>, writers: number, native: boolean, total: number): Promise<{ rate: number; calls: number }> {
  const counts = new Map<string, number>();
  const stores = await Promise.all(Array.from({ length: writers }, async () => counting(await open(), counts)));
  const clients = stores.map((store) => eventStreams(store, { native }));
  for (const [w, streams] of clients.entries()) await streams.append('bench', { w, warm: true });
  counts.clear();
  const per = Math.ceil(total / writers);
  const start = performance.now();
  await Promise.all(
    clients.map(async (streams, w) => {
      for (let i = 0; i < per; i++) await streams.append('bench', { w, i, payload: 'x'.repeat(64) });
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  await Promise.all(stores.map((s) => s.close()));
  const calls = [...counts.entries()].filter(([k]) => k !== 'close').reduce((sum, [, n]) => sum + n, 0);
  return { rate: (per * writers) / seconds, calls: calls / (per * writers) };
}

/** Redis XADD from `writers` connections: the native stream append. */
async function xaddRate(url: string, writers: number): Promise<number> {
  const clients = Array.from({ length: writers }, () => new Redis(url));
  await Promise.all(clients.map((client) => client.ping()));
  const per = Math.ceil(APPENDS / writers);
  const key = `bench-xadd-${writers}`;
  const start = performance.now();
  await Promise.all(
    clients.map(async (client, w) => {
      for (let i = 0; i < per; i++) await client.xadd(key, '*', 'event', JSON.stringify({ w, i, payload: 'x'.repeat(64) }));
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  await Promise.all(clients.map((c) => c.quit()));
  return (per * writers) / seconds;
}

export async function run(): Promise<void> {
  const redis = await startRedis();
  const dir = await mkdtemp(join(tmpdir(), 'cairn-bench-data-'));
  try {
    let prefix = 0;
    // [row name, native layout?, opener per writer count]: each writer gets its own store, as separate clients would.
    const openers: Array<[string, boolean, (writers: number) => () => Promise<Store>]> = [
      // Memory is one process: its writers share one store.
      ['memory', true, () => { const m = memoryStore(); return async () => m; }],
      ['disk (native log, fdatasync per batch)', true, (writers) => { const d = join(dir, `n${writers}`); return () => openDiskStore(d); }],
      ['disk (generic ref layout)', false, (writers) => { const d = join(dir, `g${writers}`); return () => openDiskStore(d); }],
      [REDIS_NATIVE, true, (writers) => { const p = `bench${writers}-${++prefix}:`; return () => openRedisStore({ url: redis.url, keyPrefix: p }); }],
      ['redis (generic ref layout)', false, (writers) => { const p = `bench${writers}-${++prefix}:`; return () => openRedisStore({ url: redis.url, keyPrefix: p }); }],
    ];
    const rows: Row[] = [];
    for (const writers of [1, 8]) {
      for (const [name, native, opener] of openers) {
        const total = native ? APPENDS : GENERIC_APPENDS;
        if (name === REDIS_NATIVE) {
          // Against XADD in alternating rounds, medians: one round of 2,000 lasts a fraction of a second, and
          // on a shared machine single rounds of either swing 2x.
          const ours: number[] = [];
          const xadd: number[] = [];
          let calls = 0;
          for (let round = 0; round < XADD_ROUNDS; round++) {
            const measured = await appendRate(opener(writers), writers, native, total);
            ours.push(measured.rate);
            calls = measured.calls;
            xadd.push(await xaddRate(redis.url, writers));
          }
          const [rate, baseline] = [median(ours), median(xadd)];
          rows.push({ backend: `cairn streams on ${name}`, writers: String(writers), appends: total, 'appends/s': rate, 'store calls/append': calls, 'vs XADD': `${(rate / baseline).toFixed(2)}x` });
          rows.push({ backend: 'baseline: Redis XADD', writers: String(writers), appends: APPENDS, 'appends/s': baseline, 'store calls/append': 1 });
          continue;
        }
        const { rate, calls } = await appendRate(opener(writers), writers, native, total);
        rows.push({ backend: `cairn streams on ${name}`, writers: String(writers), appends: total, 'appends/s': rate, 'store calls/append': calls });
      }
    }
    printTable(
      `Stream appends (events of about 90 bytes; writers concurrent, each awaiting its own; first append per writer untimed; Redis native vs XADD: medians of ${XADD_ROUNDS} alternating rounds)`,
      rows,
    );

    const store = await openRedisStore({ url: redis.url, keyPrefix: 'bench-kv:' });
    const kv = keyValue(store, { encoding: 'json' });
    const raw = new Redis(redis.url);
    const value = { user: 42, name: 'Ada', tags: ['a', 'b'] };
    let i = 0;
    const kvPut = await opsPerSecond(() => kv.put(`k${i++ % 1000}`, value), 1000);
    let j = 0;
    const kvGet = await opsPerSecond(() => kv.get(`k${j++ % 1000}`), 1000);
    let k = 0;
    const rawSet = await opsPerSecond(() => raw.set(`bench-raw:k${k++ % 1000}`, JSON.stringify(value)), 1000);
    let l = 0;
    const rawGet = await opsPerSecond(async () => JSON.parse((await raw.get(`bench-raw:k${l++ % 1000}`))!) as unknown, 1000);
    await raw.quit();
    await store.close();
    printTable('Key-value on Redis, one client, sequential (JSON values)', [
      { operation: 'cairn kv.put (object SET NX + ref script)', 'ops/s': kvPut },
      { operation: 'baseline: ioredis SET', 'ops/s': rawSet },
      { operation: 'cairn kv.get (ref HGET + object GET, verified)', 'ops/s': kvGet },
      { operation: 'baseline: ioredis GET', 'ops/s': rawGet },
    ]);
  } finally {
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
