/**
 * The disk store against damaged, foreign and hostile files: layout checks,
 * torn and corrupt records, planted symlinks, and fuzzed names.
 */
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDiskStore } from '../../src/backends/disk.js';
import {
  CorruptStoreError,
  hashBytes,
  IntegrityError,
  InvalidHashError,
  InvalidRefNameError,
  NotFoundError,
} from '../../src/index.js';

const encoder = new TextEncoder();
const bytesOf = (text: string): Uint8Array => encoder.encode(text);

let base: string;
let root: string;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'cairn-files-'));
  root = join(base, 'store');
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name);
    out[path.slice(dir.length)] = entry.isFile() ? (await readFile(path)).toString('base64') : entry.isSymbolicLink() ? 'link' : 'dir';
  }
  return out;
}

async function segmentFiles(): Promise<string[]> {
  return (await readdir(join(root, 'segments'))).filter((n) => n.endsWith('.seg')).map((n) => join(root, 'segments', n));
}

async function flipByte(path: string, offset: number): Promise<void> {
  const buf = await readFile(path);
  buf[offset] = buf[offset]! ^ 0x5a;
  await writeFile(path, buf);
}

/** Reads every object: each must come back exactly right, or fail with a typed error. Never wrong bytes. */
async function readAll(store: Awaited<ReturnType<typeof openDiskStore>>, objects: Map<string, Uint8Array>): Promise<{ ok: number; failed: string[] }> {
  let ok = 0;
  const failed: string[] = [];
  for (const [key, bytes] of objects) {
    try {
      const got = await store.get(key);
      expect(Buffer.from(got).equals(Buffer.from(bytes))).toBe(true);
      ok++;
    } catch (error) {
      expect(error instanceof IntegrityError || error instanceof NotFoundError, String(error)).toBe(true);
      failed.push(key);
    }
  }
  return { ok, failed };
}

async function fill(count: number, prefix = 'object'): Promise<Map<string, Uint8Array>> {
  const store = await openDiskStore(root);
  const objects = new Map<string, Uint8Array>();
  const items = Array.from({ length: count }, (_, i) => bytesOf(`${prefix} ${i} `.repeat(1 + (i % 7))));
  const hashes = await store.putMany(items);
  hashes.forEach((h, i) => objects.set(h.toString(), items[i]!));
  await store.close();
  return objects;
}

describe('disk store: layout', () => {
  it('refuses a non-empty directory that is not a store, and changes nothing', async () => {
    await mkdir(root);
    await writeFile(join(root, 'notes.txt'), 'mine');
    await mkdir(join(root, 'photos'));
    const before = await snapshot(root);
    await expect(openDiskStore(root)).rejects.toBeInstanceOf(CorruptStoreError);
    expect(await snapshot(root)).toEqual(before);
  });

  it('refuses a store of an unknown layout version, and changes nothing', async () => {
    await mkdir(root);
    await writeFile(join(root, 'cairn-store.json'), JSON.stringify({ format: 'cairn-disk-store', version: 99 }));
    const before = await snapshot(root);
    const error = await openDiskStore(root).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CorruptStoreError);
    expect((error as Error).message).toMatch(/version 99/);
    expect(await snapshot(root)).toEqual(before);
  });

  it('refuses a path that is a file', async () => {
    await writeFile(root, 'a file');
    await expect(openDiskStore(root)).rejects.toBeInstanceOf(CorruptStoreError);
  });

  it('creates a store in a missing directory and reopens it with data and refs intact', async () => {
    const store = await openDiskStore(join(root, 'nested'));
    const hash = await store.put(bytesOf('persisted'));
    await store.setRef('heads/main', hash);
    await store.close();
    for (const fullScan of [false, true]) {
      const again = await openDiskStore(join(root, 'nested'), { fullScan });
      expect(new TextDecoder().decode(await again.get(hash))).toBe('persisted');
      expect((await again.getRef('heads/main'))?.hash.equals(hash)).toBe(true);
      expect(again.recovery.droppedBytes).toBe(0);
      expect(again.recovery.checkpoint).toBe(fullScan ? 'skipped' : 'loaded');
      await again.close();
    }
  });

  it('rejects bad options naming the option', async () => {
    await expect(openDiskStore(root, { segmentMaxBytes: -1 })).rejects.toThrow(/segmentMaxBytes/);
  });
});

