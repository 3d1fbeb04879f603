/**
 * A damaged ref log is reported, never read as an older truth, and never
 * rewritten by an open that was not asked to repair it (issue 12, items 3
 * and 4); a torn tail (a proper prefix of one record, what a writer killed
 * mid-append leaves) is the one case where the previous value is right.
 */
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDiskStore } from '../../src/backends/disk.js';
import { CorruptStoreError, NotFoundError, ReadOnlyError, type Hash } from '../../src/index.js';

const bytesOf = (text: string): Uint8Array => new TextEncoder().encode(text);

let base: string;
let root: string;
let log: string;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'cairn-refdamage-'));
  root = join(base, 'store');
  log = join(root, 'refs', 'log');
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

/** Every file under `dir` with its bytes, so a test can prove an open changed nothing. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name);
    out[path.slice(dir.length)] = entry.isFile() ? (await readFile(path)).toString('base64') : 'dir';
  }
  return out;
}

/** heads/x = a then b (the newest record), heads/y = c before them; returns the hashes and the newest record's offset. */
async function history(): Promise<{ a: Hash; b: Hash; c: Hash; newest: number; size: number }> {
  const store = await openDiskStore(root);
  const [a, b, c] = await store.putMany([bytesOf('a'), bytesOf('b'), bytesOf('c')]);
  await store.setRef('heads/y', c!);
  await store.setRef('heads/x', a!);
  const newest = (await stat(log)).size;
  await store.setRef('heads/x', b!);
  await store.close();
  return { a: a!, b: b!, c: c!, newest, size: (await stat(log)).size };
}

async function flip(path: string, offset: number): Promise<void> {
  const buf = await readFile(path);
  buf[offset] = buf[offset]! ^ 0x5a;
  await writeFile(path, buf);
}

describe('disk ref log: damage is reported, never an older value', () => {
  it('any one byte flipped in the newest record: reads of the ref throw CorruptStoreError, never the previous hash', async () => {
    const { a, newest, size } = await history();
    const pristine = await readFile(log);
    for (let offset = newest; offset < size; offset++) {
      await writeFile(log, pristine);
      await flip(log, offset);
      const damaged = await readFile(log);
      const readOnly = offset % 2 === 0;
      const store = await openDiskStore(root, { readOnly });
      const got = await store.getRef('heads/x').then(
        (v) => v?.hash.toString(),
        (e: unknown) => e,
      );
      expect(got, `flip at byte ${offset - newest} of the record`).toBeInstanceOf(CorruptStoreError);
      expect(got).not.toBe(a.toString());
      expect((got as CorruptStoreError).ref).toBe('heads/x');
      expect((got as CorruptStoreError).code).toBe('ERR_CORRUPT_STORE');
      expect(store.recovery.refLogDamaged).toBe(true);
      expect(store.recovery.dropped.some((d) => d.file === 'refs/log' && d.reason === 'corrupt')).toBe(true);
      await store.close();
      // Opening, reading and closing never rewrote the damaged log.
      expect((await readFile(log)).equals(damaged), `log changed after flip at ${offset - newest}`).toBe(true);
    }
  });

  it('a damaged newest record makes list, swap and every ref written before it report corruption; a new write clears only its ref', async () => {
    const { a, b, c, newest } = await history();
    await flip(log, newest + 30);
    const store = await openDiskStore(root);
    await expect(store.getRef('heads/y')).rejects.toBeInstanceOf(CorruptStoreError);
    await expect(store.compareAndSwap('heads/x', a, c)).rejects.toBeInstanceOf(CorruptStoreError);
    await expect(store.compareAndSwap('heads/x', b, c)).rejects.toBeInstanceOf(CorruptStoreError);
    await expect((async () => {
      for await (const _ of store.listRefs('heads/')) void _;
    })()).rejects.toBeInstanceOf(CorruptStoreError);
    // A set says what the ref is now: it goes after the damage, which it supersedes for that ref alone.
    await store.setRef('heads/x', c);
    expect((await store.getRef('heads/x'))?.hash.equals(c)).toBe(true);
    await expect(store.getRef('heads/y')).rejects.toBeInstanceOf(CorruptStoreError);
    await store.close();
    const again = await openDiskStore(root, { readOnly: true });
    expect((await again.getRef('heads/x'))?.hash.equals(c)).toBe(true);
    await expect(again.getRef('heads/y')).rejects.toBeInstanceOf(CorruptStoreError);
    await again.close();
  });

  it('a corrupt record between good ones hides no value: its refs report corruption until written again', async () => {
    const { a, b, c, newest } = await history();
    const store0 = await openDiskStore(root);
    const d = await store0.put(bytesOf('d'));
    await store0.setRef('heads/z', d);
    await store0.close();
    await flip(log, newest + 20);
    const store = await openDiskStore(root);
    expect(store.recovery.dropped.filter((x) => x.file === 'refs/log').map((x) => x.reason)).toEqual(['corrupt']);
    const x = await store.getRef('heads/x').catch((e: unknown) => e);
    expect(x).toBeInstanceOf(CorruptStoreError);
    expect([a.toString(), b.toString()]).not.toContain(String(x));
    expect((await store.getRef('heads/z'))?.hash.equals(d)).toBe(true);
    await store.setRef('heads/y', c);
    expect((await store.getRef('heads/y'))?.hash.equals(c)).toBe(true);
    await store.close();
  });

  it('versions handed out after damage never repeat one the damaged record may have had', async () => {
    const { b, c, newest } = await history();
    const before = await openDiskStore(root);
    const damagedVersion = Number((await before.getRef('heads/x'))!.version);
    await before.close();
    await flip(log, newest + 30);
    const store = await openDiskStore(root);
    const next = await store.setRef('heads/x', c);
    expect(Number(next.version)).toBeGreaterThan(damagedVersion);
    expect(next.hash.equals(b)).toBe(false);
    await store.close();
  });

  it('repair: rewrites the log from its intact records, says so, and reads work again', async () => {
    const { a, c, newest } = await history();
    await flip(log, newest + 30);
    const plain = await openDiskStore(root);
    expect(plain.recovery.refLogRepaired).toBe(false);
    await plain.close();
    const repaired = await openDiskStore(root, { repair: true });
    expect(repaired.recovery.refLogRepaired).toBe(true);
    expect(repaired.recovery.refLogDamaged).toBe(false);
    expect(repaired.recovery.dropped.some((d) => d.file === 'refs/log' && d.reason === 'corrupt')).toBe(true);
    expect((await repaired.getRef('heads/x'))?.hash.equals(a)).toBe(true);
    expect((await repaired.getRef('heads/y'))?.hash.equals(c)).toBe(true);
    await repaired.close();
    const after = await openDiskStore(root);
    expect(after.recovery.refLogDamaged).toBe(false);
    expect(after.recovery.dropped).toEqual([]);
    await after.close();
  });
});

