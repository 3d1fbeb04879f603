/**
 * A password change killed with SIGKILL never locks anyone out: killed
 * between writing the new key and removing the old one, both passwords
 * open the remote; killed at random moments of a run of changes, one of
 * the two always does, and it opens the same master key.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDiskStore } from '../../src/backends/disk.js';
import { addKey, initEncryption, listKeys, unlock } from '../../src/crypto/keys.js';
import { MasterKey } from '../../src/crypto/master-key.js';
import { WrongPasswordError } from '../../src/errors.js';
import { watchChild } from '../backends/disk/spawn.js';

const ROUNDS = 20;
let work: string;
let child: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-keys-crash-'));
  child = join(work, 'keys-child.mjs');
  // Bundled so that each child starts as plain Node, not through a TypeScript loader.
  await build({
    entryPoints: [fileURLToPath(new URL('./keys-child.ts', import.meta.url))],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: child,
    logLevel: 'error',
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function freshStore(name: string): Promise<{ dir: string; master: Uint8Array }> {
  const dir = join(work, name);
  const store = await openDiskStore(dir);
  const master = (await initEncryption(store, 'A', { kdf: { N: 2 ** 10 } })).exportBytes();
  await store.close();
  return { dir, master };
}

/** Which of the passwords open the store, and the master key they open. */
async function opening(dir: string): Promise<{ open: string[]; masters: string[]; keys: number }> {
  const store = await openDiskStore(dir);
  try {
    const open: string[] = [];
    const masters: string[] = [];
    for (const password of ['A', 'B']) {
      try {
        masters.push(Buffer.from((await unlock(store, password)).exportBytes()).toString('hex'));
        open.push(password);
      } catch (error) {
        if (!(error instanceof WrongPasswordError)) throw error;
      }
    }
    return { open, masters, keys: (await listKeys(store)).length };
  } finally {
    await store.close();
  }
}

describe('keys: a password change killed with SIGKILL', () => {
  it('killed between the new key and the old key\'s removal: both passwords open the same master key', async () => {
    const { dir, master } = await freshStore('between');
    const proc = spawn(process.execPath, [child, 'between', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    const watched = watchChild(proc);
    expect(await watched.exited, watched.stderr()).toBeNull();
    expect(proc.signalCode).toBe('SIGKILL');
    const after = await opening(dir);
    expect(after).toEqual({ open: ['A', 'B'], masters: [Buffer.from(master).toString('hex'), Buffer.from(master).toString('hex')], keys: 2 });
  });

  it(`killed at random moments of a run of changes (${ROUNDS} rounds): one password always opens, the same master key`, async () => {
    const { dir, master } = await freshStore('loop');
    const hex = Buffer.from(master).toString('hex');
    for (let round = 0; round < ROUNDS; round++) {
      const proc = spawn(process.execPath, [child, 'loop', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
      const watched = watchChild(proc);
      await new Promise<void>((resolve, reject) => {
        watched.onLine((line) => {
          if (line === 'ready') setTimeout(() => { proc.kill('SIGKILL'); resolve(); }, 5 + Math.random() * 150);
        });
        void watched.exited.then(() => reject(new Error(`child exited before being killed: ${watched.stderr()}`)));
      });
      expect(await watched.exited).toBeNull();
      const after = await opening(dir);
      expect(after.open.length, `round ${round}: no password opens`).toBeGreaterThan(0);
      expect(new Set(after.masters)).toEqual(new Set([hex]));
      // The next round starts from "A": finish a change the kill interrupted, as a user would.
      if (!after.open.includes('A')) {
        const store = await openDiskStore(dir);
        await addKey(store, new MasterKey(master), 'A', { kdf: { N: 2 ** 10 } });
        await store.close();
      }
    }
  });
});
