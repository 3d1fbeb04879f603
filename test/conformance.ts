/**
 * The conformance suite: the Store contract as executable cases.
 *
 * Every backend and layer test file calls {@link conformanceSuite} with a
 * factory for fresh, empty stores. Read-only stores (capabilities.writable
 * false) pass a `seed` function returning a writable view of the same data:
 * their write cases then expect {@link ReadOnlyError} and no change.
 *
 * Cases that need a capability are gated on what the target declares
 * ({@link ConformanceTarget.capabilities}; a lifecycle case checks the store
 * declares the same): a case whose capability is missing is registered as
 * skipped with the reason in its name, and where the contract says what a
 * store without the capability must do instead (refuse with
 * {@link UnsupportedError}), that case runs in its place.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AbortError,
  ClosedError,
  InvalidArgumentError,
  InvalidHashError,
  InvalidRefNameError,
  NotFoundError,
  ReadOnlyError,
  UnsupportedError,
  hashBytes,
  Hash,
  type RefValue,
  type Store,
  type StoreCapabilities,
} from '../src/index.js';

export interface ConformanceTarget {
  /** A fresh, empty store. */
  setup(): Promise<Store>;
  /** Releases what setup made (close the store, remove temp dirs, delete the prefix). */
  teardown?(store: Store): Promise<void>;
  /** For a read-only store: a writable store over the same data, used to seed it. */
  seed?(store: Store): Store;
  /** Refs created by the listing case. @default 2500 */
  manyRefs?: number;
  /** Per-case timeout. @default 30000 */
  timeoutMs?: number;
  /** Poll interval passed to watchRef. @default 25 */
  watchIntervalMs?: number;
  /** Cases a server cannot pass, by case title, with the reason (a named server bug). */
  skip?: Record<string, string>;
  /**
   * The ref capabilities the store declares; cases are gated on them, and a
   * lifecycle case checks that the store's `capabilities` say the same.
   * @default { atomicRefs: true, conditionalDelete: true }
   */
  capabilities?: Pick<StoreCapabilities, 'atomicRefs' | 'conditionalDelete'>;
  /**
   * A second, independent client of the same data as `store` (another
   * connection, another open of the same directory), for the cases that
   * check `atomicRefs` between clients. Closed by the suite.
   */
  peer?(store: Store): Promise<Store>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytesOf = (text: string): Uint8Array => encoder.encode(text);
const textOf = (bytes: Uint8Array): string => decoder.decode(bytes);

/** Names no store may accept, each for a different reason. */
export const BAD_REF_NAMES: readonly string[] = [
  '',
  '.',
  '..',
  '../escape',
  'a/../../escape',
  '/absolute',
  'a//b',
  'trailing/',
  'a/./b',
  'back\\slash',
  'nul\0byte',
  'new\nline',
  'space name',
  '%2e%2e/x',
  'caf\u00e9',
  '\u2024\u2024/lookalike-dots',
  'x'.repeat(1025),
  'held.lock',
];

const BAD_HASHES: readonly string[] = [
  '',
  'sha256:',
  'sha256:xyz',
  `sha256:${'a'.repeat(63)}`,
  `sha256:${'g'.repeat(64)}`,
  `md5:${'a'.repeat(32)}`,
  'not-a-hash',
  'bafy-not-a-cid',
];

