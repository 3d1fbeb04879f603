/**
 * End-to-end tests of the built `cairn` binary against a `file://` remote:
 * the main job (snapshot, push, restore elsewhere, identical), incremental
 * pushes, verify, gc, and bad input.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
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
beforeAll(async () => {
  assertBuilt();
  work = await mkdtemp(join(tmpdir(), 'cairn-cli-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

let counter = 0;
/** A fresh "machine": its own local store directory, sharing `remote`. */
async function machine(remote: string): Promise<Record<string, string>> {
  const dir = join(work, `machine-${++counter}`);
  const env = { CAIRN_DIR: dir };
  await cairnOk(['init', '--remote', remote], { env });
  return env;
}

async function listing(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

describe('the main job over a file:// remote', () => {
  it('snapshot, push, restore on another machine: identical; --json everywhere', async () => {
    const src = join(work, 'main-src');
    await mkdir(src);
    await makeMixedTree(src);
    const remote = `file://${join(work, 'main-remote')}`;
    const a = await machine(remote);
    const snap = await cairnJson<{ root: string; files: number; ref: string }>(['snapshot', src, '--ref', 'snapshots/main'], { env: a });
    expect(snap.root).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(snap.ref).toBe('snapshots/main');
    // Nothing is uploaded before push.
    const before = await cairnJson<{ refs: Array<{ state: string; ref: string }>; pendingObjects: number }>(['status'], { env: a });
    expect(before.pendingObjects).toBeGreaterThan(10);
    expect(before.refs).toEqual([expect.objectContaining({ ref: 'snapshots/main', state: 'ahead' })]);
    const pushed = await cairnJson<{ pushed: Array<{ ref: string }>; uploaded: number }>(['push'], { env: a });
    expect(pushed.pushed.map((p) => p.ref)).toEqual(['snapshots/main']);
    expect(pushed.uploaded).toBe(before.pendingObjects);
    const after = await cairnJson<{ pendingObjects: number; refs: Array<{ state: string }> }>(['status'], { env: a });
    expect(after).toMatchObject({ pendingObjects: 0, refs: [{ state: 'up-to-date' }] });

    const b = await machine(remote);
    await cairnOk(['pull'], { env: b });
    const out = join(work, 'main-out');
    await cairnOk(['restore', 'snapshots/main', out], { env: b });
    expect(await describeTree(out)).toEqual(await describeTree(src));
    // The restored tree snapshots to the same root: nothing was lost or added.
    expect((await cairnOk(['snapshot', '-q', out], { env: b })).trim()).toBe(snap.root);
    expect(await cairnJson(['diff', 'snapshots/main', snap.root], { env: b })).toMatchObject({ changes: [] });
    const verified = await cairnJson<{ ok: boolean; remote: { checked: number } }>(['verify'], { env: b });
    expect(verified.ok).toBe(true);
    expect(verified.remote.checked).toBe(pushed.uploaded);
  });

  it('put, cat, has, ref get/set/cas/ls/rm round-trip, stdin included', async () => {
    const env = await machine(`file://${join(work, 'objects-remote')}`);
    const hash = (await cairnOk(['put', '-'], { env, input: 'hello\n' })).trim();
    expect(hash).toBe('sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03');
    expect(await cairnOk(['cat', hash], { env })).toBe('hello\n');
    const file = join(work, 'put-me');
    await writeFile(file, randomBytes(300_000));
    const fileHash = (await cairnOk(['put', file], { env })).trim();
    const catted = await cairn(['cat', fileHash], { env });
    expect(Buffer.from(catted.stdout, 'latin1').length).toBeGreaterThan(0);
    expect(await cairnJson(['has', hash, fileHash], { env })).toMatchObject({ objects: [{ present: true }, { present: true }] });
    const absent = await cairn(['has', `sha256:${'0'.repeat(64)}`], { env });
    expect(absent.code).toBe(3);

    await cairnOk(['ref', 'set', 'tags/v1', hash], { env });
    expect((await cairnOk(['ref', 'get', 'tags/v1'], { env })).trim()).toBe(hash);
    expect(await cairnOk(['cat', 'tags/v1'], { env })).toBe('hello\n');
    const lost = await cairn(['ref', 'cas', 'tags/v1', fileHash, fileHash], { env });
    expect(lost.code).toBe(4);
    expect(lost.stdout).toContain(hash);
    await cairnOk(['ref', 'cas', 'tags/v1', hash, fileHash], { env });
    await cairnOk(['ref', 'cas', 'tags/new', '-', hash], { env });
    expect(await cairnOk(['ref', 'ls'], { env })).toBe(`${hash} tags/new\n${fileHash} tags/v1\n`);
    await cairnOk(['ref', 'rm', 'tags/new'], { env });
    expect((await cairn(['ref', 'get', 'tags/new'], { env })).code).toBe(3);
  });

  it('ref watch prints each change and stops after --count', async () => {
    const env = await machine(`file://${join(work, 'watch-remote')}`);
    const hash = (await cairnOk(['put', '-'], { env, input: 'w' })).trim();
    const watching = cairn(['ref', 'watch', 'heads/w', '--count', '2', '--interval', '50'], { env });
    await new Promise((r) => setTimeout(r, 1500));
    await cairnOk(['ref', 'set', 'heads/w', hash], { env });
    await new Promise((r) => setTimeout(r, 500));
    await cairnOk(['ref', 'rm', 'heads/w'], { env });
    const run = await watching;
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`${hash}\n(deleted)\n`);
  });
});

