/**
 * The catalog: what a packed store knows about the packs in its inner store.
 * It maps each blob hash to the places it is stored (pack, offset, lengths),
 * built from the published indexes, minus the locations removal records
 * withdraw, with retired packs ranked last.
 *
 * Refresh lists the reserved refs and loads only the records it has not
 * seen; each record is read once with a length bound (a range read of at
 * most `maxIndexBytes + 1` bytes), verified against its hash, decoded with
 * every check of `format.ts`, and kept in the optional local cache store so
 * that a reopened store does not download it again. A damaged record is
 * set aside and reported (see {@link Catalog.damaged}); it never makes the
 * catalog claim bytes it cannot vouch for.
 *
 * @module
 */
import { CorruptStoreError, EncryptionMismatchError, IntegrityError } from '../../errors.js';
import type { Hash } from '../../hash.js';
import { mapConcurrent, verifyBytes } from '../../object-io.js';
import type { Store } from '../../store.js';
import type { IndexCache } from './index-cache.js';
import {
  Cipher,
  decodeIndex,
  decodeLarge,
  decodeRemovals,
  decodeRetirement,
  hashOfRefName,
  INDEX_MAGIC,
  INDEX_REF_PREFIX,
  KEY_REF_PREFIX,
  LARGE_MAGIC,
  LARGE_REF_PREFIX,
  REMOVAL_MAGIC,
  REMOVED_REF_PREFIX,
  PACKS_REF_PREFIX,
  RETIRE_MAGIC,
  RETIRED_REF_PREFIX,
  type FormatLimits,
  type IndexEntry,
  type LargeRecord,
  type PackIndex,
  type Removal,
} from './format.js';
import type { Sealer } from './sealing.js';

/** Where one copy of a blob is. */
export interface Location extends IndexEntry {
  readonly pack: Hash;
  readonly packLength: number;
  readonly index: Hash;
}

const LOAD_CONCURRENCY = 16;

/** See the module comment. */
export class Catalog {
  readonly #locations = new Map<string, Location[]>();
  readonly #indexes = new Map<string, PackIndex>();
  /** Large-object records (encrypted stores), by record hex, and by the object's address. */
  readonly #large = new Map<string, LargeRecord>();
  readonly #largeByHash = new Map<string, LargeRecord[]>();
  readonly #removalRecords = new Map<string, readonly Removal[]>();
  readonly #removed = new Set<string>();
  readonly #retired = new Map<string, { record: Hash; retiredAtMs: number }>();
  /** Record hashes (text) found damaged, with the error; retried on no refresh (they are immutable). */
  readonly #damaged = new Map<string, CorruptStoreError | IntegrityError>();
  /** Objects of the inner store that belong to this layer (packs and records), by text form. */
  readonly #owned = new Set<string>();

  constructor(
    readonly inner: Store,
    readonly limits: FormatLimits,
    readonly cache: IndexCache | undefined,
    readonly sealer: Sealer,
  ) {}

