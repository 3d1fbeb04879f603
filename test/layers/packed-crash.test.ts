/**
 * Durability of the packed layer under SIGKILL: a child writes through
 * packed over a disk store and is killed at random moments, 20 times. After
 * each kill, before any repair: every published index describes bytes
 * inside its pack, and every ref names an object that reads back. At the
 * end every acknowledged object reads back verified.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openDiskStore } from '../../src/backends/disk.js';
import { parseHash, type Store } from '../../src/index.js';
import { decodeIndex, hashOfRefName, INDEX_REF_PREFIX } from '../../src/layers/packed/format.js';
import { packed } from '../../src/layers/packed/packed.js';

const child = fileURLToPath(new URL('./packed-crash-child.ts', import.meta.url));
const ROUNDS = 20;
let dir: string;
let bundle: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-packed-crash-'));
  bundle = join(dir, 'child.mjs');
  await build({
    entryPoints: [child],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: bundle,
    logLevel: 'error',
    // The zstd WebAssembly file is found next to its package, so the package stays outside the bundle.
    external: ['@bokuweb/zstd-wasm'],
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function runAndKill(seed: number, ms: number): Promise<void> {
  const proc = spawn(process.execPath, [bundle, join(dir, 'inner'), join(dir, 'acks'), String(seed)], {
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
async function expectIndexesInsidePacks(inner: Store): Promise<number> {
  let count = 0;
  for await (const ref of inner.listRefs(INDEX_REF_PREFIX)) {
    expect(hashOfRefName(ref.name, INDEX_REF_PREFIX)?.equals(ref.hash)).toBe(true);
    const index = decodeIndex(await inner.get(ref.hash), ref.hash, { maxObjectBytes: 16 * 1024, maxIndexBytes: 4 * 2 ** 20, cipher: 0 });
    const pack = await inner.get(index.pack);
    expect(pack.length, `pack ${index.pack.toString()}`).toBe(index.packLength);
    count++;
  }
  return count;
}

it(`crash test: ${ROUNDS} SIGKILLs of a packed writer lose no acknowledged object`, async () => {
  let x = 4242;
  const random = (): number => ((x = (x * 1103515245 + 12345) & 0x7fffffff), x / 0x7fffffff);
  for (let round = 0; round < ROUNDS; round++) {
    await runAndKill(round + 1, 30 + Math.floor(random() * 300));
    const inner = await openDiskStore(join(dir, 'inner'));
    try {
      await expectIndexesInsidePacks(inner);
      const view = packed(inner);
      for await (const ref of view.listRefs()) expect((await view.get(ref.hash)).length, `ref ${ref.name}`).toBeGreaterThan(0);
      await view.close();
    } finally {
      await inner.close().catch(() => undefined);
    }
  }
  const acks = (await readFile(join(dir, 'acks'), 'utf8')).split('\n').filter((l) => l !== '');
  const objects = [...new Set(acks.filter((l) => l.startsWith('object ')).map((l) => l.slice(7)))].map(parseHash);
  expect(objects.length).toBeGreaterThan(ROUNDS * 4);
  const store = packed(await openDiskStore(join(dir, 'inner')));
  try {
    for (let i = 0; i < objects.length; i += 256) {
      const slice = objects.slice(i, i + 256);
      expect(await store.getMany(slice)).toHaveLength(slice.length);
    }
    const inner = await openDiskStore(join(dir, 'inner'));
    expect(await expectIndexesInsidePacks(inner)).toBeGreaterThan(ROUNDS);
    await inner.close();
  } finally {
    await store.close();
  }
}, 90_000);
