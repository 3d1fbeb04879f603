/**
 * Authenticated encryption for everything Cairn writes to an encrypted
 * remote: AES-256-GCM from `node:crypto` (OpenSSL, with AES-NI on x86 and
 * the ARMv8 crypto extensions: several GB/s, far beyond a JavaScript
 * XChaCha20-Poly1305; see bench `crypto`). A sealed box is
 * `nonce (12) || ciphertext || tag (16)`.
 *
 * Nonces are random. With 96-bit random nonces one key stays within NIST's
 * bound (collision chance under 2^-32) for 2^32 boxes; every large object
 * gets a key of its own (derived from a random salt), so the boxes under
 * one key are blobs, records and ref bodies: billions of writes.
 *
 * `open` answers `undefined` for a box that does not authenticate (wrong
 * key, a flipped byte, another box, other associated data): the caller
 * knows what it was opening and throws the error that names it.
 *
 * @module
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

/** Bytes of a key. */
export const KEY_BYTES = 32;
/** Bytes of a nonce. */
export const NONCE_BYTES = 12;
/** Bytes of an authentication tag. */
export const TAG_BYTES = 16;
/** What sealing adds to the plaintext's length. */
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;

const ALGORITHM = 'aes-256-gcm';
const EMPTY = new Uint8Array(0);

/** Encrypts and authenticates `plaintext` (and `aad`, which is not stored) under `key`; a fresh random nonce unless one is given. */
export function seal(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array = EMPTY, nonce: Uint8Array = randomBytes(NONCE_BYTES)): Uint8Array {
  const cipher = createCipheriv(ALGORITHM, key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const out = Buffer.allocUnsafe(NONCE_BYTES + plaintext.length + TAG_BYTES);
  out.set(nonce, 0);
  const body = cipher.update(plaintext);
  out.set(body, NONCE_BYTES);
  const tail = cipher.final();
  out.set(tail, NONCE_BYTES + body.length);
  out.set(cipher.getAuthTag(), NONCE_BYTES + body.length + tail.length);
  return out;
}

/** The plaintext of a box sealed by {@link seal} with the same key and `aad`, or undefined when it does not authenticate. */
export function open(key: Uint8Array, box: Uint8Array, aad: Uint8Array = EMPTY): Uint8Array | undefined {
  if (box.length < SEAL_OVERHEAD) return undefined;
  const decipher = createDecipheriv(ALGORITHM, key, box.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(box.subarray(box.length - TAG_BYTES));
  const body = decipher.update(box.subarray(NONCE_BYTES, box.length - TAG_BYTES));
  try {
    const tail = decipher.final();
    return tail.length === 0 ? body : Buffer.concat([body, tail]);
  } catch {
    return undefined;
  }
}

/** A key for one purpose, derived from `key` with HKDF-SHA256 (`salt` makes it one object's own). */
export function deriveKey(key: Uint8Array, purpose: string, salt: Uint8Array = EMPTY): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', key, salt, `cairn ${purpose}`, KEY_BYTES));
}

/** `n` random bytes. */
export function randomKey(n: number = KEY_BYTES): Uint8Array {
  return new Uint8Array(randomBytes(n));
}

/** Associated data: the parts, each length-prefixed, so that no two different lists encode alike. */
export function associatedData(...parts: (string | Uint8Array)[]): Uint8Array {
  const bytes = parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p));
  const out = Buffer.allocUnsafe(bytes.reduce((n, b) => n + 4 + b.length, 0));
  let at = 0;
  for (const b of bytes) {
    out.writeUInt32BE(b.length, at);
    out.set(b, at + 4);
    at += 4 + b.length;
  }
  return out;
}
