/**
 * A restore from a packed remote asks for sibling trees and small files
 * together, so the packed layer serves them in a few ranged reads, not one
 * request per directory and per file.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { memoryStore, type Store } from '../../src/index.js';
import { packed } from '../../src/layers/packed/packed.js';
import { restore, snapshot } from '../../src/snapshot/index.js';
import { wrap } from '../layers/faulty-store.js';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-restore-requests-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

it('200 directories of one small file each restore in a few dozen ranged reads, byte for byte', async () => {
  const src = join(work, 'src');
  for (let d = 0; d < 200; d++) {
    await mkdir(join(src, `dir-${d}`), { recursive: true });
    await writeFile(join(src, `dir-${d}`, 'note.txt'), `note ${d} `.repeat(50 + d));
  }
  const inner = memoryStore();
  let ranged = 0;
  const counted: Store = wrap(inner, {
    getRange: (hash, offset, length, options) => {
      ranged++;
      return inner.getRange(hash, offset, length, options);
    },
  });
  const writer = packed(inner, { lingerMs: 1 });
  const { root } = await snapshot(writer, src);
  await writer.flush();
  const reader = packed(counted);
  await reader.refresh();
  ranged = 0;
  const out = join(work, 'out');
  await restore(reader, root, out);
  // One request per directory and per file would be over 400 (plus the measuring walk's 200).
  expect(ranged).toBeLessThan(60);
  for (const d of [0, 77, 199]) expect(await readFile(join(out, `dir-${d}`, 'note.txt'), 'utf8')).toBe(`note ${d} `.repeat(50 + d));
});
