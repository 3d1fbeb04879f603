/**
 * The hard round trip through the built binary: 10,000 small files in
 * nested folders, empty files and folders, a 200 MiB file, symlinks
 * (including ones pointing out of the tree) and unusual names. Snapshot,
 * restore, compare every byte, mode and link; the 200 MiB file must pass
 * in bounded memory. Local only, to keep the test fast: push and restore
 * through a remote are covered by cli.test.ts and minio.test.ts.
 */
import { randomBytes, randomFillSync } from 'node:crypto';
import { open, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeTree, ODD_NAMES } from '../snapshot/fixtures.js';
import { assertBuilt, cairn, cairnOk } from './run-cli.js';

let work: string;
beforeAll(async () => {
  assertBuilt();
  work = await mkdtemp(join(tmpdir(), 'cairn-big-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const LARGE_MIB = 200;
const LARGE = LARGE_MIB * 1024 * 1024;

async function writeLarge(path: string): Promise<void> {
  // Random bytes, so that every chunk is distinct: 8 MiB at a time, never the whole file in memory.
  const handle = await open(path, 'w');
  const block = Buffer.allocUnsafe(8 * 1024 * 1024);
  for (let written = 0; written < LARGE; written += block.length) await handle.write(randomFillSync(block));
  await handle.close();
}

async function buildTree(src: string): Promise<void> {
  const jobs: Array<Promise<void>> = [];
  // 10,000 small files: 10 top folders x 10 nested x 100 files, one in ten empty.
  for (let a = 0; a < 10; a++) {
    for (let b = 0; b < 10; b++) {
      const dir = join(src, `top-${a}`, `nested ${b}`, 'deeper');
      await mkdir(dir, { recursive: true });
      for (let c = 0; c < 100; c++) {
        const n = a * 1000 + b * 100 + c;
        jobs.push(writeFile(join(dir, `file-${n}.txt`), n % 10 === 0 ? '' : `small file ${n}\n${'x'.repeat(n % 500)}`));
      }
    }
    await Promise.all(jobs.splice(0));
  }
  await mkdir(join(src, 'empty folder/also empty'), { recursive: true });
  await mkdir(join(src, 'odd'));
  for (const name of ODD_NAMES) await writeFile(join(src, 'odd', name), `odd ${name}`);
  await writeFile(join(src, 'odd', 'random.bin'), randomBytes(1_000_000));
  await symlink('../top-0', join(src, 'odd', 'link to folder'));
  await symlink('/etc/hostname', join(src, 'odd', 'absolute link'));
  await symlink('../../../outside-the-tree', join(src, 'odd', 'escaping link'));
  await symlink('missing target', join(src, 'odd', 'dangling'));
  await writeLarge(join(src, 'large.bin'));
}

it('10,000 small files, a 200 MiB file, symlinks and odd names round-trip exactly through snapshot and restore', async () => {
  const src = join(work, 'src');
  await buildTree(src);
  const env = { CAIRN_DIR: join(work, 'store'), CAIRN_DEBUG: '1' };
  await cairnOk(['init'], { env });

  const snap = await cairn(['snapshot', src, '--ref', 'snapshots/big', '--json'], { env });
  expect(snap.code, snap.stderr).toBe(0);
  const result = JSON.parse(snap.stdout) as { files: number; symlinks: number; bytes: number };
  expect(result.files).toBe(10_000 + ODD_NAMES.length + 2);
  expect(result.symlinks).toBe(4);
  // Bounded memory: the 200 MiB file streams through in chunks (RSS reported by CAIRN_DEBUG). The
  // growth over an idle command's peak must stay below the file's size, which holding it would
  // need; an absolute figure would depend on the runtime (Node 24 starts larger than Node 20).
  const idle = await cairn(['ref', 'ls'], { env });
  const idlePeak = Number(/peak RSS (\d+) MiB/.exec(idle.stderr)?.[1]);
  expect(idlePeak, idle.stderr).toBeGreaterThan(0);
  const peak = Number(/peak RSS (\d+) MiB/.exec(snap.stderr)?.[1]);
  expect(peak - idlePeak).toBeLessThan(LARGE_MIB);

  const out = join(work, 'restored');
  const restored = await cairn(['restore', 'snapshots/big', out], { env });
  expect(restored.code, restored.stderr).toBe(0);
  expect(Number(/peak RSS (\d+) MiB/.exec(restored.stderr)?.[1]) - idlePeak).toBeLessThan(LARGE_MIB);
  const [want, got] = await Promise.all([describeTree(src), describeTree(out)]);
  expect(got.length).toBe(want.length);
  expect(got).toEqual(want);
}, 300_000);
