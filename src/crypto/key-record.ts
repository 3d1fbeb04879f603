/**
 * The key record: one user key of an encrypted remote, as stored in it.
 *
 * A record is a small JSON object holding the master key sealed (AES-256-GCM,
 * `aead.ts`) under a key-encryption key derived from a password with scrypt:
 *
 * ```json
 * { "version": 1, "id": "<16 hex>", "created": "<ISO time>", "host": "...", "label": "...",
 *   "kdf": { "name": "scrypt", "N": 32768, "r": 8, "p": 1, "salt": "<base64>" },
 *   "wrapped": "<base64 of seal(kek, master, associatedData('cairn key v1', id))>" }
 * ```
 *
 * A record comes from the remote, so it is untrusted: its size is bounded
 * before it is parsed, and its scrypt parameters are checked against
 * {@link SCRYPT_LIMITS} before anything is derived, so that a hostile
 * remote cannot make a reader allocate gigabytes or spin for hours.
 *
 * @module
 */
import { scrypt } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';
import { associatedData, KEY_BYTES, SEAL_OVERHEAD } from './aead.js';

/** Where key refs live: `.cairn/keys/<id>`, each naming a record object. */
export const KEY_REF_PREFIX = '.cairn/keys/';
/** The only record version written and read. */
export const KEY_RECORD_VERSION = 1;
/** Largest record read from a remote; real ones are about 400 bytes. */
export const MAX_KEY_RECORD_BYTES = 16 * 1024;
/** A key id: 8 random bytes as 16 lowercase hex digits. */
export const KEY_ID_PATTERN = /^[0-9a-f]{16}$/;

/** scrypt's cost parameters: N (CPU and memory, a power of two), r (block size), p (parallelism). */
export interface ScryptParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

/**
 * Parameters of new keys: about 150 ms and 32 MiB per derivation on a 2024
 * server core (measured: N=2^14 75 ms, 2^15 155 ms, 2^16 280 ms, r=8, p=1),
 * the cost every unlock pays once per key tried.
 */
export const DEFAULT_SCRYPT: ScryptParams = Object.freeze({ N: 2 ** 15, r: 8, p: 1 });

/**
 * What a record may ask of a reader, checked before deriving: memory
 * (`128 * N * r` bytes) at most 512 MiB, work (`N * r * p`) at most 64 times
 * the default (some 10 s). Parameters outside are a damaged record.
 */
export const SCRYPT_LIMITS = Object.freeze({
  minN: 2 ** 10,
  maxN: 2 ** 22,
  maxR: 32,
  maxP: 16,
  maxMemoryBytes: 2 ** 29,
  maxWork: 64 * DEFAULT_SCRYPT.N * DEFAULT_SCRYPT.r * DEFAULT_SCRYPT.p,
});

/** Salt bytes of new records (records with 16 to 64 are read). */
const SALT_BYTES = 16;
/** Longest host or label accepted. */
const MAX_TEXT = 200;

/** A parsed, checked record. */
export interface KeyRecord {
  readonly version: 1;
  readonly id: string;
  readonly created: string;
  readonly host?: string | undefined;
  readonly label?: string | undefined;
  readonly kdf: { readonly name: 'scrypt'; readonly salt: string } & ScryptParams;
  readonly wrapped: string;
}

/** Why a record cannot be used (internal: the caller turns it into the error that names the key). */
export class KeyRecordProblem extends Error {}

/** What is wrong with scrypt parameters, or undefined when they are within {@link SCRYPT_LIMITS}. */
export function scryptProblem(params: { N?: unknown; r?: unknown; p?: unknown }): string | undefined {
  const { N, r, p } = params;
  const L = SCRYPT_LIMITS;
  if (typeof N !== 'number' || !Number.isSafeInteger(N) || N < L.minN || N > L.maxN || (N & (N - 1)) !== 0) {
    return `scrypt N must be a power of two from 2^10 to 2^22, got ${shown(N)}`;
  }
  if (typeof r !== 'number' || !Number.isSafeInteger(r) || r < 1 || r > L.maxR) return `scrypt r must be an integer from 1 to ${L.maxR}, got ${shown(r)}`;
  if (typeof p !== 'number' || !Number.isSafeInteger(p) || p < 1 || p > L.maxP) return `scrypt p must be an integer from 1 to ${L.maxP}, got ${shown(p)}`;
  if (128 * N * r > L.maxMemoryBytes) return `scrypt N=${N} r=${r} needs ${(128 * N * r) / 2 ** 20} MiB, over the ${L.maxMemoryBytes / 2 ** 20} MiB limit`;
  if (N * r * p > L.maxWork) return `scrypt N*r*p = ${N * r * p} is over the limit of ${L.maxWork}`;
  return undefined;
}

function shown(value: unknown): string {
  return typeof value === 'number' ? String(value) : typeof value;
}

/** Checked parameters for a new key: the defaults, overridden by `given`; bad ones are an {@link InvalidArgumentError}. */
export function newScryptParams(given: Partial<ScryptParams> | undefined): ScryptParams {
  const params = { ...DEFAULT_SCRYPT, ...given };
  const problem = scryptProblem(params);
  if (problem !== undefined) throw new InvalidArgumentError(`bad kdf option: ${problem}`);
  return { N: params.N, r: params.r, p: params.p };
}

