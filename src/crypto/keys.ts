/**
 * The user keys of an encrypted remote: creating one (`initEncryption`),
 * opening the master key with a password (`unlock`), and adding, listing,
 * removing keys and changing a key's password.
 *
 * The master key (`master-key.ts`) is stored in the remote only wrapped:
 * each user key is a record object (`key-record.ts`) holding the master
 * key sealed under a key derived from that key's password with scrypt, and
 * published by a create-only ref `.cairn/keys/<id>` naming the record's
 * hash. These live in the raw store (the S3 bucket or disk directory under
 * the packed layer), in the clear: a record reveals its id, creation time,
 * host, label and scrypt parameters, never the master key without the
 * password. Each function here takes that raw store.
 *
 * Removing a key (or changing its password) deletes its record, so the old
 * password no longer opens the remote's copy; it cannot take the master key
 * back from whoever already unlocked with it (data is not re-encrypted).
 *
 * Passwords, derived keys and master keys never reach an error message.
 *
 * @module
 */
import { throwIfAborted, type AbortOptions } from '../abort.js';
import { ConflictError, CorruptStoreError, EncryptionMismatchError, InvalidArgumentError, NotFoundError, WrongPasswordError } from '../errors.js';
import type { Hash } from '../hash.js';
import type { Store } from '../store.js';
import { checkId, isEmpty, keyRefs, loadKeys, openRecord, withdraw, writeKey, type LoadedKey } from './key-io.js';
import { checkText, KEY_REF_PREFIX, newScryptParams, passwordBytes, type ScryptParams } from './key-record.js';
import { MasterKey } from './master-key.js';

export { DEFAULT_SCRYPT, KEY_REF_PREFIX, SCRYPT_LIMITS, type ScryptParams } from './key-record.js';

/** A password: a string (used as UTF-8) or bytes. */
export type Password = string | Uint8Array;

/** What {@link listKeys} tells about a key: never its salt, wrapped bytes or anything secret. */
export interface KeyInfo {
  /** 16 hex digits; the key's ref is `.cairn/keys/<id>`. */
  readonly id: string;
  /** When the key was made (ISO time). Absent for a damaged record. */
  readonly created?: string | undefined;
  /** The host that made it (`os.hostname()` unless told otherwise). */
  readonly host?: string | undefined;
  readonly label?: string | undefined;
  /** The key derivation and its cost parameters. Absent for a damaged record. */
  readonly kdf?: ({ readonly name: 'scrypt' } & ScryptParams) | undefined;
  /** Set when the record cannot be used: what is wrong with it. */
  readonly problem?: string | undefined;
}

/** Options of the functions that write a key. */
export interface NewKeyOptions extends AbortOptions {
  /**
   * A note shown by `listKeys` (at most 200 printable characters).
   * @default none
   */
  label?: string | undefined;
  /**
   * The host recorded with the key.
   * @default os.hostname()
   */
  host?: string | undefined;
  /**
   * scrypt cost; each field defaults to {@link DEFAULT_SCRYPT}. Lower is
   * faster to unlock and faster to guess: lower it only in tests.
   * @default { N: 32768, r: 8, p: 1 }
   */
  kdf?: Partial<ScryptParams> | undefined;
}

/** Options of {@link unlock}. */
export interface UnlockOptions extends AbortOptions {
  /**
   * Try only this key.
   * @default every key, in id order
   */
  keyId?: string | undefined;
}


/**
 * Makes `store` an encrypted remote: a new random master key and its first
 * user key, opened by `password`. Refuses, with
 * {@link EncryptionMismatchError} and changing nothing, a store that
 * already has keys or holds anything at all (an object or a ref): plain
 * and encrypted data are never mixed. Of two inits racing on one empty
 * store at most one succeeds (each checks for the other's key after
 * writing its own, and the one that sees another withdraws).
 *
 * @example
 * ```ts
 * const master = await initEncryption(s3Store({ bucket: 'b' }), 'correct horse battery staple');
 * const store = packed(s3Store({ bucket: 'b' }), { encryption: master });
 * ```
 */
