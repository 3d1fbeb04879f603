import { chmod, mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDiskKeyStore } from '../../src/data/keys-disk.js';
import { memoryKeyStore, moveKeys, storeKeyStore, type KeyStore } from '../../src/data/keys.js';
import { ClosedError, ConflictError, InvalidArgumentError, memoryStore, NotFoundError, PermissionError } from '../../src/index.js';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const BAD_NAMES = ['', '.', '..', '.hidden', '../escape', 'a/b', 'back\\slash', 'sp ace', 'nul\0', 'x.lock', 'x'.repeat(201)];

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-keys-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function keyStoreCases(name: string, open: () => Promise<KeyStore>): void {
  describe(`key store: ${name}`, () => {
    it('store, load, list, remove; a missing key is a NotFoundError', async () => {
      const keys = await open();
      const secret = new Uint8Array(64).map((_, i) => 255 - i);
      await keys.set('signing', secret);
      await keys.set('api.token-2', bytes('t0ken'));
      expect(await keys.get('signing')).toEqual(secret);
      expect(await keys.has('signing')).toBe(true);
      expect(await keys.list()).toEqual(['api.token-2', 'signing']);
      await keys.set('signing', bytes('rotated'));
      expect(await keys.get('signing')).toEqual(bytes('rotated'));
      await keys.delete('signing');
      await keys.delete('signing');
      expect(await keys.has('signing')).toBe(false);
      await expect(keys.get('signing')).rejects.toBeInstanceOf(NotFoundError);
      expect(await keys.list()).toEqual(['api.token-2']);
      await keys.close();
      await expect(keys.list()).rejects.toBeInstanceOf(ClosedError);
    });

    it('a bad name or a secret that is not bytes is an InvalidArgumentError and changes nothing', async () => {
      const keys = await open();
      await keys.set('kept', bytes('kept'));
      for (const bad of BAD_NAMES) {
        await expect(keys.set(bad, bytes('x'))).rejects.toBeInstanceOf(InvalidArgumentError);
        await expect(keys.get(bad)).rejects.toBeInstanceOf(InvalidArgumentError);
        await expect(keys.delete(bad)).rejects.toBeInstanceOf(InvalidArgumentError);
      }
      await expect(keys.set('ok', 'text' as unknown as Uint8Array)).rejects.toBeInstanceOf(InvalidArgumentError);
      expect(await keys.list()).toEqual(['kept']);
      await keys.close();
    });
  });
}

keyStoreCases('memory', async () => memoryKeyStore());
keyStoreCases('disk', () => openDiskKeyStore(join(dir, 'keys')));
keyStoreCases('on a store', async () => storeKeyStore(memoryStore()));

describe('disk key store files', () => {
  it('the directory is mode 0700 and every key file 0600, whatever the umask', async () => {
    const previous = process.umask(0o000);
    try {
      const keys = await openDiskKeyStore(join(dir, 'nested', 'keys'));
      await keys.set('a', bytes('secret a'));
      await keys.set('b', bytes('secret b'));
      await keys.set('a', bytes('secret a2')); // replaced by rename: the new file is 0600 too
      expect((await stat(join(dir, 'nested', 'keys'))).mode & 0o777).toBe(0o700);
      for (const file of await readdir(join(dir, 'nested', 'keys'))) {
        expect((await stat(join(dir, 'nested', 'keys', file))).mode & 0o777).toBe(0o600);
      }
      expect((await readdir(join(dir, 'nested', 'keys'))).sort()).toEqual(['a', 'b']); // no temp files left
      await keys.close();
    } finally {
      process.umask(previous);
    }
  });

  it('an existing directory others can read, or a symlink, is refused with a PermissionError; a file is an InvalidArgumentError', async () => {
    const loose = join(dir, 'loose');
    await mkdir(loose, { mode: 0o755 });
    await chmod(loose, 0o755);
    const error = await openDiskKeyStore(loose).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermissionError);
    expect((error as Error).message).toContain('chmod 700');
    const file = join(dir, 'file');
    await writeFile(file, 'x');
    await expect(openDiskKeyStore(file)).rejects.toBeInstanceOf(InvalidArgumentError);
    await symlink(join(dir, 'keys-real'), join(dir, 'link'));
    await mkdir(join(dir, 'keys-real'), { mode: 0o700 });
    await expect(openDiskKeyStore(join(dir, 'link'))).rejects.toBeInstanceOf(PermissionError);
  });

  it('keys survive closing and reopening the directory', async () => {
    const path = join(dir, 'keys');
    const first = await openDiskKeyStore(path);
    await first.set('persisted', bytes('still here'));
    await first.close();
    const second = await openDiskKeyStore(path);
    expect(await second.get('persisted')).toEqual(bytes('still here'));
    await second.close();
  });
});

describe('moveKeys', () => {
  it('moves every key to the target and removes each from the source only once written there', async () => {
    const source = memoryKeyStore();
    const target = await openDiskKeyStore(join(dir, 'target'));
    await source.set('one', bytes('1'));
    await source.set('two', bytes('2'));
    expect(await moveKeys(source, target)).toEqual(['one', 'two']);
    expect(await source.list()).toEqual([]);
    expect(await target.get('one')).toEqual(bytes('1'));
    expect(await target.get('two')).toEqual(bytes('2'));
  });

  it('a failing target write leaves the key in the source', async () => {
    const source = memoryKeyStore();
    await source.set('precious', bytes('do not lose me'));
    const inner = memoryKeyStore();
    const failing: KeyStore = { ...inner, set: async () => Promise.reject(new Error('disk full')) };
    await expect(moveKeys(source, failing)).rejects.toThrow('disk full');
    expect(await source.get('precious')).toEqual(bytes('do not lose me'));
    // A target that silently stores something else is caught by the read-back.
    const lying: KeyStore = { ...inner, set: (name) => inner.set(name, bytes('garbage')) };
    await expect(moveKeys(source, lying)).rejects.toBeInstanceOf(ConflictError);
    expect(await source.get('precious')).toEqual(bytes('do not lose me'));
  });

  it('a different key of the same name in the target is a ConflictError unless overwrite; the same key is fine', async () => {
    const source = memoryKeyStore();
    const target = memoryKeyStore();
    await source.set('k', bytes('source'));
    await target.set('k', bytes('target'));
    await expect(moveKeys(source, target)).rejects.toBeInstanceOf(ConflictError);
    expect(await source.get('k')).toEqual(bytes('source'));
    expect(await target.get('k')).toEqual(bytes('target'));
    expect(await moveKeys(source, target, { overwrite: true })).toEqual(['k']);
    expect(await target.get('k')).toEqual(bytes('source'));
    // A re-run after a crash between write and delete: the key is in both, with the same bytes.
    await source.set('k', bytes('source'));
    expect(await moveKeys(source, target, { names: ['k'] })).toEqual(['k']);
    expect(await source.has('k')).toBe(false);
    await expect(moveKeys(source, target, { names: ['../x'] })).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});