describe('disk ref log: a torn tail is the one case where the previous value is right', () => {
  it('every proper prefix of the newest record reads as the previous value; opening leaves it, the next write removes it', async () => {
    const { a, b, c, newest, size } = await history();
    const pristine = await readFile(log);
    for (let cut = newest + 1; cut < size; cut++) {
      await writeFile(log, pristine.subarray(0, cut));
      const store = await openDiskStore(root, { readOnly: cut % 2 === 0 });
      expect((await store.getRef('heads/x'))?.hash.equals(a), `cut at ${cut - newest}`).toBe(true);
      expect(store.recovery.refLogDamaged).toBe(false);
      expect(store.recovery.dropped.filter((d) => d.reason === 'corrupt')).toEqual([]);
      await store.close();
      expect((await stat(log)).size, 'an open must not truncate the log').toBe(cut);
    }
    const writer = await openDiskStore(root);
    expect((await writer.compareAndSwap('heads/x', a, c)).ok).toBe(true);
    expect(writer.recovery.dropped.map((d) => d.reason)).toEqual(['torn-tail']);
    await writer.close();
    const reader = await openDiskStore(root);
    expect((await reader.getRef('heads/x'))?.hash.equals(c)).toBe(true);
    expect((await reader.getRef('heads/x'))?.hash.equals(b)).toBe(false);
    expect(reader.recovery.dropped).toEqual([]);
    await reader.close();
  });
});

describe('disk store: opening never rewrites a shared store', () => {
  it('a garbage tail on the ref log is left byte for byte by a writable open, and reported', async () => {
    await history();
    await appendFile(log, Buffer.from('CREF torn half-record, or anything else'));
    const before = await readFile(log);
    const store = await openDiskStore(root);
    await expect(store.getRef('heads/x')).rejects.toBeInstanceOf(CorruptStoreError);
    expect(store.recovery.refLogDamaged).toBe(true);
    await store.close();
    expect((await readFile(log)).equals(before)).toBe(true);
  });

  it('readOnly: opening, reading and closing change no file; writes throw ReadOnlyError', async () => {
    const { b } = await history();
    await appendFile(log, Buffer.from([0x43, 0x52])); // a torn tail
    const before = await snapshot(root);
    const store = await openDiskStore(root, { readOnly: true });
    expect(store.capabilities.writable).toBe(false);
    expect((await store.getRef('heads/x'))?.hash.equals(b)).toBe(true);
    expect(new TextDecoder().decode(await store.get(b))).toBe('b');
    await expect(store.put(bytesOf('new'))).rejects.toBeInstanceOf(ReadOnlyError);
    await expect(store.setRef('heads/x', b)).rejects.toBeInstanceOf(ReadOnlyError);
    await expect(store.compareAndSwap('heads/x', b, null)).rejects.toBeInstanceOf(ReadOnlyError);
    await expect(store.delete(b)).rejects.toBeInstanceOf(ReadOnlyError);
    await expect(store.compact()).rejects.toBeInstanceOf(ReadOnlyError);
    await store.close();
    expect(await snapshot(root)).toEqual(before);
  });

  it('readOnly: a missing or empty directory is refused and not created', async () => {
    await expect(openDiskStore(root, { readOnly: true })).rejects.toBeInstanceOf(NotFoundError);
    await expect(stat(root)).rejects.toThrow();
    await mkdir(root);
    await expect(openDiskStore(root, { readOnly: true })).rejects.toBeInstanceOf(CorruptStoreError);
    expect(await readdir(root)).toEqual([]);
  });

  it('readOnly sees what a writer appends after it opened, including a ref log created later', async () => {
    const writer = await openDiskStore(root);
    const reader = await openDiskStore(root, { readOnly: true });
    expect(await reader.getRef('heads/main')).toBeUndefined();
    const hash = await writer.put(bytesOf('later'));
    await writer.setRef('heads/main', hash);
    expect((await reader.getRef('heads/main'))?.hash.equals(hash)).toBe(true);
    expect(new TextDecoder().decode(await reader.get(hash))).toBe('later');
    await writer.close();
    await reader.close();
  });

  it('rejects a non-boolean readOnly or repair option', async () => {
    await expect(openDiskStore(root, { readOnly: 'yes' as unknown as boolean })).rejects.toThrow(/readOnly/);
    await expect(stat(root)).rejects.toThrow();
  });
});
