/**
 * Durability of the packed layer under SIGKILL, plain and encrypted: a
 * child writes through packed over a disk store and is killed at random
 * moments, 20 times (12 encrypted). After
 * each kill, before any repair: every published index describes bytes
 * inside its pack, and every ref names an object that reads back. At the
 * end every acknowledged object reads back verified.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openDiskStore } from '../../src/backends/disk.js';
import { initEncryption, unlock } from '../../src/crypto/keys.js';
import type { MasterKey } from '../../src/crypto/master-key.js';
import { parseHash, type Store } from '../../src/index.js';
import { Cipher, decodeIndex, hashOfRefName, INDEX_MAGIC, INDEX_REF_PREFIX } from '../../src/layers/packed/format.js';
import { packed } from '../../src/layers/packed/packed.js';
import { encryptingSealer, plainSealer } from '../../src/layers/packed/sealing.js';
import { bundleScript } from '../support/bundle.js';

const child = fileURLToPath(new URL('./packed-crash-child.ts', import.meta.url));
const ROUNDS = 20;
let dir: string;
let bundle: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-packed-crash-'));
  bundle = join(dir, 'child.mjs');
  // The zstd WebAssembly file is found next to its package, so the package stays outside the bundle.
  await bundleScript(child, bundle, { external: ['@bokuweb/zstd-wasm'] });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function runAndKill(name: string, seed: number, ms: number, password: string | undefined): Promise<void> {
  const proc = spawn(process.execPath, [bundle, join(dir, name), join(dir, `${name}.acks`), String(seed), ...(password === undefined ? [] : [password])], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // The bundle imports @bokuweb/zstd-wasm from the project's node_modules.
    env: { ...process.env, NODE_PATH: join(process.cwd(), 'node_modules') },
  });
  let stderr = '';
  proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    proc.stdout.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) resolve();
    });
    void exited.then((code) => reject(new Error(`crash child exited early (${code}): ${stderr}`)));
  });
  await new Promise((resolve) => setTimeout(resolve, ms));
  proc.kill('SIGKILL');
  await exited;
  if (stderr.trim() !== '') throw new Error(`crash child wrote to stderr: ${stderr}`);
}

/** Every published index names bytes inside its pack, and the pack is there. */
async function expectIndexesInsidePacks(inner: Store, master: MasterKey | undefined): Promise<number> {
  let count = 0;
  const sealer = master === undefined ? plainSealer : encryptingSealer(master.keys());
  for await (const ref of inner.listRefs(INDEX_REF_PREFIX)) {
    expect(hashOfRefName(ref.name, INDEX_REF_PREFIX)?.equals(ref.hash)).toBe(true);
    const plain = sealer.openRecord(INDEX_MAGIC, await inner.get(ref.hash), ref.hash);
    const index = decodeIndex(plain, ref.hash, { maxObjectBytes: 16 * 1024, maxIndexBytes: 4 * 2 ** 20, cipher: master === undefined ? Cipher.none : Cipher.aes256gcm });
    const pack = await inner.get(index.pack);
    expect(pack.length, `pack ${index.pack.toString()}`).toBe(index.packLength);
    count++;
  }
  return count;
}

for (const mode of ['plain', 'encrypted'] as const) {
  const rounds = mode === 'plain' ? ROUNDS : 12;
  it(`crash test (${mode}): ${rounds} SIGKILLs of a packed writer lose no acknowledged object`, async () => {
    const password = mode === 'encrypted' ? 'crash test password' : undefined;
    const name = `inner-${mode}`;
    let master: MasterKey | undefined;
    if (password !== undefined) {
      const fresh = await openDiskStore(join(dir, name));
      master = await initEncryption(fresh, password, { kdf: { N: 2 ** 10 } });
      await fresh.close();
    }
    let x = 4242;
    const random = (): number => ((x = (x * 1103515245 + 12345) & 0x7fffffff), x / 0x7fffffff);
    for (let round = 0; round < rounds; round++) {
      await runAndKill(name, round + 1, 30 + Math.floor(random() * 300), password);
      const inner = await openDiskStore(join(dir, name));
      try {
        await expectIndexesInsidePacks(inner, master);
        const view = packed(inner, { encryption: master });
        for await (const ref of view.listRefs()) expect((await view.get(ref.hash)).length, `ref ${ref.name}`).toBeGreaterThan(0);
        await view.close();
      } finally {
        await inner.close().catch(() => undefined);
      }
    }
    const acks = (await readFile(join(dir, `${name}.acks`), 'utf8')).split('\n').filter((l) => l !== '');
    const objects = [...new Set(acks.filter((l) => l.startsWith('object ')).map((l) => l.slice(7)))].map(parseHash);
    expect(objects.length).toBeGreaterThan(rounds * 4);
    const innerForKey = await openDiskStore(join(dir, name));
    const unlocked = password === undefined ? undefined : await unlock(innerForKey, password);
    await innerForKey.close();
    const store = packed(await openDiskStore(join(dir, name)), { encryption: unlocked });
    try {
      for (let i = 0; i < objects.length; i += 256) {
        const slice = objects.slice(i, i + 256);
        expect(await store.getMany(slice)).toHaveLength(slice.length);
      }
      const inner = await openDiskStore(join(dir, name));
      expect(await expectIndexesInsidePacks(inner, master)).toBeGreaterThan(rounds);
      await inner.close();
    } finally {
      await store.close();
    }
  }, 120_000);
}
