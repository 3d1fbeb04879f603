/**
 * Snapshots against hostile input (issue 12): crafted trees (DAG bombs,
 * deep chains, entries that lie about their size, trees restore refuses),
 * missing objects, and odd local input. Each case ends with a typed error
 * and nothing written, or with the right answer.
 */
import { lstat, mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  collectGarbage,
  CorruptStoreError,
  diffSnapshots,
  encodeTree,
  InvalidArgumentError,
  LimitExceededError,
  memoryStore,
  NotFoundError,
  restore,
  snapshot,
  verifyStore,
  type Hash,
  type HashLike,
  type Store,
  type TreeEntry,
} from '../../src/index.js';

let work: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-hostile-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const putTree = (store: Store, entries: TreeEntry[]): Promise<Hash> => store.put(encodeTree(entries));
const rawTree = (store: Store, entries: unknown[]): Promise<Hash> => store.put(text(JSON.stringify({ cairn: 'tree/v1', entries })));

/** `levels` trees, each naming the one below twice: 2^levels paths from a few KB. */
async function dagBomb(store: Store, levels: number): Promise<Hash> {
  const leaf = await store.put(text('x'));
  let tree = await putTree(store, [{ name: 'f', type: 'file', mode: 0o644, size: 1, hash: leaf }]);
  for (let i = 0; i < levels; i++) {
    tree = await putTree(store, [
      { name: 'a', type: 'dir', mode: 0o755, hash: tree },
      { name: 'b', type: 'dir', mode: 0o755, hash: tree },
    ]);
  }
  return tree;
}

/** A chain of `depth` trees, each holding only the next. */
async function chain(store: Store, depth: number, leafText: string): Promise<Hash> {
  let tree = await putTree(store, [{ name: 'leaf', type: 'file', mode: 0o644, size: leafText.length, hash: await store.put(text(leafText)) }]);
  for (let i = 0; i < depth; i++) tree = await putTree(store, [{ name: 'd', type: 'dir', mode: 0o755, hash: tree }]);
  return tree;
}

/** Counts whole-object reads per hash (get, getMany, getStream), passing everything else through. */
function countingStore(inner: Store): { store: Store; reads: Map<string, number> } {
  const reads = new Map<string, number>();
  const count = (h: HashLike): void => void reads.set(h.toString(), (reads.get(h.toString()) ?? 0) + 1);
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      if (prop === 'get' || prop === 'getStream') {
        return (h: HashLike, ...rest: unknown[]) => {
          count(h);
          return (value as (...a: unknown[]) => unknown).call(target, h, ...rest);
        };
      }
      if (prop === 'getMany') {
        return (hs: HashLike[], ...rest: unknown[]) => {
          hs.forEach(count);
          return (value as (...a: unknown[]) => unknown).call(target, hs, ...rest);
        };
      }
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  });
  return { store, reads };
}

