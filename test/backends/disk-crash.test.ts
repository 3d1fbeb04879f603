/**
 * Durability under kill -9: a child writes objects, swaps refs and deletes
 * with four concurrent workers and is SIGKILLed at a random moment, 50
 * times over one store. After every kill the store is reopened here and
 * everything the child acknowledged is checked.
 */
import { appendFile, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDiskStore } from '../../src/backends/disk.js';
import { bundleChild, watchChild, type BundledChild } from './disk/spawn.js';

const ROUNDS = 50;

describe('disk store: crash safety', () => {
  let child: BundledChild;
  let dir: string;

  beforeAll(async () => {
    child = await bundleChild();
    dir = await mkdtemp(join(tmpdir(), 'cairn-crash-'));
  });

  afterAll(async () => {
    await child?.dispose();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it(`keeps every acknowledged write across ${ROUNDS} SIGKILLs at random moments`, async () => {
    const store = join(dir, 'store');
    const mustExist = new Set<string>();
    const mustBeGone = new Set<string>();
    const refs = new Map<string, { acked: string | undefined; trying: string | undefined }>();
    let acks = 0;
    let droppedTotal = 0;
    let killedBeforeReady = 0;
    let tornRounds = 0;
    let compactions = 0;

    for (let round = 0; round < ROUNDS; round++) {
      const proc = child.start(['crash', store, String(round + 1)]);
      const watched = watchChild(proc);
      // Most rounds die mid-work; some die while the child is still opening (recovering) the store.
      const early = round % 7 === 3;
      // Rounds whose child compacts first (seed % 4 === 2) get longer, so that some compactions finish.
      const delay = early ? Math.random() * 40 : 5 + Math.random() * ((round + 1) % 4 === 2 ? 400 : 100);
      if (early) {
        setTimeout(() => proc.kill('SIGKILL'), delay);
      } else {
        await new Promise<void>((resolve, reject) => {
          watched.onLine((line) => {
            if (line === 'ready') setTimeout(() => { proc.kill('SIGKILL'); resolve(); }, delay);
          });
          void watched.exited.then(() => reject(new Error(`child exited before being killed: ${watched.stderr()}`)));
        });
      }
      const code = await watched.exited;
      expect(code, watched.stderr()).toBeNull();
      if (!watched.lines.includes('ready')) killedBeforeReady++;

      for (const line of watched.lines) {
        const [tag, a, b] = line.split(' ');
        if (tag === 'put' || tag === 'tmp') {
          mustExist.add(a!);
          mustBeGone.delete(a!);
          acks++;
        } else if (tag === 'trydel') {
          mustExist.delete(a!);
        } else if (tag === 'del') {
          mustBeGone.add(a!);
          acks++;
        } else if (tag === 'try') {
          const ref = refs.get(a!) ?? { acked: undefined, trying: undefined };
          refs.set(a!, { ...ref, trying: b });
        } else if (tag === 'compacted') {
          compactions++;
        } else if (tag === 'ref') {
          refs.set(a!, { acked: b, trying: undefined });
          acks++;
        }
      }

      // Every fifth round, play a power cut during an unacknowledged write: a half record at the end
      // of the newest segment. Recovery must drop it, say so, and lose nothing acknowledged.
      if (round % 5 === 4) tornRounds += await tearNewestSegment(store);

      const reopened = await openDiskStore(store);
      try {
        droppedTotal += reopened.recovery.droppedBytes;
        const hashes = [...mustExist];
        for (let i = 0; i < hashes.length; i += 500) {
          // getMany verifies every object against its hash: a corrupt or truncated one would throw.
          const got = await reopened.getMany(hashes.slice(i, i + 500));
          expect(got.length).toBe(Math.min(500, hashes.length - i));
        }
        for (const gone of mustBeGone) expect(await reopened.has(gone), `deleted ${gone}`).toBe(false);
        for (const [name, { acked, trying }] of refs) {
          const value = (await reopened.getRef(name))?.hash.toString();
          // An unacknowledged swap may or may not have landed; an acknowledged one must have.
          expect([acked, trying], `ref ${name} in round ${round}`).toContain(value);
          refs.set(name, { acked: value, trying: undefined });
        }
        // Nothing listed is corrupt: every listed object reads back verified.
        const listed: string[] = [];
        for await (const hash of reopened.listObjects()) listed.push(hash.toString());
        const fresh = listed.filter((h) => !mustExist.has(h));
        for (let i = 0; i < fresh.length; i += 500) await reopened.getMany(fresh.slice(i, i + 500));
      } finally {
        await reopened.close();
      }
    }
    // The test must have exercised something: acknowledged work, and torn tails that recovery dropped.
    expect(acks).toBeGreaterThan(ROUNDS * 5);
    expect(droppedTotal).toBeGreaterThanOrEqual(tornRounds);
    expect(tornRounds).toBeGreaterThan(0);
    console.log(`crash test: ${acks} acknowledged writes, ${mustExist.size} objects checked, ${droppedTotal} torn bytes dropped, ${killedBeforeReady} kills during open, ${compactions} compactions completed`);
  }, 120_000);
});

/** Appends a torn record (a valid-looking header, too few bytes) to the most recently written segment. */
async function tearNewestSegment(store: string): Promise<number> {
  const dir = join(store, 'segments');
  const names = (await readdir(dir)).filter((n) => n.endsWith('.seg'));
  if (names.length === 0) return 0;
  const sizes = await Promise.all(names.map(async (n) => ({ n, info: await stat(join(dir, n)) })));
  const newest = sizes.sort((a, b) => b.info.mtimeMs - a.info.mtimeMs)[0]!;
  const torn = Buffer.alloc(40 + Math.floor(Math.random() * 200), 0xab);
  torn.write('CSEG', 0, 'latin1');
  torn.writeUInt32LE(4000, 8);
  await appendFile(join(dir, newest.n), torn);
  return 1;
}
