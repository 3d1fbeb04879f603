/**
 * The data-API cases (streams, key-value, blobs, store-backed keys), run on
 * every backend by the `*.test.ts` files beside this one.
 */
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { blobStore } from '../../src/data/blobs.js';
import { storeKeyStore } from '../../src/data/keys.js';
import { keyValue } from '../../src/data/kv.js';
import { eventStreams, type EventStreams, type StreamEvent } from '../../src/data/streams.js';
import { hashBytes, InvalidArgumentError, InvalidHashError, NotFoundError, type Store } from '../../src/index.js';
import type { Namespace, Target } from './targets.js';
import { base32 } from '../support/base32.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/** Everything a store holds, to check that bad input changed nothing. */
async function snapshot(store: Store): Promise<{ refs: string[]; objects: string[] }> {
  const refs = (await collect(store.listRefs())).map((r) => `${r.name}=${r.hash.toString()}`);
  const objects = (await collect(store.listObjects())).map((h) => h.toString()).sort();
  return { refs, objects };
}


/** The CIDv1 of raw bytes, built by hand: version 1, codec raw (0x55), multihash sha2-256 (0x12, 32 bytes). */
function independentCid(bytes: Uint8Array): string {
  const digest = createHash('sha256').update(bytes).digest();
  return `b${base32(Buffer.concat([Buffer.from([0x01, 0x55, 0x12, 0x20]), digest]))}`;
}

/** What `ipfs add --raw-leaves --cid-version=1` prints for a file holding "hello world\n". */
const HELLO_CID = 'bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4';

export interface DataSuiteOptions {
  /** Concurrent writers and appends each in the contention case. @default 8 x 100 */
  writers?: number;
  appendsPerWriter?: number;
  /** Appends per writer (of 4) in the truncation race. @default 40 */
  raceAppends?: number;
  timeoutMs?: number;
  /** Run the stream cases only (a second stream layout on a backend whose other cases already ran). @default false */
  streamsOnly?: boolean;
}

