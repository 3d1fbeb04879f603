/**
 * Snapshot commands: `snapshot`, `restore`, `diff`.
 *
 * @module
 */
import { assertRefName } from '../ref-name.js';
import { diffSnapshots } from '../snapshot/diff.js';
import { assertRestoreTarget, restore as restoreTree } from '../snapshot/restore.js';
import { snapshot as snapshotTree, statSnapshotDir } from '../snapshot/snapshot.js';
import type { Command } from './command.js';
import { EXIT, UsageError } from './exit-codes.js';
import { formatBytes } from './output.js';
import { hashIfShaped, resolveHashOrRef } from './resolve.js';
import { loadFileCache, saveFileCache } from './file-cache.js';
import { withStores } from './stores.js';

/** Quotes a path for a one-line listing when it holds characters a terminal would mangle. */
export function showPath(path: string): string {
  return /[\s"'\\\x00-\x1f\x7f]/.test(path) ? JSON.stringify(path) : path;
}

export const snapshot: Command = {
  name: 'snapshot',
  summary: 'store a directory tree and print its root hash',
  usage: 'snapshot <dir> [--ref NAME]',
  description: [
    'Stores every file, directory and symlink under <dir> (symlinks as links, never followed).',
    'Files are cut into content-defined chunks, so a later snapshot after a small edit stores',
    'and pushes only the changed chunks. Prints the root hash on stdout.',
  ].join('\n'),
  options: { ref: { type: 'string' } },
  optionHelp: { ref: 'also point this ref at the snapshot (e.g. snapshots/photos)' },
  examples: ['cairn snapshot ./photos --ref snapshots/photos', 'root=$(cairn snapshot -q ./photos)'],
  async run(ctx) {
    if (ctx.positionals.length !== 1) throw new UsageError('expected one directory; usage: cairn snapshot <dir> [--ref NAME]');
    const refName = ctx.values.ref as string | undefined;
    if (refName !== undefined) assertRefName(refName);
    const dir = ctx.positionals[0]!;
    await statSnapshotDir(dir);
    return withStores(ctx, { write: true }, async (stores) => {
      const started = Date.now();
      // Chunks already in the local store are skipped: not rewritten, and not queued for upload again.
      // That is safe only because a remote that may lack them gets a full check on its next push (remote-state.ts).
      const cache = await loadFileCache(stores.config.dir);
      const result = await snapshotTree(stores.main, dir, {
        signal: ctx.signal,
        known: stores.local,
        cache,
        onProgress: ctx.out.progress('snapshot'),
      });
      await saveFileCache(stores.config.dir, cache, dir);
      if (refName !== undefined) await stores.main.setRef(refName, result.root, { signal: ctx.signal });
      ctx.out.done();
      for (const path of result.skipped) ctx.out.warn(`skipped ${showPath(path)}: not a file, directory or symlink`);
      const seconds = (Date.now() - started) / 1000;
      ctx.out.line(result.root.toString());
      ctx.out.note(
        `snapshot of ${dir}: ${result.files.toLocaleString('en-US')} files, ${result.dirs.toLocaleString('en-US')} directories, ` +
          `${result.symlinks} symlinks, ${formatBytes(result.bytes)} in ${seconds.toFixed(1)} s` +
          (result.reused > 0 ? ` (${result.reused.toLocaleString('en-US')} unchanged files not read again)` : '') +
          (refName !== undefined ? `; ref ${refName} updated` : '') +
          (stores.remote !== undefined ? '; run "cairn push" to upload' : ''),
      );
      ctx.out.result({ ...result, root: result.root.toString(), ref: refName ?? null, seconds });
      return EXIT.ok;
    });
  },
};

export const restore: Command = {
  name: 'restore',
  summary: 'write a snapshot into a new or empty directory',
  usage: 'restore <hash|ref> <dir>',
  description: [
    'Recreates the tree byte for byte with file modes and symlinks. Objects missing locally are',
    'read from the remote. The tree is built beside <dir> and moved into place when complete, so',
    'an error or Ctrl-C leaves nothing half-written.',
  ].join('\n'),
  examples: ['cairn restore snapshots/photos ./photos-copy', 'cairn restore sha256:9f86d0… /tmp/out'],
  async run(ctx) {
    if (ctx.positionals.length !== 2) throw new UsageError('expected a snapshot and a directory; usage: cairn restore <hash|ref> <dir>');
    const [which, dir] = ctx.positionals as [string, string];
    hashIfShaped(which);
    await assertRestoreTarget(dir);
    return withStores(ctx, {}, async (stores) => {
      const root = await resolveHashOrRef(stores.main, which, ctx.signal);
      const started = Date.now();
      const result = await restoreTree(stores.main, root, dir, { signal: ctx.signal, onProgress: ctx.out.progress('restore') });
      ctx.out.done();
      const seconds = (Date.now() - started) / 1000;
      ctx.out.note(
        `restored ${root.toString()} into ${dir}: ${result.files.toLocaleString('en-US')} files, ${formatBytes(result.bytes)} in ${seconds.toFixed(1)} s`,
      );
      ctx.out.result({ root: root.toString(), dir, ...result, seconds });
      return EXIT.ok;
    });
  },
};

export const diff: Command = {
  name: 'diff',
  summary: 'list what changed between two snapshots',
  usage: 'diff <a> <b>',
  description: 'Prints one line per change: "+ path" added, "- path" removed, "M path" modified, "m path" mode changed.',
  examples: ['cairn diff snapshots/monday snapshots/tuesday'],
  async run(ctx) {
    if (ctx.positionals.length !== 2) throw new UsageError('expected two snapshots; usage: cairn diff <a> <b>');
    ctx.positionals.forEach(hashIfShaped);
    return withStores(ctx, {}, async (stores) => {
      const a = await resolveHashOrRef(stores.main, ctx.positionals[0]!, ctx.signal);
      const b = await resolveHashOrRef(stores.main, ctx.positionals[1]!, ctx.signal);
      const changes = await diffSnapshots(stores.main, a, b, { signal: ctx.signal });
      const mark = { added: '+', removed: '-', modified: 'M', mode: 'm' } as const;
      for (const c of changes) ctx.out.line(`${mark[c.change]} ${showPath(c.path)}${c.kind === 'dir' ? '/' : ''}`);
      ctx.out.result({ a: a.toString(), b: b.toString(), changes });
      return EXIT.ok;
    });
  },
};
