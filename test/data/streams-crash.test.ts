/**
 * Durability of streams: child processes append (one also truncates) and
 * are killed with SIGKILL at random moments. Afterwards no number was ever
 * handed out twice, every acknowledged event above the highest truncation
 * started is where its append said, and numbering carries on above
 * everything handed out.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskStore, openDiskStore } from '../../src/backends/disk.js';
import { openRedisStore } from '../../src/backends/redis.js';
import { eventStreams } from '../../src/data/streams.js';
import type { Store } from '../../src/index.js';
import { startRedis, type RedisServer } from '../support/redis.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const CHILD = join(ROOT, 'test/data/stream-child.ts');
const ROUNDS = 3;
let dir: string;
let floorFiles = 0;
/** Native: the disk log and the Redis script; refs: the generic protocol (streams made with native: false). */
type Layout = 'native' | 'refs';
const WRITERS = 2;

interface Acked {
  seq: number;
  event: { writer: number; pid: number; i: number };
}

/** Runs the writers until each has acknowledged a few appends plus a random delay, then SIGKILLs them all. */
async function round(kind: string, where: string, layout: Layout, concurrency: number, floorsFile: string): Promise<Acked[]> {
  const acked: Acked[] = [];
  const children = Array.from({ length: WRITERS }, (_, w) =>
    spawn(process.execPath, ['--import', 'tsx', CHILD, kind, where, String(w), layout, String(concurrency)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CAIRN_CRASH_FLOORS: floorsFile },
    }),
  );
  let stderr = '';
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolveChild, reject) => {
          let buffer = '';
          let lines = 0;
          let timer: NodeJS.Timeout | undefined;
          child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
          child.stdout!.on('data', (chunk: Buffer) => {
            buffer += chunk.toString();
            let nl: number;
            while ((nl = buffer.indexOf('\n')) >= 0) {
              acked.push(JSON.parse(buffer.slice(0, nl)) as Acked);
              buffer = buffer.slice(nl + 1);
              if (++lines === 3) timer = setTimeout(() => child.kill('SIGKILL'), 50 + Math.random() * 400);
            }
          });
          child.on('exit', (code, signal) => {
            clearTimeout(timer);
            // A line cut by the kill was never acknowledged to anyone: it does not count.
            if (signal === 'SIGKILL') resolveChild();
            else reject(new Error(`child exited with ${code ?? signal} before it was killed:\n${stderr}`));
          });
        }),
    ),
  );
  return acked;
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

async function checkAfterCrashes(kind: string, where: string, layout: Layout, open: () => Promise<Store>, concurrency = 1): Promise<void> {
  const acked: Acked[] = [];
  const floorsFile = join(dir, `floors-${++floorFiles}`);
  for (let r = 0; r < ROUNDS; r++) acked.push(...(await round(kind, where, layout, concurrency, floorsFile)));
  const floors = (await readFile(floorsFile, 'utf8').catch(() => '')).split('\n').filter(Boolean).map(Number);
  expect(acked.length).toBeGreaterThan(ROUNDS * WRITERS * 2);
  const numbers = acked.map((a) => a.seq);
  expect(new Set(numbers).size).toBe(numbers.length);
  const store = await open();
  try {
    const streams = eventStreams(store);
    // The layout the children used: the generic one keeps a ref per event, a native one none.
    const eventRefs = (await collect(store.listRefs('streams/e/crash/'))).length;
    if (layout === 'native') expect(eventRefs).toBe(0);
    else expect(eventRefs).toBeGreaterThan(0);
    const survivors = (await collect(streams.read('crash'))) as unknown as Acked[];
    const bySeq = new Map(survivors.map((s) => [s.seq, s.event]));
    const floor = Math.max(0, ...floors);
    const present = survivors.length === 0 ? 'none' : `${survivors[0]!.seq}..${survivors[survivors.length - 1]!.seq}`;
    for (const a of acked) {
      if (a.seq > floor) expect(bySeq.get(a.seq), `acknowledged event ${a.seq} (floor ${floor}, survivors ${present})`).toEqual(a.event);
    }
    // No event survives twice (an interrupted append is either in or out, once).
    const ids = survivors.map((s) => `${s.event.pid}/${s.event.i}`);
    expect(new Set(ids).size).toBe(ids.length);
    const last = await streams.lastSeq('crash');
    expect(last).toBeGreaterThanOrEqual(Math.max(...numbers));
    if (layout === 'native') {
      // One record (or one script) per number: the survivors are every number from the floor up, none missing.
      const seqs = survivors.map((s) => s.seq);
      const first = seqs[0] ?? last + 1;
      expect(seqs).toEqual(Array.from({ length: last - first + 1 }, (_, i) => first + i));
    }
    if (store instanceof DiskStore) {
      // A killed writer leaves at most a torn tail, which the next writer cuts; never a damaged record.
      expect(store.recovery.dropped.filter((d) => d.reason !== 'torn-tail')).toEqual([]);
    }
    // A claim a killed writer left above the mark is skipped, and committed, by the next append.
    const next = await streams.append('crash', { after: true });
    expect(next).toBeGreaterThan(last);
    expect(await streams.lastSeq('crash')).toBe(next);
  } finally {
    await store.close();
  }
}

describe('streams survive SIGKILL of their writers', () => {
  let redis: RedisServer;

  beforeAll(async () => {
    redis = await startRedis();
    dir = await mkdtemp(join(tmpdir(), 'cairn-crash-'));
  });

  afterAll(async () => {
    await redis?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it(`disk (native layout, 16 appends in flight per writer, kills inside group commits): ${ROUNDS} rounds of ${WRITERS} killed writers`, async () => {
    const where = join(dir, 'batched');
    await checkAfterCrashes('disk', where, 'native', () => openDiskStore(where), 16);
  }, 120_000);

  for (const layout of ['native', 'refs'] as const) {
    it(`disk (${layout} layout): ${ROUNDS} rounds of ${WRITERS} killed writers`, async () => {
      const where = join(dir, layout);
      await checkAfterCrashes('disk', where, layout, () => openDiskStore(where));
    }, 120_000);

    it(`redis (${layout} layout): ${ROUNDS} rounds of ${WRITERS} killed writers`, async () => {
      // Each layout its own key prefix (the child uses crash:<layout>:).
      await checkAfterCrashes('redis', redis.url, layout, () => openRedisStore({ url: redis.url, keyPrefix: `crash:${layout}:` }));
    }, 120_000);
  }
});