export function dataSuite(target: Target, options: DataSuiteOptions = {}): void {
  const writers = options.writers ?? 8;
  const perWriter = options.appendsPerWriter ?? 100;
  const timeout = options.timeoutMs ?? 60_000;
  const raceAppends = options.raceAppends ?? 40;
  const streamsOn = (store: Store): EventStreams => eventStreams(store, target.streams);
  // Registered only when wanted: the other cases run once per backend, under its default layout.
  const unlessStreamsOnly = (name: string, cases: () => void): void => {
    if (options.streamsOnly !== true) describe(name, cases);
  };

  describe(`data APIs on ${target.name}`, () => {
    let ns: Namespace;
    let store: Store;

    beforeEach(async () => {
      ns = await target.open();
      store = await ns.client();
    }, timeout);

    afterEach(async () => {
      await ns.dispose();
    }, timeout);

    describe('streams', () => {
      it(
        `${writers} concurrent writers x ${perWriter} appends to one stream get 1..${writers * perWriter}, each exactly once`,
        async () => {
          const clients = await Promise.all(Array.from({ length: writers }, () => ns.client()));
          const returned = await Promise.all(
            clients.map(async (client, w) => {
              const streams = streamsOn(client);
              const got: number[] = [];
              for (let i = 0; i < perWriter; i++) got.push(await streams.append('shared', { w, i }));
              return got;
            }),
          );
          const total = writers * perWriter;
          const all = returned.flat().sort((a, b) => a - b);
          expect(all).toEqual(Array.from({ length: total }, (_, i) => i + 1));
          // Each writer's own appends got increasing numbers.
          for (const got of returned) expect([...got].sort((a, b) => a - b)).toEqual(got);
          const events = await collect(streamsOn(store).read('shared'));
          expect(events.map((e) => e.seq)).toEqual(all);
          // The number each append returned is where its event is.
          for (const { seq, event } of events as Array<StreamEvent<{ w: number; i: number }>>) {
            expect(returned[event.w]![event.i]).toBe(seq);
          }
          expect(await streamsOn(store).lastSeq('shared')).toBe(total);
          // The layout the target says: the generic one keeps one ref per event, a native one none.
          const eventRefs = (await collect(store.listRefs('streams/e/shared/'))).length;
          expect(eventRefs).toBe(target.streamLayout === 'refs' ? total : 0);
        },
        timeout * 2,
      );

      it('read, lastSeq and streams; truncation then more appends never reuse a number', async () => {
        const streams = streamsOn(store);
        expect(await streams.lastSeq('log')).toBe(0);
        expect(await streams.streams()).toEqual([]);
        for (let i = 1; i <= 10; i++) expect(await streams.append('log', { n: i, tags: ['x', null, true] })).toBe(i);
        await streams.append('other', 'a string event');
        expect(await streams.streams()).toEqual(['log', 'other']);
        expect((await collect(streams.read('log', { from: 8 }))).map((e) => e.event)).toEqual([
          { n: 8, tags: ['x', null, true] },
          { n: 9, tags: ['x', null, true] },
          { n: 10, tags: ['x', null, true] },
        ]);
        expect((await collect(streams.read('log', { from: 3, limit: 2 }))).map((e) => e.seq)).toEqual([3, 4]);
        expect(await streams.truncate('log', 5)).toBe(5);
        expect((await collect(streams.read('log'))).map((e) => e.seq)).toEqual([6, 7, 8, 9, 10]);
        expect(await streams.lastSeq('log')).toBe(10);
        expect(await streams.append('log', { n: 11 })).toBe(11);
        // Truncating beyond the end drops everything; the stream stays listed and numbering goes on.
        expect(await streams.truncate('log', Number.POSITIVE_INFINITY)).toBe(11);
        expect(await collect(streams.read('log'))).toEqual([]);
        expect(await streams.streams()).toEqual(['log', 'other']);
        expect(await streams.lastSeq('log')).toBe(11);
        // A fresh instance (another process) sees the same numbering.
        expect(await streamsOn(await ns.client()).append('log', { n: 12 })).toBe(12);
        expect(await collect(streams.read('log'))).toEqual([{ seq: 12, event: { n: 12 } }]);
        expect(await streams.truncate('log', 3)).toBe(11); // below the floor: nothing more to drop
      });

      it('appends racing repeated truncations: every number handed out once, survivors intact', async () => {
        const clients = await Promise.all(Array.from({ length: 4 }, () => ns.client()));
        let done = false;
        const truncator = (async () => {
          const streams = streamsOn(clients[0]!);
          let truncations = 0;
          while (!done) {
            const last = await streams.lastSeq('race');
            await streams.truncate('race', Math.max(0, last - 3));
            truncations++;
            // On the memory store this loop is all microtasks: let timers (writers' backoff) run.
            await new Promise((resolve) => setImmediate(resolve));
          }
          return truncations;
        })();
        const returned = await Promise.all(
          clients.map(async (client, w) => {
            const streams = streamsOn(client);
            const got: number[] = [];
            for (let i = 0; i < raceAppends; i++) got.push(await streams.append('race', { w, i }));
            return got;
          }),
        );
        done = true;
        expect(await truncator).toBeGreaterThan(0);
        const all = returned.flat();
        expect(new Set(all).size).toBe(all.length);
        for (const got of returned) expect([...got].sort((a, b) => a - b)).toEqual(got);
        const survivors = (await collect(streamsOn(store).read('race'))) as Array<StreamEvent<{ w: number; i: number }>>;
        for (const { seq, event } of survivors) expect(returned[event.w]![event.i]).toBe(seq);
        expect(new Set(survivors.map((s) => `${s.event.w}/${s.event.i}`)).size).toBe(survivors.length);
        const after = await streamsOn(store).append('race', 'after');
        expect(after).toBeGreaterThan(Math.max(...all));
      }, timeout * 2);

      it('bad input: an empty or unsafe stream name, or an event that is not JSON, is an InvalidArgumentError and changes nothing', async () => {
        const streams = streamsOn(store);
        await streams.append('kept', { ok: true });
        const before = await snapshot(store);
        for (const name of ['', '.', '..', 'a/b', '../x', 'sp ace', 'x.lock', 'caf\u00e9', 'x'.repeat(201)]) {
          await expect(streams.append(name, { ok: true })).rejects.toBeInstanceOf(InvalidArgumentError);
          await expect(collect(streams.read(name))).rejects.toBeInstanceOf(InvalidArgumentError);
          await expect(streams.truncate(name, 1)).rejects.toBeInstanceOf(InvalidArgumentError);
          await expect(streams.lastSeq(name)).rejects.toBeInstanceOf(InvalidArgumentError);
        }
        const cycle: Record<string, unknown> = { a: 1 };
        cycle.self = cycle;
        const bad: unknown[] = [
          undefined,
          () => 1,
          Number.NaN,
          Number.POSITIVE_INFINITY,
          10n,
          Symbol('s'),
          cycle,
          new Date(0),
          new Map([[1, 2]]),
          [1, , 3], // eslint-disable-line no-sparse-arrays
          { nested: { fn: () => 1 } },
          { u: undefined },
          Object.assign(Object.create({ inherited: 1 }) as object, { own: 2 }),
        ];
        for (const event of bad) {
          const error = await streams.append('kept', event).catch((e: unknown) => e);
          expect(error).toBeInstanceOf(InvalidArgumentError);
          expect((error as Error).message).toMatch(/event/);
        }
        await expect(streams.truncate('kept', -1)).rejects.toBeInstanceOf(InvalidArgumentError);
        await expect(streams.truncate('kept', 1.5)).rejects.toBeInstanceOf(InvalidArgumentError);
        await expect(collect(streams.read('kept', { from: -2 }))).rejects.toBeInstanceOf(InvalidArgumentError);
        expect(await snapshot(store)).toEqual(before);
      });
    });

    unlessStreamsOnly('key-value', () => {
      it('bytes and JSON values round-trip; has, delete, keys and compare-and-swap', async () => {
        const bytesKv = keyValue(store);
        const jsonKv = keyValue(store, { encoding: 'json' });
        await bytesKv.put('raw/one', new Uint8Array([0, 1, 2, 255]));
        expect(await bytesKv.get('raw/one')).toEqual(new Uint8Array([0, 1, 2, 255]));
        await jsonKv.put('users/1', { name: 'Ada', langs: ['en', 'fr'], admin: true, score: 1.5, boss: null });
        await jsonKv.put('users/2', 'plain string');
        expect(await jsonKv.get('users/1')).toEqual({ name: 'Ada', langs: ['en', 'fr'], admin: true, score: 1.5, boss: null });
        // Both views see one namespace: a JSON value's bytes are its JSON text.
        expect(decoder.decode(await bytesKv.get('users/2'))).toBe('"plain string"');
        expect(await jsonKv.has('users/1')).toBe(true);
        expect(await jsonKv.get('users/none')).toBeUndefined();
        expect(await collect(jsonKv.keys('users/'))).toEqual(['users/1', 'users/2']);
        expect(await collect(jsonKv.keys())).toEqual(['raw/one', 'users/1', 'users/2']);
        await jsonKv.delete('users/2');
        await jsonKv.delete('users/2');
        expect(await jsonKv.has('users/2')).toBe(false);

        const created = await jsonKv.compareAndSwap('leader', undefined, { id: 'a' });
        expect(created).toEqual({ ok: true, current: { id: 'a' } });
        const lost = await jsonKv.compareAndSwap('leader', undefined, { id: 'b' });
        expect(lost).toEqual({ ok: false, current: { id: 'a' } });
        const stale = await jsonKv.compareAndSwap('leader', { id: 'x' }, { id: 'b' });
        expect(stale).toEqual({ ok: false, current: { id: 'a' } });
        expect((await jsonKv.compareAndSwap('leader', { id: 'a' }, { id: 'b' })).ok).toBe(true);
        expect((await jsonKv.compareAndSwap('leader', { id: 'b' }, undefined)).ok).toBe(true);
        expect(await jsonKv.has('leader')).toBe(false);
        expect(await bytesKv.compareAndSwap('raw/one', new Uint8Array([9]), undefined)).toEqual({
          ok: false,
          current: new Uint8Array([0, 1, 2, 255]),
        });
      });

      it('4 clients x 25 read-modify-write updates of one key end at exactly 100', async () => {
        const clients = await Promise.all(Array.from({ length: 4 }, () => ns.client()));
        await Promise.all(
          clients.map(async (client) => {
            const kv = keyValue(client, { encoding: 'json' });
            for (let i = 0; i < 25; i++) await kv.update('counter', (n) => ((n as number | undefined) ?? 0) + 1);
          }),
        );
        expect(await keyValue(store, { encoding: 'json' }).get('counter')).toBe(100);
      }, timeout);

      it('an unsafe key or a value of the wrong kind is an InvalidArgumentError and changes nothing', async () => {
        const kv = keyValue(store, { encoding: 'json' });
        const bytesKv = keyValue(store);
        await kv.put('kept', 1);
        const before = await snapshot(store);
        for (const key of ['', '../escape', '/abs', 'a//b', 'trailing/', 'sp ace', 'nul\0', 'x.lock', 'caf\u00e9']) {
          await expect(kv.put(key, 1)).rejects.toBeInstanceOf(InvalidArgumentError);
          await expect(kv.get(key)).rejects.toBeInstanceOf(InvalidArgumentError);
          await expect(kv.delete(key)).rejects.toBeInstanceOf(InvalidArgumentError);
          await expect(kv.compareAndSwap(key, undefined, 1)).rejects.toBeInstanceOf(InvalidArgumentError);
        }
        await expect(collect(kv.keys('../'))).rejects.toBeInstanceOf(InvalidArgumentError);
        await expect(kv.put('fine', Number.NaN)).rejects.toBeInstanceOf(InvalidArgumentError);
        await expect(kv.compareAndSwap('kept', 1, { f: () => 1 } as never)).rejects.toBeInstanceOf(InvalidArgumentError);
        await expect(bytesKv.put('fine', 'not bytes' as unknown as Uint8Array)).rejects.toBeInstanceOf(InvalidArgumentError);
        expect(await snapshot(store)).toEqual(before);
      });
    });

    unlessStreamsOnly('blobs', () => {
      it('putBlob returns the CIDv1 other tools compute; getBlob resolves it; idempotent', async () => {
        const blobs = blobStore(store);
        const hello = encoder.encode('hello world\n');
        expect(independentCid(hello)).toBe(HELLO_CID);
        expect(await blobs.hasBlob(HELLO_CID)).toBe(false);
        await expect(blobs.getBlob(HELLO_CID)).rejects.toBeInstanceOf(NotFoundError);
        const cid = await blobs.putBlob(hello);
        expect(cid).toBe(HELLO_CID);
        expect(await blobs.putBlob(hello)).toBe(HELLO_CID);
        expect(decoder.decode(await blobs.getBlob(HELLO_CID))).toBe('hello world\n');
        expect(await blobs.hasBlob(HELLO_CID)).toBe(true);
        const big = new Uint8Array(200_000).map((_, i) => (i * 7) & 0xff);
        const bigCid = await blobs.putBlob(big);
        expect(bigCid).toBe(independentCid(big));
        expect(Buffer.from(await blobs.getBlob(bigCid)).equals(Buffer.from(big))).toBe(true);
        expect(await collect(blobs.listBlobs())).toEqual([HELLO_CID, bigCid].sort());
        const objects = (await collect(store.listObjects())).length;
        await blobs.putBlob(big);
        expect((await collect(store.listObjects())).length).toBe(objects);
        await blobs.deleteBlob(bigCid);
        expect(await blobs.hasBlob(bigCid)).toBe(false);
        expect(await collect(blobs.listBlobs())).toEqual([HELLO_CID]);
      });

      it('a malformed CID, or one that does not name raw bytes, is an InvalidHashError and changes nothing', async () => {
        const blobs = blobStore(store);
        await blobs.putBlob(encoder.encode('kept'));
        const before = await snapshot(store);
        const bad = [
          '',
          'not-a-cid',
          'bafkrei',
          `${HELLO_CID.slice(0, -1)}!`,
          'QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o', // CIDv0: dag-pb, names an encoding, not the bytes
          'bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku', // CIDv1 dag-pb
          `sha256:${'a'.repeat(64)}`, // a hash, but not a CID
          42,
        ];
        for (const cid of bad) {
          await expect(blobs.getBlob(cid as string)).rejects.toBeInstanceOf(InvalidHashError);
          await expect(blobs.hasBlob(cid as string)).rejects.toBeInstanceOf(InvalidHashError);
          await expect(blobs.deleteBlob(cid as string)).rejects.toBeInstanceOf(InvalidHashError);
        }
        expect(await snapshot(store)).toEqual(before);
      });
    });

    unlessStreamsOnly('keys on the store', () => {
      it('store, load, list, remove round-trip; a bad name is an InvalidArgumentError and changes nothing', async () => {
        const keys = storeKeyStore(store, { prefix: 'secret-keys/' });
        const secret = new Uint8Array(32).map((_, i) => i * 3);
        await keys.set('signing', secret);
        await keys.set('api.token', encoder.encode('t0ken'));
        expect(await keys.get('signing')).toEqual(secret);
        expect(await keys.list()).toEqual(['api.token', 'signing']);
        await keys.set('signing', encoder.encode('rotated'));
        expect(decoder.decode(await keys.get('signing'))).toBe('rotated');
        // The replaced secret's bytes are gone from the store, not just unreferenced.
        expect(await store.has(hashBytes(secret))).toBe(false);
        const before = await snapshot(store);
        for (const name of ['', '../x', 'a/b', '.hidden', 'sp ace']) {
          await expect(keys.set(name, secret)).rejects.toBeInstanceOf(InvalidArgumentError);
          await expect(keys.get(name)).rejects.toBeInstanceOf(InvalidArgumentError);
        }
        await expect(keys.set('ok', 'text' as unknown as Uint8Array)).rejects.toBeInstanceOf(InvalidArgumentError);
        expect(await snapshot(store)).toEqual(before);
        await keys.delete('signing');
        await keys.delete('signing');
        await expect(keys.get('signing')).rejects.toBeInstanceOf(NotFoundError);
        expect(await keys.list()).toEqual(['api.token']);
      });
    });

    // The memory store is the one backend without a restart to survive.
    if (target.durable) it('a restart (close every client, open a new one) keeps streams, values, blobs and keys', async () => {
      const streams = streamsOn(store);
      for (let i = 1; i <= 5; i++) await streams.append('durable', { i });
      await streams.truncate('durable', 2);
      await keyValue(store, { encoding: 'json' }).put('config', { v: 1 });
      const cid = await blobStore(store).putBlob(encoder.encode('hello world\n'));
      await storeKeyStore(store).set('k', encoder.encode('secret'));
      await store.close();
      const reopened = await ns.client();
      const again = streamsOn(reopened);
      expect((await collect(again.read('durable'))).map((e) => e.seq)).toEqual([3, 4, 5]);
      expect(await again.lastSeq('durable')).toBe(5);
      expect(await again.append('durable', { i: 6 })).toBe(6);
      expect(await again.streams()).toEqual(['durable']);
      expect(await keyValue(reopened, { encoding: 'json' }).get('config')).toEqual({ v: 1 });
      expect(decoder.decode(await blobStore(reopened).getBlob(cid))).toBe('hello world\n');
      expect(decoder.decode(await storeKeyStore(reopened).get('k'))).toBe('secret');
    });
  });
}
