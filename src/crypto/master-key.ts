/**
 * The master key of an encrypted remote and the keys derived from it.
 *
 * One random 256-bit master key per remote, made once by `init --encrypt`
 * and stored only wrapped (see `keys.ts`). Every key that encrypts data is
 * derived from it with HKDF for one purpose, so that a box made for one
 * purpose (a blob, a record, a ref body, a large object's segments) never
 * opens as another, and a box from another remote (another master key)
 * opens as nothing.
 *
 * @module
 */
import { deriveKey, KEY_BYTES, randomKey } from './aead.js';

/** The keys of one encrypted remote, derived from its master key. Never printed, never serialised except wrapped. */
export interface RepositoryKeys {
  /** Pack blobs (one box per blob, the blob's address as associated data). */
  readonly blob: Uint8Array;
  /** Pack indexes, removal, retirement and large-object records. */
  readonly record: Uint8Array;
  /** Ref bodies (the ref's name as associated data). */
  readonly ref: Uint8Array;
  /** Large objects: each gets its own key, derived from this one with a random salt. */
  readonly segment: Uint8Array;
}

/** A new random master key. */
export function newMasterKey(): Uint8Array {
  return randomKey(KEY_BYTES);
}

/** The purpose keys of `master`. */
export function repositoryKeys(master: Uint8Array): RepositoryKeys {
  if (master.length !== KEY_BYTES) throw new RangeError(`a master key is ${KEY_BYTES} bytes, got ${master.length}`);
  return Object.freeze({
    blob: deriveKey(master, 'blob v1'),
    record: deriveKey(master, 'record v1'),
    ref: deriveKey(master, 'ref v1'),
    segment: deriveKey(master, 'segment v1'),
  });
}

/**
 * An unlocked master key, as `unlock` (keys.ts) returns it and `packed`
 * takes it (`encryption`). Its bytes are not enumerable and it prints as
 * `[MasterKey]` (in `console.log`, `JSON.stringify`, error messages), so it
 * cannot reach a log by accident.
 */
export class MasterKey {
  readonly #bytes: Uint8Array;
  #keys: RepositoryKeys | undefined;

  constructor(bytes: Uint8Array) {
    if (!(bytes instanceof Uint8Array) || bytes.length !== KEY_BYTES) throw new RangeError(`a master key is ${KEY_BYTES} bytes`);
    this.#bytes = Uint8Array.prototype.slice.call(bytes);
  }

  /** A new random master key. */
  static generate(): MasterKey {
    return new MasterKey(newMasterKey());
  }

  /** The raw bytes, for wrapping under a user key. */
  exportBytes(): Uint8Array {
    return Uint8Array.prototype.slice.call(this.#bytes);
  }

  /** The purpose keys. */
  keys(): RepositoryKeys {
    return (this.#keys ??= repositoryKeys(this.#bytes));
  }

  toJSON(): string {
    return '[MasterKey]';
  }

  toString(): string {
    return '[MasterKey]';
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return '[MasterKey]';
  }
}
