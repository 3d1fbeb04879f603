/**
 * User keys of an encrypted remote (src/crypto/keys.ts) on a memory store
 * and a disk store: init, unlock, add/list/remove, password change, damaged
 * and hostile key records, and that no password or key reaches any text.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { openDiskStore } from '../../src/backends/disk.js';
import { memoryStore } from '../../src/backends/memory.js';
import { KEY_REF_PREFIX } from '../../src/crypto/key-record.js';
import { addKey, changePassword, initEncryption, isEncrypted, listKeys, removeKey, unlock } from '../../src/crypto/keys.js';
import { MasterKey } from '../../src/crypto/master-key.js';
import { ConflictError, CorruptStoreError, EncryptionMismatchError, IntegrityError, InvalidArgumentError, NotFoundError, WrongPasswordError } from '../../src/errors.js';
import { hashBytes } from '../../src/hash.js';
import type { Store } from '../../src/store.js';

/** Small scrypt cost: tests derive dozens of keys. */
const FAST = { kdf: { N: 2 ** 10 } };
const PASSWORD = 'pa55-Word-that-must-never-print';
const encoder = new TextEncoder();

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0)) await fn();
});

const backends: Array<[string, () => Promise<Store>]> = [
  ['memory', async () => memoryStore()],
  [
    'disk',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'cairn-keys-'));
      const store = await openDiskStore(join(dir, 'store'));
      cleanups.push(async () => {
        await store.close();
        await rm(dir, { recursive: true, force: true });
      });
      return store;
    },
  ],
];

/** Every ref and object of a store, to compare before and after. */
async function contents(store: Store): Promise<string[]> {
  const out: string[] = [];
  for await (const ref of store.listRefs('')) out.push(`ref ${ref.name} ${ref.hash.toString()}`);
  for await (const hash of store.listObjects()) out.push(`obj ${hash.toString()}`);
  return out.sort();
}

/** The master key's bytes as hex and base64, to look for in printed text. */
function secretsOf(master: MasterKey): string[] {
  const bytes = Buffer.from(master.exportBytes());
  return [bytes.toString('hex'), bytes.toString('base64')];
}

/** Replaces the record of key `id` with `edit(record)` (or raw bytes), as a hostile remote could. */
async function tamper(store: Store, id: string, edit: (record: Record<string, unknown>) => unknown): Promise<void> {
  const ref = (await store.getRef(KEY_REF_PREFIX + id))!;
  const record = JSON.parse(Buffer.from(await store.get(ref.hash)).toString('utf8')) as Record<string, unknown>;
  const edited = edit(record);
  const bytes = edited instanceof Uint8Array ? edited : encoder.encode(JSON.stringify(edited));
  await store.setRef(KEY_REF_PREFIX + id, await store.put(bytes));
}