export async function initEncryption(store: Store, password: Password, options: NewKeyOptions = {}): Promise<MasterKey> {
  const bytes = passwordBytes(password, true);
  const params = newScryptParams(options.kdf);
  const label = checkText('label', options.label);
  const host = checkText('host', options.host);
  const signal = options.signal;
  if (await isEncrypted(store, { signal })) {
    throw new EncryptionMismatchError('this store is already encrypted (it has keys under .cairn/keys/); unlock it with its password, or add a key with "cairn key add"');
  }
  if (!(await isEmpty(store, signal))) {
    throw new EncryptionMismatchError(
      'this store already holds plain (unencrypted) data: an encrypted remote is made only on an empty store, since mixing plain and encrypted data is refused; ' +
        'the plain remote can still be read as it is, or choose an empty location for the encrypted one',
    );
  }
  const master = MasterKey.generate();
  const mine = await writeKey(store, master, bytes, params, { label, host, signal });
  const others = (await keyRefs(store, signal)).filter((ref) => ref.id !== mine.id);
  if (others.length > 0) {
    await withdraw(store, mine.id, mine.hash, signal);
    throw new ConflictError('another client made this store encrypted at the same time; nothing of this attempt was kept: unlock the store with the password the other client chose');
  }
  return master;
}

/**
 * True when `store` has at least one key ref (`.cairn/keys/`): it is an
 * encrypted remote, whose data only opens with its master key.
 *
 * @example
 * ```ts
 * if (await isEncrypted(rawStore)) master = await unlock(rawStore, password);
 * ```
 */
export async function isEncrypted(store: Store, options: AbortOptions = {}): Promise<boolean> {
  for await (const _ of store.listRefs(KEY_REF_PREFIX, options)) return true;
  return false;
}

/**
 * Opens the master key of `store` with `password`, trying each key (or only
 * `keyId`). Rejects with {@link WrongPasswordError} when no key opens (its
 * message also lists damaged records), {@link CorruptStoreError} when every
 * key record is damaged, {@link EncryptionMismatchError} when the store has
 * no keys (it is not encrypted), and {@link NotFoundError} for an unknown
 * `keyId`. Each key tried costs one scrypt derivation (about 150 ms with
 * the default parameters).
 *
 * @example
 * ```ts
 * const master = await unlock(rawStore, process.env.CAIRN_PASSWORD!);
 * ```
 */
export async function unlock(store: Store, password: Password, options: UnlockOptions = {}): Promise<MasterKey> {
  return (await unlockKey(store, password, options)).master;
}

/**
 * {@link unlock}, also telling which key opened: for a caller that acts on
 * "the key I unlocked with" (`cairn key passwd` with no id).
 *
 * @example
 * ```ts
 * const { master, keyId } = await unlockKey(rawStore, password);
 * await changePassword(rawStore, master, keyId, 'new password');
 * ```
 */
export async function unlockKey(store: Store, password: Password, options: UnlockOptions = {}): Promise<{ master: MasterKey; keyId: string }> {
  const bytes = passwordBytes(password, false);
  const signal = options.signal;
  let keys = await loadKeys(store, signal);
  if (keys.length === 0) {
    throw new EncryptionMismatchError('this store is not encrypted (it has no keys under .cairn/keys/): open it without a password');
  }
  if (options.keyId !== undefined) {
    keys = keys.filter((k) => k.id === options.keyId);
    if (keys.length === 0) throw new NotFoundError(`this store has no key ${JSON.stringify(String(options.keyId).slice(0, 40))}; list the keys with "cairn key list"`);
  }
  let tried = 0;
  for (const key of keys) {
    if (key.record === undefined) continue;
    tried++;
    const master = await openRecord(key.record, bytes);
    throwIfAborted(signal);
    if (master !== undefined) return { master, keyId: key.id };
  }
  const damaged = keys.filter((k) => k.problem !== undefined).map((k) => `key ${k.id}: ${k.problem}`);
  if (tried === 0) throw new CorruptStoreError(`no key record of this store can be used: ${damaged.join('; ')}`);
  throw new WrongPasswordError(
    `the password opens none of the ${tried} key${tried === 1 ? '' : 's'} tried; give the right password, or ask someone who has one to add a key for you` +
      (damaged.length > 0 ? ` (damaged key records, not tried: ${damaged.join('; ')})` : ''),
  );
}

/**
 * Every key of `store`, in id order: id, creation time, host, label and
 * scrypt parameters, or what is wrong with a damaged record. Nothing
 * secret: no salt, no wrapped bytes.
 *
 * @example
 * ```ts
 * for (const key of await listKeys(rawStore)) console.log(key.id, key.created, key.label ?? '');
 * ```
 */
export async function listKeys(store: Store, options: AbortOptions = {}): Promise<KeyInfo[]> {
  return (await loadKeys(store, options.signal)).map(info);
}