/** Checks a host or label for a new record: short, printable. */
export function checkText(what: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (textProblem(value) !== undefined) throw new InvalidArgumentError(`bad ${what}: ${textProblem(value)}`);
  return value;
}

function textProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return `not a string but ${typeof value}`;
  if (value.length > MAX_TEXT) return `longer than ${MAX_TEXT} characters`;
  // Control characters would reach a terminal through "cairn key list".
  if (/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(value)) return 'it has a control character';
  return undefined;
}

/** A password as bytes (a string as UTF-8); an empty one is an {@link InvalidArgumentError} when `forNewKey`. */
export function passwordBytes(password: string | Uint8Array, forNewKey: boolean): Uint8Array {
  let bytes: Uint8Array;
  if (typeof password === 'string') bytes = Buffer.from(password, 'utf8');
  else if (password instanceof Uint8Array) bytes = password;
  else throw new InvalidArgumentError(`a password is a string or a Uint8Array, got ${password === null ? 'null' : typeof password}`);
  if (forNewKey && bytes.length === 0) throw new InvalidArgumentError('the password is empty; choose a non-empty password');
  return bytes;
}

/** The key-encryption key of a password under checked parameters. */
export function deriveKek(password: Uint8Array, params: ScryptParams, salt: Uint8Array): Promise<Uint8Array> {
  const { N, r, p } = params;
  // OpenSSL counts the N-block table, p blocks and some slack against maxmem.
  const maxmem = 128 * r * (N + p + 2) + 2 ** 20;
  return new Promise((resolve, reject) => {
    scrypt(password, salt, KEY_BYTES, { N, r, p, maxmem }, (error, key) => (error === null ? resolve(new Uint8Array(key)) : reject(error)));
  });
}

/** The associated data that binds a wrapped master key to its record's id. */
export function wrapAad(id: string): Uint8Array {
  return associatedData('cairn key v1', id);
}

/** A fresh salt for a new record. */
export const NEW_SALT_BYTES = SALT_BYTES;

/** The record as stored bytes. */
export function encodeKeyRecord(record: KeyRecord): Uint8Array {
  return Buffer.from(JSON.stringify(record), 'utf8');
}

/**
 * Parses and checks a record read from the ref `.cairn/keys/<expectedId>`;
 * throws {@link KeyRecordProblem} naming the first thing wrong.
 */
export function parseKeyRecord(bytes: Uint8Array, expectedId: string): KeyRecord {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8'));
  } catch {
    throw new KeyRecordProblem('it is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new KeyRecordProblem('it is not a JSON object');
  const v = value as Record<string, unknown>;
  if (v.version !== KEY_RECORD_VERSION) throw new KeyRecordProblem(`unknown version ${shown(v.version)} (this Cairn reads version ${KEY_RECORD_VERSION})`);
  if (v.id !== expectedId) throw new KeyRecordProblem(`its id is ${typeof v.id === 'string' ? JSON.stringify(v.id.slice(0, 40)) : typeof v.id}, not the id its ref names`);
  if (typeof v.created !== 'string' || v.created.length > 40 || Number.isNaN(Date.parse(v.created))) throw new KeyRecordProblem('its "created" is not a time');
  for (const field of ['host', 'label'] as const) {
    const problem = v[field] === undefined ? undefined : textProblem(v[field]);
    if (problem !== undefined) throw new KeyRecordProblem(`its "${field}" is bad: ${problem}`);
  }
  const kdf = v.kdf as Record<string, unknown> | null | undefined;
  if (typeof kdf !== 'object' || kdf === null) throw new KeyRecordProblem('it has no "kdf" object');
  if (kdf.name !== 'scrypt') throw new KeyRecordProblem(`unknown kdf ${shown(kdf.name)} (this Cairn reads "scrypt")`);
  const problem = scryptProblem(kdf);
  if (problem !== undefined) throw new KeyRecordProblem(problem);
  const salt = base64(kdf.salt, 'kdf.salt');
  if (salt.length < 16 || salt.length > 64) throw new KeyRecordProblem(`its salt is ${salt.length} bytes (16 to 64 expected)`);
  if (base64(v.wrapped, 'wrapped').length !== KEY_BYTES + SEAL_OVERHEAD) throw new KeyRecordProblem('its wrapped key is not the size of a sealed master key');
  return {
    version: 1,
    id: expectedId,
    created: v.created,
    host: v.host as string | undefined,
    label: v.label as string | undefined,
    kdf: { name: 'scrypt', N: kdf.N as number, r: kdf.r as number, p: kdf.p as number, salt: kdf.salt as string },
    wrapped: v.wrapped as string,
  };
}

/** Strict base64 (what Buffer.toString('base64') writes): anything else is a problem, not silently skipped characters. */
export function base64(value: unknown, field: string): Uint8Array {
  if (typeof value !== 'string' || value.length > 1024 || !/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) {
    throw new KeyRecordProblem(`its "${field}" is not base64`);
  }
  return new Uint8Array(Buffer.from(value, 'base64'));
}