function preAborted(): AbortSignal {
  const controller = new AbortController();
  controller.abort(new Error('stop'));
  return controller.signal;
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

async function* chunked(bytes: Uint8Array, size: number): AsyncIterable<Uint8Array> {
  for (let offset = 0; offset < bytes.length; offset += size) yield bytes.subarray(offset, offset + size);
}

function randomBytes(length: number, seed: number): Uint8Array {
  // A cheap deterministic generator: reproducible failures, no crypto cost.
  const out = new Uint8Array(length);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

async function until(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Registers the conformance cases for one store under `describe(name)`. */
export function conformanceSuite(name: string, target: ConformanceTarget): void {
  const timeout = target.timeoutMs ?? 30_000;
  const manyRefs = target.manyRefs ?? 2500;
  const watchIntervalMs = target.watchIntervalMs ?? 25;
  const declared = target.capabilities ?? { atomicRefs: true, conditionalDelete: true };

  describe(`conformance: ${name}`, () => {
    let store: Store;
    let writer: Store;
    let readOnly = false;

    beforeEach(async () => {
      store = await target.setup();
      readOnly = !store.capabilities.writable;
      if (readOnly && target.seed === undefined) throw new Error('a read-only target needs a seed() function');
      writer = readOnly ? target.seed!(store) : store;
    }, timeout);

    afterEach(async () => {
      if (target.teardown) await target.teardown(store);
      else await store.close();
    }, timeout);

    /** `needs`: the reason the case cannot run on this target, if it cannot. */
    const test = (title: string, body: () => Promise<void>, needs?: string): void => {
      const reason = needs ?? target.skip?.[title];
      if (reason !== undefined) it.skip(`${title} (skipped: ${reason})`, body);
      else it(title, body, timeout);
    };
    const unless = (capability: 'atomicRefs' | 'conditionalDelete'): string | undefined =>
      declared[capability] ? undefined : `needs capabilities.${capability}, which this store does not declare`;

    /** Runs a write under test: in read-only mode it must reject and change nothing. */
    async function expectWrite<T>(op: () => Promise<T>): Promise<T | undefined> {
      if (!readOnly) return op();
      await expect(op()).rejects.toBeInstanceOf(ReadOnlyError);
      return undefined;
    }

    describe('objects', () => {
      test('put then get returns the same bytes, addressed by their SHA-256', async () => {
        const bytes = bytesOf('hello, cairn');
        const hash = await expectWrite(() => store.put(bytes));
        if (readOnly) {
          expect(await store.has(hashBytes(bytes))).toBe(false);
          return;
        }
        expect(hash!.equals(hashBytes(bytes))).toBe(true);
        expect(hash!.algorithm).toBe('sha256');
        expect(textOf(await store.get(hash!))).toBe('hello, cairn');
      });

      test('get accepts the text form and the CID of a hash', async () => {
        const hash = await writer.put(bytesOf('by text'));
        expect(textOf(await store.get(hash.toString()))).toBe('by text');
        expect(textOf(await store.get(hash.toCid()))).toBe('by text');
      });

      test('put is idempotent: same bytes, same hash, one object', async () => {
        const bytes = bytesOf('twice');
        const first = await expectWrite(() => store.put(bytes));
        const second = await expectWrite(() => store.put(bytes));
        if (readOnly) return;
        expect(second!.equals(first!)).toBe(true);
        const listed = (await collect(store.listObjects())).filter((h) => h.equals(first!));
        expect(listed).toHaveLength(1);
      });

      test('the empty object round-trips', async () => {
        const hash = await writer.put(new Uint8Array(0));
        expect(hash.hex).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
        expect((await store.get(hash)).length).toBe(0);
        expect(await store.has(hash)).toBe(true);
      });

      test('put of a chunk stream equals put of the whole buffer', async () => {
        const bytes = randomBytes(300_000, 1);
        const fromStream = await expectWrite(() => store.put(chunked(bytes, 65_536)));
        if (readOnly) return;
        expect(fromStream!.equals(hashBytes(bytes))).toBe(true);
        expect(Buffer.from(await store.get(fromStream!)).equals(Buffer.from(bytes))).toBe(true);
      });

      test('put with the blake3 algorithm addresses by BLAKE3', async () => {
        const bytes = bytesOf('blake3 content');
        const hash = await writer.put(bytes, { algorithm: 'blake3' });
        expect(hash.algorithm).toBe('blake3');
        expect(hash.equals(hashBytes(bytes, 'blake3'))).toBe(true);
        expect(textOf(await store.get(hash))).toBe('blake3 content');
        expect(await store.has(hashBytes(bytes, 'sha256'))).toBe(false);
      });

      test('get of a missing object is a NotFoundError naming the hash', async () => {
        const missing = hashBytes(bytesOf('never stored'));
        const error = await store.get(missing).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(NotFoundError);
        expect((error as NotFoundError).code).toBe('ERR_NOT_FOUND');
        expect((error as NotFoundError).key).toBe(missing.toString());
      });

      test('getStream yields the object bytes', async () => {
        const bytes = randomBytes(3 * 1024 * 1024 + 17, 2);
        const hash = await writer.put(bytes);
        const chunks = await collect(store.getStream(hash));
        expect(Buffer.concat(chunks).equals(Buffer.from(bytes))).toBe(true);
      });

      test('getStream of a missing object throws NotFoundError', async () => {
        await expect(collect(store.getStream(hashBytes(bytesOf('absent stream'))))).rejects.toBeInstanceOf(NotFoundError);
      });

      test('a large object streams in and out intact', async () => {
        const bytes = randomBytes(12 * 1024 * 1024, 3);
        const hash = await writer.put(chunked(bytes, 1024 * 1024));
        expect(hash.equals(hashBytes(bytes))).toBe(true);
        let total = 0;
        for await (const chunk of store.getStream(hash)) total += chunk.length;
        expect(total).toBe(bytes.length);
      });

      test('getRange returns the asked bytes, clipped at the end, of small and large objects', async () => {
        const small = randomBytes(1000, 21);
        const large = randomBytes(2 * 1024 * 1024 + 5, 22);
        const [smallHash, largeHash] = [await writer.put(small), await writer.put(chunked(large, 256 * 1024))];
        const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));
        expect(same(await store.getRange(smallHash, 10, 100), small.subarray(10, 110))).toBe(true);
        expect(same(await store.getRange(smallHash, 0, 1000), small)).toBe(true);
        expect(same(await store.getRange(smallHash, 990, 100), small.subarray(990))).toBe(true);
        expect((await store.getRange(smallHash, 1000, 10)).length).toBe(0);
        expect((await store.getRange(smallHash, 5000, 10)).length).toBe(0);
        expect((await store.getRange(smallHash, 3, 0)).length).toBe(0);
        const mid = 1024 * 1024 + 3;
        expect(same(await store.getRange(largeHash, mid, 70_000), large.subarray(mid, mid + 70_000))).toBe(true);
        expect(same(await store.getRange(largeHash, large.length - 4, 64), large.subarray(large.length - 4))).toBe(true);
      });

      test('getRange of a missing object is a NotFoundError; bad offsets are InvalidArgumentError', async () => {
        const missing = hashBytes(bytesOf('no range here'));
        await expect(store.getRange(missing, 0, 10)).rejects.toBeInstanceOf(NotFoundError);
        await expect(store.getRange(missing, 0, 0)).rejects.toBeInstanceOf(NotFoundError);
        const hash = await writer.put(bytesOf('ranged'));
        for (const [offset, length] of [[-1, 2], [0, -2], [1.5, 2], [0, Number.NaN], [2 ** 60, 1]] as const) {
          await expect(store.getRange(hash, offset, length), `${offset}/${length}`).rejects.toBeInstanceOf(InvalidArgumentError);
        }
      });

      test('has is true for a stored object and false for a missing one', async () => {
        const hash = await writer.put(bytesOf('present'));
        expect(await store.has(hash)).toBe(true);
        expect(await store.has(hashBytes(bytesOf('absent')))).toBe(false);
      });

      test('delete removes an object and is idempotent', async () => {
        const hash = await writer.put(bytesOf('to delete'));
        await expectWrite(() => store.delete(hash));
        if (readOnly) {
          expect(await store.has(hash)).toBe(true);
          return;
        }
        expect(await store.has(hash)).toBe(false);
        await expect(store.get(hash)).rejects.toBeInstanceOf(NotFoundError);
        await store.delete(hash);
        expect(await store.has(hash)).toBe(false);
      });

      test('listObjects yields every object once', async () => {
        const hashes = await writer.putMany(Array.from({ length: 60 }, (_, i) => bytesOf(`listed ${i}`)));
        const listed = await collect(store.listObjects());
        const texts = listed.map((h) => h.toString());
        expect(new Set(texts).size).toBe(texts.length);
        for (const hash of hashes) expect(texts).toContain(hash.toString());
        expect(listed.every((h) => h instanceof Hash)).toBe(true);
      });

      test('putMany, getMany and hasMany keep input order', async () => {
        const items = Array.from({ length: 40 }, (_, i) => bytesOf(`batch item ${i}`));
        const hashes = await expectWrite(() => store.putMany(items));
        if (readOnly) {
          expect(await store.hasMany(items.map((b) => hashBytes(b)))).toEqual(items.map(() => false));
          return;
        }
        expect(hashes!.map((h) => h.toString())).toEqual(items.map((b) => hashBytes(b).toString()));
        const read = await store.getMany(hashes!);
        expect(read.map(textOf)).toEqual(items.map(textOf));
        const missing = hashBytes(bytesOf('not in batch'));
        expect(await store.hasMany([hashes![3]!, missing, hashes![0]!])).toEqual([true, false, true]);
      });

      test('getMany with a missing hash rejects with NotFoundError', async () => {
        const present = await writer.put(bytesOf('in batch'));
        await expect(store.getMany([present, hashBytes(bytesOf('missing in batch'))])).rejects.toBeInstanceOf(NotFoundError);
      });

      test('100 puts then 100 gets in parallel', async () => {
        const items = Array.from({ length: 100 }, (_, i) => bytesOf(`parallel ${i}`));
        const hashes = await Promise.all(items.map((b) => writer.put(b)));
        const read = await Promise.all(hashes.map((h) => store.get(h)));
        expect(read.map(textOf)).toEqual(items.map(textOf));
      });

      test('100 has and 100 deletes in parallel', async () => {
        const hashes = await writer.putMany(Array.from({ length: 100 }, (_, i) => bytesOf(`pdel ${i}`)));
        expect(await Promise.all(hashes.map((h) => store.has(h)))).toEqual(hashes.map(() => true));
        await expectWrite(() => Promise.all(hashes.map((h) => store.delete(h))));
        expect(await Promise.all(hashes.map((h) => store.has(h)))).toEqual(hashes.map(() => readOnly));
      });

      test('stored bytes cannot be changed through the buffers put took or get returned', async () => {
        const bytes = bytesOf('immutable');
        const hash = await writer.put(bytes);
        bytes[0] = 0x58;
        const read = await store.get(hash);
        expect(textOf(read)).toBe('immutable');
        read[0] = 0x58;
        expect(textOf(await store.get(hash))).toBe('immutable');
      });

      test('an invalid hash is an InvalidHashError on every object call and changes nothing', async () => {
        const kept = await writer.put(bytesOf('kept'));
        for (const bad of BAD_HASHES) {
          await expect(store.get(bad)).rejects.toBeInstanceOf(InvalidHashError);
          await expect(store.has(bad)).rejects.toBeInstanceOf(InvalidHashError);
          await expect(collect(store.getStream(bad))).rejects.toBeInstanceOf(InvalidHashError);
          await expect(store.getMany([kept, bad])).rejects.toBeInstanceOf(InvalidHashError);
          await expect(store.hasMany([bad])).rejects.toBeInstanceOf(InvalidHashError);
          await expect(store.delete(bad)).rejects.toBeInstanceOf(readOnly ? ReadOnlyError : InvalidHashError);
        }
        expect(await store.has(kept)).toBe(true);
      });

      test('put of something that is not bytes is an InvalidArgumentError', async () => {
        const expected = readOnly ? ReadOnlyError : InvalidArgumentError;
        await expect(store.put('a string' as unknown as Uint8Array)).rejects.toBeInstanceOf(expected);
        await expect(store.put(42 as unknown as Uint8Array)).rejects.toBeInstanceOf(expected);
        await expect(store.put(null as unknown as Uint8Array)).rejects.toBeInstanceOf(expected);
        expect(await collect(store.listObjects())).toHaveLength(0);
      });

      test('object calls with a pre-aborted signal reject with AbortError and change nothing', async () => {
        const signal = preAborted();
        const kept = await writer.put(bytesOf('abort keep'));
        const fresh = bytesOf('abort new');
        const writeError = readOnly ? ReadOnlyError : AbortError;
        await expect(store.put(fresh, { signal })).rejects.toBeInstanceOf(writeError);
        await expect(store.putMany([fresh], { signal })).rejects.toBeInstanceOf(writeError);
        await expect(store.delete(kept, { signal })).rejects.toBeInstanceOf(writeError);
        await expect(store.get(kept, { signal })).rejects.toBeInstanceOf(AbortError);
        await expect(store.has(kept, { signal })).rejects.toBeInstanceOf(AbortError);
        await expect(store.getMany([kept], { signal })).rejects.toBeInstanceOf(AbortError);
        await expect(store.hasMany([kept], { signal })).rejects.toBeInstanceOf(AbortError);
        await expect(collect(store.getStream(kept, { signal }))).rejects.toBeInstanceOf(AbortError);
        await expect(collect(store.listObjects({ signal }))).rejects.toBeInstanceOf(AbortError);
        expect(await store.has(kept)).toBe(true);
        expect(await store.has(hashBytes(fresh))).toBe(false);
      });
    });

    describe('refs', () => {
      test('getRef of a missing ref is undefined', async () => {
        expect(await store.getRef('heads/none')).toBeUndefined();
      });

      test('setRef then getRef round-trips, and each write changes the version', async () => {
        const a = await writer.put(bytesOf('ref a'));
        const b = await writer.put(bytesOf('ref b'));
        const first = await expectWrite(() => store.setRef('heads/main', a));
        if (readOnly) {
          expect(await store.getRef('heads/main')).toBeUndefined();
          const seeded = await writer.setRef('heads/main', a);
          expect((await store.getRef('heads/main'))?.version).toBe(seeded.version);
          return;
        }
        expect(first!.hash.equals(a)).toBe(true);
        const read = await store.getRef('heads/main');
        expect(read?.hash.equals(a)).toBe(true);
        expect(read?.version).toBe(first!.version);
        const second = await store.setRef('heads/main', b);
        expect(second.version).not.toBe(first!.version);
        expect((await store.getRef('heads/main'))?.hash.equals(b)).toBe(true);
      });

      test('deleteRef removes a ref and is idempotent', async () => {
        const a = await writer.put(bytesOf('del ref'));
        await writer.setRef('tags/old', a);
        await expectWrite(() => store.deleteRef('tags/old'));
        expect((await store.getRef('tags/old')) === undefined).toBe(!readOnly);
        await expectWrite(() => store.deleteRef('tags/never'));
      });

      test('compareAndSwap from null creates only if absent', async () => {
        const a = await writer.put(bytesOf('create a'));
        const b = await writer.put(bytesOf('create b'));
        const created = await expectWrite(() => store.compareAndSwap('heads/new', null, a));
        if (readOnly) return;
        expect(created!.ok).toBe(true);
        expect(created!.current?.hash.equals(a)).toBe(true);
        const again = await store.compareAndSwap('heads/new', null, b);
        expect(again.ok).toBe(false);
        expect(again.current?.hash.equals(a)).toBe(true);
        expect((await store.getRef('heads/new'))?.hash.equals(a)).toBe(true);
      });

      test('compareAndSwap updates on the expected value and reports the current one otherwise', async () => {
        const [a, b, c] = await writer.putMany([bytesOf('swap a'), bytesOf('swap b'), bytesOf('swap c')]);
        await writer.setRef('heads/swap', a!);
        const wrong = await expectWrite(() => store.compareAndSwap('heads/swap', b!, c!));
        if (readOnly) return;
        expect(wrong!.ok).toBe(false);
        expect(wrong!.current?.hash.equals(a!)).toBe(true);
        expect((await store.getRef('heads/swap'))?.hash.equals(a!)).toBe(true);
        const right = await store.compareAndSwap('heads/swap', a!, b!);
        expect(right.ok).toBe(true);
        expect(right.current?.hash.equals(b!)).toBe(true);
        expect((await store.getRef('heads/swap'))?.version).toBe(right.current?.version);
      });

      if (declared.conditionalDelete) {
        test('compareAndSwap to null deletes only on the expected value', async () => {
          const [a, b] = await writer.putMany([bytesOf('cdel a'), bytesOf('cdel b')]);
          await writer.setRef('heads/cdel', a!);
          const wrong = await expectWrite(() => store.compareAndSwap('heads/cdel', b!, null));
          if (readOnly) return;
          expect(wrong!.ok).toBe(false);
          expect(wrong!.current?.hash.equals(a!)).toBe(true);
          const right = await store.compareAndSwap('heads/cdel', a!, null);
          expect(right).toEqual({ ok: true, current: undefined });
          expect(await store.getRef('heads/cdel')).toBeUndefined();
          const onAbsent = await store.compareAndSwap('heads/cdel', a!, null);
          expect(onAbsent).toEqual({ ok: false, current: undefined });
        });
      } else {
        test('without conditionalDelete, compareAndSwap to null is an UnsupportedError and changes nothing', async () => {
          const a = await writer.put(bytesOf('cdel refused'));
          await writer.setRef('heads/cdel', a);
          await expect(store.compareAndSwap('heads/cdel', a, null)).rejects.toBeInstanceOf(readOnly ? ReadOnlyError : UnsupportedError);
          expect((await store.getRef('heads/cdel'))?.hash.equals(a)).toBe(true);
        });
      }

      test('compareAndSwap on an absent ref with an expected hash fails without creating it', async () => {
        const [a, b] = await writer.putMany([bytesOf('absent a'), bytesOf('absent b')]);
        const result = await expectWrite(() => store.compareAndSwap('heads/absent', a!, b!));
        if (readOnly) return;
        expect(result).toEqual({ ok: false, current: undefined });
        expect(await store.getRef('heads/absent')).toBeUndefined();
      });

      test('32 concurrent create-only swaps on one name have exactly one winner', async () => {
        if (readOnly) return;
        const hashes = await writer.putMany(Array.from({ length: 32 }, (_, i) => bytesOf(`contender ${i}`)));
        const results = await Promise.all(hashes.map((h) => store.compareAndSwap('heads/race', null, h)));
        const winners = results.filter((r) => r.ok);
        expect(winners).toHaveLength(1);
        const winner = winners[0]!.current!;
        for (const loser of results.filter((r) => !r.ok)) expect(loser.current?.hash.equals(winner.hash)).toBe(true);
        expect((await store.getRef('heads/race'))?.hash.equals(winner.hash)).toBe(true);
      });

      test('8 workers x 50 read-then-swap increments end at exactly 400', async () => {
        if (readOnly) return;
        const increment = async (): Promise<void> => {
          for (;;) {
            const current = await store.getRef('counter');
            const value = current === undefined ? 0 : Number(textOf(await store.get(current.hash)));
            const next = await store.put(bytesOf(String(value + 1)));
            const result = await store.compareAndSwap('counter', current?.hash ?? null, next);
            if (result.ok) return;
          }
        };
        await Promise.all(
          Array.from({ length: 8 }, async () => {
            for (let i = 0; i < 50; i++) await increment();
          }),
        );
        const final = await store.getRef('counter');
        expect(textOf(await store.get(final!.hash))).toBe('400');
      });

      test('deleting by swap is atomic: of 16 racing deletes and updates, exactly one wins', async () => {
        if (readOnly) return;
        const [a, ...others] = await writer.putMany(Array.from({ length: 9 }, (_, i) => bytesOf(`atomic ${i}`)));
        await store.setRef('heads/atomic', a!);
        const racers = [
          ...Array.from({ length: 8 }, () => store.compareAndSwap('heads/atomic', a!, null)),
          ...others.map((h) => store.compareAndSwap('heads/atomic', a!, h)),
        ];
        const results = await Promise.all(racers);
        const winners = results.map((r, i) => ({ r, i })).filter(({ r }) => r.ok);
        expect(winners).toHaveLength(1);
        const final = await store.getRef('heads/atomic');
        const winnerIndex = winners[0]!.i;
        if (winnerIndex < 8) expect(final).toBeUndefined();
        else expect(final?.hash.equals(others[winnerIndex - 8]!)).toBe(true);
      }, unless('conditionalDelete'));

      test(
        'atomicRefs: 16 create-only swaps split between two clients of one backend have exactly one winner',
        async () => {
          if (readOnly) return;
          const peer = await target.peer!(store);
          try {
            const hashes = await writer.putMany(Array.from({ length: 16 }, (_, i) => bytesOf(`two clients ${i}`)));
            const results = await Promise.all(hashes.map((h, i) => (i % 2 === 0 ? store : peer).compareAndSwap('heads/peers', null, h)));
            const winners = results.filter((r) => r.ok);
            expect(winners).toHaveLength(1);
            const won = winners[0]!.current!.hash;
            for (const loser of results.filter((r) => !r.ok)) expect(loser.current?.hash.equals(won)).toBe(true);
            expect((await peer.getRef('heads/peers'))?.hash.equals(won)).toBe(true);
            expect((await store.getRef('heads/peers'))?.hash.equals(won)).toBe(true);
          } finally {
            await peer.close();
          }
        },
        unless('atomicRefs') ?? (target.peer === undefined ? 'needs peer(): the target opens no second client of the same data' : undefined),
      );

      test(`listRefs over ${manyRefs} refs yields each once, sorted`, async () => {
        const hash = await writer.put(bytesOf('many refs'));
        const names = Array.from({ length: manyRefs }, (_, i) => `many/r${String(i).padStart(5, '0')}`);
        for (let i = 0; i < names.length; i += 64) {
          await Promise.all(names.slice(i, i + 64).map((n) => writer.setRef(n, hash)));
        }
        await writer.setRef('other/x', hash);
        const listed = await collect(store.listRefs('many/'));
        expect(listed.map((r) => r.name)).toEqual(names);
        expect(listed.every((r) => r.hash.equals(hash) && typeof r.version === 'string')).toBe(true);
        const all = await collect(store.listRefs());
        expect(all).toHaveLength(manyRefs + 1);
      });

      test('listRefs filters by prefix', async () => {
        const hash = await writer.put(bytesOf('prefix'));
        await Promise.all(['heads/a', 'heads/b', 'tags/a', 'headsx'].map((n) => writer.setRef(n, hash)));
        expect((await collect(store.listRefs('heads/'))).map((r) => r.name)).toEqual(['heads/a', 'heads/b']);
        expect((await collect(store.listRefs('heads'))).map((r) => r.name)).toEqual(['heads/a', 'heads/b', 'headsx']);
        expect(await collect(store.listRefs('nothing/'))).toEqual([]);
      });

      test('100 setRef calls on different names in parallel', async () => {
        const hash = await writer.put(bytesOf('parallel refs'));
        const names = Array.from({ length: 100 }, (_, i) => `par/${i}`);
        await expectWrite(() => Promise.all(names.map((n) => store.setRef(n, hash))));
        const read = await Promise.all(names.map((n) => store.getRef(n)));
        expect(read.every((v) => (readOnly ? v === undefined : v?.hash.equals(hash)))).toBe(true);
      });

      test('unsafe ref names are an InvalidRefNameError on every ref call and change nothing', async () => {
        const hash = await writer.put(bytesOf('names'));
        const watching = new AbortController();
        for (const bad of BAD_REF_NAMES) {
          await expect(store.getRef(bad)).rejects.toBeInstanceOf(InvalidRefNameError);
          const writeError = readOnly ? ReadOnlyError : InvalidRefNameError;
          await expect(store.setRef(bad, hash)).rejects.toBeInstanceOf(writeError);
          await expect(store.deleteRef(bad)).rejects.toBeInstanceOf(writeError);
          await expect(store.compareAndSwap(bad, null, hash)).rejects.toBeInstanceOf(writeError);
          await expect(store.watchRef(bad, () => {}, { signal: watching.signal })).rejects.toBeInstanceOf(
            InvalidRefNameError,
          );
        }
        watching.abort();
        await expect(store.getRef(42 as unknown as string)).rejects.toBeInstanceOf(InvalidRefNameError);
        expect(await collect(store.listRefs())).toEqual([]);
      });

      test('an unsafe listRefs prefix is an InvalidRefNameError', async () => {
        for (const bad of ['../', '/abs', 'a/../b', 'nul\0', 'sp ace']) {
          await expect(collect(store.listRefs(bad))).rejects.toBeInstanceOf(InvalidRefNameError);
        }
      });

      test('an invalid hash in setRef or compareAndSwap is an InvalidHashError and changes nothing', async () => {
        const hash = await writer.put(bytesOf('valid'));
        await writer.setRef('heads/keep', hash);
        const writeError = readOnly ? ReadOnlyError : InvalidHashError;
        await expect(store.setRef('heads/keep', 'sha256:nope')).rejects.toBeInstanceOf(writeError);
        await expect(store.compareAndSwap('heads/keep', hash, 'bogus')).rejects.toBeInstanceOf(writeError);
        await expect(store.compareAndSwap('heads/keep', 'bogus', hash)).rejects.toBeInstanceOf(writeError);
        expect((await store.getRef('heads/keep'))?.hash.equals(hash)).toBe(true);
      });

      test('ref calls with a pre-aborted signal reject with AbortError and change nothing', async () => {
        const signal = preAborted();
        const hash = await writer.put(bytesOf('abort refs'));
        await writer.setRef('heads/abort', hash);
        const other = await writer.put(bytesOf('abort other'));
        const writeError = readOnly ? ReadOnlyError : AbortError;
        await expect(store.getRef('heads/abort', { signal })).rejects.toBeInstanceOf(AbortError);
        await expect(store.setRef('heads/abort', other, { signal })).rejects.toBeInstanceOf(writeError);
        await expect(store.deleteRef('heads/abort', { signal })).rejects.toBeInstanceOf(writeError);
        await expect(store.compareAndSwap('heads/abort', hash, other, { signal })).rejects.toBeInstanceOf(writeError);
        await expect(collect(store.listRefs('', { signal }))).rejects.toBeInstanceOf(AbortError);
        await expect(store.watchRef('heads/abort', () => {}, { signal })).rejects.toBeInstanceOf(AbortError);
        expect((await store.getRef('heads/abort'))?.hash.equals(hash)).toBe(true);
      });

      test('watchRef sees every change in order', async () => {
        const [a, b, c] = await writer.putMany([bytesOf('w a'), bytesOf('w b'), bytesOf('w c')]);
        const seen: Array<RefValue | undefined> = [];
        const controller = new AbortController();
        await store.watchRef('heads/watched', (v) => seen.push(v), {
          signal: controller.signal,
          intervalMs: watchIntervalMs,
        });
        try {
          const steps: Array<() => Promise<unknown>> = [
            () => writer.setRef('heads/watched', a!),
            () => writer.compareAndSwap('heads/watched', a!, b!),
            () => writer.setRef('heads/watched', c!),
            () => (declared.conditionalDelete ? writer.compareAndSwap('heads/watched', c!, null) : writer.deleteRef('heads/watched')),
            () => writer.setRef('heads/watched', a!),
          ];
          const expected = [a, b, c, undefined, a];
          for (let i = 0; i < steps.length; i++) {
            await steps[i]!();
            await until(() => seen.length > i, 10_000, `change ${i + 1}`);
          }
          expect(seen.map((v) => v?.hash.toString())).toEqual(expected.map((h) => h?.toString()));
        } finally {
          controller.abort();
        }
      });

      test('watchRef stops calling back once its signal fires', async () => {
        const [a, b] = await writer.putMany([bytesOf('stop a'), bytesOf('stop b')]);
        const seen: Array<RefValue | undefined> = [];
        const controller = new AbortController();
        await store.watchRef('heads/stop', (v) => seen.push(v), { signal: controller.signal, intervalMs: watchIntervalMs });
        await writer.setRef('heads/stop', a!);
        await until(() => seen.length === 1, 10_000, 'the first change');
        controller.abort();
        await writer.setRef('heads/stop', b!);
        await new Promise((resolve) => setTimeout(resolve, watchIntervalMs * 6 + 50));
        expect(seen).toHaveLength(1);
      });

      test('two watchers of one ref are both told', async () => {
        const a = await writer.put(bytesOf('two watchers'));
        const first: unknown[] = [];
        const second: unknown[] = [];
        const controller = new AbortController();
        const opts = { signal: controller.signal, intervalMs: watchIntervalMs };
        await store.watchRef('heads/two', (v) => first.push(v), opts);
        await store.watchRef('heads/two', (v) => second.push(v), opts);
        await writer.setRef('heads/two', a);
        await until(() => first.length === 1 && second.length === 1, 10_000, 'both watchers');
        controller.abort();
      });
    });

    describe('lifecycle', () => {
      test('capabilities are a complete record and say what the target declares', async () => {
        const caps = store.capabilities;
        for (const key of ['writable', 'durable', 'atomicRefs', 'conditionalDelete', 'multipart'] as const) {
          expect(typeof caps[key]).toBe('boolean');
        }
        expect(['push', 'poll']).toContain(caps.watch);
        expect({ atomicRefs: caps.atomicRefs, conditionalDelete: caps.conditionalDelete }).toEqual(declared);
      });

      test('flush resolves after writes', async () => {
        await writer.put(bytesOf('flushed'));
        await expect(store.flush()).resolves.toBeUndefined();
      });

      test('after close every call rejects with ClosedError', async () => {
        const hash = await writer.put(bytesOf('closing'));
        await store.close();
        await expect(store.get(hash)).rejects.toBeInstanceOf(ClosedError);
        await expect(store.has(hash)).rejects.toBeInstanceOf(ClosedError);
        await expect(store.getRef('heads/x')).rejects.toBeInstanceOf(ClosedError);
        await expect(collect(store.listRefs())).rejects.toBeInstanceOf(ClosedError);
        await expect(store.close()).resolves.toBeUndefined();
      });
    });
  });
}
