import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openDiskStore } from '../../src/backends/disk.js';
import { parseHash, type Hash, type Store } from '../../src/index.js';
import { layered } from '../../src/layers/layered.js';
import { bundleScript } from '../support/bundle.js';

const child = fileURLToPath(new URL('./crash-child.ts', import.meta.url));
const ROUNDS = 30;
let dir: string;

let bundle: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-layered-crash-'));
  // Bundled once, so that each of the 30 children starts as plain Node rather than through a TypeScript loader.
  bundle = join(dir, 'crash-child.mjs');
  await bundleScript(child, bundle);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Starts the child, waits until its store is open, lets it work `ms`, then SIGKILLs it. */
async function runAndKill(seed: number, ms: number): Promise<void> {
  const proc = spawn(process.execPath, [bundle, join(dir, 'upper'), join(dir, 'lower'), join(dir, 'acks'), String(seed)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
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

/** No ref in `lower` may name an object `lower` lacks. */
async function expectRefsComplete(lower: Store): Promise<number> {
  let refs = 0;
  for await (const ref of lower.listRefs()) {
    expect(await lower.has(ref.hash), `remote ref ${ref.name} names a missing object`).toBe(true);
    refs++;
  }
  return refs;
}

it(`crash test: ${ROUNDS} SIGKILLs of a layered disk-over-disk writer lose no acknowledged object`, async () => {
  const random = (() => {
    let x = 12345;
    return () => {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      return x / 0x7fffffff;
    };
  })();
  for (let round = 0; round < ROUNDS; round++) {
    await runAndKill(round + 1, 20 + Math.floor(random() * 400));
    // Right after the kill, before any repair: published refs are complete.
    const lowerNow = await openDiskStore(join(dir, 'lower'));
    await expectRefsComplete(lowerNow);
    await lowerNow.close();
  }
  // Reopen and push: every acknowledged object must reach the lower store intact.
  const store = layered({ upper: await openDiskStore(join(dir, 'upper')), lower: await openDiskStore(join(dir, 'lower')) });
  const pushed = await store.push();
  const localRefs = new Map<string, string>();
  for await (const ref of store.listRefs()) localRefs.set(ref.name, ref.hash.toString());
  await store.close();
  const acks = (await readFile(join(dir, 'acks'), 'utf8')).split('\n').filter((l) => l !== '');
  const objects = [...new Set(acks.filter((l) => l.startsWith('object ')).map((l) => l.slice(7)))].map(parseHash);
  const refs = acks.filter((l) => l.startsWith('ref '));
  expect(objects.length).toBeGreaterThan(ROUNDS);
  expect(refs.length).toBeGreaterThan(ROUNDS / 2);
  const lower = await openDiskStore(join(dir, 'lower'));
  try {
    // getMany verifies each object's bytes against its hash.
    for (let i = 0; i < objects.length; i += 256) {
      const slice = objects.slice(i, i + 256);
      const bytes = await lower.getMany(slice);
      expect(bytes).toHaveLength(slice.length);
    }
    expect(await expectRefsComplete(lower)).toBeGreaterThan(0);
    expect(pushed.conflicts).toEqual([]);
    // One writer: after the push the remote refs are exactly the local ones.
    const remoteRefs = new Map<string, string>();
    for await (const ref of lower.listRefs()) remoteRefs.set(ref.name, ref.hash.toString());
    expect(remoteRefs).toEqual(localRefs);
    // Nothing corrupt anywhere in the lower store.
    const all: Hash[] = [];
    for await (const hash of lower.listObjects()) all.push(hash);
    for (let i = 0; i < all.length; i += 256) await lower.getMany(all.slice(i, i + 256));
  } finally {
    await lower.close();
  }
}, 240_000);
