/**
 * The disk store's native stream log (`src/backends/disk/stream-log.ts`)
 * on its own. Two `StreamLog` instances on one file behave as two
 * processes do: separate descriptors, separate state, one lease between
 * them. Damage is made by hand in the file, as a crash or a bad disk would.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { mkdir, mkdtemp, open, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StreamLog } from '../../src/backends/disk/stream-log.js';
import { encodeRecords, KIND_EVENT } from '../../src/backends/disk/stream-records.js';
import type { DroppedStretch } from '../../src/backends/disk/report.js';
import { AbortError, CorruptStoreError } from '../../src/index.js';

const HEX = 'ab'.repeat(16);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));

let dir: string;
let logs: StreamLog[];
let dropped: DroppedStretch[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-stream-log-'));
  logs = [];
  dropped = [];
});

afterEach(async () => {
  await Promise.all(logs.map((log) => log.close()));
  await rm(dir, { recursive: true, force: true });
});

/** A log of stream `key` in the test directory, as a separate process would open it. */
function openLog(key = 'streams/s', compactAboveBytes = 4 * 1024 * 1024): StreamLog {
  const log = new StreamLog(dir, HEX, key, {
    staleLockMs: 30_000,
    compactAboveBytes,
    ready: async () => {
      await mkdir(dir, { recursive: true });
    },
    onDropped: (stretch) => dropped.push(stretch),
  });
  logs.push(log);
  return log;
}

async function readAll(log: StreamLog, from = 1, limit = Number.POSITIVE_INFINITY): Promise<Array<{ seq: number; event: unknown }>> {
  const out: Array<{ seq: number; event: unknown }> = [];
  for await (const { seq, bytes } of log.read(from, limit)) out.push({ seq, event: JSON.parse(decoder.decode(bytes)) as unknown });
  return out;
}

const logPath = (): string => join(dir, `${HEX}.log`);

/** Offsets of the frames in the file, up to the zeros of the preallocated end. */
async function frameOffsets(): Promise<{ offsets: number[]; end: number }> {
  const file = await readFile(logPath());
  const offsets: number[] = [];
  let pos = 0;
  while (pos + 12 <= file.length && file.readUInt32LE(pos) !== 0) {
    offsets.push(pos);
    pos += 12 + file.readUInt32LE(pos + 8);
  }
  return { offsets, end: pos };
}

async function writeAt(offset: number, data: Uint8Array): Promise<void> {
  const handle = await open(logPath(), 'r+');
  try {
    await handle.write(data, 0, data.length, offset);
  } finally {
    await handle.close();
  }
}