describe('incremental snapshot and push', () => {
  it('after changing 1% of the files, the second push uploads exactly the new chunks, trees and lists', async () => {
    const src = join(work, 'inc-src');
    const files: string[] = [];
    for (let d = 0; d < 20; d++) {
      await mkdir(join(src, `d${d}`), { recursive: true });
      for (let f = 0; f < 50; f++) {
        const path = join(src, `d${d}`, `f${f}`);
        // Mostly small files, every tenth a multi-chunk one.
        await writeFile(path, randomBytes(f % 10 === 0 ? 400_000 + f * 1000 : 2_000 + f));
        files.push(path);
      }
    }
    const env = await machine(`file://${join(work, 'inc-remote')}`);
    const first = await cairnJson<{ root: string }>(['snapshot', src, '--ref', 'snapshots/inc'], { env });
    const push1 = await cairnJson<{ uploaded: number }>(['push'], { env });
    const remote1 = await cairnJson<{ remote: { checked: number } }>(['verify', '--remote-only'], { env });
    expect(remote1.remote.checked).toBe(push1.uploaded);

    // 1% = 10 files: 5 small rewritten, 5 large edited in the middle (a few bytes).
    const changed = files.filter((_, i) => i % 100 === 0 || i % 100 === 3).slice(0, 10);
    expect(changed).toHaveLength(10);
    for (const path of changed) {
      const bytes = await readFile(path);
      bytes.write('EDITED', Math.floor(bytes.length / 2));
      await writeFile(path, bytes);
    }
    const second = await cairnJson<{ root: string; written: number }>(['snapshot', src, '--ref', 'snapshots/inc'], { env });
    expect(second.root).not.toBe(first.root);
    const status = await cairnJson<{ pendingObjects: number }>(['status'], { env });
    const push2 = await cairnJson<{ uploaded: number; pushed: unknown[] }>(['push'], { env });
    const remote2 = await cairnJson<{ remote: { checked: number } }>(['verify', '--remote-only'], { env });
    // Every upload is a new remote object, and only what the snapshot wrote was uploaded.
    expect(push2.uploaded).toBe(remote2.remote.checked - remote1.remote.checked);
    expect(push2.uploaded).toBe(second.written);
    expect(push2.uploaded).toBe(status.pendingObjects);
    // Changed content: 10 files, at most 2 new chunks + 1 chunk list each for large ones;
    // new trees: the 10 changed files sit in at most 10 dirs, plus the root.
    expect(push2.uploaded).toBeGreaterThanOrEqual(10 + 1 + 1);
    expect(push2.uploaded).toBeLessThanOrEqual(5 * 1 + 5 * 3 + 10 + 1);
    expect(push1.uploaded).toBeGreaterThan(1000);
  });
});