describe('disk store: streams', () => {
  it('a stream that fails or is aborted part-way stores nothing and leaves no temp file', async () => {
    const store = await openDiskStore(root, { smallObjectMaxBytes: 64 * 1024 });
    const chunk = new Uint8Array(256 * 1024).fill(7);
    async function* failing(): AsyncIterable<Uint8Array> {
      yield chunk;
      yield chunk;
      throw new Error('source broke');
    }
    await expect(store.put(failing())).rejects.toThrow('source broke');
    const controller = new AbortController();
    async function* aborted(): AsyncIterable<Uint8Array> {
      yield chunk;
      controller.abort();
      yield chunk;
    }
    await expect(store.put(aborted(), { signal: controller.signal })).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    expect(await readdir(join(root, 'large'))).toEqual([]);
    const listed = [];
    for await (const h of store.listObjects()) listed.push(h);
    expect(listed).toEqual([]);
    await store.close();
  });

  it('a stream under the small-object limit becomes a segment record, above it a file', async () => {
    const store = await openDiskStore(root, { smallObjectMaxBytes: 64 * 1024 });
    async function* chunks(total: number): AsyncIterable<Uint8Array> {
      for (let i = 0; i < total; i += 16 * 1024) yield new Uint8Array(Math.min(16 * 1024, total - i)).fill(i % 251);
    }
    const small = await store.put(chunks(60 * 1024));
    const large = await store.put(chunks(300 * 1024));
    expect(await readdir(join(root, 'large'))).toEqual([`sha256-${large.hex}`]);
    expect((await store.get(small)).length).toBe(60 * 1024);
    expect((await store.get(large)).length).toBe(300 * 1024);
    await store.close();
  });
});

