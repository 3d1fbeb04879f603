/**
 * The `cairn` binary against a damaged or hostile remote and odd local input
 * (issue 12): each case exits with its documented code and one clear line,
 * changes nothing it should not, and never prints a credential.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openDiskStore } from '../../src/backends/disk.js';
import { packed } from '../../src/layers/packed/packed.js';
import { encodeTree, hashBytes, type TreeEntry } from '../../src/index.js';
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
  work = await mkdtemp(join(tmpdir(), 'cairn-cli-hostile-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

let counter = 0;
async function machine(remote: string): Promise<Record<string, string>> {
  const env = { CAIRN_DIR: join(work, `machine-${++counter}`) };
  await cairnOk(['init', '--remote', remote], { env });
  return env;
}

/** Puts raw bytes through the CLI; returns the hash. */
async function put(env: Record<string, string>, bytes: Uint8Array): Promise<string> {
  return (await cairnOk(['put', '-'], { env, input: bytes })).trim();
}

const treeBytes = (entries: TreeEntry[]): Uint8Array => encodeTree(entries);

/** A bomb: `levels` trees each naming the next twice, written straight into the local store; returns the root hash text. */
async function putBomb(env: Record<string, string>, levels: number): Promise<string> {
  const store = await openDiskStore(join(env.CAIRN_DIR!, 'store'));
  try {
    const x = new TextEncoder().encode('x');
    await store.put(x);
    let tree = await store.put(treeBytes([{ name: 'f', type: 'file', mode: 0o644, size: 1, hash: hashBytes(x) }]));
    for (let i = 0; i < levels; i++) {
      tree = await store.put(
        treeBytes([
          { name: 'a', type: 'dir', mode: 0o755, hash: tree },
          { name: 'b', type: 'dir', mode: 0o755, hash: tree },
        ]),
      );
    }
    return tree.toString();
  } finally {
    await store.close();
  }
}

describe('verify', () => {
  it('an honest clone after a plain pull: objects not fetched yet are not damage (9)', async () => {
    const remote = `file://${join(work, 'lazy-remote')}`;
    const a = await machine(remote);
    const src = join(work, 'lazy-src');
    await mkdir(src);
    await writeFile(join(src, 'f'), 'content');
    await cairnOk(['snapshot', src, '--ref', 'snapshots/lazy'], { env: a });
    await cairnOk(['push'], { env: a });
    const b = await machine(remote);
    await cairnOk(['pull'], { env: b });
    const run = await cairn(['verify', '--json'], { env: b });
    expect(run.code).toBe(0);
    const report = JSON.parse(run.stdout) as { ok: boolean; local: { missing: string[]; notFetched: string[] } };
    expect(report.local.missing).toEqual([]);
    expect(report.local.notFetched.length).toBeGreaterThan(0);
    const text = await cairn(['verify'], { env: b });
    expect(text.stderr).toMatch(/not fetched yet \(the remote holds them/);
  });

  it('--repair replaces a corrupt remote object from the verified local copy; what it cannot repair exits 5 (1)', async () => {
    const remotePath = join(work, 'repair-remote');
    const env = await machine(`file://${remotePath}`);
    const good = await put(env, randomBytes(1_500_000)); // a large object: one file in the remote
    await cairnOk(['ref', 'set', 'blobs/good', good], { env });
    await cairnOk(['push'], { env });
    const file = join(remotePath, 'large', good.replace(':', '-'));
    const handle = await open(file, 'r+');
    await handle.write(Buffer.from([0xff]), 0, 1, 1000);
    await handle.close();
    const found = await cairn(['verify', '--remote-only'], { env });
    expect(found.code).toBe(5);
    expect(found.stdout).toBe(`corrupt remote ${good}\n`);
    expect(found.stderr).toMatch(/verify --repair/);
    const repaired = await cairn(['verify', '--repair'], { env });
    expect(repaired.code).toBe(0);
    expect(repaired.stdout).toContain(`repaired remote ${good}`);
    expect((await cairnJson<{ ok: boolean }>(['verify'], { env })).ok).toBe(true);

    // Damaged on both sides: nothing to repair from; reported, exit 5, nothing deleted.
    for (const path of [file, join(env.CAIRN_DIR!, 'store', 'large', good.replace(':', '-'))]) {
      const h = await open(path, 'r+');
      await h.write(Buffer.from([0x00]), 0, 1, 2000);
      await h.close();
    }
    const stuck = await cairn(['verify', '--repair'], { env });
    expect(stuck.code).toBe(5);
    expect(stuck.stderr).toMatch(/could not repair remote .*the other copy is damaged too/);
    expect((await readdir(join(remotePath, 'large'))).length).toBe(1);
  });

  it('reports a tree that restore refuses (duplicate names) and exits 5; gc refuses to run (8)', async () => {
    const env = await machine(`file://${join(work, 'invalid-remote')}`);
    const leaf = hashBytes(new TextEncoder().encode('x')).toString();
    await put(env, new TextEncoder().encode('x'));
    const entry = `{"name":"a","type":"file","mode":420,"size":1,"hash":"${leaf}"}`;
    const bad = await put(env, new TextEncoder().encode(`{"cairn":"tree/v1","entries":[${entry},${entry}]}`));
    const root = await put(env, new TextEncoder().encode(`{"cairn":"tree/v1","entries":[{"name":"sub","type":"dir","mode":493,"hash":"${bad}"}]}`));
    await cairnOk(['ref', 'set', 'snapshots/bad', root], { env });
    const run = await cairn(['verify', '--local-only'], { env });
    expect(run.code).toBe(5);
    expect(run.stdout).toMatch(new RegExp(`^invalid local ${bad}: .*duplicate`, 'm'));
    const gc = await cairn(['gc', '--grace', '0'], { env });
    expect(gc.code).toBe(5);
    expect(gc.stderr).toMatch(/do not decode/);
  });
});

describe('gc', () => {
  it('--remote-store stops when a snapshot root is missing instead of listing its chunks as garbage (10)', async () => {
    const remotePath = join(work, 'gc-missing-remote');
    const env = await machine(`file://${remotePath}`);
    const src = join(work, 'gc-missing-src');
    await mkdir(src);
    await writeFile(join(src, 'f'), 'survivor');
    const { root } = await cairnJson<{ root: string }>(['snapshot', src, '--ref', 'snapshots/s'], { env });
    await cairnOk(['push'], { env });
    await rm(env.CAIRN_DIR!, { recursive: true });
    const fresh = await machine(`file://${remotePath}`);
    await cairnOk(['pull'], { env: fresh });
    // The remote keeps small objects in packs (the CLI's default): delete the root through the packed layer.
    const store = packed(await openDiskStore(remotePath));
    await store.delete(root);
    await store.close();
    const run = await cairn(['gc', '--remote-store', '--grace', '0', '--force'], { env: fresh });
    expect(run.code).toBe(3);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/missing .*--allow-missing/);
    const forced = await cairnJson<{ unreachable: string[] }>(['gc', '--remote-store', '--grace', '0', '--allow-missing'], { env: fresh });
    expect(forced.unreachable).toHaveLength(1); // the file's content, now unreachable indeed
  });
});

