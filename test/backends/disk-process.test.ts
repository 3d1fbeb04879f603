/**
 * Several processes (and several stores in one process) sharing one disk
 * store directory, and compaction.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openDiskStore } from '../../src/backends/disk.js';
import { hashBytes, type Hash, type RefValue } from '../../src/index.js';
import { bundleChild, watchChild, type BundledChild } from './disk/spawn.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytesOf = (text: string): Uint8Array => encoder.encode(text);
const hashOf = (text: string): Hash => hashBytes(bytesOf(text));

let base: string;
let root: string;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'cairn-proc-'));
  root = join(base, 'store');
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

async function segmentBytes(): Promise<number> {
  let total = 0;
  for (const name of await readdir(join(root, 'segments'))) total += (await stat(join(root, 'segments', name))).size;
  return total;
}

describe('disk store: across processes', () => {
  let child: BundledChild;
  beforeAll(async () => {
    child = await bundleChild();
  });
  afterAll(async () => {
    await child?.dispose();
  });

  it('4 processes x 100 read-then-swap increments end at exactly 400, and a watcher here sees them', async () => {
    const store = await openDiskStore(root);
    const seen: Array<RefValue | undefined> = [];
    const watching = new AbortController();
    await store.watchRef('counter', (value) => seen.push(value), { signal: watching.signal, intervalMs: 20 });
    try {
      const children = Array.from({ length: 4 }, () => watchChild(child.start(['increment', root, '100'])));
      const codes = await Promise.all(children.map((c) => c.exited));
      expect(codes, children.map((c) => c.stderr()).join('\n')).toEqual([0, 0, 0, 0]);
      const retries = children.reduce((sum, c) => sum + Number(c.lines.at(-1)?.split(' ')[1]), 0);
      const final = await store.getRef('counter');
      // The objects were written by the children, into their own segments: found on a lookup miss.
      expect(decoder.decode(await store.get(final!.hash))).toBe('400');
      await expect.poll(() => seen.at(-1)?.version, { timeout: 5000 }).toBe(final!.version);
      // Every change is a record in the log, so the watcher saw each increment, in order.
      const values = await Promise.all(seen.map(async (v) => Number(decoder.decode(await store.get(v!.hash)))));
      expect(values).toEqual(Array.from({ length: 400 }, (_, i) => i + 1));
      console.log(`cross-process: 400 increments, ${retries} lost races retried`);
    } finally {
      watching.abort();
      await store.close();
    }
  }, 60_000);
});

describe('disk store: ref log rewrite', () => {
  it('rewrites a long ref log; another store follows the new file and versions never repeat', async () => {
    const a = await openDiskStore(root, { refLogMaxBytes: 4096 });
    const b = await openDiskStore(root);
    const hashes = await a.putMany(Array.from({ length: 10 }, (_, i) => bytesOf(`v${i}`)));
    const versions = new Set<string>();
    const seen: string[] = [];
    const watching = new AbortController();
    await b.watchRef('heads/hot', (v) => seen.push(v?.version ?? 'deleted'), { signal: watching.signal, intervalMs: 10 });
    for (let i = 0; i < 400; i++) {
      const value = await a.setRef(`heads/${i % 3 === 0 ? 'hot' : 'cold'}`, hashes[i % 10]!);
      expect(versions.has(value.version)).toBe(false);
      versions.add(value.version);
      if (i % 50 === 0) await a.deleteRef('heads/gone');
    }
    const last = await a.getRef('heads/hot');
    expect((await b.getRef('heads/hot'))?.version).toBe(last!.version);
    await expect.poll(() => seen.at(-1), { timeout: 5000 }).toBe(last!.version);
    watching.abort();
    expect((await stat(join(root, 'refs', 'log'))).size).toBeLessThan(8192);
    await a.close();
    await b.close();
    const c = await openDiskStore(root);
    expect((await c.getRef('heads/hot'))?.version).toBe(last!.version);
    const after = await c.setRef('heads/hot', hashes[0]!);
    expect(versions.has(after.version)).toBe(false);
    await c.close();
  });
});

describe('disk store: lock recovery', () => {
  it('breaks a ref lock left by a process that died, at once', async () => {
    const store = await openDiskStore(root);
    const hash = await store.put(bytesOf('lock'));
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const holder = { pid: Number(dead.stdout), host: hostname(), boot: '', token: 'dead-holder' };
    await writeFile(join(root, 'refs', 'lock'), JSON.stringify(holder));
    const started = Date.now();
    await store.setRef('heads/after-crash', hash);
    expect(Date.now() - started).toBeLessThan(2000);
    await store.close();
  });

  it('breaks a lock older than staleLockMs even if its pid is alive', async () => {
    const store = await openDiskStore(root, { staleLockMs: 300 });
    const hash = await store.put(bytesOf('stale'));
    const holder = { pid: process.pid, host: hostname(), boot: '', token: 'hung-holder' };
    await writeFile(join(root, 'refs', 'lock'), JSON.stringify(holder));
    const started = Date.now();
    await store.setRef('heads/after-stale', hash);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect((await store.getRef('heads/after-stale'))?.hash.equals(hash)).toBe(true);
    await store.close();
  });
});

describe('disk store: shared directory and compaction', () => {
  it('two stores on one directory see each other’s objects and refs', async () => {
    const a = await openDiskStore(root);
    const b = await openDiskStore(root);
    const hash = await a.put(bytesOf('from a'));
    expect(decoder.decode(await b.get(hash))).toBe('from a');
    await b.setRef('heads/shared', hash);
    expect((await a.getRef('heads/shared'))?.hash.equals(hash)).toBe(true);
    const results = await Promise.all([a.compareAndSwap('heads/race', null, hash), b.compareAndSwap('heads/race', null, hash)]);
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    await a.close();
    await b.close();
  });

  it('compaction reclaims deleted objects, keeps the rest readable during and after, and survives reopen', async () => {
    const store = await openDiskStore(root, { segmentMaxBytes: 64 * 1024, autoCompact: false });
    const items = Array.from({ length: 300 }, (_, i) => bytesOf(`object ${i} `.padEnd(2048, String(i % 10))));
    const hashes = await store.putMany(items);
    for (let i = 0; i < 300; i += 50) await store.putMany(items.slice(i, i + 50)); // no-ops: already present
    const doomed = hashes.filter((_, i) => i % 4 !== 0);
    const kept = hashes.filter((_, i) => i % 4 === 0);
    await Promise.all(doomed.map((h) => store.delete(h)));
    const before = await segmentBytes();

    // Reads go on while compaction runs.
    let reading = true;
    let reads = 0;
    const reader = (async () => {
      while (reading) {
        for (const h of kept.slice(0, 20)) {
          await store.get(h);
          reads++;
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    const result = await store.compact();
    reading = false;
    await reader;
    expect(reads).toBeGreaterThan(0);
    expect(result.segmentsCompacted).toBeGreaterThan(1);
    const after = await segmentBytes();
    expect(after).toBeLessThan(before / 2);

    for (const h of kept) expect(await store.has(h)).toBe(true);
    for (const h of doomed) expect(await store.has(h)).toBe(false);
    const added = await store.put(bytesOf('after compaction'));
    await store.close();

    for (const fullScan of [false, true]) {
      const again = await openDiskStore(root, { fullScan });
      expect(await again.getMany(kept)).toHaveLength(kept.length);
      expect(await again.has(added)).toBe(true);
      // Deleted objects stay deleted: their tombstones went only where no older copy remains.
      expect((await again.hasMany(doomed)).every((present) => !present)).toBe(true);
      let listed = 0;
      for await (const _ of again.listObjects()) listed++;
      expect(listed).toBe(kept.length + 1);
      await again.close();
    }
  });

  it('compacts in the background once most segment bytes are deleted', async () => {
    const store = await openDiskStore(root, { segmentMaxBytes: 32 * 1024 });
    const hashes = await store.putMany(Array.from({ length: 200 }, (_, i) => bytesOf(`auto ${i} `.padEnd(1500, 'x'))));
    const before = await segmentBytes();
    for (const h of hashes.slice(0, 180)) await store.delete(h);
    await expect.poll(segmentBytes, { timeout: 10_000 }).toBeLessThan(before / 3);
    expect(await store.getMany(hashes.slice(180))).toHaveLength(20);
    await store.close();
  });

  it('compactions racing with writes, deletes and lookup misses lose nothing acknowledged', async () => {
    const store = await openDiskStore(root, { segmentMaxBytes: 16 * 1024, autoCompact: false });
    const other = await openDiskStore(root);
    const kept: string[] = [];
    const deleted: string[] = [];
    let running = true;
    const writer = async (w: number): Promise<void> => {
      for (let i = 0; running; i++) {
        const hash = await store.put(bytesOf(`w${w} ${i} `.padEnd(700, '-')));
        if (i % 3 === 0) {
          await store.delete(hash);
          deleted.push(hash.toString());
        } else {
          kept.push(hash.toString());
        }
        // Misses make the store re-read the segments directory while compactions run.
        await store.has(hashOf(`missing ${w} ${i}`));
      }
    };
    const compactor = async (): Promise<void> => {
      while (running) {
        await store.compact();
        await other.compact();
      }
    };
    const work = [writer(0), writer(1), writer(2), compactor()];
    await new Promise((resolve) => setTimeout(resolve, 1500));
    running = false;
    await Promise.all(work);
    expect(kept.length).toBeGreaterThan(20);
    expect(await store.getMany(kept)).toHaveLength(kept.length);
    await store.close();
    await other.close();
    const again = await openDiskStore(root);
    expect(await again.getMany(kept)).toHaveLength(kept.length);
    expect((await again.hasMany(deleted)).filter(Boolean)).toEqual([]);
    await again.close();
  });

  it('a store keeps reading after another store compacted the segments under it', async () => {
    const writer = await openDiskStore(root, { segmentMaxBytes: 16 * 1024 });
    const hashes = await writer.putMany(Array.from({ length: 100 }, (_, i) => bytesOf(`shared ${i}`.padEnd(1000, '.'))));
    await writer.close();
    const a = await openDiskStore(root, { autoCompact: false });
    const b = await openDiskStore(root);
    expect(await b.getMany(hashes.slice(0, 10))).toHaveLength(10);
    for (const h of hashes.slice(50)) await a.delete(h);
    const result = await a.compact();
    expect(result.segmentsCompacted).toBeGreaterThan(1);
    // b's index still points into removed segments: it follows the records to the new one.
    const got = await b.getMany(hashes.slice(0, 50));
    expect(got.map((x) => decoder.decode(x).trimEnd().replace(/\.+$/, ''))).toEqual(hashes.slice(0, 50).map((_, i) => `shared ${i}`));
    await a.close();
    await b.close();
  });
});
