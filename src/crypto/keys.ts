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
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { throwIfAborted, type AbortOptions } from '../abort.js';
import { ConflictError, CorruptStoreError, EncryptionMismatchError, InvalidArgumentError, isCairnError, NotFoundError, WrongPasswordError } from '../errors.js';
import type { Hash } from '../hash.js';
import type { Store } from '../store.js';
import { KEY_BYTES, open, seal } from './aead.js';
import {
  base64,
  checkText,
  deriveKek,
  encodeKeyRecord,
  KEY_ID_PATTERN,
  KEY_REF_PREFIX,
  KeyRecordProblem,
  MAX_KEY_RECORD_BYTES,
  NEW_SALT_BYTES,
  newScryptParams,
  parseKeyRecord,
  passwordBytes,
  wrapAad,
  type KeyRecord,
  type ScryptParams,
} from './key-record.js';
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

/** One key ref and what its record holds (or what is wrong with it). */
interface LoadedKey {
  readonly id: string;
  readonly hash: Hash;
  readonly record?: KeyRecord;
  readonly problem?: string;
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
 * Removes key `id`: its record, then its ref (so its password no longer
 * opens this store's copy of the master key, even if the removal is cut
 * short). Refuses, with
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

// ------------------------------------------------------------------ internals

function checkId(id: unknown): asserts id is string {
  if (typeof id !== 'string' || !KEY_ID_PATTERN.test(id)) {
    throw new InvalidArgumentError(`bad key id ${typeof id === 'string' ? JSON.stringify(id.slice(0, 40)) : typeof id}: a key id is 16 hex digits, as "cairn key list" shows`);
  }
}

async function isEmpty(store: Store, signal: AbortSignal | undefined): Promise<boolean> {
  for await (const _ of store.listRefs('', { signal })) return false;
  for await (const _ of store.listObjects({ signal })) return false;
  return true;
}

async function keyRefs(store: Store, signal: AbortSignal | undefined): Promise<{ id: string; hash: Hash }[]> {
  const refs: { id: string; hash: Hash }[] = [];
  for await (const ref of store.listRefs(KEY_REF_PREFIX, { signal })) refs.push({ id: ref.name.slice(KEY_REF_PREFIX.length), hash: ref.hash });
  return refs;
}

async function loadKeys(store: Store, signal: AbortSignal | undefined): Promise<LoadedKey[]> {
  const loaded: LoadedKey[] = [];
  for (const { id, hash } of await keyRefs(store, signal)) {
    if (!KEY_ID_PATTERN.test(id)) {
      loaded.push({ id: id.slice(0, 40), hash, problem: 'its ref name is not .cairn/keys/<16 hex digits>' });
      continue;
    }
    try {
      loaded.push({ id, hash, record: parseKeyRecord(await readBounded(store, hash, signal), id) });
    } catch (error) {
      if (error instanceof KeyRecordProblem) loaded.push({ id, hash, problem: error.message });
      else if (isCairnError(error, 'ERR_NOT_FOUND')) loaded.push({ id, hash, problem: `its record ${hash.toString()} is missing` });
      else if (isCairnError(error, 'ERR_INTEGRITY')) loaded.push({ id, hash, problem: `its record ${hash.toString()} does not match its hash` });
      else throw error;
    }
  }
  return loaded;
}

/** A record's bytes, verified; a hostile remote's huge object is cut off at {@link MAX_KEY_RECORD_BYTES}. */
async function readBounded(store: Store, hash: Hash, signal: AbortSignal | undefined): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of store.getStream(hash, { signal })) {
    length += chunk.length;
    if (length > MAX_KEY_RECORD_BYTES) throw new KeyRecordProblem(`its record is larger than ${MAX_KEY_RECORD_BYTES} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, length);
}

async function openRecord(record: KeyRecord, password: Uint8Array): Promise<MasterKey | undefined> {
  const kek = await deriveKek(password, record.kdf, base64(record.kdf.salt, 'kdf.salt'));
  try {
    const bytes = open(kek, base64(record.wrapped, 'wrapped'), wrapAad(record.id));
    if (bytes === undefined || bytes.length !== KEY_BYTES) return undefined;
    // A plain Uint8Array copy: MasterKey keeps the class of what it is given, and `open` gives a Buffer.
    const plain = new Uint8Array(bytes);
    bytes.fill(0);
    const master = new MasterKey(plain);
    plain.fill(0);
    return master;
  } finally {
    kek.fill(0);
  }
}

async function writeKey(
  store: Store,
  master: MasterKey,
  password: Uint8Array,
  params: ScryptParams,
  meta: { label: string | undefined; host: string | undefined; signal: AbortSignal | undefined },
): Promise<{ id: string; hash: Hash; record: KeyRecord }> {
  const id = randomBytes(8).toString('hex');
  const salt = new Uint8Array(randomBytes(NEW_SALT_BYTES));
  const kek = await deriveKek(password, params, salt);
  const plain = master.exportBytes();
  let wrapped: Uint8Array;
  try {
    wrapped = seal(kek, plain, wrapAad(id));
  } finally {
    kek.fill(0);
    plain.fill(0);
  }
  const record: KeyRecord = {
    version: 1,
    id,
    created: new Date().toISOString(),
    host: meta.host ?? safeHostname(),
    label: meta.label,
    kdf: { name: 'scrypt', ...params, salt: Buffer.from(salt).toString('base64') },
    wrapped: Buffer.from(wrapped).toString('base64'),
  };
  const hash = await store.put(encodeKeyRecord(record), { signal: meta.signal });
  const result = await store.compareAndSwap(KEY_REF_PREFIX + id, null, hash, { signal: meta.signal });
  // 64 random bits: a clash is a broken random source, not bad luck.
  if (!result.ok) throw new ConflictError(`key id ${id} is taken; try again`, { ref: KEY_REF_PREFIX + id });
  return { id, hash, record };
}

/** The hostname when it is a valid record text (short, printable), else none. */
function safeHostname(): string | undefined {
  try {
    return checkText('host', hostname().slice(0, 200));
  } catch {
    return undefined;
  }
}

/** Removes a key's ref (only if it still names `hash`), then its record object. */
async function withdraw(store: Store, id: string, hash: Hash, signal: AbortSignal | undefined): Promise<void> {
  const name = KEY_REF_PREFIX + id;
  // The record first: once it is gone the password opens nothing, whatever happens next. A crash before the
  // ref goes leaves a ref to a missing record, listed as damaged and opening nothing (a record left without
  // its ref would be worse: nothing lists it, and it would still open with the old password).
  await store.delete(hash, { signal });
  if (store.capabilities.conditionalDelete) {
    const result = await store.compareAndSwap(name, hash, null, { signal });
    if (!result.ok && result.current !== undefined) throw new ConflictError(`key ${id} changed while it was being removed; list the keys and try again`, { ref: name });
  } else {
    await store.deleteRef(name, { signal });
  }
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