describe('DAG bombs (5)', () => {
  it('restore refuses a snapshot expanding past --max-files before writing anything, reading each distinct tree once', async () => {
    const { store, reads } = countingStore(memoryStore());
    const bomb = await dagBomb(store, 60); // 2^60 files
    reads.clear();
    const started = Date.now();
    const error = await restore(store, bomb, join(work, 'out')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LimitExceededError);
    expect((error as Error).message).toMatch(/more than 10,000,000 files.*--max-files/);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(Math.max(...reads.values())).toBe(1);
    expect(await readdir(work)).toEqual([]);
  });

  it('restores a bomb within raised limits, streaming (files written = files expanded)', async () => {
    const store = memoryStore();
    const bomb = await dagBomb(store, 10); // 1,024 files, 2,046 dirs
    await expect(restore(store, bomb, join(work, 'small'), { maxFiles: 1000 })).rejects.toBeInstanceOf(LimitExceededError);
    const result = await restore(store, bomb, join(work, 'out'), { maxFiles: 4000 });
    expect(result).toMatchObject({ files: 1024, dirs: 2047, bytes: 1024 });
    expect((await readdir(join(work, 'out'), { recursive: true })).length).toBe(1024 + 2046);
  });

  it('refuses on --max-bytes, counted from what entries declare', async () => {
    const store = memoryStore();
    const big = await putTree(store, [{ name: 'f', type: 'file', mode: 0o644, size: 2 ** 40, hash: await store.put(text('x')) }]);
    await expect(restore(store, big, join(work, 'out'), { maxBytes: 2 ** 30 })).rejects.toThrow(/more than .* bytes.*--max-bytes/);
    expect(await readdir(work)).toEqual([]);
  });

  it('verify and gc walk each distinct object once: a 2^60 bomb costs a few reads', async () => {
    const { store, reads } = countingStore(memoryStore());
    await store.setRef('snapshots/bomb', await dagBomb(store, 60));
    reads.clear();
    const verified = await verifyStore(store);
    expect(verified.ok).toBe(true);
    const gc = await collectGarbage(store, { graceMs: 0 });
    expect(gc.unreachable).toEqual([]);
    expect(Math.max(...reads.values())).toBeLessThanOrEqual(3); // verify's re-hash, its walk, gc's walk
  });

  it('diff of two bombs stops at --max-files with a typed error', async () => {
    const store = memoryStore();
    const a = await dagBomb(store, 40);
    const b = await putTree(store, [{ name: 'z', type: 'dir', mode: 0o755, hash: a }]);
    await expect(diffSnapshots(store, a, b, { maxFiles: 5000 })).rejects.toBeInstanceOf(LimitExceededError);
  });

  it('honours an abort signal during a restore of a large expansion, leaving nothing', async () => {
    const store = memoryStore();
    const bomb = await dagBomb(store, 14); // 16,384 files
    const controller = new AbortController();
    let seen = 0;
    const run = restore(store, bomb, join(work, 'out'), {
      signal: controller.signal,
      onProgress: (p) => {
        if (p.done > 0 && ++seen === 1) controller.abort();
      },
    });
    await expect(run).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    expect(await readdir(work)).toEqual([]);
  });
});

describe('deep chains (6)', () => {
  it('a 20,000-deep chain (the issue used 100,000; the limit stops both alike): restore and diff end quickly with a typed depth error and a short message', async () => {
    const store = memoryStore();
    const a = await chain(store, 20_000, 'a');
    const b = await chain(store, 20_000, 'b');
    const started = Date.now();
    const restoring = await restore(store, a, join(work, 'out')).catch((e: unknown) => e);
    expect(restoring).toBeInstanceOf(LimitExceededError);
    expect((restoring as Error).message).toMatch(/more than 512 directories deep.*--max-depth/);
    expect((restoring as Error).message.length).toBeLessThan(300);
    const diffing = await diffSnapshots(store, a, b).catch((e: unknown) => e);
    expect(diffing).toBeInstanceOf(LimitExceededError);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await readdir(work)).toEqual([]);
  });

  it('diff walks iteratively: two 2,000-deep chains differ in one leaf, found with the limit raised', async () => {
    const store = memoryStore();
    const a = await chain(store, 2_000, 'a');
    const b = await chain(store, 2_000, 'b');
    const changes = await diffSnapshots(store, a, b, { maxDepth: 5_000 });
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ change: 'modified', path: `${'d/'.repeat(2_000)}leaf` });
  });

  it('a path longer than the file system takes is refused before writing (not ENAMETOOLONG)', async () => {
    const store = memoryStore();
    const long = 'n'.repeat(200);
    let tree = await putTree(store, [{ name: 'leaf', type: 'file', mode: 0o644, size: 1, hash: await store.put(text('x')) }]);
    for (let i = 0; i < 30; i++) tree = await putTree(store, [{ name: long, type: 'dir', mode: 0o755, hash: tree }]);
    const error = await restore(store, tree, join(work, 'out')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LimitExceededError);
    expect((error as Error).message).toMatch(/path of \d+ bytes, too long/);
    expect(await readdir(work)).toEqual([]);
  });

  it('a name over 255 bytes is refused with its length and a cut name', async () => {
    const store = memoryStore();
    const tree = await putTree(store, [{ name: 'x'.repeat(5000), type: 'file', mode: 0o644, size: 1, hash: await store.put(text('x')) }]);
    const error = await restore(store, tree, join(work, 'out')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LimitExceededError);
    expect((error as Error).message).toMatch(/name of 5000 bytes/);
    expect((error as Error).message.length).toBeLessThan(400);
  });
});