describe.each(backends)('keys on a %s store', (_name, open) => {
  it('init on an empty store makes one key; unlock with the password gives the same master key', async () => {
    const store = await open();
    expect(await isEncrypted(store)).toBe(false);
    const master = await initEncryption(store, PASSWORD, { ...FAST, label: 'first' });
    expect(await isEncrypted(store)).toBe(true);
    const keys = await listKeys(store);
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({ label: 'first', kdf: { name: 'scrypt', N: 1024, r: 8, p: 1 } });
    expect(keys[0]!.id).toMatch(/^[0-9a-f]{16}$/);
    const unlocked = await unlock(store, PASSWORD);
    expect(Buffer.from(unlocked.exportBytes())).toEqual(Buffer.from(master.exportBytes()));
    // Bytes and the same text as a string open alike.
    expect(Buffer.from((await unlock(store, encoder.encode(PASSWORD))).exportBytes())).toEqual(Buffer.from(master.exportBytes()));
  });

  it('refuses init on a store with a plain object, a plain ref, or keys, changing nothing', async () => {
    const withObject = await open();
    await withObject.put(encoder.encode('plain data'));
    const before = await contents(withObject);
    await expect(initEncryption(withObject, PASSWORD, FAST)).rejects.toThrow(EncryptionMismatchError);
    await expect(initEncryption(withObject, PASSWORD, FAST)).rejects.toThrow(/plain \(unencrypted\) data/);
    expect(await contents(withObject)).toEqual(before);

    const withRef = memoryStore();
    await withRef.setRef('heads/main', hashBytes(encoder.encode('x')));
    await expect(initEncryption(withRef, PASSWORD, FAST)).rejects.toThrow(EncryptionMismatchError);

    const encrypted = await open();
    await initEncryption(encrypted, PASSWORD, FAST);
    const once = await contents(encrypted);
    await expect(initEncryption(encrypted, 'another', FAST)).rejects.toThrow(/already encrypted/);
    expect(await contents(encrypted)).toEqual(once);
  });

  it('a wrong password is a WrongPasswordError; a plain store is an EncryptionMismatchError', async () => {
    const store = await open();
    await initEncryption(store, PASSWORD, FAST);
    await expect(unlock(store, 'not it')).rejects.toThrow(WrongPasswordError);
    await expect(unlock(store, '')).rejects.toThrow(WrongPasswordError);
    await expect(unlock(await open(), PASSWORD)).rejects.toThrow(EncryptionMismatchError);
    await expect(unlock(store, PASSWORD, { keyId: '0123456789abcdef' })).rejects.toThrow(NotFoundError);
  });

  it('add, list, remove and change password; the last key is refused', async () => {
    const store = await open();
    const master = await initEncryption(store, PASSWORD, { ...FAST, label: 'one' });
    const [first] = await listKeys(store);
    const second = await addKey(store, master, 'second password', { ...FAST, label: 'two', host: 'laptop' });
    expect(second).toMatchObject({ label: 'two', host: 'laptop' });
    expect((await listKeys(store)).map((k) => k.id).sort()).toEqual([first!.id, second.id].sort());
    // Each password opens the same master key.
    expect(Buffer.from((await unlock(store, 'second password')).exportBytes())).toEqual(Buffer.from(master.exportBytes()));
    expect((await unlock(store, 'second password', { keyId: second.id })).exportBytes()).toEqual(master.exportBytes());
    await expect(unlock(store, 'second password', { keyId: first!.id })).rejects.toThrow(WrongPasswordError);

    // Removing a key removes its ref and its record: that password opens nothing any more.
    const recordOfFirst = (await store.getRef(KEY_REF_PREFIX + first!.id))!.hash;
    await removeKey(store, first!.id);
    expect(await store.has(recordOfFirst)).toBe(false);
    await expect(unlock(store, PASSWORD)).rejects.toThrow(WrongPasswordError);
    await expect(removeKey(store, first!.id)).rejects.toThrow(NotFoundError);

    // The last key stays.
    const before = await contents(store);
    await expect(removeKey(store, second.id)).rejects.toThrow(ConflictError);
    await expect(removeKey(store, second.id)).rejects.toThrow(/last key/);
    expect(await contents(store)).toEqual(before);
    await expect(removeKey(store, 'nothex')).rejects.toThrow(InvalidArgumentError);

    // Password change: a new key with the old label; the old password fails, the new one opens.
    const renewed = await changePassword(store, master, second.id, 'third password', FAST);
    expect(renewed.id).not.toBe(second.id);
    expect(renewed).toMatchObject({ label: 'two', host: 'laptop' });
    expect((await listKeys(store)).map((k) => k.id)).toEqual([renewed.id]);
    await expect(unlock(store, 'second password')).rejects.toThrow(WrongPasswordError);
    expect((await unlock(store, 'third password')).exportBytes()).toEqual(master.exportBytes());
  });

  it('a key record with a flipped byte in its wrapped key opens with no password; the other key still does', async () => {
    const store = await open();
    const master = await initEncryption(store, PASSWORD, FAST);
    const [first] = await listKeys(store);
    await addKey(store, master, 'spare', FAST);
    await tamper(store, first!.id, (r) => {
      const wrapped = Buffer.from(r.wrapped as string, 'base64');
      wrapped[20]! ^= 1;
      return { ...r, wrapped: wrapped.toString('base64') };
    });
    await expect(unlock(store, PASSWORD)).rejects.toThrow(WrongPasswordError);
    expect((await unlock(store, 'spare')).exportBytes()).toEqual(master.exportBytes());
  });

  it('hostile kdf parameters are refused before deriving: a typed error at once, not an OOM or a hang', async () => {
    const store = await open();
    const master = await initEncryption(store, PASSWORD, FAST);
    const [only] = await listKeys(store);
    await tamper(store, only!.id, (r) => ({ ...r, kdf: { ...(r.kdf as object), N: 2 ** 40 } }));
    const started = performance.now();
    await expect(unlock(store, PASSWORD)).rejects.toThrow(CorruptStoreError);
    await expect(unlock(store, PASSWORD)).rejects.toThrow(new RegExp(`key ${only!.id}: scrypt N must be a power of two`));
    expect(performance.now() - started).toBeLessThan(5_000);
    expect((await listKeys(store))[0]).toEqual({ id: only!.id, problem: expect.stringMatching(/scrypt N/) as unknown });

    // With another intact key: the right password opens it; a wrong one names the damaged record.
    const good = await addKey(store, master, 'good', FAST);
    expect((await unlock(store, 'good')).exportBytes()).toEqual(master.exportBytes());
    await expect(unlock(store, 'bad')).rejects.toThrow(WrongPasswordError);
    await expect(unlock(store, 'bad')).rejects.toThrow(/damaged key records, not tried: key [0-9a-f]{16}: scrypt N/);
    // The damaged key can be removed; the intact one is then the last.
    await removeKey(store, only!.id);
    await expect(removeKey(store, good.id)).rejects.toThrow(ConflictError);
  });

  it.each([
    ['r*p beyond the work limit', (r: Record<string, unknown>) => ({ ...r, kdf: { ...(r.kdf as object), N: 2 ** 21, r: 1, p: 16 } }), /over the limit/],
    ['memory beyond the limit', (r: Record<string, unknown>) => ({ ...r, kdf: { ...(r.kdf as object), N: 2 ** 22, r: 8, p: 1 } }), /MiB limit/],
    ['not JSON', () => encoder.encode('{"version":1,'), /not JSON/],
    ['an unknown version', (r: Record<string, unknown>) => ({ ...r, version: 2 }), /unknown version 2/],
    ['another key id', (r: Record<string, unknown>) => ({ ...r, id: 'ffffffffffffffff' }), /not the id its ref names/],
    ['a label with a terminal escape', (r: Record<string, unknown>) => ({ ...r, label: '\u001b[2J' }), /control character/],
    ['a bad salt', (r: Record<string, unknown>) => ({ ...r, kdf: { ...(r.kdf as object), salt: 'ab!' } }), /not base64/],
    ['an oversized record', () => encoder.encode(`{"pad":"${'x'.repeat(20_000)}"}`), /larger than/],
  ])('a record with %s is reported as damaged, never used', async (_what, edit, message) => {
    const store = await open();
    await initEncryption(store, PASSWORD, FAST);
    const [only] = await listKeys(store);
    await tamper(store, only!.id, edit);
    await expect(unlock(store, PASSWORD)).rejects.toThrow(CorruptStoreError);
    await expect(unlock(store, PASSWORD)).rejects.toThrow(message);
    expect((await listKeys(store))[0]!.problem).toMatch(message);
  });

  it('a key ref naming a missing or corrupt record is reported, not a crash', async () => {
    const store = await open();
    await initEncryption(store, PASSWORD, FAST);
    const [only] = await listKeys(store);
    await store.setRef(KEY_REF_PREFIX + only!.id, hashBytes(encoder.encode('never stored')));
    await expect(unlock(store, PASSWORD)).rejects.toThrow(/is missing/);
    // A store whose bytes no longer match the record's hash.
    const hostile = new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === 'getStream') {
          return async function* () {
            yield* [];
            throw new IntegrityError('bytes do not match');
          };
        }
        const value = Reflect.get(target, prop, receiver) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    await expect(unlock(hostile, PASSWORD)).rejects.toThrow(/does not match its hash/);
  });
});