describe('disk stream log', () => {
  it('two instances on one file (two processes) appending at once hand out 1..300, each once, events where their numbers say', async () => {
    const [a, b] = [openLog(), openLog()];
    const results = await Promise.all(
      [a, b].map((log, w) => Promise.all(Array.from({ length: 150 }, (_, i) => log.append(bytes({ w, i }))))),
    );
    expect(results.flat().sort((x, y) => x - y)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    const events = await readAll(openLog());
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    for (const { seq, event } of events) {
      const { w, i } = event as { w: number; i: number };
      expect(results[w]![i]).toBe(seq);
    }
    expect(await a.lastSeq()).toBe(300);
    expect(await b.lastSeq()).toBe(300);
  });

  it('reads honour from and limit, across events larger than a scan window', async () => {
    const log = openLog();
    const big = 'x'.repeat(300_000);
    for (let i = 1; i <= 6; i++) await log.append(bytes(i % 2 === 0 ? { i, big } : { i }));
    const fresh = openLog();
    const all = await readAll(fresh);
    expect(all.map((e) => (e.event as { i: number }).i)).toEqual([1, 2, 3, 4, 5, 6]);
    expect((all[1]!.event as { big: string }).big).toBe(big);
    expect((await readAll(fresh, 3, 2)).map((e) => e.seq)).toEqual([3, 4]);
    expect(await readAll(fresh, 7)).toEqual([]);
    expect(await readAll(fresh, 1, 0)).toEqual([]);
  });

  it('a torn tail (half a record, as a kill mid-write leaves) is never read, is cut and reported by the next writer, and numbering goes on after the last whole record', async () => {
    const first = openLog();
    for (let i = 1; i <= 5; i++) await first.append(bytes({ i }));
    await first.close();
    const { end } = await frameOffsets();
    const torn = encodeRecords([{ kind: KIND_EVENT, a: 6, b: 0, payload: bytes({ i: 'torn' }) }]);
    await writeAt(end, torn.subarray(0, torn.length - 7));

    const next = openLog();
    expect(await next.lastSeq()).toBe(5);
    expect((await readAll(next)).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(dropped).toEqual([]); // a reader never cuts: the bytes may be a write in progress
    expect(await next.append(bytes({ i: 6 }))).toBe(6);
    expect(dropped).toHaveLength(1);
    expect(dropped[0]).toMatchObject({ offset: end, reason: 'torn-tail' });
    expect((await readAll(openLog())).map((e) => e.event)).toEqual([1, 2, 3, 4, 5, 6].map((i) => ({ i })));
  });

  it('a whole record left beyond the zeros of the preallocated end (an unsynced batch after a power cut) is never read and is cut', async () => {
    const first = openLog();
    for (let i = 1; i <= 3; i++) await first.append(bytes({ i }));
    await first.close();
    const { end } = await frameOffsets();
    await writeAt(end + 100, encodeRecords([{ kind: KIND_EVENT, a: 4, b: 0, payload: bytes('ghost') }]));

    const next = openLog();
    expect(await next.lastSeq()).toBe(3);
    expect(await next.append(bytes({ i: 4 }))).toBe(4);
    expect(dropped.map((d) => d.reason)).toEqual(['torn-tail']);
    const events = await readAll(openLog());
    expect(events.map((e) => e.event)).toEqual([1, 2, 3, 4].map((i) => ({ i })));
    // The ghost is gone from the file, not just skipped: appends far past its offset read back whole.
    for (let i = 5; i <= 40; i++) await next.append(bytes({ i }));
    expect((await readAll(openLog())).map((e) => e.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
  });

  it('a damaged record is skipped and reported, never read; the records around it are', async () => {
    const first = openLog();
    for (let i = 1; i <= 5; i++) await first.append(bytes({ i, pad: 'p'.repeat(40) }));
    await first.close();
    const { offsets } = await frameOffsets();
    // offsets[0] is the base record; offsets[3] is event 3. Flip a byte of its payload.
    const file = await readFile(logPath());
    const at = offsets[3]! + 12 + 24 + 5;
    await writeAt(at, Buffer.from([file[at]! ^ 0xff]));

    const next = openLog();
    expect((await readAll(next)).map((e) => e.seq)).toEqual([1, 2, 4, 5]);
    expect(dropped).toEqual([expect.objectContaining({ offset: offsets[3], reason: 'corrupt' })]);
    expect(await next.lastSeq()).toBe(5);
    expect(await next.append(bytes({ i: 6 }))).toBe(6);
  });

  it('a log file that belongs to another stream is refused with CorruptStoreError and left as it was', async () => {
    const other = openLog('streams/other');
    await other.append(bytes('theirs'));
    await other.close();
    const before = await readFile(logPath());
    const mine = openLog('streams/mine');
    await expect(mine.lastSeq()).rejects.toBeInstanceOf(CorruptStoreError);
    await expect(mine.append(bytes('mine'))).rejects.toBeInstanceOf(CorruptStoreError);
    expect((await readFile(logPath())).equals(before)).toBe(true);
  });

  it('truncation drops events for good and keeps numbering; once they dominate the file is rewritten, and another instance reloads it', async () => {
    const writer = openLog('streams/s', 1024);
    const other = openLog('streams/s', 1024);
    for (let i = 1; i <= 100; i++) await writer.append(bytes({ i, pad: 'p'.repeat(80) }));
    expect((await readAll(other)).length).toBe(100); // the other instance has indexed the old file
    const sizeBefore = (await stat(logPath())).size;

    expect(await writer.truncate(90)).toBe(90);
    expect(await writer.truncate(50)).toBe(90); // below the floor: nothing more
    expect((await stat(logPath())).size).toBeLessThan(sizeBefore / 4);
    expect((await readAll(writer)).map((e) => e.seq)).toEqual([91, 92, 93, 94, 95, 96, 97, 98, 99, 100]);

    expect(await other.lastSeq()).toBe(100);
    expect((await readAll(other)).map((e) => e.seq)).toEqual([91, 92, 93, 94, 95, 96, 97, 98, 99, 100]);
    expect(await other.append(bytes({ i: 101 }))).toBe(101);
    expect(await writer.append(bytes({ i: 102 }))).toBe(102);
    expect(await writer.truncate(Number.POSITIVE_INFINITY)).toBe(102);
    expect(await readAll(other)).toEqual([]);
    expect(await other.append(bytes({ i: 103 }))).toBe(103);
    const fresh = openLog('streams/s', 1024);
    expect(await readAll(fresh)).toEqual([{ seq: 103, event: { i: 103 } }]);
  });

  it('an append whose signal fires while it waits for the lease never happens', async () => {
    await mkdir(dir, { recursive: true });
    // Another (live) holder of the lease: this process's own pid, a token nobody else has.
    const lock = join(dir, `${HEX}.lock`);
    await writeFile(lock, JSON.stringify({ pid: process.pid, host: hostname(), boot: '', token: randomBytes(8).toString('hex') }));
    const log = openLog();
    const controller = new AbortController();
    const waiting = log.append(bytes('aborted'), controller.signal);
    await new Promise((resolve) => setTimeout(resolve, 50));
    controller.abort();
    await expect(waiting).rejects.toBeInstanceOf(AbortError);
    await unlink(lock);
    expect(await log.append(bytes('kept'))).toBe(1);
    expect(await readAll(openLog())).toEqual([{ seq: 1, event: 'kept' }]);
  });

  it('two instances appending flat out both get turns (a busy holder yields the lease to a waiting one)', async () => {
    const [a, b] = [openLog(), openLog()];
    const counts = [0, 0];
    const until = performance.now() + 1500;
    await Promise.all(
      [a, b].map(async (log, w) => {
        // Several appends in flight, so the holder is never idle and never lets go on its own.
        await Promise.all(
          Array.from({ length: 4 }, async () => {
            while (performance.now() < until) {
              await log.append(bytes({ w }));
              counts[w]!++;
            }
          }),
        );
      }),
    );
    const total = counts[0]! + counts[1]!;
    expect(Math.min(...counts)).toBeGreaterThan(total * 0.1);
    expect(await a.lastSeq()).toBe(total);
  }, 20_000);
});
