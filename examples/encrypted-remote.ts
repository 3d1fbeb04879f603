/**
 * An encrypted remote with the library: make a (disk) remote encrypted,
 * write small and large objects and a ref through the packed layer, show
 * that the remote's files hold no plaintext, reopen it with the password,
 * and add a second key.
 *
 * Run: npx tsx examples/encrypted-remote.ts
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDiskStore } from '../src/backends/disk.js';
import { addKey, initEncryption, listKeys, packed, unlock, WrongPasswordError } from '../src/index.js';

const work = await mkdtemp(join(tmpdir(), 'cairn-encrypted-'));
try {
  const remoteDir = join(work, 'remote');
  // The remote's raw store: an S3 store works the same way (s3Store from 'cairn/backends/s3').
  const raw = await openDiskStore(remoteDir);
  const master = await initEncryption(raw, 'correct horse battery staple', { label: 'example' });
  const store = packed(raw, { encryption: master });

  const note = await store.put(new TextEncoder().encode('PLAINTEXT-NOTE: meet at noon'));
  const big = await store.put(new Uint8Array(3 * 2 ** 20).fill(7));
  await store.setRef('notes/latest', note);
  await store.flush();
  console.log(`wrote ${note.toString()} and a 3 MiB object ${big.toString()}`);

  // Nothing in the remote's files is readable: not the note, not its address.
  let leaked = false;
  for (const file of await readdir(remoteDir, { recursive: true, withFileTypes: true })) {
    if (!file.isFile()) continue;
    const bytes = await readFile(join(file.parentPath, file.name));
    if (bytes.includes('PLAINTEXT-NOTE') || bytes.includes(note.hex)) leaked = true;
  }
  console.log(`plaintext or addresses in the remote's files: ${leaked ? 'FOUND' : 'none'}`);
  await store.close();

  // Reopen: the password unlocks the master key.
  const again = await openDiskStore(remoteDir);
  try {
    await unlock(again, 'not the password');
  } catch (error) {
    if (error instanceof WrongPasswordError) console.log('a wrong password: WrongPasswordError');
  }
  const reader = packed(again, { encryption: await unlock(again, 'correct horse battery staple') });
  const value = await reader.getRef('notes/latest');
  console.log(`notes/latest -> ${new TextDecoder().decode(await reader.get(value!.hash))}`);

  await addKey(again, await unlock(again, 'correct horse battery staple'), 'a second password', { label: 'backup key' });
  for (const key of await listKeys(again)) console.log(`key ${key.id} ${key.label ?? ''} (${key.kdf?.name ?? "?"} N=${key.kdf?.N ?? "?"})`);
  await reader.close();
} finally {
  await rm(work, { recursive: true, force: true });
}
