/**
 * The snapshot library without the CLI: snapshot a directory into a disk
 * store, change a file, snapshot again, list the difference, restore the
 * first snapshot elsewhere, and collect what no ref reaches.
 *
 * Run: npx tsx examples/snapshot-library.ts
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { collectGarbage, diffSnapshots, restore, snapshot, verifyStore } from '../src/index.js';
import { openDiskStore } from '../src/backends/disk.js';

const work = await mkdtemp(join(tmpdir(), 'cairn-example-'));
try {
  const src = join(work, 'project');
  await mkdir(join(src, 'docs'), { recursive: true });
  await writeFile(join(src, 'README.md'), '# A project\n');
  await writeFile(join(src, 'docs', 'guide.md'), 'Step one.\n'.repeat(1000));

  const store = await openDiskStore(join(work, 'store'));
  const first = await snapshot(store, src, { known: store });
  await store.setRef('snapshots/project', first.root);
  console.log(`first snapshot ${first.root.toString()}: ${first.files} files, ${first.written} objects written`);

  await writeFile(join(src, 'docs', 'guide.md'), 'Step one, revised.\n'.repeat(1000));
  const second = await snapshot(store, src, { known: store });
  console.log(`second snapshot: ${second.written} new objects`);
  for (const change of await diffSnapshots(store, first.root, second.root)) console.log(`  ${change.change} ${change.path}`);

  await restore(store, first.root, join(work, 'restored'));
  console.log(`restored the first snapshot into ${join(work, 'restored')}`);

  // The second snapshot has no ref: it is garbage (grace 0 because nothing else writes here).
  const gc = await collectGarbage(store, { graceMs: 0, dryRun: false });
  console.log(`gc deleted ${gc.deleted.length} unreachable objects`);
  const verified = await verifyStore(store);
  console.log(`verify: ${verified.checked} objects, ok = ${verified.ok}`);
  await store.close();
} finally {
  await rm(work, { recursive: true, force: true });
}