describe('hostile snapshots and odd targets', () => {
  it('a DAG bomb: restore exits 7 naming --max-files; verify and gc finish at once (5)', async () => {
    const env = await machine(`file://${join(work, 'bomb-remote')}`);
    const bomb = await putBomb(env, 50);
    await cairnOk(['ref', 'set', 'snapshots/bomb', bomb], { env });
    const run = await cairn(['restore', 'snapshots/bomb', join(work, 'bomb-out')], { env });
    expect(run.code).toBe(7);
    expect(run.stderr).toMatch(/more than 10,000,000 files.*--max-files/);
    expect((await readdir(work)).filter((n) => n.includes('bomb-out'))).toEqual([]);
    const small = await putBomb(env, 1);
    const diff = await cairn(['diff', small, bomb, '--max-files', '10'], { env });
    expect(diff.code).toBe(7);
    expect(diff.stderr).toMatch(/more than 10 changes/);
    expect((await cairnJson<{ ok: boolean }>(['verify', '--local-only'], { env })).ok).toBe(true);
    expect(await cairnJson(['gc', '--grace', '0'], { env })).toMatchObject({ unreachable: [] });
  });

  it('Ctrl-C during a large restore and a large diff: exit 130, nothing left (5)', async () => {
    const env = await machine(`file://${join(work, 'int-remote')}`);
    const bomb = await putBomb(env, 24);
    const small = await putBomb(env, 1);
    const interrupt = async (args: string[]): Promise<{ code: number | null; stderr: string }> =>
      cairn(args, {
        env,
        onSpawn: (child) => {
          // Once it has started writing (a staging directory, or output), interrupt.
          const go = (): void => {
            clearInterval(timer);
            setTimeout(() => child.kill('SIGINT'), 300);
          };
          child.stdout?.once('data', go);
          const timer = setInterval(() => {
            void readdir(work)
              .then((names) => names.some((n) => n.startsWith('.int-out.cairn-restore-')) && go())
              .catch(() => undefined);
          }, 20);
          child.on('exit', () => clearInterval(timer));
        },
      });
    const restoring = await interrupt(['restore', bomb, join(work, 'int-out'), '--max-files', '1000000000']);
    expect(restoring.code).toBe(130);
    expect((await readdir(work)).filter((n) => n.includes('int-out'))).toEqual([]);
    const diffing = await interrupt(['diff', small, bomb, '--max-files', '1000000000', '--max-depth', '100']);
    expect(diffing.code).toBe(130);
    expect(diffing.stderr).toMatch(/interrupted/);
  }, 60_000);

  it('a restore target that is a symlink, or a 5 KB path: exit 2 up front, short message (11)', async () => {
    const env = await machine(`file://${join(work, 'target-remote')}`);
    const empty = await put(env, treeBytes([]));
    await mkdir(join(work, 'real-dir'));
    await symlink(join(work, 'real-dir'), join(work, 'link-dir'));
    const link = await cairn(['restore', empty, join(work, 'link-dir')], { env });
    expect(link.code).toBe(2);
    expect(link.stderr).toMatch(/is a symbolic link/);
    const long = await cairn(['restore', empty, join(work, 'x'.repeat(5000))], { env });
    expect(long.code).toBe(2);
    expect(long.stderr).toMatch(/too long \(a name of 5000 bytes/);
    expect(long.stderr.length).toBeLessThan(400);
  });

  it('a restore killed with SIGKILL leaves a staging directory; gc --force and the next restore sweep it (14)', async () => {
    const env = await machine(`file://${join(work, 'kill-remote')}`);
    const src = join(work, 'kill-src');
    await mkdir(src);
    for (let i = 0; i < 1500; i++) await writeFile(join(src, `f${i}`), randomBytes(1000));
    const { root } = await cairnJson<{ root: string }>(['snapshot', src], { env });
    const killDuring = async (target: string): Promise<void> => {
      const name = `.${target}.cairn-restore-`;
      const run = await cairn(['restore', root, join(work, target)], {
        env,
        onSpawn: (child) => {
          const timer = setInterval(() => {
            void readdir(work)
              .then((names) => {
                if (!names.some((n) => n.startsWith(name))) return;
                clearInterval(timer);
                child.kill('SIGKILL');
              })
              .catch(() => undefined);
          }, 2);
          child.on('exit', () => clearInterval(timer));
        },
      });
      expect(run.signal).toBe('SIGKILL');
      expect((await readdir(work)).filter((n) => n.startsWith(name))).toHaveLength(1);
    };
    await killDuring('killed-a');
    const gc = await cairn(['gc', '--force'], { env });
    expect(gc.code).toBe(0);
    expect(gc.stderr).toMatch(/left by a restore that was killed/);
    expect((await readdir(work)).filter((n) => n.includes('killed-a'))).toEqual([]);
    await killDuring('killed-b');
    await cairnOk(['restore', root, join(work, 'killed-b')], { env });
    expect((await readdir(work)).filter((n) => n.includes('killed-b'))).toEqual(['killed-b']);
  }, 60_000);
});

describe('credentials and stray output', () => {
  const secret = 'SUPERSECRETKEY123';
  it('an endpoint or remote URL with userinfo is refused without echoing it, and nothing is saved (12)', async () => {
    const dir = join(work, 'creds');
    for (const args of [
      ['init', '--remote', 's3://bucket-name/p/', '--endpoint', `http://AKIA:${secret}@127.0.0.1:9/`],
      ['init', '--remote', `s3://AKIA:${secret}@bucket-name/p/`],
      ['status', '--remote', 's3://bucket-name/p/', '--endpoint', `http://AKIA:${secret}@127.0.0.1:9/`, '--json'],
    ]) {
      const run = await cairn(args, { env: { CAIRN_DIR: dir, CAIRN_DEBUG: '1' } });
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/holds a user name or password/);
      expect(run.stderr + run.stdout).not.toContain(secret);
    }
    const saved = await readdir(dir).catch(() => [] as string[]);
    for (const name of saved) expect(await readFile(join(dir, name), 'utf8').catch(() => '')).not.toContain(secret);
  });

  it('an S3 command on Node < 22 prints no SDK NodeVersionSupportWarning, even without -q (13)', async () => {
    await cairnOk(['init'], { env: { CAIRN_DIR: join(work, 'warn') } });
    const run = await cairn(['status', '--remote', 's3://bucket-name/p/', '--endpoint', 'http://127.0.0.1:9/', '--path-style'], {
      env: {
        CAIRN_DIR: join(work, 'warn'),
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: undefined,
        AWS_ACCESS_KEY_ID: 'x',
        AWS_SECRET_ACCESS_KEY: 'y',
        AWS_REGION: 'us-east-1',
        AWS_EC2_METADATA_DISABLED: 'true',
      },
    });
    expect(run.stderr).not.toMatch(/NodeVersionSupportWarning|AWS SDK for JavaScript/);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
  });
});
