/**
 * Removing a key deletes its record before its ref: a removal cut short in
 * between leaves a key that opens nothing (listed as damaged), and removing
 * it again finishes the job.
 */
import { expect, it } from 'vitest';
import { addKey, initEncryption, listKeys, removeKey, unlock } from '../../src/crypto/keys.js';
import { memoryStore, WrongPasswordError } from '../../src/index.js';

it('a key removal cut short after its record went: the old password opens nothing, and rm again finishes it', async () => {
  const store = memoryStore();
  const kdf = { N: 2 ** 10 };
  const master = await initEncryption(store, 'old password', { kdf, label: 'old' });
  const added = await addKey(store, master, 'new password', { kdf, label: 'new' });
  const old = (await listKeys(store)).find((k) => k.id !== added.id)!;
  // The first step of removeKey, alone (as if the process died right after it).
  const ref = await store.getRef(`.cairn/keys/${old.id}`);
  await store.delete(ref!.hash);

  await expect(unlock(store, 'old password')).rejects.toBeInstanceOf(WrongPasswordError);
  const listed = await listKeys(store);
  expect(listed.find((k) => k.id === old.id)?.problem).toMatch(/missing/);
  expect((await unlock(store, 'new password')).keys().blob).toEqual(master.keys().blob);

  await removeKey(store, old.id);
  expect((await listKeys(store)).map((k) => k.id)).toEqual([added.id]);
});
