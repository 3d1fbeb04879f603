/**
 * Objects written before a remote was configured, or pushed to another
 * remote, are named by no upload journal: the first push to a remote not
 * known to hold them must check every local object and upload what it
 * lacks, or it would publish refs reaching objects the remote does not have.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { describeTree, makeMixedTree } from '../snapshot/fixtures.js';
import { assertBuilt, cairn, cairnJson, cairnOk } from './run-cli.js';

/**
 * Every case here runs the built binary several times (up to ~25 processes, each
 * paying Node's start-up and module compile, 0.3-1 s on a loaded 2-core CI
 * machine): 90 s per case holds there, where the default 30 s did not.
 */
vi.setConfig({ testTimeout: 90_000 });

let work: string;
let src: string;
beforeAll(async () => {
  assertBuilt();
  work = await mkdtemp(join(tmpdir(), 'cairn-cli-remote-'));
  src = join(work, 'src');
  await mkdir(src);
  await makeMixedTree(src);
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

interface Status {
  pendingObjects: number;
  fullCheckOnPush: boolean;
}
interface Pushed {
  uploaded: number;
  checkedLocal: number;
  pushed: Array<{ ref: string }>;
}

/** A second machine restores `ref` from `remote`; the remote itself verifies clean (no missing objects). */
async function restoresFrom(remote: string, ref: string, name: string): Promise<void> {
  const env = { CAIRN_DIR: join(work, `${name}-machine`) };
  await cairnOk(['init', '--remote', remote], { env });
  await cairnOk(['pull'], { env });
  const out = join(work, `${name}-out`);
  await cairnOk(['restore', ref, out], { env });
  expect(await describeTree(out)).toEqual(await describeTree(src));
  const verified = await cairn(['verify', '--remote-only', '--json'], { env });
  expect(verified.code).toBe(0);
  expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true, remote: { missing: [], corrupt: [] } });
}