describe('entries that lie about their size (7)', () => {
  it.each([
    ['a small-file entry', 10],
    ['a large-file entry', 300 * 1024],
  ])('%s naming a much larger object is refused without reading it', async (_, declared) => {
    const { store, reads } = countingStore(memoryStore());
    const huge = await store.put(new Uint8Array(8 * 2 ** 20));
    const root = await putTree(store, [{ name: 'f', type: 'file', mode: 0o644, size: declared, hash: huge }]);
    const error = await restore(store, root, join(work, 'out')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CorruptStoreError);
    expect((error as Error).message).toMatch(/should have \d+ bytes but its content .* has more than/);
    expect(reads.get(huge.toString())).toBeUndefined();
    expect(await readdir(work)).toEqual([]);
  });

  it('a chunked entry whose chunk list is far longer than such a file could need is refused unread', async () => {
    const { store, reads } = countingStore(memoryStore());
    const list = await store.put(text(`{"cairn":"chunks/v1","size":10,"chunks":[${'0'.repeat(4_000_000)}]}`));
    const root = await putTree(store, [{ name: 'f', type: 'file', mode: 0o644, size: 10, chunks: list }]);
    await expect(restore(store, root, join(work, 'out'))).rejects.toThrow(/chunk list .* is longer than such a file's could be/);
    expect(reads.get(list.toString())).toBeUndefined();
  });
});

describe('trees restore refuses are reported by verify and stop gc (8)', () => {
  it.each([
    ['duplicate names', [{ name: 'a', type: 'file', mode: 420, size: 1 }, { name: 'a', type: 'file', mode: 420, size: 1 }]],
    ['a ".." name', [{ name: '..', type: 'file', mode: 420, size: 1 }]],
    ['a bad mode', [{ name: 'a', type: 'file', mode: 4095, size: 1 }]],
  ])('%s', async (_, entries) => {
    const store = memoryStore();
    const leaf = await store.put(text('x'));
    const bad = await rawTree(store, entries.map((e) => ({ ...e, hash: leaf.toString() })));
    const root = await putTree(store, [{ name: 'sub', type: 'dir', mode: 0o755, hash: bad }]);
    await store.setRef('snapshots/bad', root);
    await expect(restore(store, root, join(work, 'out'))).rejects.toBeInstanceOf(CorruptStoreError);
    const verified = await verifyStore(store);
    expect(verified.ok).toBe(false);
    expect(verified.invalid).toEqual([{ hash: bad.toString(), problem: expect.stringContaining(bad.toString()) }]);
    await expect(collectGarbage(store, { graceMs: 0, dryRun: false })).rejects.toBeInstanceOf(CorruptStoreError);
    expect(await store.has(leaf)).toBe(true);
  });
});

describe('gc with a missing reachable object (10)', () => {
  it('stops instead of listing the snapshot\'s surviving chunks as garbage, unless allowed', async () => {
    const store = memoryStore();
    const chunk = await store.put(text('survivor'));
    const sub = await putTree(store, [{ name: 'f', type: 'file', mode: 0o644, size: 8, hash: chunk }]);
    const root = await putTree(store, [{ name: 'sub', type: 'dir', mode: 0o755, hash: sub }]);
    await store.setRef('snapshots/s', root);
    await store.delete(root);
    const error = await collectGarbage(store, { graceMs: 0, dryRun: false }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NotFoundError);
    expect((error as Error).message).toMatch(/missing .*--allow-missing/);
    expect(await store.has(chunk)).toBe(true);
    const ok = await collectGarbage(store, { graceMs: 0, allowMissing: async (hs) => hs.map(() => true) });
    expect([...ok.unreachable].sort()).toEqual([chunk.toString(), sub.toString()].sort());
  });
});

describe('odd local input', () => {
  it('a symlink whose target is not UTF-8 is refused at snapshot time (2)', async () => {
    const src = join(work, 'src');
    await mkdir(src);
    await symlink(Buffer.from([0x74, 0x67, 0x74, 0x2d, 0xff, 0xfe]), join(src, 'bad-link'));
    const store = memoryStore();
    const error = await snapshot(store, src).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toMatch(/symbolic link whose target is not valid UTF-8/);
  });

  it('a crafted tree with a link target that is not valid Unicode is refused (2)', async () => {
    const store = memoryStore();
    const root = await store.put(text(`{"cairn":"tree/v1","entries":[{"name":"l","type":"symlink","target":"tgt-\\ud800"}]}`));
    await expect(restore(store, root, join(work, 'out'))).rejects.toBeInstanceOf(CorruptStoreError);
  });

  it('a restore target that is a symlink is refused up front (11)', async () => {
    const store = memoryStore();
    const root = await putTree(store, []);
    await mkdir(join(work, 'real'));
    await symlink(join(work, 'real'), join(work, 'link'));
    await expect(restore(store, root, join(work, 'link'))).rejects.toThrow(/is a symbolic link/);
    await expect(restore(store, root, join(work, 'y'.repeat(300)))).rejects.toThrow(/too long \(a name of 300 bytes/);
    expect((await readdir(work)).sort()).toEqual(['link', 'real']);
  });

  it('modes from the snapshot get the umask unless exactModes (14)', async () => {
    const store = memoryStore();
    const content = await store.put(text('x'));
    const sub = await putTree(store, []);
    const root = await putTree(store, [
      { name: 'f', type: 'file', mode: 0o777, size: 1, hash: content },
      { name: 'd', type: 'dir', mode: 0o777, hash: sub },
    ]);
    const previous = process.umask(0o022);
    try {
      await restore(store, root, join(work, 'masked'));
      expect((await stat(join(work, 'masked/f'))).mode & 0o777).toBe(0o755);
      expect((await stat(join(work, 'masked/d'))).mode & 0o777).toBe(0o755);
      await restore(store, root, join(work, 'exact'), { exactModes: true });
      expect((await stat(join(work, 'exact/f'))).mode & 0o777).toBe(0o777);
      expect((await lstat(join(work, 'exact/d'))).mode & 0o777).toBe(0o777);
    } finally {
      process.umask(previous);
    }
  });

  it('a stale staging directory of a dead process is swept by the next restore; a live one is kept (14)', async () => {
    const store = memoryStore();
    const root = await putTree(store, [{ name: 'f', type: 'file', mode: 0o644, size: 1, hash: await store.put(text('x')) }]);
    // pid 2^22+1 is above Linux's pid_max default range: no such process.
    const dead = join(work, '.out.cairn-restore-4194305-abcdef');
    const live = join(work, `.out.cairn-restore-${process.ppid}-abcdef`);
    for (const dir of [dead, live]) {
      await mkdir(join(dir, 'locked'), { recursive: true });
      await writeFile(join(dir, 'locked/file'), 'partial');
    }
    await (await import('node:fs/promises')).chmod(join(dead, 'locked'), 0o555);
    await restore(store, root, join(work, 'out'));
    expect((await readdir(work)).sort()).toEqual([`.out.cairn-restore-${process.ppid}-abcdef`, 'out']);
  });
});