describe('disk store: damaged files', () => {
  it('drops a torn segment tail, reports it, and serves everything before it', async () => {
    const objects = await fill(50);
    const [segment] = await segmentFiles();
    const size = (await stat(segment!)).size;
    await truncate(segment!, size - 7);
    const store = await openDiskStore(root);
    expect(store.recovery.dropped.map((d) => d.reason)).toContain('torn-tail');
    expect(store.recovery.droppedBytes).toBeGreaterThan(0);
    const { ok, failed } = await readAll(store, objects);
    expect(ok).toBe(49);
    expect(failed).toHaveLength(1);
    await expect(store.get(failed[0]!)).rejects.toBeInstanceOf(NotFoundError);
    // The store stays writable after recovery.
    const again = await store.put(bytesOf('after the tear'));
    expect(await store.has(again)).toBe(true);
    await store.close();
  });

  it('skips a record whose checksum fails and keeps the records after it (full scan)', async () => {
    const objects = await fill(40);
    const [segment] = await segmentFiles();
    const size = (await stat(segment!)).size;
    await flipByte(segment!, Math.floor(size / 2));
    const store = await openDiskStore(root, { fullScan: true });
    expect(store.recovery.dropped).toEqual([expect.objectContaining({ reason: 'corrupt' })]);
    const { ok, failed } = await readAll(store, objects);
    expect(failed).toHaveLength(1);
    expect(ok).toBe(39);
    await store.close();
  });

  it('never returns a flipped byte: reading through the checkpoint fails with IntegrityError', async () => {
    const objects = await fill(40);
    const [segment] = await segmentFiles();
    const size = (await stat(segment!)).size;
    await flipByte(segment!, size - 3);
    const store = await openDiskStore(root);
    expect(store.recovery.checkpoint).toBe('loaded');
    const { ok, failed } = await readAll(store, objects);
    expect(failed).toHaveLength(1);
    expect(ok).toBe(39);
    await expect(store.get(failed[0]!)).rejects.toBeInstanceOf(IntegrityError);
    await store.close();
  });

  it('discards a damaged checkpoint and rebuilds the index from the segments', async () => {
    const objects = await fill(30);
    await flipByte(join(root, 'index.ckpt'), 20);
    const store = await openDiskStore(root);
    expect(store.recovery.checkpoint).toBe('discarded');
    expect(store.recovery.checkpointProblem).toMatch(/checksum/);
    expect((await readAll(store, objects)).ok).toBe(30);
    await store.close();
  });

  it('a corrupt ref record and a torn tail: the corrupt one is reported on reads of the refs it may hide, the torn one removed by the next write', async () => {
    const store = await openDiskStore(root);
    const [a, b, c] = await store.putMany([bytesOf('a'), bytesOf('b'), bytesOf('c')]);
    await store.setRef('heads/x', a!);
    await store.setRef('heads/x', b!);
    await store.setRef('heads/y', c!);
    await store.close();
    const log = join(root, 'refs', 'log');
    const recordSize = (await stat(log)).size / 3;
    await flipByte(log, recordSize + 30);
    // What a writer killed mid-append leaves: the first bytes of a record.
    const torn = (await readFile(log)).subarray(0, 20);
    await appendFile(log, torn);
    const again = await openDiskStore(root);
    const reasons = again.recovery.dropped.filter((d) => d.file === 'refs/log').map((d) => d.reason);
    expect(reasons).toEqual(['corrupt']);
    // heads/x's newest record is the damaged one: its older value a is not given as current.
    await expect(again.getRef('heads/x')).rejects.toBeInstanceOf(CorruptStoreError);
    expect((await again.getRef('heads/y'))?.hash.equals(c!)).toBe(true);
    await expect(again.compareAndSwap('heads/x', a!, c!)).rejects.toBeInstanceOf(CorruptStoreError);
    await again.setRef('heads/x', c!);
    expect(again.recovery.dropped.filter((d) => d.reason === 'torn-tail').length).toBe(1);
    await again.close();
    const third = await openDiskStore(root);
    expect((await third.getRef('heads/x'))?.hash.equals(c!)).toBe(true);
    expect(third.recovery.dropped.filter((d) => d.reason === 'torn-tail')).toEqual([]);
    await third.close();
  });

  it('a large object with a flipped byte fails get and getStream with IntegrityError', async () => {
    const store = await openDiskStore(root, { smallObjectMaxBytes: 1024 });
    const bytes = new Uint8Array(200_000).map((_, i) => i * 7);
    const hash = await store.put(bytes);
    const file = join(root, 'large', `sha256-${hash.hex}`);
    await flipByte(file, 150_000);
    await expect(store.get(hash)).rejects.toBeInstanceOf(IntegrityError);
    const chunks: Uint8Array[] = [];
    await expect(
      (async () => {
        for await (const chunk of store.getStream(hash)) chunks.push(chunk);
      })(),
    ).rejects.toBeInstanceOf(IntegrityError);
    // Deleting and putting it again repairs it (a put of a present hash is a no-op).
    await store.delete(hash);
    await store.put(bytes);
    expect(Buffer.from(await store.get(hash)).equals(Buffer.from(bytes))).toBe(true);
    await store.close();
  });

  it('random flips and truncations: every read is right or a typed error', async () => {
    const objects = await fill(120);
    // A second session adds a second segment and a large object.
    const second = await openDiskStore(root, { smallObjectMaxBytes: 4096 });
    const big = new Uint8Array(10_000).map((_, i) => i);
    objects.set((await second.put(big)).toString(), big);
    for (const [k, v] of await fill0(second, 60)) objects.set(k, v);
    await second.close();
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 6; round++) {
      const files = [...(await segmentFiles()), join(root, 'index.ckpt'), join(root, 'refs', 'log')];
      const target = files[rand(files.length)]!;
      const size = (await stat(target).catch(() => undefined))?.size ?? 0;
      if (size > 0) {
        if (rand(3) === 0) await truncate(target, rand(size));
        else await flipByte(target, rand(size));
      }
      const store = await openDiskStore(root, { fullScan: round % 2 === 1 });
      const { ok } = await readAll(store, objects);
      expect(ok).toBeGreaterThan(0);
      await store.close();
    }
  });
});

async function fill0(store: Awaited<ReturnType<typeof openDiskStore>>, count: number): Promise<Map<string, Uint8Array>> {
  const items = Array.from({ length: count }, (_, i) => bytesOf(`second ${i} `.repeat(1 + (i % 5))));
  const hashes = await store.putMany(items);
  return new Map(hashes.map((h, i) => [h.toString(), items[i]!]));
}