describe('keys: what is never printed', () => {
  it('no error message, key list or printed master key holds the password or the key', async () => {
    const store = memoryStore();
    const master = await initEncryption(store, PASSWORD, { ...FAST, label: 'mine' });
    await addKey(store, master, `${PASSWORD}-2`, FAST);
    const texts: string[] = [JSON.stringify(await listKeys(store)), inspect(master), String(master), JSON.stringify({ master }), inspect(await unlock(store, PASSWORD))];
    for (const attempt of [
      () => unlock(store, `${PASSWORD}-wrong`),
      () => unlock(memoryStore(), PASSWORD),
      () => initEncryption(store, PASSWORD, FAST),
      () => addKey(store, master, '', FAST),
      () => addKey(store, master, PASSWORD, { kdf: { N: 3 } }),
    ]) {
      const error = await attempt().then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(error).toBeInstanceOf(Error);
      texts.push(error!.message, inspect(error));
    }
    const secrets = [PASSWORD, ...secretsOf(master)];
    for (const text of texts) for (const secret of secrets) expect(text).not.toContain(secret);
    expect(JSON.stringify(await listKeys(store))).not.toMatch(/salt|wrapped/);
  });

  it('the default scrypt cost works end to end', async () => {
    const store = memoryStore();
    const master = await initEncryption(store, PASSWORD);
    expect((await listKeys(store))[0]!.kdf).toEqual({ name: 'scrypt', N: 32768, r: 8, p: 1 });
    expect((await unlock(store, PASSWORD)).exportBytes()).toEqual(master.exportBytes());
  });

  it('of two inits racing on one empty store, at most one succeeds, and its key is the only one', async () => {
    for (let round = 0; round < 5; round++) {
      const store = memoryStore();
      const results = await Promise.allSettled([initEncryption(store, 'a', FAST), initEncryption(store, 'b', FAST)]);
      const won = results.filter((r) => r.status === 'fulfilled');
      expect(won.length).toBeLessThanOrEqual(1);
      expect(await listKeys(store)).toHaveLength(won.length);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(Error);
    }
  });

  it('bad options are refused before anything is written', async () => {
    const store = memoryStore();
    await expect(initEncryption(store, '', FAST)).rejects.toThrow(/password is empty/);
    await expect(initEncryption(store, PASSWORD, { kdf: { N: 1000 } })).rejects.toThrow(InvalidArgumentError);
    await expect(initEncryption(store, PASSWORD, { ...FAST, label: 'a\nb' })).rejects.toThrow(/control character/);
    expect(await contents(store)).toEqual([]);
  });
});
