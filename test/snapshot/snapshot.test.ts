import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AbortError,
  chunkBytes,
  chunkStream,
  collectGarbage,
  CorruptStoreError,
  decodeTree,
  diffSnapshots,
  encodeTree,
  hashBytes,
  InvalidArgumentError,
  memoryStore,
  NotFoundError,
  restore,
  snapshot,
  verifyStore,
  type Hash,
  type HashLike,
  type Store,
} from '../../src/index.js';
import { describeTree, makeMixedTree } from './fixtures.js';

let work: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-snap-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('chunker', () => {
  const data = randomBytes(4 * 1024 * 1024);

  it('cuts within the bounds, and streams cut exactly where buffers do', async () => {
    const chunks = chunkBytes(data);
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    for (const c of chunks.slice(0, -1)) {
      expect(c.length).toBeGreaterThanOrEqual(16 * 1024);
      expect(c.length).toBeLessThanOrEqual(256 * 1024);
    }
    const avg = data.length / chunks.length;
    expect(avg).toBeGreaterThan(32 * 1024);
    expect(avg).toBeLessThan(128 * 1024);
    // Odd-sized input pieces must not move any cut.
    const pieces = function* (): Iterable<Uint8Array> {
      for (let i = 0; i < data.length; i += 7919) yield data.subarray(i, i + 7919);
    };
    const streamed: Uint8Array[] = [];
    for await (const c of chunkStream(pieces())) streamed.push(c);
    expect(streamed.map((c) => hashBytes(c).hex)).toEqual(chunks.map((c) => hashBytes(c).hex));
  });

  it('an edit in the middle changes only the chunks around it', () => {
    const before = new Set(chunkBytes(data).map((c) => hashBytes(c).hex));
    const edited = Buffer.concat([data.subarray(0, 2_000_000), Buffer.from('INSERTED'), data.subarray(2_000_000)]);
    const after = chunkBytes(edited).map((c) => hashBytes(c).hex);
    const fresh = after.filter((h) => !before.has(h));
    expect(fresh.length).toBeGreaterThanOrEqual(1);
    expect(fresh.length).toBeLessThanOrEqual(2);
  });

  it('a file smaller than the minimum is one chunk; an empty one is none', () => {
    expect(chunkBytes(new Uint8Array(16_000))).toHaveLength(1);
    expect(chunkBytes(new Uint8Array(0))).toHaveLength(0);
  });
});

