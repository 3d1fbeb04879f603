/**
 * The packed layer's options: what each means, its default and its bounds,
 * checked once when the layer is made (a bad option is an
 * {@link InvalidArgumentError} naming it).
 *
 * @module
 */
import type { MasterKey } from '../../crypto/master-key.js';
import { InvalidArgumentError } from '../../errors.js';
import { integerOption } from '../options.js';
import type { CodecOptions } from './codec.js';
import { INDEX_ENTRY_BYTES, MAX_PACK_BYTES, PACK_HEADER_BYTES } from './format.js';
import type { IndexCache } from './index-cache.js';

/** Options of {@link packed}. */
export interface PackedOptions extends CodecOptions {
  /**
   * Objects up to this many bytes go into packs; larger ones go to the inner store as they are.
   * @default 1048576 (1 MiB)
   */
  maxObjectBytes?: number | undefined;
  /**
   * A pack is sealed once its blobs reach this many bytes.
   * @default 16777216 (16 MiB)
   */
  packBytes?: number | undefined;
  /**
   * How long a pack stays open for more puts after its first one (group commit), in ms.
   * @default 5
   */
  lingerMs?: number | undefined;
  /**
   * Packs being uploaded at once; further sealed packs wait.
   * @default 4
   */
  maxInFlight?: number | undefined;
  /**
   * Largest index (or removal record) read from the remote, and written: bounds reader memory.
   * @default 4194304 (4 MiB, about 87,000 entries)
   */
  maxIndexBytes?: number | undefined;
  /**
   * A store that keeps every index read once (by hash), such as a disk store
   * in a cache directory, so that reopening does not download them again.
   * The layer closes it on close.
   * @default none
   */
  indexCache?: IndexCache | undefined;
  /**
   * A catalog older than this is refreshed before it is trusted (to skip a
   * put of an object it lists, or answer `has`). Keep it well under the
   * grace period of repacks, so that no writer skips a put on the strength
   * of a copy a collector has since removed.
   * @default 600000 (10 minutes)
   */
  maxCatalogAgeMs?: number | undefined;
  /**
   * The remote's master key (from `unlock` or `initEncryption`,
   * src/crypto/keys.ts): every blob, record, large object and ref body is
   * then encrypted and authenticated (docs/encryption.md says what the
   * bucket still shows). A remote with keys must be opened with one, and a
   * remote without keys without one ({@link EncryptionMismatchError}).
   * @default none (plain)
   */
  encryption?: MasterKey | undefined;
}

/** The numeric options with their defaults applied. */
export interface ResolvedPackedOptions {
  readonly maxObjectBytes: number;
  readonly packBytes: number;
  readonly maxIndexBytes: number;
  readonly lingerMs: number;
  readonly maxInFlight: number;
  readonly maxCatalogAgeMs: number;
}

/** Checks every option and applies the defaults. */
export function resolvePackedOptions(options: PackedOptions): ResolvedPackedOptions {
  const cache = options.indexCache as unknown as Record<string, unknown> | undefined;
  if (cache !== undefined && (cache === null || typeof cache.get !== 'function' || typeof cache.put !== 'function' || typeof cache.close !== 'function')) {
    throw new InvalidArgumentError('packed option "indexCache" must be a Store (or an IndexCache: get, put, close)');
  }
  if (options.compression !== undefined && options.compression !== 'zstd' && options.compression !== 'none') {
    throw new InvalidArgumentError(`packed option "compression" must be "zstd" or "none", got ${JSON.stringify(String(options.compression))}`);
  }
  const maxObjectBytes = integerOption('packed', 'maxObjectBytes', options.maxObjectBytes, 2 ** 20, 0, 256 * 2 ** 20);
  const packBytes = integerOption('packed', 'packBytes', options.packBytes, 16 * 2 ** 20, 1, MAX_PACK_BYTES - maxObjectBytes - PACK_HEADER_BYTES);
  const maxIndexBytes = integerOption('packed', 'maxIndexBytes', options.maxIndexBytes, 4 * 2 ** 20, 52 + INDEX_ENTRY_BYTES);
  const lingerMs = integerOption('packed', 'lingerMs', options.lingerMs, 5, 0, 60_000);
  const maxInFlight = integerOption('packed', 'maxInFlight', options.maxInFlight, 4, 1, 64);
  integerOption('packed', 'level', options.level, 3, 1, 19);
  const maxCatalogAgeMs = integerOption('packed', 'maxCatalogAgeMs', options.maxCatalogAgeMs, 600_000, 0);
  if (options.encryption !== undefined && typeof (options.encryption as Partial<MasterKey>).keys !== 'function') {
  throw new InvalidArgumentError('packed option "encryption" must be a MasterKey (from unlock or initEncryption)');
  }
  return { maxObjectBytes, packBytes, maxIndexBytes, lingerMs, maxInFlight, maxCatalogAgeMs };
}
