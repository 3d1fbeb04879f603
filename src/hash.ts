/**
 * Hashes: the addresses of objects.
 *
 * A {@link Hash} carries its algorithm, so a store can hold objects hashed
 * with different algorithms side by side and no caller can mistake a BLAKE3
 * digest for a SHA-256 one. The text form is `<algorithm>:<lowercase hex>`,
 * for example `sha256:e3b0c442...`. {@link parseHash} accepts that form and a
 * CIDv1 (as IPFS tools print it), and rejects anything else with an
 * {@link InvalidHashError}.
 *
 * SHA-256 runs on `node:crypto` (native, measured at about 10x
 * `@noble/hashes` on these machines: see `npm run bench`); BLAKE3 runs on
 * `@noble/hashes`, Node having no native BLAKE3.
 *
 * @module
 */
import { createHash, hash as oneShotHash } from 'node:crypto';
import { blake3 } from '@noble/hashes/blake3.js';
import { CID } from 'multiformats/cid';
import * as Digest from 'multiformats/hashes/digest';
import { InvalidHashError } from './errors.js';

/** The hash algorithms Cairn can address objects by. */
export type HashAlgorithm = 'sha256' | 'blake3';

/** Every supported algorithm, default first. */
export const HASH_ALGORITHMS: readonly HashAlgorithm[] = ['sha256', 'blake3'];

/** The algorithm used when none is named. */
export const DEFAULT_ALGORITHM: HashAlgorithm = 'sha256';

/** Digest length in bytes, per algorithm. Both are 32. */
const DIGEST_BYTES: Record<HashAlgorithm, number> = { sha256: 32, blake3: 32 };

/** Multihash codes (multicodec table) used in CIDs. */
const MULTIHASH_CODE: Record<HashAlgorithm, number> = { sha256: 0x12, blake3: 0x1e };

/** Multicodec of raw bytes: a CID of an object names its bytes as they are. */
const RAW_CODEC = 0x55;

const HEX_PATTERN = /^[0-9a-f]+$/;

/**
 * An object's address: an algorithm and its digest. Immutable.
 *
 * @example
 * ```ts
 * const h = hashBytes(new TextEncoder().encode('hello'));
 * h.toString(); // 'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824'
 * h.toCid();    // 'bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq'
 * ```
 */
export class Hash {
  readonly algorithm: HashAlgorithm;
  /** The lowercase hex digest. */
  readonly hex: string;

  private constructor(algorithm: HashAlgorithm, hex: string) {
    this.algorithm = algorithm;
    this.hex = hex;
  }

  /** Builds a hash from a raw digest; rejects a digest of the wrong length. */
  static fromDigest(algorithm: HashAlgorithm, digest: Uint8Array): Hash {
    checkAlgorithm(algorithm);
    if (digest.length !== DIGEST_BYTES[algorithm]) {
      throw new InvalidHashError(
        `a ${algorithm} digest has ${DIGEST_BYTES[algorithm]} bytes, got ${digest.length}`,
      );
    }
    return new Hash(algorithm, Buffer.from(digest.buffer, digest.byteOffset, digest.length).toString('hex'));
  }

  /** Builds a hash from an algorithm and hex digest (any case); validates both. */
  static fromHex(algorithm: string, hex: string): Hash {
    checkAlgorithm(algorithm);
    const lower = hex.toLowerCase();
    if (lower.length !== DIGEST_BYTES[algorithm] * 2 || !HEX_PATTERN.test(lower)) {
      throw new InvalidHashError(
        `a ${algorithm} hash is ${DIGEST_BYTES[algorithm] * 2} hex digits, got ${describe(hex)}`,
        { key: `${algorithm}:${hex}`.slice(0, 200) },
      );
    }
    return new Hash(algorithm, lower);
  }

  /** The raw digest bytes. */
  get digest(): Uint8Array {
    return Buffer.from(this.hex, 'hex');
  }

  /** Built once: the text form is every backend's map key, so it sits on hot lookup paths. */
  #text: string | undefined;