describe('snapshot and restore', () => {
  it('round-trips every entry kind exactly: bytes, modes, links, odd names, empty files and dirs', async () => {
    const src = join(work, 'src');
    await mkdir(src);
    await makeMixedTree(src);
    const store = memoryStore();
    const result = await snapshot(store, src);
    expect(result.files).toBeGreaterThan(10);
    expect(result.symlinks).toBe(5);
    const out = join(work, 'out');
    const restored = await restore(store, result.root, out);
    expect(restored.files).toBe(result.files);
    expect(await describeTree(out)).toEqual(await describeTree(src));
    // No staging directory left beside the target.
    expect((await readdir(work)).sort()).toEqual(['out', 'src']);
  });

  it('is deterministic: the same tree gives the same root, a one-byte change a different one', async () => {
    const src = join(work, 'src');
    await mkdir(src);
    await makeMixedTree(src);
    const store = memoryStore();
    const a = await snapshot(store, src);
    const b = await snapshot(store, src);
    expect(b.root.equals(a.root)).toBe(true);
    await writeFile(join(src, 'hello.txt'), 'hellO\n');
    const c = await snapshot(store, src);
    expect(c.root.equals(a.root)).toBe(false);
  });

  it('stores a symlink to a directory outside the tree as a link and never reads through it', async () => {
    const outside = join(work, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'private'), 'must not be stored');
    const src = join(work, 'src');
    await mkdir(src);
    const { symlink } = await import('node:fs/promises');
    await symlink(outside, join(src, 'escape'));
    const store = memoryStore();
    await snapshot(store, src);
    const all: string[] = [];
    for await (const h of store.listObjects()) all.push(new TextDecoder().decode(await store.get(h)));
    expect(all.some((text) => text.includes('must not be stored'))).toBe(false);
  });

  it('refuses a missing directory, a file, and an existing non-empty target, changing nothing', async () => {
    const store = memoryStore();
    await expect(snapshot(store, join(work, 'nope'))).rejects.toBeInstanceOf(NotFoundError);
    await writeFile(join(work, 'file'), 'x');
    await expect(snapshot(store, join(work, 'file'))).rejects.toBeInstanceOf(InvalidArgumentError);
    const src = join(work, 'src');
    await mkdir(src);
    await writeFile(join(src, 'a'), 'a');
    const { root } = await snapshot(store, src);
    await expect(restore(store, root, src)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(await readdir(src)).toEqual(['a']);
    const blob = await store.put(new TextEncoder().encode('not a tree'));
    await expect(restore(store, blob, join(work, 'x'))).rejects.toThrow(/not a snapshot/);
    await expect(restore(store, hashBytes(new Uint8Array([9])), join(work, 'x'))).rejects.toBeInstanceOf(NotFoundError);
    expect((await readdir(work)).sort()).toEqual(['file', 'src']);
  });

  it('restores into an existing empty directory', async () => {
    const src = join(work, 'src');
    await mkdir(src);
    await writeFile(join(src, 'a'), 'a');
    const store = memoryStore();
    const { root } = await snapshot(store, src);
    await mkdir(join(work, 'empty'));
    await restore(store, root, join(work, 'empty'));
    expect(await describeTree(join(work, 'empty'))).toEqual(await describeTree(src));
  });

  it.each([
    ['..', 'parent'],
    ['a/b', 'slash'],
    ['x\0y', 'NUL'],
    ['', 'empty'],
    ['.', 'dot'],
  ])('refuses a crafted tree whose entry name is %j (%s) and writes nothing', async (name) => {
    const store = memoryStore();
    const content = await store.put(new TextEncoder().encode('pwned'));
    const evil = new TextEncoder().encode(
      JSON.stringify({ cairn: 'tree/v1', entries: [{ name, type: 'file', mode: 0o644, size: 5, hash: content.toString() }] }),
    );
    const root = await store.put(evil);
    const parent = await store.put(encodeTree([{ name: 'inner', type: 'dir', mode: 0o755, hash: root }]));
    for (const target of [root, parent]) {
      await expect(restore(store, target, join(work, 'out', 'deep'))).rejects.toBeInstanceOf(CorruptStoreError);
    }
    // Refused while measuring, before even the target's parent is made.
    expect(await readdir(work)).toEqual([]);
  });

  it('refuses unsorted or duplicate entries (a tree must be canonical)', () => {
    const h = hashBytes(new Uint8Array(0)).toString();
    const tree = (names: string[]): Uint8Array =>
      new TextEncoder().encode(
        JSON.stringify({ cairn: 'tree/v1', entries: names.map((name) => ({ name, type: 'file', mode: 420, size: 0, hash: h })) }),
      );
    expect(decodeTree(tree(['a', 'b']))).toHaveLength(2);
    expect(() => decodeTree(tree(['b', 'a']))).toThrow(CorruptStoreError);
    expect(() => decodeTree(tree(['a', 'a']))).toThrow(CorruptStoreError);
  });

  it('an abort part-way leaves no target and no staging directory', async () => {
    const src = join(work, 'src');
    await mkdir(src);
    for (let i = 0; i < 50; i++) await writeFile(join(src, `f${i}`), randomBytes(100_000));
    const inner = memoryStore();
    const { root } = await snapshot(inner, src);
    const controller = new AbortController();
    let reads = 0;
    const slow = new Proxy(inner, {
      get(target, prop, receiver) {
        if (prop === 'get') {
          return async (hash: HashLike, options?: { signal?: AbortSignal }) => {
            if (++reads === 20) controller.abort();
            return target.get(hash, options);
          };
        }
        const value = Reflect.get(target, prop, receiver) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    await expect(restore(slow, root, join(work, 'out'), { signal: controller.signal })).rejects.toBeInstanceOf(AbortError);
    expect(await readdir(work)).toEqual(['src']);
  });
});

describe('diff', () => {
  it('lists added, removed, modified and mode changes, reading only changed subtrees', async () => {
    const src = join(work, 'src');
    await mkdir(join(src, 'keep/deep'), { recursive: true });
    await mkdir(join(src, 'gone'));
    await writeFile(join(src, 'keep/deep/same'), 'same');
    await writeFile(join(src, 'gone/x'), 'x');
    await writeFile(join(src, 'edit'), 'one');
    await writeFile(join(src, 'perm'), 'p');
    await writeFile(join(src, 'becomes-dir'), 'f');
    const store = memoryStore();
    const a = (await snapshot(store, src)).root;
    await rm(join(src, 'gone'), { recursive: true });
    await writeFile(join(src, 'edit'), 'two!');
    await chmod(join(src, 'perm'), 0o700);
    await writeFile(join(src, 'new file'), 'n');
    await rm(join(src, 'becomes-dir'));
    await mkdir(join(src, 'becomes-dir'));
    await writeFile(join(src, 'becomes-dir/in'), 'i');
    const b = (await snapshot(store, src)).root;
    const changes = await diffSnapshots(store, a, b);
    expect(changes.map((c) => `${c.change} ${c.path}`)).toEqual([
      'removed becomes-dir',
      'added becomes-dir',
      'added becomes-dir/in',
      'modified edit',
      'removed gone',
      'removed gone/x',
      'added new file',
      'mode perm',
    ]);
    expect(changes.find((c) => c.path === 'edit')).toMatchObject({ sizeBefore: 3, sizeAfter: 4 });
    expect(await diffSnapshots(store, a, a)).toEqual([]);
  });
});

async function listAll(store: Store): Promise<string[]> {
  const out: string[] = [];
  for await (const h of store.listObjects()) out.push(h.toString());
  return out.sort();
}

describe('gc and verify', () => {
  async function twoSnapshots(store: Store): Promise<{ keep: Hash; drop: Hash; src: string }> {
    const src = join(work, 'src');
    await mkdir(src);
    await writeFile(join(src, 'shared'), 'shared by both');
    await writeFile(join(src, 'big'), randomBytes(600_000));
    const keep = (await snapshot(store, src)).root;
    await writeFile(join(src, 'only-in-drop'), 'drop me');
    await writeFile(join(src, 'big'), randomBytes(600_000));
    const drop = (await snapshot(store, src)).root;
    await store.setRef('snapshots/keep', keep);
    return { keep, drop, src };
  }

  it('lists exactly the unreachable objects, deletes them past the grace period, and the kept snapshot restores', async () => {
    const store = memoryStore();
    const { keep, drop } = await twoSnapshots(store);
    const before = await listAll(store);
    // Expected garbage: everything only the dropped snapshot reaches.
    await store.setRef('tmp', drop);
    const { reachableFrom } = await import('../../src/index.js');
    const keepSet = (await reachableFrom(store, [keep])).reachable;
    await store.deleteRef('tmp');
    const expected = before.filter((h) => !keepSet.has(h));
    expect(expected.length).toBeGreaterThan(3);
    expect(expected).toContain(drop.toString());

    const plan = await collectGarbage(store, { now: () => 1_000 });
    expect(plan.unreachable).toEqual(expected);
    expect(plan.eligible).toEqual([]); // first sighting: inside the grace period
    expect(await listAll(store)).toEqual(before);

    const later = await collectGarbage(store, { state: plan.state, now: () => 1_000 + 3_600_000, dryRun: false });
    expect(later.deleted).toEqual(expected);
    expect(await listAll(store)).toEqual(before.filter((h) => !expected.includes(h)));
    await restore(store, keep, join(work, 'out'));
  });

  it('grace 0 deletes at once; refs on another store count as roots', async () => {
    const store = memoryStore();
    const { drop, keep } = await twoSnapshots(store);
    const result = await collectGarbage(store, { graceMs: 0, dryRun: false, extraRoots: [drop] });
    expect(result.deleted).toEqual([]);
    await restore(store, drop, join(work, 'a'));
    await restore(store, keep, join(work, 'b'));
  });

  it('verify re-hashes every object and names the corrupt and missing ones', async () => {
    const inner = memoryStore();
    const { keep } = await twoSnapshots(inner);
    const clean = await verifyStore(inner);
    expect(clean).toMatchObject({ ok: true, corrupt: [], missing: [] });
    expect(clean.checked).toBe((await listAll(inner)).length);
    // A store whose bytes for one object were changed behind its back: its read path must detect it.
    const { reachableFrom } = await import('../../src/index.js');
    const victim = [...(await reachableFrom(inner, [keep])).reachable].find((h) => h !== keep.toString())!;
    const { verifiedStream } = await import('../../src/object-io.js');
    const tampered = new Proxy(inner, {
      get(target, prop, receiver) {
        if (prop === 'getStream') {
          return (hash: HashLike, options?: { signal?: AbortSignal }) => {
            if (hash.toString() !== victim) return target.getStream(hash, options);
            return verifiedStream(hash as Hash, (async function* () {
              const bytes = await target.get(hash, options);
              const bad = Uint8Array.from(bytes);
              bad[0] = bad[0]! ^ 0xff;
              yield bad;
            })());
          };
        }
        const value = Reflect.get(target, prop, receiver) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const found = await verifyStore(tampered);
    expect(found.ok).toBe(false);
    expect(found.corrupt).toEqual([victim]);
    // A reachable object deleted behind the store's back is reported missing.
    await inner.delete(victim);
    const missing = await verifyStore(inner);
    expect(missing.ok).toBe(false);
    expect(missing.missing).toContain(victim);
  });
});

describe('incremental snapshots', () => {
  it('with `known`, a second snapshot writes only the objects that changed', async () => {
    const src = join(work, 'src');
    await mkdir(join(src, 'a'), { recursive: true });
    for (let i = 0; i < 20; i++) await writeFile(join(src, 'a', `f${i}`), `file ${i}`);
    const big = randomBytes(2_000_000);
    await writeFile(join(src, 'big'), big);
    const store = memoryStore();
    const first = await snapshot(store, src, { known: store });
    expect(first.written).toBeGreaterThan(20);
    const again = await snapshot(store, src, { known: store });
    expect(again).toMatchObject({ written: 0 });
    expect(again.root.equals(first.root)).toBe(true);
    big.write('EDIT', 1_000_000);
    await writeFile(join(src, 'big'), big);
    await writeFile(join(src, 'a', 'f3'), 'changed');
    const third = await snapshot(store, src, { known: store });
    // f3, one or two new chunks and the big file's chunk list, the trees of a/ and the root.
    expect(third.written).toBeGreaterThanOrEqual(5);
    expect(third.written).toBeLessThanOrEqual(6);
    await restore(store, third.root, join(work, 'out'));
    expect(await describeTree(join(work, 'out'))).toEqual(await describeTree(src));
  });
});

describe('file cache', () => {
  it('skips reading unchanged files, notices a same-size rewrite, and never trusts a hash the store lost', async () => {
    const { utimes, stat } = await import('node:fs/promises');
    const src = join(work, 'src');
    await mkdir(src);
    for (let i = 0; i < 10; i++) await writeFile(join(src, `f${i}`), `file ${i}`);
    await writeFile(join(src, 'big'), randomBytes(1_000_000));
    const store = memoryStore();
    const cache = new Map();
    const first = await snapshot(store, src, { cache, cacheSettleMs: 0 });
    expect(first.reused).toBe(0);
    expect(cache.size).toBe(11);
    const second = await snapshot(store, src, { cache, cacheSettleMs: 0 });
    expect(second.reused).toBe(11);
    expect(second.root.equals(first.root)).toBe(true);

    // Same size, same mtime, different bytes: the inode's change time still moves.
    const before = await stat(join(src, 'f1'));
    await new Promise((r) => setTimeout(r, 20));
    await writeFile(join(src, 'f1'), 'FILE 1');
    await utimes(join(src, 'f1'), before.atime, before.mtime);
    const third = await snapshot(store, src, { cache, cacheSettleMs: 0 });
    expect(third.reused).toBe(10);
    expect(third.root.equals(first.root)).toBe(false);
    expect(third.root.equals((await snapshot(memoryStore(), src)).root)).toBe(true);

    // The store lost a cached file's content (gc): it is read and stored again.
    await store.delete(hashBytes(new TextEncoder().encode('file 2')));
    const fourth = await snapshot(store, src, { cache, cacheSettleMs: 0 });
    expect(fourth.reused).toBe(10);
    await restore(store, fourth.root, join(work, 'out'));
    expect(await describeTree(join(work, 'out'))).toEqual(await describeTree(src));
  });
});