describe('disk store: nothing escapes the root', () => {
  it('does not follow a symlink planted at an object file, and put replaces the link, not its target', async () => {
    const outside = join(base, 'outside.txt');
    await writeFile(outside, 'secret outside the store');
    const store = await openDiskStore(root, { smallObjectMaxBytes: 16 });
    const bytes = bytesOf('a large enough object to get a file of its own');
    const hash = hashBytes(bytes);
    await symlink(outside, join(root, 'large', `sha256-${hash.hex}`));
    await expect(store.get(hash)).rejects.toBeInstanceOf(IntegrityError);
    expect(await store.has(hash)).toBe(false);
    await store.put(bytes);
    expect(new TextDecoder().decode(await store.get(hash))).toBe(new TextDecoder().decode(bytes));
    expect(await readFile(outside, 'utf8')).toBe('secret outside the store');
    await store.delete(hash);
    expect(await readFile(outside, 'utf8')).toBe('secret outside the store');
    await store.close();
  });

  it('refuses to open when a store directory or the ref log is a planted symlink', async () => {
    const outsideDir = join(base, 'outside');
    await mkdir(outsideDir);
    await writeFile(join(outsideDir, 'log'), 'not a ref log');
    await (await openDiskStore(root)).close();
    await rm(join(root, 'refs'), { recursive: true });
    await symlink(outsideDir, join(root, 'refs'));
    await expect(openDiskStore(root)).rejects.toBeInstanceOf(CorruptStoreError);
    await unlink(join(root, 'refs'));
    await mkdir(join(root, 'refs'));
    await symlink(join(outsideDir, 'log'), join(root, 'refs', 'log'));
    await expect(openDiskStore(root)).rejects.toBeInstanceOf(CorruptStoreError);
    expect(await readFile(join(outsideDir, 'log'), 'utf8')).toBe('not a ref log');
    expect(await readdir(outsideDir)).toEqual(['log']);
  });

  it('ignores a symlink dressed as a segment or checkpoint', async () => {
    const outside = join(base, 'outside.seg');
    await writeFile(outside, 'CSEG'.repeat(100));
    const objects = await fill(5);
    await symlink(outside, join(root, 'segments', `${'ab'.repeat(8)}-00000001.seg`));
    await rm(join(root, 'index.ckpt'));
    await symlink(outside, join(root, 'index.ckpt'));
    const store = await openDiskStore(root);
    expect(store.recovery.checkpoint).toBe('discarded');
    expect((await readAll(store, objects)).ok).toBe(5);
    await store.close();
    expect(await readFile(outside, 'utf8')).toBe('CSEG'.repeat(100));
  });

  it('fuzzed ref names and hash strings never touch a path outside the store', async () => {
    const outsideDir = join(base, 'outside');
    await mkdir(outsideDir);
    const store = await openDiskStore(root);
    const hash = await store.put(bytesOf('fuzz target'));
    // Plant symlinks where a path-building backend might write through them.
    await symlink(outsideDir, join(root, 'refs', 'heads'));
    await symlink(outsideDir, join(root, 'refs', '..%2f'));
    const hostile = fc.oneof(
      fc.constantFrom('..', '../x', 'a/../../x', '/etc/passwd', 'C:\\x', 'a\\..\\b', 'nul\0x', '%2e%2e/%2e%2e/x', '\u2024\u2024/x', '\uff0e\uff0e/x', 'heads/../../outside/x', 'x'.repeat(5000), 'heads/main', 'heads/ok.name_1-2'),
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.array(fc.constantFrom('..', '.', '', 'heads', 'a', '%2e', '\\', '\0', '\u0130', 'lock', 'x.lock'), { maxLength: 6 }).map((parts) => parts.join('/')),
    );
    const accepted = new Set<string>();
    await fc.assert(
      fc.asyncProperty(hostile, async (name) => {
        const watching = new AbortController();
        const outcomes = await Promise.allSettled([
          store.setRef(name, hash),
          store.getRef(name),
          store.compareAndSwap(name, null, hash),
          store.watchRef(name, () => {}, { signal: watching.signal }),
        ]);
        watching.abort();
        const rejected = outcomes.filter((o) => o.status === 'rejected');
        if (rejected.length > 0) {
          expect(rejected).toHaveLength(outcomes.length);
          for (const r of rejected) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(InvalidRefNameError);
        } else {
          accepted.add(name);
        }
        const asHash = await Promise.allSettled([store.get(name), store.has(name), store.delete(name)]);
        for (const r of asHash) {
          expect(r.status).toBe('rejected');
          expect((r as PromiseRejectedResult).reason).toBeInstanceOf(InvalidHashError);
        }
      }),
      { numRuns: 200 },
    );
    const listed = [];
    for await (const ref of store.listRefs()) listed.push(ref.name);
    expect(listed.sort()).toEqual([...accepted].sort());
    await store.close();
    expect(await readdir(outsideDir)).toEqual([]);
    expect((await readdir(base)).sort()).toEqual(['outside', 'store']);
    expect((await readdir(join(root, 'refs'))).sort()).toEqual(['..%2f', 'heads', 'log']);
  });
});