describe('changing the remote of a store that already has objects', () => {
  it('init without remote, snapshot, set a remote, push: everything arrives; then the same switching to a new empty remote', async () => {
    const env = { CAIRN_DIR: join(work, 'a') };
    await cairnOk(['init'], { env });
    const snap = await cairnJson<{ root: string }>(['snapshot', src, '--ref', 'snapshots/s'], { env });

    // Remote A configured after the fact: nothing is journaled, but status says the next push checks everything.
    const remoteA = `file://${join(work, 'remote-a')}`;
    const init = await cairnJson<{ fullCheckOnPush: boolean }>(['init', '--remote', remoteA], { env });
    expect(init.fullCheckOnPush).toBe(true);
    const before = await cairnJson<Status>(['status'], { env });
    expect(before).toMatchObject({ pendingObjects: 0, fullCheckOnPush: true });
    expect(await cairnOk(['status'], { env })).toContain('unchecked:');

    const pushA = await cairnJson<Pushed>(['push'], { env });
    expect(pushA.pushed.map((p) => p.ref)).toEqual(['snapshots/s']);
    expect(pushA.checkedLocal).toBeGreaterThan(10);
    expect(pushA.uploaded).toBe(pushA.checkedLocal);
    expect(await cairnJson<Status>(['status'], { env })).toMatchObject({ pendingObjects: 0, fullCheckOnPush: false });
    // Known complete now: the next push checks nothing and uploads nothing.
    expect(await cairnJson<Pushed>(['push'], { env })).toMatchObject({ uploaded: 0, checkedLocal: 0 });
    await restoresFrom(remoteA, 'snapshots/s', 'from-a');

    // An edit journaled against A, then a switch to an empty remote B before pushing it.
    await writeFile(join(src, 'added-after-a.txt'), 'new file\n');
    const snap2 = await cairnJson<{ root: string }>(['snapshot', src, '--ref', 'snapshots/s'], { env });
    expect(snap2.root).not.toBe(snap.root);
    const remoteB = `file://${join(work, 'remote-b')}`;
    await cairnOk(['init', '--remote', remoteB], { env });
    const statusB = await cairnJson<Status>(['status'], { env });
    expect(statusB.fullCheckOnPush).toBe(true);
    expect(statusB.pendingObjects).toBeGreaterThan(0);
    const pushB = await cairnJson<Pushed>(['push'], { env });
    expect(pushB.pushed.map((p) => p.ref)).toEqual(['snapshots/s']);
    // Every local object (both snapshots) is uploaded once: the journaled ones are not sent twice.
    expect(pushB.uploaded).toBe(pushB.checkedLocal);
    await restoresFrom(remoteB, 'snapshots/s', 'from-b');

    // Back to A, which has the first snapshot but not the second one's new objects (those went to B).
    // The objects go up; the ref is a conflict (A holds another value, and what was synced with A is forgotten), not overwritten.
    await cairnOk(['init', '--remote', remoteA], { env });
    const backToA = await cairn(['push', '--json'], { env });
    expect(backToA.code).toBe(4);
    const backed = JSON.parse(backToA.stdout) as Pushed & { conflicts: Array<{ ref: string; remote: string }> };
    expect(backed.conflicts).toEqual([expect.objectContaining({ ref: 'snapshots/s', remote: snap.root })]);
    expect(backed.uploaded).toBeGreaterThan(0);
    expect(backed.uploaded).toBeLessThan(backed.checkedLocal);
    const states = await cairnJson<{ refs: Array<{ ref: string; state: string }> }>(['status'], { env });
    expect(states.refs).toEqual([expect.objectContaining({ ref: 'snapshots/s', state: 'diverged' })]);
    // Publishing it on A is then an explicit choice, and A can serve it.
    await cairnOk(['ref', 'cas', '--upstream', 'snapshots/s', snap.root, snap2.root], { env });
    await restoresFrom(remoteA, 'snapshots/s', 'back-to-a');
  });

  it('a remote given only by --remote gets the same check, and a write with no remote clears what was known', async () => {
    const remoteC = `file://${join(work, 'remote-c')}`;
    const env = { CAIRN_DIR: join(work, 'c') };
    await cairnOk(['init', '--remote', remoteC], { env });
    // A fresh store is complete in its remote: nothing to check on the first push.
    expect(await cairnJson<Status>(['status'], { env })).toMatchObject({ fullCheckOnPush: false });
    await cairnOk(['snapshot', src, '--ref', 'snapshots/s'], { env });
    expect(await cairnJson<Pushed>(['push'], { env })).toMatchObject({ checkedLocal: 0 });

    // Pushing to another remote by flag only (the saved one stays C).
    const remoteD = `file://${join(work, 'remote-d')}`;
    await cairnOk(['init', '--dir', join(work, 'make-d'), '--remote', remoteD]);
    const pushD = await cairnJson<Pushed>(['push', '--remote', remoteD], { env });
    expect(pushD.checkedLocal).toBeGreaterThan(10);
    await restoresFrom(remoteD, 'snapshots/s', 'from-d');
    // C is no longer the remote last checked, so the next push to it checks again (finding everything there).
    const againC = await cairnJson<Pushed>(['push'], { env });
    expect(againC).toMatchObject({ uploaded: 0 });
    expect(againC.checkedLocal).toBeGreaterThan(10);

    // A store with a remote only in the environment, written to without it: its objects are journaled nowhere.
    const envOnly = { CAIRN_DIR: join(work, 'e') };
    const remoteE = `file://${join(work, 'remote-e')}`;
    await cairnOk(['init'], { env: envOnly });
    await cairnOk(['init', '--dir', join(work, 'make-e'), '--remote', remoteE]);
    await cairnOk(['push'], { env: { ...envOnly, CAIRN_REMOTE: remoteE } });
    await cairnOk(['snapshot', src, '--ref', 'snapshots/s'], { env: envOnly });
    expect(await cairnJson<Status>(['status'], { env: { ...envOnly, CAIRN_REMOTE: remoteE } })).toMatchObject({ fullCheckOnPush: true });
    await cairnOk(['push'], { env: { ...envOnly, CAIRN_REMOTE: remoteE } });
    await restoresFrom(remoteE, 'snapshots/s', 'from-e');
  });
});
