/**
 * Child process for the key crash tests (keys-crash.test.ts).
 *
 *   keys-child between <dir>   changes the password of the only key from "A" to "B",
 *                              and SIGKILLs itself just before removing the old key
 *   keys-child loop <dir>      changes the password A -> B -> A ... until killed,
 *                              printing "ready" once unlocked
 */
import { openDiskStore } from '../../src/backends/disk.js';
import { changePassword, listKeys, unlockKey } from '../../src/crypto/keys.js';
import type { Store } from '../../src/store.js';

const [mode, dir] = process.argv.slice(2);
if (dir === undefined || (mode !== 'between' && mode !== 'loop')) {
  console.error('usage: keys-child between|loop <dir>');
  process.exit(2);
}
const FAST = { kdf: { N: 2 ** 10 } };
const store = await openDiskStore(dir);
let { master, keyId } = await unlockKey(store, 'A');

if (mode === 'between') {
  // The old key's removal starts with the only object delete (its record): die right before it.
  const dying = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'delete') {
        return async () => {
          process.kill(process.pid, 'SIGKILL');
          await new Promise(() => undefined);
        };
      }
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  }) as Store;
  await changePassword(dying, master, keyId, 'B', FAST);
  console.error(`not killed; keys: ${(await listKeys(store)).length}`);
  process.exit(1);
} else {
  process.stdout.write('ready\n');
  let current = 'A';
  for (;;) {
    const next = current === 'A' ? 'B' : 'A';
    keyId = (await changePassword(store, master, keyId, next, FAST)).id;
    current = next;
    ({ master, keyId } = await unlockKey(store, current));
  }
}