describe('verify and gc', () => {
  it('gc --dry-run lists exactly the unreachable objects; gc --force removes them; every snapshot still restores', async () => {
    const env = await machine(`file://${join(work, 'gc-remote')}`);
    const src = join(work, 'gc-src');
    await mkdir(src);
    await writeFile(join(src, 'kept'), 'kept in both');
    await writeFile(join(src, 'big'), randomBytes(500_000));
    const keep1 = await cairnJson<{ root: string }>(['snapshot', src, '--ref', 'snapshots/one'], { env });
    await writeFile(join(src, 'big'), randomBytes(500_000));
    const keep2 = await cairnJson<{ root: string }>(['snapshot', src, '--ref', 'snapshots/two'], { env });
    await writeFile(join(src, 'garbage'), 'only in an unreferenced snapshot');
    await writeFile(join(src, 'big'), randomBytes(500_000));
    const dropped = await cairnJson<{ root: string; written: number }>(['snapshot', src], { env });
    const loose = (await cairnOk(['put', '-'], { env, input: 'loose object' })).trim();
    // Objects waiting for push are never collected, reachable or not.
    expect(await cairnJson(['gc', '--grace', '0'], { env })).toMatchObject({ unreachable: [] });
    await cairnOk(['push'], { env });

    const plan = await cairnJson<{ unreachable: string[]; eligible: string[]; deleted: string[]; total: number }>(['gc', '--dry-run'], { env });
    // The dropped snapshot's own objects (its root, trees, new chunks and list) and the loose put.
    expect(plan.unreachable).toContain(dropped.root);
    expect(plan.unreachable).toContain(loose);
    expect(plan.unreachable).toHaveLength(dropped.written + 1);
    expect(plan.eligible).toEqual([]); // first sighting: inside the default 1h grace period
    expect(plan.deleted).toEqual([]);
    const text = await cairnOk(['gc'], { env });
    expect(text.trim().split('\n').sort()).toEqual([...plan.unreachable].sort());

    const kept = await cairnJson<{ deleted: string[] }>(['gc', '--force'], { env });
    expect(kept.deleted).toEqual([]);
    const done = await cairnJson<{ deleted: string[] }>(['gc', '--force', '--grace', '0'], { env });
    expect(done.deleted.sort()).toEqual([...plan.unreachable].sort());
    expect(await cairnJson(['gc', '--grace', '0'], { env })).toMatchObject({ unreachable: [] });
    for (const [i, root] of [keep1.root, keep2.root].entries()) {
      await cairnOk(['restore', root, join(work, `gc-out-${i}`)], { env });
    }
    expect((await cairnJson<{ ok: boolean }>(['verify', '--local-only'], { env })).ok).toBe(true);

    // The remote got the dropped snapshot too (push uploads everything written); collect it there.
    const remotePlan = await cairnJson<{ unreachable: string[] }>(['gc', '--remote-store', '--grace', '0'], { env });
    expect(remotePlan.unreachable.sort()).toEqual([...plan.unreachable].sort());
    await cairnOk(['gc', '--remote-store', '--grace', '0', '--yes'], { env });
    // Gone from both sides now (a local miss reads through to the remote, which no longer has it).
    const gone = await cairn(['restore', dropped.root, join(work, 'gc-gone')], { env });
    expect(gone.code).toBe(3);
    expect(gone.stderr).toMatch(/not found/);
    const fresh = await machine(`file://${join(work, 'gc-remote')}`);
    await cairnOk(['pull'], { env: fresh });
    await cairnOk(['restore', 'snapshots/one', join(work, 'gc-fresh-1')], { env: fresh });
    await cairnOk(['restore', 'snapshots/two', join(work, 'gc-fresh-2')], { env: fresh });
    expect(await describeTree(join(work, 'gc-fresh-2'))).toEqual(await describeTree(join(work, 'gc-out-1')));
    expect((await cairnJson<{ ok: boolean }>(['verify'], { env: fresh })).ok).toBe(true);
  });
});

