/**
 * The pending-upload journal of a layered store, kept in its upper store.
 *
 * Why in the upper store, as refs: the upper store is already durable and
 * atomic for refs on every backend, so the journal inherits exactly the
 * durability of the objects it describes and needs no file format of its
 * own. A record is written before its objects are committed to the upper
 * store (and so before the put that wrote them resolves); it is removed
 * only once all its objects are in the lower store. A crash at any point
 * therefore leaves every object in the upper store that this layer wrote
 * either uploaded or named by a record; a record may name an object the
 * crash kept from the upper store, which the layered store then drops.
 *
 * Two record shapes, so that the common case costs one ref write:
 *
 * - `.cairn/pending/o/<id>.<size>` points at the one pending object itself.
 * - `.cairn/pending/l/<id>` points at a list object (in the upper store)
 *   naming several objects and their sizes. Concurrent puts are grouped
 *   into one list (group commit): while one record is being written, the
 *   next group gathers, so N concurrent writers cost about two writes,
 *   not N. A list begins with a random nonce, so no user object can share
 *   its bytes and removing a list never removes user data.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { AbortOptions } from '../abort.js';
import { CorruptStoreError, NotFoundError } from '../errors.js';
import { parseHash, type Hash } from '../hash.js';
import type { RefEntry, Store } from '../store.js';

/** Ref prefix of everything a layered store keeps for itself in its upper store. */
export const RESERVED_PREFIX = '.cairn/';
/** Ref prefix of pending-upload records. */
export const PENDING_PREFIX = '.cairn/pending/';
const SINGLE_PREFIX = '.cairn/pending/o/';
const LIST_PREFIX = '.cairn/pending/l/';
const LIST_MAGIC = 'cairn-pending 1';

/** One pending object: its hash and size. */
export interface PendingObject {
  readonly hash: Hash;
  readonly size: number;
}

interface Group {
  readonly objects: PendingObject[];
  readonly waiters: Array<{ resolve(record: string): void; reject(error: unknown): void }>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Writes, reads and removes pending-upload records. One journal per upper store at a time. */
export class PendingJournal {
  readonly #store: Store;
  readonly #session = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  #counter = 0;
  #group: Group | undefined;
  #writing = false;
  /** Records this journal has written or is writing: a scan must not adopt them a second time. */
  readonly owned = new Set<string>();

  constructor(store: Store) {
    this.#store = store;
  }

  /** Resolves with the record's name once a record naming `objects` is durable. */
  append(objects: readonly PendingObject[]): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      this.#group ??= { objects: [], waiters: [] };
      this.#group.objects.push(...objects);
      this.#group.waiters.push({ resolve, reject });
      if (!this.#writing) void this.#writeGroups();
    });
  }

  async #writeGroups(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#group !== undefined) {
        const group = this.#group;
        this.#group = undefined;
        try {
          const record = await this.#write(group.objects);
          for (const waiter of group.waiters) waiter.resolve(record);
        } catch (error) {
          for (const waiter of group.waiters) waiter.reject(error);
        }
      }
    } finally {
      this.#writing = false;
    }
  }

  #nextId(): string {
    return `${this.#session}-${(this.#counter++).toString(36).padStart(6, '0')}`;
  }

  async #write(objects: readonly PendingObject[]): Promise<string> {
    const unique = new Map(objects.map((o) => [o.hash.toString(), o]));
    const id = this.#nextId();
    if (unique.size === 1) {
      const [only] = unique.values();
      const record = `${SINGLE_PREFIX}${id}.${only!.size}`;
      this.owned.add(record);
      try {
        await this.#store.setRef(record, only!.hash);
      } catch (error) {
        this.owned.delete(record);
        throw error;
      }
      return record;
    }
    const lines = [`${LIST_MAGIC} ${randomBytes(12).toString('hex')}`];
    for (const o of unique.values()) lines.push(`${o.hash.toString()} ${o.size}`);
    const record = `${LIST_PREFIX}${id}`;
    this.owned.add(record);
    try {
      const list = await this.#store.put(encoder.encode(`${lines.join('\n')}\n`));
      await this.#store.setRef(record, list);
    } catch (error) {
      this.owned.delete(record);
      throw error;
    }
    return record;
  }

  /** Every record in the store, oldest session first. */
  records(options?: AbortOptions): AsyncIterable<RefEntry> {
    return this.#store.listRefs(PENDING_PREFIX, options);
  }

  /**
   * The objects a record names, or `undefined` when the record is gone or
   * its list object was lost (nothing can be recovered from it then).
   */
  async read(record: RefEntry, options?: AbortOptions): Promise<PendingObject[] | undefined> {
    if (record.name.startsWith(SINGLE_PREFIX)) {
      const size = Number(record.name.slice(record.name.lastIndexOf('.') + 1));
      if (!Number.isSafeInteger(size) || size < 0) {
        throw new CorruptStoreError(`pending-upload record ${record.name} has no valid size; delete the ref to drop it`, {
          ref: record.name,
        });
      }
      return [{ hash: record.hash, size }];
    }
    if (!record.name.startsWith(LIST_PREFIX)) return undefined;
    let bytes: Uint8Array;
    try {
      bytes = await this.#store.get(record.hash, options);
    } catch (error) {
      if (error instanceof NotFoundError) return undefined;
      throw error;
    }
    const lines = decoder.decode(bytes).split('\n');
    if (!lines[0]?.startsWith(`${LIST_MAGIC} `)) {
      throw new CorruptStoreError(`pending-upload record ${record.name} does not name a pending list`, { ref: record.name });
    }
    const objects: PendingObject[] = [];
    for (const line of lines.slice(1)) {
      if (line === '') continue;
      const [hash, size] = line.split(' ');
      objects.push({ hash: parseHash(hash), size: Number(size) });
    }
    return objects;
  }

  /** True for a record that is a list (whose target is journal data, not a user object). */
  static isList(name: string): boolean {
    return name.startsWith(LIST_PREFIX);
  }

  /** Removes a record (and its list object) once all its objects are uploaded. */
  async remove(record: string): Promise<void> {
    try {
      if (record.startsWith(LIST_PREFIX)) {
        const value = await this.#store.getRef(record);
        await this.#store.deleteRef(record);
        if (value !== undefined) await this.#store.delete(value.hash);
      } else {
        await this.#store.deleteRef(record);
      }
    } finally {
      this.owned.delete(record);
    }
  }

  /** Hashes of the list objects of current records (journal data to hide from object listings). */
  async listObjects(options?: AbortOptions): Promise<Set<string>> {
    const lists = new Set<string>();
    for await (const ref of this.#store.listRefs(LIST_PREFIX, options)) lists.add(ref.hash.toString());
    return lists;
  }
}
