/**
 * Durability of streams: child processes append (one also truncates) and
 * are killed with SIGKILL at random moments. Afterwards no number was ever
 * handed out twice, every acknowledged event above the highest truncation
 * started is where its append said, and numbering carries on above
 * everything handed out.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDiskStore } from '../../src/backends/disk.js';
import { openRedisStore } from '../../src/backends/redis.js';
import { eventStreams } from '../../src/data/streams.js';
import type { Store } from '../../src/index.js';
import { startRedis, type RedisServer } from '../support/redis.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const CHILD = join(ROOT, 'test/data/stream-child.ts');
const ROUNDS = 3;
const WRITERS = 2;

interface Acked {
  seq: number;
  event: { writer: number; pid: number; i: number };
}

/** Runs the writers until each has acknowledged a few appends plus a random delay, then SIGKILLs them all. */
async function round(kind: string, where: string): Promise<{ acked: Acked[]; floors: number[] }> {
  const acked: Acked[] = [];
  const floors: number[] = [];
  const children = Array.from({ length: WRITERS }, (_, w) =>
    spawn(process.execPath, ['--import', 'tsx', CHILD, kind, where, String(w)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }),
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
              const line = JSON.parse(buffer.slice(0, nl)) as Acked | { floor: number };
              buffer = buffer.slice(nl + 1);
              if ('floor' in line) floors.push(line.floor);
              else acked.push(line);
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
  return { acked, floors };
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

async function checkAfterCrashes(kind: string, where: string, open: () => Promise<Store>): Promise<void> {
  const acked: Acked[] = [];
  const floors: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const result = await round(kind, where);
    acked.push(...result.acked);
    floors.push(...result.floors);
  }
  expect(acked.length).toBeGreaterThan(ROUNDS * WRITERS * 2);
  const numbers = acked.map((a) => a.seq);
  expect(new Set(numbers).size).toBe(numbers.length);
  const store = await open();
  try {
    const streams = eventStreams(store);
    const survivors = (await collect(streams.read('crash'))) as unknown as Acked[];
    const bySeq = new Map(survivors.map((s) => [s.seq, s.event]));
    const floor = Math.max(0, ...floors);
    for (const a of acked) if (a.seq > floor) expect(bySeq.get(a.seq)).toEqual(a.event);
    // No event survives twice (an interrupted append is either in or out, once).
    const ids = survivors.map((s) => `${s.event.pid}/${s.event.i}`);
    expect(new Set(ids).size).toBe(ids.length);
    const last = await streams.lastSeq('crash');
    expect(last).toBeGreaterThanOrEqual(Math.max(...numbers));
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
  let dir: string;

  beforeAll(async () => {
    redis = await startRedis();
    dir = await mkdtemp(join(tmpdir(), 'cairn-crash-'));
  });

  afterAll(async () => {
    await redis?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it(`disk: ${ROUNDS} rounds of ${WRITERS} killed writers`, async () => {
    await checkAfterCrashes('disk', dir, () => openDiskStore(dir));
  }, 120_000);

  it(`redis: ${ROUNDS} rounds of ${WRITERS} killed writers`, async () => {
    await checkAfterCrashes('redis', redis.url, () => openRedisStore({ url: redis.url, keyPrefix: 'crash:' }));
  }, 120_000);
});