/**
 * Adds a key opened by `password` to `store`, wrapping `master` (which must
 * be this store's, as {@link unlock} returned it). Resolves to the new
 * key's info.
 *
 * @example
 * ```ts
 * const master = await unlock(rawStore, 'old password');
 * const { id } = await addKey(rawStore, master, 'password for the laptop', { label: 'laptop' });
 * ```
 */
export async function addKey(store: Store, master: MasterKey, password: Password, options: NewKeyOptions = {}): Promise<KeyInfo> {
  if (!(master instanceof MasterKey)) throw new InvalidArgumentError('addKey takes the MasterKey that unlock returned');
  const bytes = passwordBytes(password, true);
  const params = newScryptParams(options.kdf);
  const label = checkText('label', options.label);
  const host = checkText('host', options.host);
  if (!(await isEncrypted(store, options))) throw new EncryptionMismatchError('this store is not encrypted (it has no keys); make it encrypted with initEncryption ("cairn init --encrypt") on an empty store');
  const { record } = await writeKey(store, master, bytes, params, { label, host, signal: options.signal });
  return info({ id: record.id, record });
}

/**
 * Removes key `id`: its ref, then its record (so its password no longer
 * opens this store's copy of the master key). Refuses, with
 * {@link ConflictError} and changing nothing, to remove the last intact key,
 * which would lock everyone out of the data for good; removing the key you
 * unlocked with is allowed while another exists. A damaged record can
 * always be removed. {@link NotFoundError} for an unknown id. Two removals
 * racing may together remove the last key: remove keys from one place.
 *
 * @example
 * ```ts
 * await removeKey(rawStore, '3f2a9c0d1b4e5f60');
 * ```
 */
export async function removeKey(store: Store, id: string, options: AbortOptions = {}): Promise<void> {
  checkId(id);
  const keys = await loadKeys(store, options.signal);
  const target = keys.find((k) => k.id === id);
  if (target === undefined) throw new NotFoundError(`this store has no key ${id}; list the keys with "cairn key list"`, { ref: KEY_REF_PREFIX + id });
  if (target.record !== undefined && !keys.some((k) => k.id !== id && k.record !== undefined)) {
    throw new ConflictError(`key ${id} is the last key of this store: removing it would make the data unreadable for good; add another key first ("cairn key add"), then remove this one`, {
      ref: KEY_REF_PREFIX + id,
    });
  }
  await withdraw(store, id, target.hash, options.signal);
}

/**
 * Changes the password of key `id`: writes a new key (new id, same label
 * and host) opened by `newPassword`, then removes the old one. A crash in
 * between leaves both keys valid (the old password and the new one both
 * open the store); run `removeKey` on the old id to finish. Resolves to
 * the new key's info.
 *
 * @example
 * ```ts
 * const master = await unlock(rawStore, 'old password', { keyId: id });
 * const renewed = await changePassword(rawStore, master, id, 'new password');
 * ```
 */
export async function changePassword(store: Store, master: MasterKey, id: string, newPassword: Password, options: NewKeyOptions = {}): Promise<KeyInfo> {
  checkId(id);
  const old = (await loadKeys(store, options.signal)).find((k) => k.id === id);
  if (old === undefined) throw new NotFoundError(`this store has no key ${id}; list the keys with "cairn key list"`, { ref: KEY_REF_PREFIX + id });
  const added = await addKey(store, master, newPassword, {
    ...options,
    label: options.label ?? old.record?.label,
    host: options.host ?? old.record?.host,
  });
  await withdraw(store, id, old.hash, options.signal);
  return added;
}

/**
 * The hashes of the record objects every key ref names: a collector must
 * keep them, since the refs that hold them are Cairn's own (`.cairn/`) and
 * not roots of any snapshot.
 *
 * @example
 * ```ts
 * const keep = await keyRecordHashes(rawStore);
 * ```
 */
export async function keyRecordHashes(store: Store, options: AbortOptions = {}): Promise<Hash[]> {
  return (await keyRefs(store, options.signal)).map((ref) => ref.hash);
}

function info(key: Pick<LoadedKey, 'id' | 'record' | 'problem'>): KeyInfo {
  const r = key.record;
  if (r === undefined) return { id: key.id, problem: key.problem };
  return {
    id: r.id,
    created: r.created,
    ...(r.host !== undefined ? { host: r.host } : {}),
    ...(r.label !== undefined ? { label: r.label } : {}),
    kdf: { name: 'scrypt', N: r.kdf.N, r: r.kdf.r, p: r.kdf.p },
  };
}