  /** Live large objects (encrypted stores) with this address. */
  locateLarge(hash: Hash): LargeRecord[] {
    return (this.#largeByHash.get(hash.toString()) ?? []).filter((r) => !this.#removed.has(removalKey(r.object, hash)));
  }

  largeRecords(): ReadonlyMap<string, LargeRecord> {
    return this.#large;
  }

  /** Adds a large-object record this process just published, or one read. */
  addLarge(recordHash: Hash, record: LargeRecord): void {
    if (this.#large.has(recordHash.hex)) return;
    this.#large.set(recordHash.hex, record);
    this.#owned.add(recordHash.toString());
    this.#owned.add(record.object.toString());
    const key = record.hash.toString();
    this.#largeByHash.set(key, [...(this.#largeByHash.get(key) ?? []), record]);
  }

  dropLarge(recordHex: string): void {
    const record = this.#large.get(recordHex);
    if (record === undefined) return;
    this.#large.delete(recordHex);
    const key = record.hash.toString();
    const rest = (this.#largeByHash.get(key) ?? []).filter((r) => r !== record);
    if (rest.length === 0) this.#largeByHash.delete(key);
    else this.#largeByHash.set(key, rest);
  }

  /** Live copies of a blob, non-retired packs first; empty when it is not packed. */
  locate(hash: Hash): Location[] {
    const all = this.#locations.get(hash.toString());
    if (all === undefined) return [];
    const live = all.filter((l) => !this.#removed.has(removalKey(l.pack, hash)));
    return live.sort((a, b) => Number(this.#retired.has(a.pack.hex)) - Number(this.#retired.has(b.pack.hex)));
  }

  /** True when the blob has a live packed copy (or, encrypted, a live large copy). */
  has(hash: Hash): boolean {
    return this.locate(hash).length > 0 || this.locateLarge(hash).length > 0;
  }

  /** Every object hash with a live copy. */
  *liveHashes(): Iterable<Hash> {
    const seen = new Set<string>();
    for (const list of this.#locations.values()) {
      const first = list[0]!;
      if (this.locate(first.hash).length > 0) {
        seen.add(first.hash.toString());
        yield first.hash;
      }
    }
    for (const [key, list] of this.#largeByHash) {
      if (!seen.has(key) && this.locateLarge(list[0]!.hash).length > 0) yield list[0]!.hash;
    }
  }

  /** True for an inner object that is a pack or a record of this layer. */
  owns(hash: Hash): boolean {
    return this.#owned.has(hash.toString());
  }

  /** Errors of the damaged records seen so far. */
  damaged(): (CorruptStoreError | IntegrityError)[] {
    return [...this.#damaged.values()];
  }

  indexes(): ReadonlyMap<string, PackIndex> {
    return this.#indexes;
  }

  removalRecords(): ReadonlyMap<string, readonly Removal[]> {
    return this.#removalRecords;
  }

  retired(): ReadonlyMap<string, { record: Hash; retiredAtMs: number }> {
    return this.#retired;
  }

  isRemoved(pack: Hash, hash: Hash): boolean {
    return this.#removed.has(removalKey(pack, hash));
  }

  /** Adds an index this process just published (no read needed). */
  addIndex(indexHash: Hash, index: PackIndex): void {
    if (this.#indexes.has(indexHash.hex)) return;
    this.#indexes.set(indexHash.hex, index);
    this.#owned.add(indexHash.toString());
    this.#owned.add(index.pack.toString());
    for (const entry of index.entries) {
      const key = entry.hash.toString();
      const list = this.#locations.get(key) ?? [];
      if (!list.some((l) => l.pack.equals(index.pack) && l.offset === entry.offset)) {
        list.push({ ...entry, pack: index.pack, packLength: index.packLength, index: indexHash });
      }
      this.#locations.set(key, list);
    }
  }

  /** Keeps a record this process wrote in the local cache, so that a reopened store need not download it. */
  async remember(bytes: Uint8Array): Promise<void> {
    if (this.cache !== undefined) await this.cache.put(bytes).catch(() => undefined);
  }

  /** Adds a removal record this process just published. */
  addRemovals(recordHash: Hash, removals: readonly Removal[]): void {
    this.#removalRecords.set(recordHash.hex, removals);
    this.#owned.add(recordHash.toString());
    for (const r of removals) this.#removed.add(removalKey(r.pack, r.hash));
  }

  addRetirement(pack: Hash, record: Hash, retiredAtMs: number): void {
    this.#retired.set(pack.hex, { record, retiredAtMs });
    this.#owned.add(record.toString());
  }

  /** Forgets an index whose ref is gone (its pack was collected). */
  dropIndex(indexHex: string): void {
    const index = this.#indexes.get(indexHex);
    if (index === undefined) return;
    this.#indexes.delete(indexHex);
    for (const entry of index.entries) {
      const key = entry.hash.toString();
      const rest = (this.#locations.get(key) ?? []).filter((l) => l.index.hex !== indexHex);
      if (rest.length === 0) this.#locations.delete(key);
      else this.#locations.set(key, rest);
    }
  }

  dropRemovals(recordHex: string): void {
    const removals = this.#removalRecords.get(recordHex);
    if (removals === undefined) return;
    this.#removalRecords.delete(recordHex);
    for (const r of removals) this.#removed.delete(removalKey(r.pack, r.hash));
    for (const other of this.#removalRecords.values()) for (const r of other) this.#removed.add(removalKey(r.pack, r.hash));
  }

  /**
   * Lists the reserved refs and loads every record not seen yet; forgets
   * records whose refs are gone. Costs one listing plus one read per new
   * record (none for records in the local cache).
   */
  async refresh(signal?: AbortSignal): Promise<void> {
    // One refresh at a time (no record loaded twice); a caller that finds one running starts its own after it, so it sees what was published before it asked.
    const previous = this.#refreshing;
    const mine = (async () => {
      if (previous !== undefined) await previous.catch(() => undefined);
      await this.#refresh(signal);
      this.refreshedAt = Date.now();
    })();
    this.#refreshing = mine;
    try {
      await mine;
    } finally {
      if (this.#refreshing === mine) this.#refreshing = undefined;
    }
  }

  /** When the last refresh finished (ms since the epoch), 0 before the first. */
  refreshedAt = 0;
  #refreshing: Promise<void> | undefined;

  async #refresh(signal: AbortSignal | undefined): Promise<void> {
    // Only records known before the listing may be forgotten: one published during it may be missing from it.
    const knownIndexes = [...this.#indexes.keys()];
    const knownRemovals = [...this.#removalRecords.keys()];
    const knownRetired = [...this.#retired.keys()];
    const knownLarge = [...this.#large.keys()];
    const indexRefs = new Map<string, Hash>();
    const removalRefs = new Map<string, Hash>();
    const retiredRefs = new Map<string, Hash>();
    const largeRefs = new Map<string, Hash>();
    // Two listings, not one of all of `.cairn/`: other layers keep refs there too (push markers), which need not be read.
    await this.verifyEncryption(signal);
    for await (const ref of this.inner.listRefs(PACKS_REF_PREFIX, { signal })) {
      for (const [prefix, into] of [[INDEX_REF_PREFIX, indexRefs], [REMOVED_REF_PREFIX, removalRefs], [RETIRED_REF_PREFIX, retiredRefs], [LARGE_REF_PREFIX, largeRefs]] as const) {
        const named = hashOfRefName(ref.name, prefix);
        if (named === undefined) continue;
        if (prefix !== RETIRED_REF_PREFIX && !named.equals(ref.hash)) {
          this.#damaged.set(ref.hash.toString(), new CorruptStoreError(`ref ${ref.name} names record ${ref.hash.toString()}, not the one its name carries; delete the ref`, { ref: ref.name, key: ref.hash.toString() }));
          continue;
        }
        into.set(named.hex, ref.hash);
      }
    }
    for (const hex of knownIndexes) if (!indexRefs.has(hex)) this.dropIndex(hex);
    for (const hex of knownLarge) if (!largeRefs.has(hex)) this.dropLarge(hex);
    for (const hex of knownRemovals) if (!removalRefs.has(hex)) this.dropRemovals(hex);
    for (const hex of knownRetired) if (!retiredRefs.has(hex)) this.#retired.delete(hex);

    const newIndexes = [...indexRefs.values()].filter((h) => !this.#indexes.has(h.hex) && !this.#damaged.has(h.toString()));
    const open = (magic: string, hash: Hash, bytes: Uint8Array): Uint8Array => this.sealer.openRecord(magic, bytes, hash);
    await this.#loadEach(newIndexes, signal, (hash, bytes) => this.addIndex(hash, decodeIndex(open(INDEX_MAGIC, hash, bytes), hash, this.limits)));
    const newRemovals = [...removalRefs.values()].filter((h) => !this.#removalRecords.has(h.hex) && !this.#damaged.has(h.toString()));
    await this.#loadEach(newRemovals, signal, (hash, bytes) => this.addRemovals(hash, decodeRemovals(open(REMOVAL_MAGIC, hash, bytes), hash, this.limits)));
    const newLarge = [...largeRefs.values()].filter((h) => !this.#large.has(h.hex) && !this.#damaged.has(h.toString()));
    await this.#loadEach(newLarge, signal, (hash, bytes) => this.addLarge(hash, decodeLarge(open(LARGE_MAGIC, hash, bytes), hash)));
    const newRetired = new Map([...retiredRefs.entries()].filter(([hex]) => !this.#retired.has(hex)).map(([hex, record]) => [record.toString(), hex]));
    const retiredRecords = [...retiredRefs.values()].filter((record) => newRetired.has(record.toString()));
    await this.#loadEach(retiredRecords, signal, (record, bytes) => {
      const retirement = decodeRetirement(open(RETIRE_MAGIC, record, bytes), record);
      if (retirement.pack.hex !== newRetired.get(record.toString())) {
        throw new CorruptStoreError(`retirement record ${record.toString()} names another pack than its ref`, { key: record.toString() });
      }
      this.addRetirement(retirement.pack, record, retirement.retiredAtMs);
    });
  }

  /**
   * Refuses to mix plain and encrypted data: the remote has keys (it is
   * encrypted) exactly when this store encrypts; else an
   * {@link EncryptionMismatchError}. One listing of `.cairn/keys/`; done on
   * every refresh, so a remote that changes side under a running writer
   * stops it too.
   */
  async verifyEncryption(signal?: AbortSignal): Promise<void> {
    let keys = 0;
    for await (const ref of this.inner.listRefs(KEY_REF_PREFIX, { signal })) if (ref.name.startsWith(KEY_REF_PREFIX)) keys++;
    const encrypted = this.sealer.cipher !== Cipher.none;
    if (keys > 0 && !encrypted) {
      throw new EncryptionMismatchError(
        `the remote is encrypted (it has ${keys} key(s) under ${KEY_REF_PREFIX}) and this store was opened without its key; nothing was read or written. Open it with the remote's password (packed option "encryption", or CAIRN_PASSWORD / --password-file for the CLI)`,
      );
    }
    if (keys === 0 && encrypted) {
      throw new EncryptionMismatchError(
        `the remote is not encrypted (it has no keys under ${KEY_REF_PREFIX}) and this store was opened with a key; nothing was read or written, since encrypted and plain data are never mixed. Open it without a key, or create an encrypted remote on an empty one (initEncryption, or "cairn init --encrypt")`,
      );
    }
  }

  /** Loads each record and hands its bytes to `apply`; a record that `apply` finds corrupt is remembered as damaged. */
  async #loadEach(records: readonly Hash[], signal: AbortSignal | undefined, apply: (record: Hash, bytes: Uint8Array) => void): Promise<void> {
    await mapConcurrent(records, LOAD_CONCURRENCY, async (record) => {
      const bytes = await this.#load(record, signal);
      if (bytes === undefined) return;
      try {
        apply(record, bytes);
      } catch (error) {
        if (!(error instanceof CorruptStoreError)) throw error;
        this.#damaged.set(record.toString(), error);
      }
    });
  }

  get #maxStoredRecordBytes(): number {
    return this.limits.maxIndexBytes + this.sealer.recordOverhead;
  }

  /** A record's verified bytes, from the local cache or one bounded read; undefined when damaged or gone. */
  async #load(hash: Hash, signal: AbortSignal | undefined): Promise<Uint8Array | undefined> {
    if (this.cache !== undefined) {
      try {
        return await this.cache.get(hash, { signal });
      } catch {
        // Not cached (or a damaged cache copy, which the cache store reported and we re-read).
      }
    }
    let bytes: Uint8Array;
    try {
      bytes = await this.inner.getRange(hash, 0, this.#maxStoredRecordBytes + 1, { signal });
    } catch (error) {
      // A ref whose record was removed between the listing and the read: a collector is at work; skip it.
      if (error instanceof Error && (error as { code?: string }).code === 'ERR_NOT_FOUND') return undefined;
      throw error;
    }
    if (bytes.length > this.#maxStoredRecordBytes) {
      this.#damaged.set(hash.toString(), new CorruptStoreError(`pack record ${hash.toString()} is over the ${this.limits.maxIndexBytes}-byte limit; it was not loaded`, { key: hash.toString() }));
      return undefined;
    }
    try {
      verifyBytes(hash, bytes);
    } catch (error) {
      this.#damaged.set(hash.toString(), error as IntegrityError);
      return undefined;
    }
    if (this.cache !== undefined) await this.cache.put(bytes, { signal }).catch(() => undefined);
    return bytes;
  }
}

function removalKey(pack: Hash, hash: Hash): string {
  return `${pack.hex}/${hash.toString()}`;
}
