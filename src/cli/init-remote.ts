/**
 * What `cairn init` does to a remote: checks that it opens and, with
 * `--encrypt`, makes it encrypted (an empty remote) or joins it (a remote
 * that already has keys: its password is checked). Plain and encrypted are
 * never mixed: `--encrypt` on a non-empty plain remote, and plain `init` of
 * an encrypted remote, are an {@link EncryptionMismatchError} that changes
 * nothing.
 *
 * @module
 */
import { initEncryption, unlock, type ScryptParams } from '../crypto/keys.js';
import type { MasterKey } from '../crypto/master-key.js';
import { EncryptionMismatchError } from '../errors.js';
import { packed } from '../layers/packed/packed.js';
import type { Context } from './command.js';
import type { RemoteTarget } from './config.js';
import { currentPassword, newPassword } from './password.js';
import { openRawRemote, remoteHasKeys } from './stores.js';

/**
 * Checks (and with `target.encrypt`, encrypts or joins) the remote; resolves
 * to whether it is encrypted.
 *
 * @example
 * ```ts
 * const encrypted = await initRemote(ctx, parseRemote({ url, encrypt: true }), { N: 2 ** 15 });
 * ```
 */
export async function initRemote(ctx: Context, target: RemoteTarget, kdf: Partial<ScryptParams> | undefined): Promise<boolean> {
  const signal = ctx.signal;
  const encrypt = target.encrypt === true;
  // Read-only when it exists: plain init only checks a remote, it never rewrites one (not even a damaged tail).
  const raw = await openRawRemote(target, { create: true, signal, access: encrypt ? 'write' : 'read', warn: (line) => ctx.out.warn(line) });
  let master: MasterKey | undefined;
  try {
    const keyed = await remoteHasKeys(raw, target, signal);
    if (keyed && !encrypt) {
      throw new EncryptionMismatchError(
        `remote ${target.display} is encrypted; nothing was changed. To use it, run "cairn init --encrypt --remote ${target.display.split(' ')[0]}" and give its password`,
      );
    }
    if (keyed) {
      master = await unlock(raw, await currentPassword(ctx)(`remote ${target.display}`), { signal });
      ctx.out.note(`remote ${target.display} is encrypted; the password opens it`);
    } else if (encrypt) {
      const password = await newPassword(ctx, 'password-file', 'CAIRN_PASSWORD')(`the new encrypted remote ${target.display}`);
      master = await initEncryption(raw, password, { kdf, signal });
      ctx.out.note(`remote ${target.display} is now encrypted; keep the password safe: without it (or another key) the data cannot be read`);
    }
  } catch (error) {
    await raw.close();
    throw error;
  }
  const store = target.packs ? packed(raw, { encryption: master }) : raw;
  try {
    await store.hasMany([], { signal });
    for await (const _ of store.listRefs('', { signal })) break;
  } finally {
    await store.close();
  }
  return master !== undefined;
}
