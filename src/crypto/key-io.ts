/**
 * Reading and writing key records in a store, for `keys.ts`: the refs under
 * `.cairn/keys/`, records read with a size bound and parsed as untrusted,
 * a master key wrapped and unwrapped, a key withdrawn (ref, then record).
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { ConflictError, InvalidArgumentError, isCairnError } from '../errors.js';
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
  parseKeyRecord,
  wrapAad,
  type KeyRecord,
  type ScryptParams,
} from './key-record.js';
import { MasterKey } from './master-key.js';

/** One key ref and what its record holds (or what is wrong with it). */
export interface LoadedKey {
  readonly id: string;
  readonly hash: Hash;
  readonly record?: KeyRecord;
  readonly problem?: string;
}

export function checkId(id: unknown): asserts id is string {
  if (typeof id !== 'string' || !KEY_ID_PATTERN.test(id)) {
    throw new InvalidArgumentError(`bad key id ${typeof id === 'string' ? JSON.stringify(id.slice(0, 40)) : typeof id}: a key id is 16 hex digits, as "cairn key list" shows`);
  }
}

export async function isEmpty(store: Store, signal: AbortSignal | undefined): Promise<boolean> {
  for await (const _ of store.listRefs('', { signal })) return false;
  for await (const _ of store.listObjects({ signal })) return false;
  return true;
}

export async function keyRefs(store: Store, signal: AbortSignal | undefined): Promise<{ id: string; hash: Hash }[]> {
  const refs: { id: string; hash: Hash }[] = [];
  for await (const ref of store.listRefs(KEY_REF_PREFIX, { signal })) refs.push({ id: ref.name.slice(KEY_REF_PREFIX.length), hash: ref.hash });
  return refs;
}

export async function loadKeys(store: Store, signal: AbortSignal | undefined): Promise<LoadedKey[]> {
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
export async function readBounded(store: Store, hash: Hash, signal: AbortSignal | undefined): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of store.getStream(hash, { signal })) {
    length += chunk.length;
    if (length > MAX_KEY_RECORD_BYTES) throw new KeyRecordProblem(`its record is larger than ${MAX_KEY_RECORD_BYTES} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, length);
}

export async function openRecord(record: KeyRecord, password: Uint8Array): Promise<MasterKey | undefined> {
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

export async function writeKey(
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
export function safeHostname(): string | undefined {
  try {
    return checkText('host', hostname().slice(0, 200));
  } catch {
    return undefined;
  }
}

/** Removes a key's ref (only if it still names `hash`), then its record object. */
export async function withdraw(store: Store, id: string, hash: Hash, signal: AbortSignal | undefined): Promise<void> {
  const name = KEY_REF_PREFIX + id;
  if (store.capabilities.conditionalDelete) {
    const result = await store.compareAndSwap(name, hash, null, { signal });
    if (!result.ok && result.current !== undefined) throw new ConflictError(`key ${id} changed while it was being removed; list the keys and try again`, { ref: name });
  } else {
    await store.deleteRef(name, { signal });
  }
  await store.delete(hash, { signal });
}
