/**
 * Issue 12, case 1, through the built `cairn` binary: a `file://` remote
 * already holds damaged bytes under the hash of a file the user snapshots.
 * `push` and `push --all` must exit 5 naming the object and the repair, and
 * publish no ref, whether the object goes through the pending-upload journal
 * or through the full check of a remote not yet confirmed.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openDiskStore } from '../../src/backends/disk.js';
import { hashBytes } from '../../src/index.js';
import { assertBuilt, cairn, cairnJson, cairnOk } from './run-cli.js';

/**
 * Every case here runs the built binary several times (up to ~25 processes, each
 * paying Node's start-up and module compile, 0.3-1 s on a loaded 2-core CI
 * machine): 90 s per case holds there, where the default 30 s did not.
 */
vi.setConfig({ testTimeout: 90_000 });

let work: string;
beforeAll(async () => {
  assertBuilt();
  work = await mkdtemp(join(tmpdir(), 'cairn-damaged-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/**
 * Makes `dir` a disk store holding `bytes`, then flips one byte of them in its segment file: the
 * store still lists the object (a put of it is a no-op) but its bytes no longer match the hash.
 * `bytes` is one repeated byte, so its run is easy to find in the file.
 */
async function damagedRemote(dir: string, bytes: Uint8Array): Promise<void> {
  const store = await openDiskStore(dir);
  await store.put(bytes);
  await store.close();
  const segments = (await readdir(join(dir, 'segments'))).filter((n) => n.endsWith('.seg'));
  const run = Buffer.from(bytes.subarray(0, Math.min(bytes.length, 1024)));
  for (const name of segments) {
    const path = join(dir, 'segments', name);
    const file = await readFile(path);
    const at = file.indexOf(run);
    if (at < 0) continue;
    file[at + (bytes.length >> 1)] = file[at + (bytes.length >> 1)]! ^ 0x5a;
    await writeFile(path, file);
    return;
  }
  throw new Error('the object was not found in any segment of the seeded remote');
}

async function expectRefused(args: string[], env: Record<string, string>, hash: string): Promise<void> {
  const run = await cairn(args, { env });
  expect(run.code, run.stderr).toBe(5);
  expect(run.stderr).toContain(`damaged bytes for ${hash}`);
  expect(run.stderr).toContain('cairn verify --repair');
}

describe('push to a remote holding damaged bytes under a file it already "has"', () => {
  it('through the journal: push and push --all exit 5 and publish nothing', async () => {
    // One chunk of 200,000 bytes (a run of one byte has no cut point): over checkRemoteMinBytes, so
    // the uploader asks the remote first and, before this fix, skipped it as present.
    const bytes = new Uint8Array(200_000).fill(0x61);
    const hash = hashBytes(bytes).toString();
    const remoteDir = join(work, 'remote-journal');
    await damagedRemote(remoteDir, bytes);
    const env = { CAIRN_DIR: join(work, 'machine-journal') };
    // A loose remote: there the upload journal's has-check decides. A packed remote (the default) puts
    // a pack-sized object into a new pack without asking, and reads find the pack's good copy first.
    await cairnOk(['init', '--no-packs', '--remote', `file://${remoteDir}`], { env });
    const src = join(work, 'src-journal');
    await mkdir(src);
    await writeFile(join(src, 'f'), bytes);
    await cairnOk(['snapshot', src, '--ref', 'snapshots/d'], { env });

    await expectRefused(['push'], env, hash);
    await expectRefused(['push', '--all'], env, hash);
    const status = await cairnJson<{ refs: Array<{ ref: string; state: string; remote?: string }> }>(['status'], { env });
    expect(status.refs).toEqual([expect.objectContaining({ ref: 'snapshots/d', state: 'ahead' })]);
    expect(status.refs[0]!.remote).toBeUndefined();
  });

  it('through the full check of a remote set after the snapshot: a small file too, exit 5, nothing published', async () => {
    // 3,000 bytes: under checkRemoteMinBytes, but the full check of a new remote reads back every object it has.
    const bytes = new Uint8Array(3_000).fill(0x63);
    const hash = hashBytes(bytes).toString();
    const remoteDir = join(work, 'remote-full');
    await damagedRemote(remoteDir, bytes);
    const env = { CAIRN_DIR: join(work, 'machine-full') };
    await cairnOk(['init'], { env });
    const src = join(work, 'src-full');
    await mkdir(src);
    await writeFile(join(src, 'small'), bytes);
    await cairnOk(['snapshot', src, '--ref', 'snapshots/f'], { env });
    await cairnOk(['init', '--remote', `file://${remoteDir}`], { env });

    await expectRefused(['push'], env, hash);
    const status = await cairnJson<{ refs: Array<{ ref: string; state: string }>; fullCheckOnPush: boolean }>(['status'], { env });
    expect(status.refs).toEqual([expect.objectContaining({ ref: 'snapshots/f', state: 'ahead' })]);
    // Not marked as confirmed: the next push checks again.
    expect(status.fullCheckOnPush).toBe(true);
    await expectRefused(['push', '--all'], env, hash);
  });
});