describe('bad input: one clear line, a non-zero exit, nothing changed', () => {
  let badEnv: Record<string, string> | undefined;
  it.each([
    ['a missing directory', ['snapshot', '/nonexistent/cairn-dir'], 3, /does not exist/],
    ['a hash that does not parse', ['cat', 'sha256:xyz'], 2, /hex digits/],
    ['a bad CID', ['restore', 'bafy-not-a-cid', 'out'], 2, /hash|ref/],
    ['an unknown ref', ['restore', 'snapshots/none', 'out'], 3, /no ref named "snapshots\/none"/],
    ['an unknown command', ['snapshoot'], 2, /unknown command/],
    ['an unknown option', ['snapshot', '.', '--reff', 'x'], 2, /--reff/],
    ['a bad ref name', ['ref', 'set', '../x', `sha256:${'a'.repeat(64)}`], 2, /invalid ref name/],
    ['a bad grace', ['gc', '--grace', 'soon'], 2, /duration/],
    ['a bad remote URL', ['status', '--remote', 'ftp://x'], 2, /file:\/\/\/absolute\/path or s3:\/\//],
  ])('%s', async (_, args, code, message) => {
    badEnv ??= await machine(`file://${join(work, 'bad-remote')}`);
    const env = badEnv;
    const before = await listing(env.CAIRN_DIR!);
    const run = await cairn(args, { env, cwd: work });
    expect(run.code).toBe(code);
    expect(run.stdout).toBe('');
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(/^cairn: /);
    expect(run.stderr).toMatch(message);
    expect(await listing(env.CAIRN_DIR!)).toEqual(before);
    expect(await readdir(work)).not.toContain('out');
  });

  it('a store that was never initialised, and a restore into a non-empty directory', async () => {
    const none = await cairn(['ref', 'ls'], { env: { CAIRN_DIR: join(work, 'never') } });
    expect(none.code).toBe(3);
    expect(none.stderr).toMatch(/run "cairn init"/);
    expect(await readdir(work)).not.toContain('never');
    const env = await machine(`file://${join(work, 'nonempty-remote')}`);
    const src = join(work, 'nonempty');
    await mkdir(src);
    await writeFile(join(src, 'a'), 'a');
    const root = (await cairnOk(['snapshot', '-q', src], { env })).trim();
    const run = await cairn(['restore', root, src], { env });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/not empty/);
    expect(await readdir(src)).toEqual(['a']);
  });

  it('--help for every command shows usage and an example; errors with --json are JSON', async () => {
    const main = await cairnOk(['--help']);
    const names = ['init', 'snapshot', 'restore', 'diff', 'push', 'pull', 'sync', 'status', 'put', 'cat', 'has', 'ref', 'verify', 'gc'];
    const helps = await Promise.all(names.map((name) => cairnOk([name, '--help'])));
    for (const [i, name] of names.entries()) {
      expect(main).toContain(`  ${name} `);
      expect(helps[i]).toMatch(new RegExp(`^usage: cairn ${name}`));
      expect(helps[i]).toMatch(/example/);
      expect(helps[i]).toMatch(/\n {2}cairn /);
    }
    const run = await cairn(['cat', 'nope:1', '--json'], { env: { CAIRN_DIR: join(work, 'x') } });
    expect(JSON.parse(run.stderr)).toMatchObject({ error: { code: 'ERR_INVALID_HASH', exitCode: 2 } });
  });
});

describe('Ctrl-C', () => {
  it('a restore interrupted by SIGINT exits 130 and leaves no directory behind', async () => {
    const env = await machine(`file://${join(work, 'sigint-remote')}`);
    const src = join(work, 'sigint-src');
    await mkdir(src);
    await writeFile(join(src, 'big'), randomBytes(48 * 1024 * 1024));
    const root = (await cairnOk(['snapshot', '-q', src], { env })).trim();
    const out = join(work, 'sigint-out');
    let staged = false;
    const run = await cairn(['restore', root, out], {
      env,
      onSpawn: (child) => {
        // Interrupt once the restore is writing (its staging directory exists).
        const poll = setInterval(() => {
          void readdir(work).then((names) => {
            if (names.some((n) => n.startsWith('.sigint-out.cairn-restore-'))) {
              staged = true;
              clearInterval(poll);
              child.kill('SIGINT');
            }
          });
        }, 10);
        child.on('close', () => clearInterval(poll));
      },
    });
    expect(staged).toBe(true);
    expect(run.code).toBe(130);
    expect(run.stderr).toMatch(/interrupted/);
    const left = (await readdir(work)).filter((n) => n.includes('sigint-out'));
    expect(left).toEqual([]);
  });
});
