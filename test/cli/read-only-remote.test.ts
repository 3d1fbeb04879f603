/**
 * Read-side commands open a `file://` remote read-only (issue 12, items 3
 * and 4): a damaged ref log is reported (a warning, exit 5 where a ref is
 * read, `verify` lists the damage), never rewritten by `init`, `pull` or
 * `ref get`, and never read as an older value. Only `verify --repair`
 * rewrites it.
 */
import { createHash } from 'node:crypto';
import { appendFile, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { openDiskStore } from '../../src/backends/disk.js';
import { assertBuilt, cairn, cairnOk } from './run-cli.js';

/**
 * Every case here runs the built binary several times (up to ~25 processes, each
 * paying Node's start-up and module compile, 0.3-1 s on a loaded 2-core CI
 * machine): 90 s per case holds there, where the default 30 s did not.
 */
vi.setConfig({ testTimeout: 90_000 });

let work: string;
let remote: string;
let url: string;
let counter = 0;
beforeAll(async () => {
  assertBuilt();
  work = await mkdtemp(join(tmpdir(), 'cairn-cli-ro-remote-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A remote where heads/x = a, then b (the newest record of refs/log); returns the hashes and where that record starts. */
async function makeRemote(): Promise<{ a: string; b: string; newest: number }> {
  remote = join(work, `remote-${++counter}`);
  url = `file://${remote}`;
  const store = await openDiskStore(remote);
  const [a, b] = await store.putMany([new TextEncoder().encode('a'), new TextEncoder().encode('b')]);
  await store.setRef('heads/x', a!);
  const newest = (await stat(join(remote, 'refs', 'log'))).size;
  await store.setRef('heads/x', b!);
  await store.close();
  return { a: a!.toString(), b: b!.toString(), newest };
}

/** The sha256 of every file under `dir`, by relative path (a new, missing or changed file shows). */
async function fingerprint(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    out[relative(dir, path)] = createHash('sha256').update(await readFile(path)).digest('hex');
  }
  return out;
}

async function machine(): Promise<Record<string, string>> {
  const env = { CAIRN_DIR: join(work, `machine-${++counter}`) };
  await cairnOk(['init', '--remote', url], { env });
  return env;
}

beforeEach(() => {
  counter += 1;
});

describe('a file:// remote with a damaged ref log', () => {
  it('init against a ref log with a garbage tail exits non-zero with a clear message and changes no file of the remote', async () => {
    await makeRemote();
    await appendFile(join(remote, 'refs', 'log'), Buffer.from('garbage that is no ref record at all'));
    const before = await fingerprint(remote);
    const env = { CAIRN_DIR: join(work, `machine-${++counter}`) };
    const run = await cairn(['init', '--remote', url], { env });
    expect(run.code).toBe(5);
    expect(run.stderr).toMatch(/ref log of remote .* is damaged/);
    expect(run.stderr).toMatch(/refs\/log has a damaged record/);
    expect(run.stderr.trim().split('\n').length).toBeLessThanOrEqual(2);
    expect(await fingerprint(remote)).toEqual(before);
  });

  it('ref get --upstream with a flipped byte in the newest record exits 5 and never prints the older hash; pull and status change nothing', async () => {
    const { a, b, newest } = await makeRemote();
    const env = await machine();
    const log = join(remote, 'refs', 'log');
    const bytes = await readFile(log);
    bytes[newest + 20] = bytes[newest + 20]! ^ 0x5a;
    await writeFile(log, bytes);
    const before = await fingerprint(remote);

    const get = await cairn(['ref', 'get', '--upstream', 'heads/x'], { env });
    expect(get.code).toBe(5);
    expect(get.stdout).not.toContain(a);
    expect(get.stdout).not.toContain(b);
    expect(get.stderr).toMatch(/warning: the ref log of remote .* is damaged/);

    const pull = await cairn(['pull'], { env });
    expect(pull.code).toBe(5);
    expect(pull.stdout + pull.stderr).not.toContain(a);
    const status = await cairn(['status'], { env });
    expect(status.code).toBe(5);
    expect(await fingerprint(remote)).toEqual(before);
    // The local ref was never set from the damaged log.
    expect((await cairn(['ref', 'get', 'heads/x'], { env })).code).toBe(3);
  });

  it('verify lists the damaged record and exits 5 without touching the remote; verify --repair rewrites the log from its intact records', async () => {
    const { a, newest } = await makeRemote();
    const env = await machine();
    const log = join(remote, 'refs', 'log');
    const bytes = await readFile(log);
    bytes[newest + 30] = bytes[newest + 30]! ^ 0x5a;
    await writeFile(log, bytes);
    const before = await fingerprint(remote);

    const check = await cairn(['verify', '--remote-only'], { env });
    expect(check.code).toBe(5);
    expect(check.stdout).toMatch(/^damaged remote refs\/log at offset \d+ \(\d+ bytes\): refs it held cannot be read$/m);
    expect(check.stderr).toMatch(/refs\/log has a damaged record/);
    expect(await fingerprint(remote)).toEqual(before);

    const repair = await cairn(['verify', '--remote-only', '--repair'], { env });
    expect(repair.stdout).toMatch(/repaired remote refs\/log at offset \d+/);
    expect(repair.code).toBe(0);
    expect(await fingerprint(remote)).not.toEqual(before);
    expect((await cairnOk(['ref', 'get', '--upstream', 'heads/x'], { env })).trim()).toBe(a);
    expect((await cairn(['verify', '--remote-only'], { env })).code).toBe(0);
  });
});