  /** The text form, `<algorithm>:<hex>`, which {@link parseHash} reads back. */
  toString(): string {
    return (this.#text ??= `${this.algorithm}:${this.hex}`);
  }

  /** So that `JSON.stringify` writes the text form. */
  toJSON(): string {
    return this.toString();
  }

  /**
   * The CIDv1 of the object: raw codec, this hash's multihash, base32
   * (`b...`), as `ipfs add --raw-leaves --cid-version=1` prints it for a
   * single-block file.
   */
  toCid(): string {
    return CID.create(1, RAW_CODEC, Digest.create(MULTIHASH_CODE[this.algorithm], this.digest)).toString();
  }

  /** True when both name the same algorithm and digest. */
  equals(other: Hash | null | undefined): boolean {
    return other != null && other.algorithm === this.algorithm && other.hex === this.hex;
  }
}

/** True for a supported algorithm name. */
export function isHashAlgorithm(value: unknown): value is HashAlgorithm {
  return value === 'sha256' || value === 'blake3';
}

function checkAlgorithm(algorithm: string): asserts algorithm is HashAlgorithm {
  if (!isHashAlgorithm(algorithm)) {
    throw new InvalidHashError(
      `unknown hash algorithm ${describe(algorithm)}; use one of ${HASH_ALGORITHMS.join(', ')}`,
    );
  }
}

function describe(text: unknown): string {
  if (typeof text !== 'string') return typeof text;
  const shown = text.length > 80 ? `${text.slice(0, 80)}...` : text;
  return JSON.stringify(shown);
}

/**
 * Parses untrusted text into a {@link Hash}: `<algorithm>:<hex>` or a CIDv1
 * with the raw codec. Never throws anything but {@link InvalidHashError}.
 *
 * @example
 * ```ts
 * parseHash('sha256:' + 'ab'.repeat(32)).algorithm; // 'sha256'
 * parseHash('bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq').hex; // '2cf24dba...'
 * ```
 */
export function parseHash(text: unknown): Hash {
  if (typeof text !== 'string') {
    throw new InvalidHashError(`a hash must be a string, got ${describe(text)}`);
  }
  const colon = text.indexOf(':');
  if (colon > 0) {
    return Hash.fromHex(text.slice(0, colon), text.slice(colon + 1));
  }
  if (text.startsWith('b') || text.startsWith('Qm') || text.startsWith('z')) {
    return parseCid(text);
  }
  throw new InvalidHashError(
    `not a hash: ${describe(text)}; expected "sha256:<64 hex digits>", "blake3:<64 hex digits>" or a CIDv1 ("bafkrei...")`,
    { key: text.slice(0, 200) },
  );
}

/**
 * Parses a CID string into the {@link Hash} of the bytes it names. Only the
 * raw codec is accepted: a CID of a dag-pb or dag-cbor block names an
 * encoding, not the object's bytes.
 */
export function parseCid(text: string): Hash {
  let cid: CID;
  try {
    cid = CID.parse(text);
  } catch (cause) {
    throw new InvalidHashError(`not a valid CID: ${describe(text)}`, { key: text.slice(0, 200), cause });
  }
  if (cid.code !== RAW_CODEC) {
    throw new InvalidHashError(
      `CID ${describe(text)} uses codec 0x${cid.code.toString(16)}; Cairn addresses raw bytes (codec 0x55, "bafkrei..." for SHA-256)`,
      { key: text },
    );
  }
  const algorithm = HASH_ALGORITHMS.find((a) => MULTIHASH_CODE[a] === cid.multihash.code);
  if (algorithm === undefined) {
    throw new InvalidHashError(
      `CID ${describe(text)} uses multihash 0x${cid.multihash.code.toString(16)}; supported: sha2-256 (0x12), blake3 (0x1e)`,
      { key: text },
    );
  }
  return Hash.fromDigest(algorithm, cid.multihash.digest);
}

/** An incremental hasher for inputs that do not fit in memory. */
export interface Hasher {
  update(chunk: Uint8Array): void;
  /** Finishes the hash; the hasher must not be used afterwards. */
  digest(): Hash;
}

/**
 * Creates a streaming hasher.
 *
 * @example
 * ```ts
 * const hasher = createHasher('sha256');
 * for await (const chunk of fs.createReadStream(path)) hasher.update(chunk);
 * const hash = hasher.digest();
 * ```
 */
export function createHasher(algorithm: HashAlgorithm = DEFAULT_ALGORITHM): Hasher {
  checkAlgorithm(algorithm);
  if (algorithm === 'sha256') {
    const inner = createHash('sha256');
    return {
      update: (chunk) => void inner.update(chunk),
      digest: () => Hash.fromDigest('sha256', inner.digest()),
    };
  }
  const inner = blake3.create();
  return {
    update: (chunk) => void inner.update(chunk),
    digest: () => Hash.fromDigest('blake3', inner.digest()),
  };
}

/** Hashes bytes in one call. */
export function hashBytes(bytes: Uint8Array, algorithm: HashAlgorithm = DEFAULT_ALGORITHM): Hash {
  // One-shot: no Hash object to build (a third of the cost of hashing 4 KiB).
  if (algorithm === 'sha256') return Hash.fromDigest('sha256', oneShotHash('sha256', bytes, 'buffer'));
  const hasher = createHasher(algorithm);
  hasher.update(bytes);
  return hasher.digest();
}

/** Hashes a stream of chunks without holding it in memory. */
export async function hashStream(
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  algorithm: HashAlgorithm = DEFAULT_ALGORITHM,
): Promise<Hash> {
  const hasher = createHasher(algorithm);
  for await (const chunk of chunks) hasher.update(chunk);
  return hasher.digest();
}
