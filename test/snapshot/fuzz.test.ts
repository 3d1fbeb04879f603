/**
 * Fuzz (issue 12): random malformed snapshots (bad names, duplicate and
 * unsorted entries, bad modes, sizes that lie, shared subtrees, missing
 * objects, non-JSON bytes posing as trees) in a store; restore, verify,
 * diff and gc must each end, within a time bound, in success or a typed
 * Cairn error, and a failed restore must leave nothing behind.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CairnError, collectGarbage, diffSnapshots, hashBytes, memoryStore, restore, verifyStore, type Hash, type Store } from '../../src/index.js';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-fuzz-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const encoder = new TextEncoder();
const names = fc.oneof(
  fc.constantFrom('a', 'b', 'c', '..', '.', '', 'x/y', 'n\u0000ul', 'é', '\ud800'),
  fc.string({ minLength: 1, maxLength: 6 }),
);
const mode = fc.constantFrom(0o755, 0o644, 0o777, 0o000, 4095, -1, 1.5, '644');
const size = fc.constantFrom(0, 1, 5, 300_000, 2 ** 40, -1);

/** An object: a tree (entries naming earlier objects or absent ones), or raw bytes. */
const object = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('tree' as const),
      sorted: fc.boolean(),
      entries: fc.array(
        fc.record({
          name: names,
          type: fc.constantFrom('dir', 'dir', 'file', 'file', 'symlink', 'socket'),
          mode,
          size,
          ref: fc.nat(20),
          chunked: fc.boolean(),
        }),
        { maxLength: 5 },
      ),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('raw' as const), text: fc.constantFrom('{"cairn":"tree/v1"', '{"cairn":"chunks/v1","size":1,"chunks":[]}', 'hello', '{"cairn":"tree/v1","entries":{}}') }) },
);

type FuzzObject = typeof object extends fc.Arbitrary<infer T> ? T : never;

async function build(store: Store, objects: readonly FuzzObject[]): Promise<Hash[]> {
  const hashes: Hash[] = [await store.put(encoder.encode('x'))];
  for (const o of objects) {
    if (o.kind === 'raw') {
      hashes.push(await store.put(encoder.encode(o.text)));
      continue;
    }
    let entries = o.entries.map((e: { name: string; type: string; mode: unknown; size: unknown; ref: number; chunked: boolean }) => {
      // Indices past the pool name an object that does not exist.
      const target = e.ref < hashes.length ? hashes[e.ref]!.toString() : hashBytes(encoder.encode(`absent ${e.ref}`)).toString();
      if (e.type === 'symlink') return { name: e.name, type: 'symlink', target: e.name || 'x' };
      if (e.type === 'dir') return { name: e.name, type: 'dir', mode: e.mode, hash: target };
      return e.chunked
        ? { name: e.name, type: e.type, mode: e.mode, size: e.size, chunks: target }
        : { name: e.name, type: e.type, mode: e.mode, size: e.size, hash: target };
    });
    if (o.sorted) entries = [...entries].sort((x: { name: string }, y: { name: string }) => Buffer.compare(Buffer.from(x.name), Buffer.from(y.name)));
    hashes.push(await store.put(encoder.encode(JSON.stringify({ cairn: 'tree/v1', entries }))));
  }
  return hashes;
}

/** Runs `op`; it must settle within `ms` with a value or a Cairn error. */
async function bounded(what: string, op: () => Promise<unknown>, ms = 3000): Promise<'ok' | 'refused'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not end within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([op(), timeout]);
    return 'ok';
  } catch (error) {
    if (!(error instanceof CairnError)) throw error;
    return 'refused';
  } finally {
    clearTimeout(timer);
  }
}

let run = 0;
const outcomes = { ok: 0, refused: 0 };
it('restore, verify, diff and gc end with success or a typed error on random malformed snapshots', async () => {
  const heapBefore = process.memoryUsage().heapUsed;
  await fc.assert(
    fc.asyncProperty(fc.array(object, { minLength: 1, maxLength: 12 }), fc.nat(), fc.nat(), async (objects, i, j) => {
      const store = memoryStore();
      const hashes = await build(store, objects);
      const a = hashes[1 + (i % (hashes.length - 1))] ?? hashes[0]!;
      const b = hashes[1 + (j % (hashes.length - 1))] ?? hashes[0]!;
      await store.setRef('snapshots/a', a);
      await store.setRef('snapshots/b', b);
      const limits = { maxFiles: 2000, maxDepth: 30 };
      const dir = join(work, `r${++run}`);
      outcomes[await bounded('restore', () => restore(store, a, join(dir, 'out'), limits))]++;
      // Whatever happened, nothing is left beside the target but the target itself.
      const left = await readdir(dir).catch(() => [] as string[]);
      expect(left.filter((n) => n !== 'out')).toEqual([]);
      await bounded('verify', () => verifyStore(store));
      await bounded('diff', () => diffSnapshots(store, a, b, limits));
      await bounded('gc', () => collectGarbage(store, { graceMs: 0, dryRun: false }));
    }),
    { numRuns: 400, seed: 12 },
  );
  // Both paths were exercised: some random snapshots restore, some are refused.
  expect(outcomes.ok).toBeGreaterThan(10);
  expect(outcomes.refused).toBeGreaterThan(10);
  // Bounded memory: a few hundred small stores and restores leave the heap near where it was.
  expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(200 * 2 ** 20);
}, 60_000);
