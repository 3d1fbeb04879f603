/**
 * `cairn key add|list|rm|passwd`: the user keys of an encrypted remote
 * (`src/crypto/keys.ts`). Each acts on the remote's backend store directly
 * (the key records live beside the packs, not in them), and needs no local
 * store. `add`, `rm` and `passwd` first unlock the remote with a current
 * password; `list` shows only what records hold in the clear, and needs
 * none. No password, salt or key is ever printed, `--json` included.
 *
 * @module
 */
import { addKey, changePassword, listKeys, removeKey, unlockKey, type KeyInfo, type ScryptParams } from '../crypto/keys.js';
import { EncryptionMismatchError } from '../errors.js';
import type { Store } from '../store.js';
import type { Command, Context } from './command.js';
import { resolveConfig, type RemoteTarget } from './config.js';
import { EXIT, UsageError } from './exit-codes.js';
import { currentPassword, newPassword } from './password.js';
import { configFlags, openRawRemote } from './stores.js';

const SUBCOMMANDS = ['add', 'list', 'rm', 'passwd'] as const;

/**
 * The scrypt cost asked by `--kdf-work` (log2 of N, 10 to 22), or the
 * default. Lower is faster to unlock and faster to guess: for tests.
 */
export function kdfOption(ctx: Context): Partial<ScryptParams> | undefined {
  const text = ctx.values['kdf-work'];
  if (text === undefined) return undefined;
  const work = Number(text);
  if (typeof text !== 'string' || !/^\d+$/.test(text) || work < 10 || work > 22) {
    throw new UsageError(`--kdf-work takes log2 of scrypt's N, an integer from 10 to 22 (default 15), got ${JSON.stringify(String(text).slice(0, 20))}`);
  }
  return { N: 2 ** work };
}

function keyLine(k: KeyInfo): string {
  if (k.problem !== undefined) return `${k.id}  damaged: ${k.problem}`;
  const kdf = k.kdf === undefined ? '' : `${k.kdf.name} N=2^${Math.log2(k.kdf.N)} r=${k.kdf.r} p=${k.kdf.p}`;
  return [k.id, k.created ?? '', k.host ?? '-', kdf, k.label ?? ''].join('  ').trimEnd();
}

async function openKeyStore(ctx: Context, write: boolean): Promise<{ raw: Store; target: RemoteTarget }> {
  const config = await resolveConfig(configFlags(ctx), ctx.env);
  const target = config.remote;
  if (target === undefined) throw new UsageError('no remote configured; run "cairn init --encrypt --remote URL" or pass --remote (or set CAIRN_REMOTE)');
  const raw = await openRawRemote(target, { signal: ctx.signal, access: write ? 'write' : 'read', warn: (line) => ctx.out.warn(line) });
  return { raw, target };
}

export const key: Command = {
  name: 'key',
  summary: "manage an encrypted remote's keys: add, list, rm, passwd",
  usage: 'key <add|list|rm|passwd> ...',
  description: [
    'key add                   add a key (a password) that opens the remote; asks for the new password',
    'key list                  list keys: id, created, host, scrypt cost, label (needs no password)',
    'key rm ID                 remove a key; the last key is refused (exit 4)',
    'key passwd [ID]           change the password of key ID (default: the key your password opens)',
    '',
    'add, rm and passwd first unlock the remote with a current password (--password-file, CAIRN_PASSWORD',
    'or a prompt). The new password comes from --new-password-file, CAIRN_NEW_PASSWORD or a prompt asked',
    'twice. Removing a key deletes its record: its password no longer opens the remote; it does not',
    're-encrypt data someone already unlocked. Passwords are never printed.',
  ].join('\n'),
  options: {
    'new-password-file': { type: 'string' },
    label: { type: 'string' },
    'kdf-work': { type: 'string' },
  },
  optionHelp: {
    'new-password-file': 'key add / passwd: the new password is the first line of this file (else env CAIRN_NEW_PASSWORD, else a prompt)',
    label: 'key add / passwd: a note shown by key list',
    'kdf-work': 'key add / passwd: scrypt cost as log2(N), 10..22 (default 15, about 150 ms); lower only for tests',
  },
  examples: ['cairn key add --label laptop', 'cairn key list', 'cairn key rm 3f2a9c0d1b4e5f60', 'cairn key passwd'],
  async run(ctx) {
    const sub = ctx.positionals[0];
    if (sub === undefined || !(SUBCOMMANDS as readonly string[]).includes(sub)) {
      throw new UsageError(`expected a subcommand: ${SUBCOMMANDS.join(', ')}; see "cairn key --help"`);
    }
    const rest = ctx.positionals.slice(1);
    const usage = { add: 'add', list: 'list', rm: 'rm ID', passwd: 'passwd [ID]' }[sub as (typeof SUBCOMMANDS)[number]];
    if ((sub === 'add' || sub === 'list') && rest.length !== 0) throw new UsageError(`usage: cairn key ${usage}`);
    if (sub === 'rm' && rest.length !== 1) throw new UsageError(`usage: cairn key ${usage}`);
    if (sub === 'passwd' && rest.length > 1) throw new UsageError(`usage: cairn key ${usage}`);
    const kdf = kdfOption(ctx);
    const label = ctx.values.label as string | undefined;
    const signal = ctx.signal;
    const { raw, target } = await openKeyStore(ctx, sub !== 'list');
    try {
      const keys = await listKeys(raw, { signal });
      if (keys.length === 0) {
        throw new EncryptionMismatchError(`remote ${target.display} is not encrypted: it has no keys (an encrypted remote is made by "cairn init --encrypt" on an empty remote)`);
      }
      if (sub === 'list') {
        for (const k of keys) ctx.out.line(keyLine(k));
        ctx.out.result({ keys });
        return EXIT.ok;
      }
      const { master, keyId } = await unlockKey(raw, await currentPassword(ctx)(`remote ${target.display}`), { signal });
      if (sub === 'add') {
        const password = await newPassword(ctx, 'new-password-file', 'CAIRN_NEW_PASSWORD')('the new key');
        const added = await addKey(raw, master, password, { label, kdf, signal });
        ctx.out.line(added.id);
        ctx.out.note(`added key ${added.id}; "cairn key list" shows every key`);
        ctx.out.result({ added });
        return EXIT.ok;
      }
      if (sub === 'rm') {
        const id = rest[0]!;
        await removeKey(raw, id, { signal });
        ctx.out.note(`removed key ${id}` + (id === keyId ? '; it was the key your password opened: use another key\'s password from now on' : ''));
        ctx.out.result({ removed: id });
        return EXIT.ok;
      }
      const id = rest[0] ?? keyId;
      const password = await newPassword(ctx, 'new-password-file', 'CAIRN_NEW_PASSWORD')(`key ${id} (new password)`);
      const renewed = await changePassword(raw, master, id, password, { label, kdf, signal });
      ctx.out.line(renewed.id);
      ctx.out.note(`changed the password of key ${id}: it is now key ${renewed.id}, and the old password no longer opens it`);
      ctx.out.result({ replaced: id, key: renewed });
      return EXIT.ok;
    } finally {
      await raw.close();
    }
  },
};
